"""Custom MicroPython builds for the RAM benchmark, without building one: the frozen
manifest holds exactly the deployed /lib code, make gets the flavour's switches, the
simulator runs the binary JOTUNHEIM_MICROPYTHON names with that binary's word size, and
tests/bench/ram_builds.py measures on the PyPI binary."""
import os
import re
import shutil
import stat
import sys

import pytest

from agent_support import console_lines
from host_sim import flash, runner
from jotunheim_host import bundle

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "bench"))
import build_micropython  # noqa: E402
import ram_builds  # noqa: E402

MODULE_LINE = re.compile(r"module\('([^']+)', base_path='([^']+)'\)")


def lib_files():
    return {path[len("/lib/"):]: data for path, data in bundle.source_files().items()
            if path.startswith("/lib/")}


def manifest_modules(manifest):
    """({frozen device module: bytes}, {frozen simulator module: bytes}) of a manifest,
    whose first line must include asyncio."""
    with open(manifest) as f:
        lines = f.read().splitlines()
    assert lines[0] == 'include("$(MPY_DIR)/extmod/asyncio")'
    device, sim = {}, {}
    for line in lines[1:]:
        module, base = MODULE_LINE.fullmatch(line).groups()
        with open(os.path.join(base, module), "rb") as f:
            (sim if module.startswith("host_sim/") else device)[module] = f.read()
    return device, sim


def test_every_flavour_freezes_the_current_simulator(tmp_path):
    for flavour in build_micropython.FLAVOURS:
        _, sim = manifest_modules(build_micropython.write_manifest(flavour, str(tmp_path)))
        digest = sim.pop("host_sim/_frozen_digest.py")
        assert sim == flash.sim_sources()
        assert "host_sim/device_boot.py" in sim and "host_sim/shims/machine.py" in sim
        assert digest == ("DIGEST = %r\n" % flash.sim_digest()).encode()


def test_frozen_manifest_names_exactly_the_deployed_lib_files(tmp_path):
    stale = tmp_path / "32-frozen" / "frozen-code" / "jotunheim" / "gone.py"
    stale.parent.mkdir(parents=True)
    stale.write_text("x = 1\n")  # a module of an older run
    frozen, _ = manifest_modules(build_micropython.write_manifest("32-frozen", str(tmp_path)))
    expected = lib_files()
    assert frozen == expected
    assert any(name.startswith("protocol/") for name in frozen)
    assert "jotunheim/__init__.py" in frozen
    assert not stale.exists()
    assert build_micropython.frozen_is_current("32-frozen", str(tmp_path))


def test_the_core_flavour_freezes_the_agent_without_its_addons(tmp_path):
    frozen, _ = manifest_modules(build_micropython.write_manifest("32-frozen-core",
                                                                  str(tmp_path)))
    addon_modules = {"jotunheim/%s.py" % name for modules in bundle.ADDON_MODULES.values()
                     for name in modules}
    assert set(frozen) == set(lib_files()) - addon_modules
    assert "jotunheim/agent.py" in frozen and "jotunheim/loki.py" not in frozen
    assert build_micropython.frozen_is_current("32-frozen-core", str(tmp_path))


def test_frozen_code_that_differs_from_the_repository_is_noticed(tmp_path):
    build_micropython.write_manifest("64-frozen", str(tmp_path))
    module = tmp_path / "64-frozen" / "frozen-code" / "jotunheim" / "__init__.py"
    module.write_bytes(module.read_bytes() + b"# changed\n")
    assert not build_micropython.frozen_is_current("64-frozen", str(tmp_path))


def test_unfrozen_flavour_freezes_no_device_code(tmp_path):
    device, sim = manifest_modules(build_micropython.write_manifest("32", str(tmp_path)))
    assert device == {} and sim
    assert not (tmp_path / "32" / "frozen-code").exists()


@pytest.mark.parametrize("flavour, bits32", [("32", True), ("32-frozen", True),
                                             ("32-frozen-core", True), ("64-frozen", False)])
