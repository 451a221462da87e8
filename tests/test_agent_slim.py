"""A board deployed with the core agent only (its profile's "addons" leaves some out), and
the parts of the device code that load only when used (serial framing, compression, the
capability document, the checks' text helpers)."""
import os
import subprocess

import pytest

from agent_support import RUNTIMES, console_lines, free_port, install, listening, run
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


HEAP_PROBE = """\
import gc
import micropython
import sys


def run(ctx):
    gc.collect()
    micropython.mem_info(1)
    return {"modules": [id(m) for m in sys.modules.values()], "names": list(sys.modules),
            "block": 32 if sys.maxsize > 2 ** 32 else 16}
"""
LARGEST = """\
import gc


def run(ctx):
    gc.collect()
    free = gc.mem_free()
    lo, hi = 0, free   # the largest bytearray there is room for, to 64 bytes
    while hi - lo > 64:
        mid = (lo + hi) // 2
        try:
            bytearray(mid)
            lo = mid
        except MemoryError:
            hi = mid
    return [free, lo, gc.threshold()]
"""
COUNT = [{"name": "count", "type": "int", "required": False, "default": 2}]
EMITTER = "async def run(ctx, count=2):\n    for i in range(count):\n        await ctx.emit(b'ab')\n"


def heap_module_objects(console, block):
    """Addresses of the module objects in a MicroPython heap dump (mem_info(1))."""
    start, blocks = None, []
    for line in console.splitlines():
        if line.startswith("GC memory layout; from "):
            start = int(line.split()[-1].rstrip(":"), 16)
        elif start is not None and "lines all free" in line:
            blocks.append("." * 64 * int(line.split("(")[1].split()[0]))
        elif start is not None and len(line) > 10 and line[8:10] == ": ":
            blocks.append(line[10:].strip())
    assert start is not None, console
    layout = "".join(blocks)
    return {start + i * block for i, c in enumerate(layout) if c == "M"}


def test_modules_loaded_for_a_while_leave_the_heap_when_dropped(make_device):
    """What the agent loads on use and drops again (Loki's requests and their checks, the
    capability document, the streams, OTA where there are no updates) is gone from the
    heap afterwards: no module object outlives its place in sys.modules, as one does
    while a resident module or a long-running function still refers to it."""
    device, port = listening(make_device, "micropython")

    async def scenario():
        d = await connect("tcp://127.0.0.1:%d" % port, reconnect=False)
        await d.register_script("probe", HEAP_PROBE)
        await d.call("Script_probe")   # a script ran: the scripts' context is loaded
        await d.register_script("emitter", EMITTER, streams=True, parameters=COUNT)
        await d.capabilities(refresh=True)
        stream = await d.stream_script("emitter", count=3)
        assert await stream.read_all() == b"ab" * 3
        with pytest.raises(CallError) as refused:
            await d.stream_script("emitter", count="many")
        assert refused.value.status_name == "INVALID_ARGUMENT"
        mark = device.console.mark()
        heap = await d.call("Script_probe")
        await d.close()
        return heap, mark
    heap, mark = run(scenario(), 60)
    dump = device.console.wait_for("GC memory layout", since=mark) and \
        device.console.text(mark)
    assert not [name for name in heap["names"] if name.startswith("jotunheim.stream")
                and name != "jotunheim.streams"]   # no stream open: no stream code
    assert "jotunheim.ota" not in heap["names"]     # no update keys on this device
    outliving = heap_module_objects(dump, heap["block"]) - set(heap["modules"])
    assert not outliving, "%d module objects outside sys.modules" % len(outliving)



def test_memory_collect_kb_keeps_the_free_heap_in_large_pieces(make_device):
    """memory.collect_kb has the heap collected every so many KB allocated, not only when
    it is full: what lives on is then allocated low in the heap instead of anywhere in a
    heap full of garbage, and the free heap stays in large pieces after what leaves
    long-lived objects behind (registrations, calls, streams, the capability document).
    Changed remotely, it takes effect at once; 0 is MicroPython's own way again."""
    device, port = listening(make_device, "micropython", {"memory.collect_kb": 13})

    async def scenario():
        d = await connect("tcp://127.0.0.1:%d" % port, reconnect=False)
        await d.register_script("largest", LARGEST)
        for name in ("emitter", "second", "third"):
            await d.register_script(name, EMITTER, streams=True, parameters=COUNT)
            for _ in range(20):
                assert await d.call("Script_" + name, count=0) is None
            await d.capabilities(refresh=True)
            stream = await d.stream_script(name, count=3)
            assert await stream.read_all() == b"ab" * 3
        free, largest, threshold = await d.call("Script_largest")
        assert threshold == 13 * 1024
        assert largest * 3 >= free, "%d bytes free, the largest piece %d" % (free, largest)
        await d.set_settings(**{"memory.collect_kb": 0})
        assert (await d.call("Script_largest"))[2] == -1
        await d.close()
    run(scenario(), 60)
