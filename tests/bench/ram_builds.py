"""RAM the device agent retains on real MicroPython builds: 64-bit and 32-bit, with its
code as .mpy on the flash, in ROMFS, or frozen into the binary.

    python tests/bench/ram_builds.py [--source MICROPYTHON_TREE] [--census] [--out FILE.json]

Measures the binaries tests/bench/build_micropython.py has built (and the `micropython`
on PATH); with --source it builds (or brings up to date) every flavour first.
"""
# How this works. For each binary and each way of holding the code, an esp32 device in
# listen mode is booted on that binary (JOTUNHEIM_MICROPYTHON, which host_sim runs instead
# of PATH's) with bench_agent's devices and lean client: handshake, device_heap (free heap
# after a collection), device_echo, device_heap. Retained = the free heap where an empty
# main.py starts on the same binary (bench_agent.measure_boot_heap: the baseline) minus
# the free heap after the handshake, and after the first call. Code:
#   mpy     .mpy files under /lib on the flash (bytecode loaded into the heap);
#   romfs   the .mpy files in a ROMFS image mounted at /rom, none on the flash;
#   frozen  no code on the flash or in ROMFS: the binary's frozen modules (.frozen on
#           sys.path), as a board's own firmware would hold it.
# On a 32-bit binary the device's heap is the board's heap_bytes, on a 64-bit one twice
# that (host_sim.runner.word_factor()); 64-bit figures are not halved here.
import argparse
import contextlib
import os
import subprocess
import sys
import tempfile

from results import ROOT, import_paths, write_report  # this script's directory

import_paths()

import bench_agent  # noqa: E402
import build_micropython  # noqa: E402
from agent_support import free_port  # noqa: E402
from host_sim import flash, runner  # noqa: E402
from jotunheim_host import bundle  # noqa: E402

DEFAULT_OUT = os.path.join(ROOT, "bench-results", "agent_ram_builds.json")
CODES = ("romfs", "mpy", "frozen")
# (build label, flavour built by build_micropython or None for PATH's, codes measured)
BUILDS = (("64-bit PyPI", None, ("romfs", "mpy")),
          ("32", "32", ("romfs", "mpy")),
          ("32-frozen", "32-frozen", ("frozen",)),
          ("32-core", "32-frozen-core", ("frozen",)),
          ("64-frozen", "64-frozen", ("frozen",)))
TARGET_BYTES = 10 * 1024  # issue #4: retained with the code in ROMFS/frozen


@contextlib.contextmanager
def using(binary):
    """host_sim runs `binary` (None: PATH's micropython) inside the block."""
    saved = os.environ.get(flash.BINARY_VARIABLE)
    if binary is None:
        os.environ.pop(flash.BINARY_VARIABLE, None)
    else:
        os.environ[flash.BINARY_VARIABLE] = binary
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(flash.BINARY_VARIABLE, None)
        else:
            os.environ[flash.BINARY_VARIABLE] = saved


def has_frozen(binary, module="jotunheim"):
    """Whether `binary` holds `module` frozen: importable with only .frozen on sys.path."""
    with tempfile.TemporaryDirectory() as empty:
        done = subprocess.run([binary, "-c", "import sys; sys.path[:] = ['.frozen']; "
                                             "import " + module],
                              capture_output=True, cwd=empty, timeout=30)
    return done.returncode == 0


def binary_for(code):
    """The binary host_sim runs now, checked to hold the code frozen when `code` says so."""
    path = runner.micropython_binary()
    if code == "frozen" and not has_frozen(path):
        raise bench_agent.MeasureError("%s has no frozen jotunheim: build one with "
                                       "tests/bench/build_micropython.py" % path)
    return path


def device_files(code, port, board=bench_agent.BOARD):
    """(flash files, ROMFS image or None) for a device holding its code as `code`."""
    settings = bench_agent.listen_settings(port)
    if code == "mpy":
        return bundle.firmware_files("micropython", board, settings=settings), None
    without_lib = {path: data for path, data in bundle.firmware_files(
        "micropython", board, settings=settings, compiled=False).items()
        if not path.startswith("/lib/")}
    if code == "frozen":
        return without_lib, None
    compiled = bundle.firmware_files("micropython", board, settings=settings)
    return without_lib, bundle.romfs_image(compiled)