def test_make_gets_the_flavours_switches(tmp_path, flavour, bits32):
    argv = build_micropython.make_arguments(flavour, "/m/manifest.py", str(tmp_path))
    assert "BUILD=%s" % (tmp_path / flavour) in argv
    assert "FROZEN_MANIFEST=/m/manifest.py" in argv
    for switch in ("MICROPY_PY_BTREE=0", "MICROPY_PY_SSL=0", "MICROPY_PY_FFI=0"):
        assert switch in argv
    assert ("CFLAGS_EXTRA=-m32" in argv) == bits32 and ("LDFLAGS_EXTRA=-m32" in argv) == bits32
    empty_lib = [a for a in argv if a.startswith("MPY_LIB_DIR=")][0].split("=", 1)[1]
    assert os.listdir(empty_lib) == ["README.md"]
    assert build_micropython.binary_path(flavour, str(tmp_path)) == \
        str(tmp_path / flavour / "micropython")


def test_build_refuses_an_unknown_flavour_and_a_tree_without_the_unix_port(tmp_path):
    with pytest.raises(build_micropython.BuildError, match="unknown flavour '16'"):
        build_micropython.build("16", str(tmp_path), build_root=str(tmp_path))
    with pytest.raises(build_micropython.BuildError, match="not a MicroPython source tree"):
        build_micropython.build("32", str(tmp_path), build_root=str(tmp_path))
    assert build_micropython.main(["--flavour", "32", "--source", str(tmp_path)]) == 1


def logging_binary(tmp_path):
    """An executable that logs its arguments and runs PATH's micropython: (path, log)."""
    log = tmp_path / "calls.log"
    wrapper = tmp_path / "my-micropython"
    wrapper.write_text('#!/bin/sh\necho "$@" >> %s\nexec %s "$@"\n'
                       % (log, shutil.which("micropython")))
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    return str(wrapper), log


def test_devices_run_on_the_binary_the_variable_names(monkeypatch, tmp_path):
    binary, log = logging_binary(tmp_path)
    monkeypatch.setenv(flash.BINARY_VARIABLE, binary)
    assert flash.micropython_binary() == binary
    assert runner.word_factor() == 2  # PyPI's is 64-bit
    device = runner.Device("esp32", str(tmp_path / "device"), runtime="micropython")
    device.put_files({"/main.py": "print('main ran')\n"})
    try:
        device.start()
        device.console.wait_for("main ran", timeout=30)
    finally:
        device.stop()
    calls = log.read_text().splitlines()
    assert any(flash.DEVICE_BOOT in call and "heapsize=%d" % (
        2 * runner.load_board("esp32")["heap_bytes"] + runner.SIM_HEAP) in call
        for call in calls)
    assert sum("sys.maxsize" in call for call in calls) == 1  # asked once


def frozen_sim_binary(tmp_path, digest):
    """An executable standing in for a build with the simulator frozen: it answers the
    digest question with `digest` and runs PATH's micropython with the repository where
    the frozen modules would be. (path, log of its arguments)."""
    log = tmp_path / "calls.log"
    wrapper = tmp_path / "frozen-sim-micropython"
    wrapper.write_text('#!/bin/sh\necho "$@" >> %s\n'
                       'case "$*" in *_frozen_digest*) echo %s; exit 0;; esac\n'
                       'MICROPYPATH=%s:.frozen exec %s "$@"\n'
                       % (log, digest, flash.REPO, shutil.which("micropython")))
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    return str(wrapper), log


