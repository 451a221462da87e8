"""A board deployed with the core agent only (its profile's "addons" leaves some out), and
the parts of the device code that load only when used (serial framing, compression, the
capability document, the checks' text helpers)."""
import os
import subprocess

import pytest

from agent_support import RUNTIMES, console_lines, free_port, install, run
from host_sim import boards
from jotunheim_host import bundle, ota
from jotunheim_host.controller import CallError, connect

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, "firmware", "lib", "jotunheim")
CORE = ("__init__", "agent", "announce", "args", "auth", "calls", "caps", "capsdoc", "checks",
        "configfile", "duty", "link", "network", "ops", "port", "profile", "remote_settings",
        "session", "settings", "toolconf")


def _modules(files):
    return {path.rsplit("/", 1)[1].split(".")[0] for path in files
            if path.startswith("/lib/jotunheim/")}


def test_every_module_is_core_or_belongs_to_one_addon():
    from jotunheim import agent
    assert set(bundle.ADDON_MODULES) == set(agent.ADDONS)
    on_disk = {name[:-3] for name in os.listdir(PACKAGE) if name.endswith(".py")}
    owned = [name for modules in bundle.ADDON_MODULES.values() for name in modules]
    assert len(owned) == len(set(owned))  # no module in two add-ons
    assert set(owned) | set(CORE) == on_disk and not set(owned) & set(CORE)


def test_a_board_profile_chooses_its_addons():
    everything = _modules(bundle.firmware_files("micropython", "esp32"))
    assert set(bundle.ADDON_MODULES["loki"]) <= everything
    small = _modules(bundle.firmware_files("micropython", "esp8266"))
    assert small == set(CORE)  # the ESP8266 profile: "addons": []
    with_updates = dict(boards.load("esp8266"), addons=["ota"])
    assert _modules(bundle.firmware_files("cpython", with_updates)) == set(CORE) | {"ota",
                                                                                 "ota_update"}


def test_bad_addons_are_refused_before_anything_is_built(tmp_path):
    with pytest.raises(bundle.BundleError, match="unknown add-ons lokki"):
        bundle.firmware_files("cpython", dict(boards.load("esp32"), addons=["lokki"]))
    public = ota.keygen(str(tmp_path / "owner"))["public"]
    with pytest.raises(bundle.BundleError, match="no updates"):
        bundle.firmware_files("cpython", "esp8266", ota_key=public)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_the_core_agent_alone_serves_calls(make_device, runtime):
    """An ESP32 deployed without add-ons: calls, the document and settings work; the add-ons'
    requests are UNIMPLEMENTED and the document offers none of their features."""
    port = free_port()
    device = make_device(runtime, board=dict(boards.load("esp32"), addons=[]))
    install(device, {"agent.mode": "listen", "agent.listen_port": port})
    assert not [path for path in device.read_files() if "loki" in path or "ota" in path]
    device.start()
    console_lines(device, r"listening on port")

    async def main():
        d = await connect("tcp://127.0.0.1:%d" % port)
        try:
            assert d.hello["firmware_version"] == "0.1.0"
            caps = await d.capabilities()
            features = caps["features"]
            assert not features.get("ota_method") and not features.get("streaming")
            assert not features.get("script_languages")
            assert not [t for t in caps["tools"] if t["name"].startswith("Script_")]
            assert await d.call("device_echo", value=[1, "two"]) == [1, "two"]
            for name in ("OtaStatusRequest", "ScriptList", "StreamOpen"):
                with pytest.raises(CallError) as e:
                    await d.request(name, {"stream_id": 1} if name == "StreamOpen" else {})
                assert e.value.status_name == "UNIMPLEMENTED", name
            settings = await d.request("SettingsGet", {})
            assert settings["values"]
            assert await d.call("device_echo", value=7) == 7  # still serving
        finally:
            await d.close()
    run(main())


LAZY = """
import sys
import protocol
before = sorted(m for m in sys.modules if m.startswith("protocol."))
frames = protocol.SerialDecoder(64).feed(protocol.encode_serial_frame("Ping", {"seq": 3}))
name, fields = protocol.decode_payload(*frames[0])
assert len(frames) == 1 and name == "Ping" and fields["seq"] == 3, frames
assert "protocol.serial" in sys.modules and "protocol.compressed" not in sys.modules
assert not hasattr(protocol, "no_such_thing")
print(before)
"""


@pytest.mark.parametrize("interpreter", ["micropython", "cpython"])
def test_serial_framing_and_compression_load_when_first_used(interpreter):
    """`import protocol` on a board on TCP loads neither serial framing nor compression;
    protocol.SerialDecoder and friends still work, loading their module then."""
    import sys
    binary = "micropython" if interpreter == "micropython" else sys.executable
    env = dict(os.environ, MICROPYPATH=ROOT, PYTHONPATH=ROOT)
    done = subprocess.run([binary, "-c", LAZY], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    loaded = done.stdout.strip()
    assert "serial" not in loaded and "compressed" not in loaded and "enums" not in loaded
    assert "protocol.framing" in loaded