@contextlib.contextmanager
def agent_device(code, root, main=None):
    """A device running the agent with its code held as `code` (and `main` as its main.py
    when given), handshaken and called once by a lean client: (device, bench_agent's
    measure_ram figures) inside the block; stopped after it."""
    files, image = device_files(code, free_port())
    if main is not None:
        files["/main.py"] = main
    device, port = bench_agent.start_device(root, files, romfs=image)
    try:
        client = bench_agent.LeanClient(port)
        try:
            yield device, bench_agent.measure_ram(client)
        finally:
            client.close()
    finally:
        device.stop()


def measure(binary, code):
    """Retained RAM on `binary` (None: PATH's) with the code held as `code`: a dict."""
    if code not in CODES:
        raise ValueError("code must be one of %s, not %r" % (", ".join(CODES), code))
    with using(binary), tempfile.TemporaryDirectory() as tmp:
        path = binary_for(code)
        baseline = bench_agent.measure_boot_heap(os.path.join(tmp, "empty"))
        with agent_device(code, os.path.join(tmp, "agent")) as (_, ram):
            pass
        handshake = ram["free_after_handshake_bytes"]
        first_call = ram["free_after_first_call_bytes"]
        version = subprocess.run([path, "-c", "import sys; print(sys.version)"],
                                 capture_output=True, text=True, timeout=30).stdout.strip()
        return {"binary": path, "version": version, "code": code,
                "word_factor": runner.word_factor(),
                "heap_budget_bytes": bench_agent.heap_budget(),
                "free_at_boot_without_agent_bytes": baseline,
                "free_after_handshake_bytes": handshake,
                "free_after_first_call_bytes": first_call,
                "retained_after_handshake_bytes": baseline - handshake,
                "retained_after_first_call_bytes": baseline - first_call}


def measure_all(skip_default=False, with_census=False):
    """Every build present, every code it is measured with: the report. skip_default:
    leave out the binary on PATH (bench_agent measures that one itself); with_census:
    add where the bytes are, by kind of object."""
    report = {"rows": [], "errors": [], "not_built": [], "board": bench_agent.BOARD,
              "target_retained_bytes": TARGET_BYTES, "method": METHOD}
    if with_census:
        report["census"] = []
    for label, flavour, codes in BUILDS:
        if skip_default and flavour is None:
            continue
        binary = None if flavour is None else build_micropython.binary_path(flavour)
        if binary is not None and not os.path.exists(binary):
            report["not_built"].append(flavour)
            continue
        current = None
        if flavour is not None and "-frozen" in flavour:
            current = build_micropython.frozen_is_current(flavour)
        for code in codes:
            try:
                row = measure(binary, code)
            except (bench_agent.MeasureError, runner.SimError, OSError,
                    bundle.BundleError, subprocess.TimeoutExpired) as e:
                report["errors"].append("%s, %s: %s: %s%s" % (
                    label, code, type(e).__name__, e,
                    " (its frozen code is older than the repository's)" if current is False
                    else ""))
                continue
            row["build"] = label
            if current is not None:
                row["frozen_code_current"] = current
            report["rows"].append(row)
            if with_census:
                try:
                    counted = census(binary, code)
                except (bench_agent.MeasureError, runner.SimError, OSError,
                        TimeoutError, ValueError) as e:
                    report["errors"].append("%s, %s, census: %s: %s" % (
                        label, code, type(e).__name__, e))
                    continue
                counted["build"] = label
                report["census"].append(counted)
    return report


# ---------------------------------------------------------------- census
#
# Where the retained bytes are, by kind of object: a device whose main.py dumps its heap
# (micropython.mem_info(1): one character a block of 4 words, the head block's type: T
# tuple, L list, D dict, S str or bytes, A bytearray, F float, B function, M module, h
# anything else, = a tail block) before the agent is imported and again after the first
# call; the difference, in bytes by kind. "h" holds instances, classes, dict and list
# tables, raw code, qstr pools and buffers.
CENSUS_KINDS = {"T": "tuple", "L": "list", "D": "dict", "S": "str/bytes", "A": "bytearray",
                "F": "float", "B": "function", "M": "module", "h": "other"}
CENSUS_MAIN = b"""import micropython, gc, asyncio
gc.collect()
print('CENSUS-BEFORE')
micropython.mem_info(1)
print('CENSUS-END')
from jotunheim.agent import Agent
agent = Agent('')
async def census():
    while not agent.calls.executed:
        await asyncio.sleep_ms(20)
    gc.collect()
    print('CENSUS-AFTER')
    micropython.mem_info(1)
    print('CENSUS-END')
async def run():
    asyncio.create_task(census())
    await agent.main()
asyncio.run(run())
"""