@pytest.mark.parametrize("current", [True, False])
def test_a_binary_holding_the_current_simulator_runs_it(monkeypatch, tmp_path, current):
    binary, log = frozen_sim_binary(tmp_path, flash.sim_digest() if current else "0" * 64)
    monkeypatch.setenv(flash.BINARY_VARIABLE, binary)
    assert flash.frozen_sim(binary) == current
    device = runner.Device("esp32", str(tmp_path / "device"), runtime="micropython")
    device.put_files({"/main.py": "import machine, time\n"
                                  "print('shim', machine.__name__, time.ticks_ms() >= 0)\n"})
    try:
        device.start()
        printed = console_lines(device, r"shim (\S+) (\w+)\r?\n")
    finally:
        device.stop()
    boots = [call for call in log.read_text().splitlines() if "heapsize=" in call]
    assert boots and all((flash.DEVICE_BOOT in call) != current for call in boots)
    # the shims come from the frozen package when the simulator is frozen
    assert printed == [("host_sim.shims.machine" if current else "machine", "True")]


def test_without_the_variable_devices_run_on_paths_micropython(monkeypatch):
    monkeypatch.delenv(flash.BINARY_VARIABLE, raising=False)
    assert flash.micropython_binary() == shutil.which("micropython")
    assert runner.word_factor() == 2


@pytest.mark.parametrize("kind", ["missing", "not executable"])
def test_a_variable_naming_no_executable_is_a_clear_error(monkeypatch, tmp_path, kind):
    path = tmp_path / "micropython"
    if kind == "not executable":
        path.write_text("")
    monkeypatch.setenv(flash.BINARY_VARIABLE, str(path))
    with pytest.raises(runner.SimError, match="JOTUNHEIM_MICROPYTHON=.* is not an executable"):
        runner.micropython_binary()


def test_device_files_hold_the_code_where_each_way_says():
    mpy, image = ram_builds.device_files("mpy", 1234)
    assert image is None and "/lib/jotunheim/__init__.mpy" in mpy
    romfs, image = ram_builds.device_files("romfs", 1234)
    assert image[:1] and not any(path.startswith("/lib/") for path in romfs)
    frozen, image = ram_builds.device_files("frozen", 1234)
    assert image is None and set(frozen) == set(romfs)
    assert "/main.py" in frozen and "/settings.json" in frozen


def test_ram_is_measured_on_the_pypi_binary():
    row = ram_builds.measure(None, "romfs")
    assert row["binary"] == shutil.which("micropython") and row["word_factor"] == 2
    assert 0 < row["free_after_handshake_bytes"] < row["free_at_boot_without_agent_bytes"]
    assert row["retained_after_handshake_bytes"] == \
        row["free_at_boot_without_agent_bytes"] - row["free_after_handshake_bytes"]
    assert row["retained_after_first_call_bytes"] == \
        row["free_at_boot_without_agent_bytes"] - row["free_after_first_call_bytes"]


def test_a_heap_dump_is_counted_by_kind_of_object():
    dump = ("GC: total: 1024, used: 160, free: 864\n"
            "00001000: MDDB..h===T=S\n"
            "00001010: ==..\n"
            "       (3 lines all free)\n")
    assert ram_builds.census_blocks(dump) == {"M": 1, "D": 2, "B": 1, "h": 4, "T": 2, "S": 3}


def test_the_census_of_the_agent_on_the_pypi_binary_adds_up():
    row = ram_builds.census(None, "mpy")
    kinds = row["bytes_by_kind"]
    assert set(kinds) == set(ram_builds.CENSUS_KINDS.values())
    assert kinds["function"] > 0 and kinds["module"] > 0 and kinds["other"] > 0
    assert row["total_bytes"] == sum(kinds.values())
    assert row["total_bytes"] % 32 == 0  # 4 words a block on the 64-bit binary
    retained = ram_builds.measure(None, "mpy")["retained_after_first_call_bytes"]
    assert 0.5 * retained < row["total_bytes"] < 1.5 * retained


def test_frozen_code_is_measured_only_on_a_binary_that_holds_it():
    assert not ram_builds.has_frozen(shutil.which("micropython"))
    with pytest.raises(ram_builds.bench_agent.MeasureError, match="no frozen jotunheim"):
        ram_builds.measure(None, "frozen")
    with pytest.raises(ValueError, match="code must be one of"):
        ram_builds.measure(None, "flash")
