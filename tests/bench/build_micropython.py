"""Build the MicroPython unix port as a board would run the device code: 32-bit, and
with the code frozen into the binary.

    python tests/bench/build_micropython.py --flavour 32|32-frozen|32-frozen-core|64-frozen
                                            [--source DIR]

Prints the path of the binary (build/micropython/FLAVOUR/micropython).
"""
# How this works. `make -C mpy-cross`, then `make -C ports/unix` in a MicroPython source
# tree (--source; without it, a shallow clone of TAG from GitHub kept in
# build/micropython/source), with the build directory outside the tree. Flavours:
#   32         a 32-bit binary (gcc -m32: needs gcc-multilib); the code comes from the
#              flash or a ROMFS image, as bundle.firmware_files / romfs_image make them;
#   32-frozen  the same with the device code frozen in: bytecode, qstrs and constants in
#              the binary (ROM on a board), nothing on the heap until it runs;
#   32-frozen-core  frozen without the add-ons (Loki, streams, updates): the core agent,
#              as a board whose profile leaves them out (the ESP8266's) would hold it;
#   64-frozen  frozen, in the host's own word size.
# The frozen manifest is written anew at every build from bundle.source_files(): exactly
# the files a deploy puts under /lib, copied into the build directory, so the frozen code
# is the code of the moment. Every flavour also freezes the simulator's device side
# (host_sim and its shims, host_sim.flash.sim_sources()), which host_sim runs from the
# binary while it is current: its qstrs are then in the binary as a board's firmware
# modules are, and the device code's own start a small qstr pool as on a board (from the
# files, the first would take a pool twice the size of the simulator's last, ~9 KB on
# 32-bit). Every flavour freezes extmod/asyncio as the port's standard
# variant does; what the standard variant takes from micropython-lib (mip, ssl wrapper)
# and the modules that need other submodules (btree, ssl/tls, ffi) are left out: the
# device code uses none of them. make rebuilds only what changed.
import argparse
import os
import shutil
import subprocess
import sys

from results import ROOT, import_paths  # this script's directory

import_paths()

from host_sim import flash  # noqa: E402
from jotunheim_host import bundle  # noqa: E402

BUILD_ROOT = os.path.join(ROOT, "build", "micropython")
REPOSITORY = "https://github.com/micropython/micropython.git"
TAG = "v1.28.0"  # .mpy 6.3, what mpy-cross 1.29 writes
FLAVOURS = ("32", "32-frozen", "32-frozen-core", "64-frozen")
# the port's Makefile switches: no submodule but the in-tree ones (littlefs, uzlib)
MAKE_OPTIONS = ("MICROPY_PY_BTREE=0", "MICROPY_PY_SSL=0", "MICROPY_PY_FFI=0")
JOBS = str(os.cpu_count() or 1)


class BuildError(Exception):
    """The source could not be had or the build failed."""


def flavour_dir(flavour, build_root=BUILD_ROOT):
    return os.path.join(build_root, flavour)


def binary_path(flavour, build_root=BUILD_ROOT):
    return os.path.join(flavour_dir(flavour, build_root), "micropython")


def frozen_sources(flavour="32-frozen"):
    """{module path as frozen ("jotunheim/agent.py"): bytes}: the /lib files of a deploy
    (without the add-ons for a -core flavour)."""
    files = bundle.source_files(() if flavour.endswith("-core") else None)
    return {path[len("/lib/"):]: data for path, data in files.items()
            if path.startswith("/lib/")}


def frozen_is_current(flavour, build_root=BUILD_ROOT):
    """Whether the code a frozen flavour was last given is the code of the moment."""
    code = os.path.join(flavour_dir(flavour, build_root), "frozen-code")
    held = {}
    for directory, _, names in os.walk(code):
        for name in names:
            path = os.path.join(directory, name)
            with open(path, "rb") as f:
                held[os.path.relpath(path, code).replace(os.sep, "/")] = f.read()
    return held == frozen_sources(flavour)