def census_blocks(dump):
    """{kind character: blocks} of a mem_info(1) heap dump, tails counted with heads."""
    blocks = {}
    head = None
    for line in dump.splitlines():
        parts = line.split(": ", 1)
        if len(parts) != 2 or len(parts[0]) != 8:
            continue
        for c in parts[1]:
            if c == "=":
                if head is not None:
                    blocks[head] += 1
            elif c in CENSUS_KINDS:
                head = c
                blocks[c] = blocks.get(c, 0) + 1
            else:
                head = None
    return blocks


def census(binary, code):
    """Bytes the agent added, by kind of object, on `binary` with the code held as `code`
    (after the handshake, the capability document and one call): a dict."""
    with using(binary), tempfile.TemporaryDirectory() as tmp:
        path = binary_for(code)
        with agent_device(code, os.path.join(tmp, "agent"), CENSUS_MAIN) as (device, _):
            after = device.console.wait_for(b"CENSUS-AFTER", timeout=30)
            device.console.wait_for(b"CENSUS-END", timeout=30, since=after)
        text = device.console.text()
        block = 16 * runner.word_factor()  # 4 words a block
    before = census_blocks(text[text.index("CENSUS-BEFORE"):text.index("CENSUS-END")])
    after = text[text.index("CENSUS-AFTER"):]
    after = census_blocks(after[:after.index("CENSUS-END")])
    added = {CENSUS_KINDS[k]: (after.get(k, 0) - before.get(k, 0)) * block
             for k in CENSUS_KINDS}
    return {"binary": path, "code": code, "bytes_by_kind": added,
            "total_bytes": sum(added.values())}


def print_census(rows, out=sys.stdout):
    kinds = list(CENSUS_KINDS.values())
    out.write("Heap the agent added by kind of object, bytes (after the first call)\n")
    out.write("%-12s %-7s" % ("build", "code") + "".join(" %9s" % k[:9] for k in kinds)
              + " %9s\n" % "total")
    for row in rows:
        out.write("%-12s %-7s" % (row["build"], row["code"])
                  + "".join(" %9d" % row["bytes_by_kind"][k] for k in kinds)
                  + " %9d\n" % row["total_bytes"])


METHOD = (
    "esp32 board, listen mode, on each MicroPython binary (64-bit: heap 2 x heap_bytes, "
    "32-bit: heap_bytes). Retained = gc.mem_free() where an empty main.py starts on the "
    "same binary - device_heap after the handshake / after the first device_echo. Code: "
    "mpy = .mpy on the flash, romfs = .mpy in a ROMFS image, frozen = frozen in the binary "
    "(nothing on the flash).")


def print_table(report, out=sys.stdout):
    w = out.write
    w("Agent RAM retained on MicroPython builds, board %s, bytes (target <= %d with the "
      "code in ROMFS/frozen)\n" % (report["board"], report["target_retained_bytes"]))
    w("%-12s %-7s %5s %10s %10s %10s\n" % ("build", "code", "bits", "baseline",
                                           "handshake", "first call"))
    for row in report["rows"]:
        w("%-12s %-7s %5d %10d %10d %10d\n" % (
            row["build"], row["code"], 64 if row["word_factor"] == 2 else 32,
            row["free_at_boot_without_agent_bytes"], row["retained_after_handshake_bytes"],
            row["retained_after_first_call_bytes"]))
    stale = [row["build"] for row in report["rows"] if row.get("frozen_code_current") is False]
    if stale:
        w("warning: the code frozen in %s is older than the code in the repository: build "
          "again\n" % ", ".join(stale))
    for flavour in report["not_built"]:
        w("not built: %s (python tests/bench/build_micropython.py --flavour %s)\n"
          % (flavour, flavour))
    for error in report["errors"]:
        w("error: %s\n" % error)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=DEFAULT_OUT,
                        help="JSON report path (default %(default)s)")
    parser.add_argument("--source", help="a MicroPython source tree: build every flavour "
                                         "from it first")
    parser.add_argument("--census", action="store_true",
                        help="also count the bytes by kind of object (heap dumps)")
    args = parser.parse_args(argv)
    if args.source:
        try:
            for flavour in build_micropython.FLAVOURS:
                build_micropython.build(flavour, args.source)
        except build_micropython.BuildError as e:
            sys.stderr.write("ram_builds: %s\n" % e)
            return 2
    report = measure_all(with_census=args.census)
    print_table(report)
    if args.census:
        print()
        print_census(report["census"])
    write_report(args.out, report)
    print("\nwrote %s" % args.out)
    return 1 if report["errors"] or not report["rows"] else 0


if __name__ == "__main__":
    sys.exit(main())