def write_manifest(flavour, build_root=BUILD_ROOT):
    """Write FLAVOUR/manifest.py (and, when frozen, the code it names); its path."""
    directory = flavour_dir(flavour, build_root)
    os.makedirs(directory, exist_ok=True)
    lines = ['include("$(MPY_DIR)/extmod/asyncio")']
    sim = os.path.join(directory, "sim-code")
    shutil.rmtree(sim, ignore_errors=True)
    sim_files = flash.sim_sources()
    sim_files["host_sim/_frozen_digest.py"] = (
        "DIGEST = %r\n" % flash.sim_digest(sim_files)).encode()
    for module, data in sorted(sim_files.items()):
        path = os.path.join(sim, module)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
        lines.append("module(%r, base_path=%r)" % (module, sim))
    if "-frozen" in flavour:
        code = os.path.join(directory, "frozen-code")
        shutil.rmtree(code, ignore_errors=True)  # no file of an older run survives
        for module, data in sorted(frozen_sources(flavour).items()):
            path = os.path.join(code, module)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.write(data)
            lines.append("module(%r, base_path=%r)" % (module, code))
    manifest = os.path.join(directory, "manifest.py")
    text = "\n".join(lines) + "\n"
    try:
        with open(manifest) as f:
            unchanged = f.read() == text
    except OSError:
        unchanged = False
    if not unchanged:
        with open(manifest, "w") as f:
            f.write(text)
    return manifest


def make_arguments(flavour, manifest, build_root=BUILD_ROOT):
    """The arguments of `make -C ports/unix` for a flavour."""
    empty_lib = os.path.join(build_root, "no-micropython-lib")
    os.makedirs(empty_lib, exist_ok=True)
    # the port's Makefile insists on a micropython-lib checkout (its README) even when the
    # manifest takes nothing from it
    open(os.path.join(empty_lib, "README.md"), "a").close()
    argv = ["-j", JOBS, "BUILD=" + flavour_dir(flavour, build_root),
            "FROZEN_MANIFEST=" + manifest,
            "MPY_LIB_DIR=" + empty_lib] + list(MAKE_OPTIONS)
    if flavour.startswith("32"):
        argv += ["CFLAGS_EXTRA=-m32", "LDFLAGS_EXTRA=-m32"]
    return argv


def clone_source():
    """The cached shallow clone of TAG (made on first use)."""
    source = os.path.join(BUILD_ROOT, "source", TAG)
    if not os.path.exists(os.path.join(source, "py", "persistentcode.h")):
        shutil.rmtree(source, ignore_errors=True)
        run(["git", "clone", "--depth", "1", "--branch", TAG, REPOSITORY, source])
    return source


def run(argv, quiet=False):
    try:
        done = subprocess.run(argv, stdout=subprocess.PIPE if quiet else sys.stderr,
                              stderr=subprocess.STDOUT if quiet else None, text=True)
    except OSError as e:
        raise BuildError("%s: %s" % (argv[0], e)) from None
    if done.returncode != 0:
        tail = (done.stdout or "")[-3000:] if quiet else ""
        raise BuildError("%s failed (exit %d)%s" % (" ".join(argv[:3]), done.returncode,
                                                    "\n" + tail if tail else ""))


def build(flavour, source=None, quiet=True, build_root=BUILD_ROOT):
    """Build a flavour from a MicroPython source tree; the binary's path."""
    if flavour not in FLAVOURS:
        raise BuildError("unknown flavour %r (known: %s)" % (flavour, ", ".join(FLAVOURS)))
    source = os.path.abspath(source) if source else clone_source()
    if not os.path.isdir(os.path.join(source, "ports", "unix")):
        raise BuildError("%s is not a MicroPython source tree (no ports/unix)" % source)
    manifest = write_manifest(flavour, build_root)
    run(["make", "-j", JOBS, "-C", os.path.join(source, "mpy-cross")], quiet)
    run(["make", "-C", os.path.join(source, "ports", "unix")]
        + make_arguments(flavour, manifest, build_root), quiet)
    return binary_path(flavour, build_root)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flavour", required=True, choices=FLAVOURS)
    parser.add_argument("--source", help="a MicroPython source tree (default: clone %s "
                                         "from GitHub into %s)" % (TAG, BUILD_ROOT))
    parser.add_argument("--verbose", action="store_true", help="show make's output")
    args = parser.parse_args(argv)
    try:
        print(build(args.flavour, args.source, quiet=not args.verbose))
    except BuildError as e:
        sys.stderr.write("build_micropython: %s\n" % e)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
