# Run a simulated device as its own process (host only).
#
# A Device is one board: a process running host_sim/device_boot.py under the MicroPython
# unix port or CPython, a state directory (its flash, its config), a serial console on a
# pseudo-terminal bridged to a TCP port (`mpremote connect socket://127.0.0.1:PORT`), a
# control socket (host_sim.remote: device.world reads and changes the device's World
# through it), and any link proxies its traffic goes through. A scenario
# (host_sim.scenario) says what is wired to the board and which faults to inject; the
# device applies its part at every boot, the runner fires power cuts and link faults.
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
# process at once (SIGKILL): the flash keeps what was written, as a board's does. Boots
# are counted from 1 (device.boots); a scenario's faults name the boot they belong to.
#
# Serial lines: Device(serial=[2]) (or the scenario's "serial") wires UART 2 of the board
# to a pty on the host, as a USB-serial adapter on its pins would be: device.serial_port(2)
# is its path ("/dev/pts/7"), which a host program opens with pyserial. The pty is made
# with the Device and closed by stop(), so the path stays across resets and power cuts;
# what the host sends while the device is off is lost (host_sim.serialbridge).
#
# Pacing: pace=N lets the device's virtual time run at most N times real time (1 for a
# fleet that lives in real time); None lets it run as fast as it can, which for firmware
# that only sleeps means a CPU core spent spinning through virtual time.
#
# Flash: MicroPython devices have a LittleFS image (state dir/flash.img, the board's
# fs_bytes) and see nothing else. CPython devices have a directory (state dir/flash/)
# that open() and os are confined to; that is not a sandbox (host_sim.cpython_device).
# host_sim.flash copies files in and out while the device is off.
#
# Heap: a board's heap_bytes is the free heap its firmware starts with. A 64-bit unix port's
# objects take about twice the room of a 32-bit board's, so the device gets
# word_factor() * heap_bytes (2 on a 64-bit binary, 1 on a 32-bit one: the binary is asked
# once), plus SIM_HEAP for the simulator's own modules (a board has machine, network and
# time in ROM); device_boot then pins down what the simulator's modules left over beyond
# the budget. The binary is host_sim.flash.micropython_binary(): $JOTUNHEIM_MICROPYTHON or
# `micropython` on PATH. CPython devices have no heap limit.
#
# ROMFS: a MicroPython device may have a ROMFS image (state dir/romfs.img, kept like the
# flash) that device_boot mounts at /rom. A board maps it from flash; here its bytes sit
# in the simulator's share of the heap, so the process gets that much more heap.
import json
import os
import signal
import subprocess
import sys
import threading
import time

from host_sim import boards, scenario
from host_sim.console import Console
from host_sim import flash
from host_sim.flash import DEVICE_BOOT, REPO, Flash, FlashError, frozen_sim
from host_sim.linkproxy import LinkProxy
from host_sim.serialbridge import SerialLines, check_uarts
from host_sim.remote import (REQUEST_TIMEOUT, ControlChannel, RemoteWorld,  # noqa: F401 (API)
                             RequestError, SimError)

RUNTIMES = ("micropython", "cpython")
SIM_HEAP = 384 * 1024
SERIAL_HEAP = 32 * 1024  # what the device's end of host_sim.serialbridge takes, when wired
BOOT_TIMEOUT = 20.0
DEFAULT_RESET_CAUSES = {"PWRON_RESET": 1, "HARD_RESET": 2, "WDT_RESET": 3,
                        "DEEPSLEEP_RESET": 4, "SOFT_RESET": 5}  # the ESP32's numbers


def check_scenario(spec, board):
    """One device's scenario, checked against its board (SimError if malformed)."""
    try:
        return scenario.check(spec, board)
    except ValueError as e:
        raise SimError("scenario: %s" % e) from None


def load_board(board):
    """A board profile: a name from boards/ or a profile dict."""
    if isinstance(board, dict):
        return dict(board)
    try:
        return boards.load(board)
    except OSError as e:
        raise SimError("board profile %r cannot be read: %s" % (board, e)) from None


def micropython_binary():
    try:
        return flash.micropython_binary()
    except FlashError as e:
        raise SimError(str(e)) from None


_word_factors = {}  # binary path -> its word factor


def word_factor():
    """How much more room the binary's objects take than a 32-bit board's: 2 on a 64-bit
    unix port, 1 on a 32-bit one (asked of the binary once)."""
    binary = micropython_binary()
    if binary not in _word_factors:
        try:
            done = subprocess.run([binary, "-c", "import sys; print(sys.maxsize)"],
                                  capture_output=True, text=True, timeout=30)
            maxsize = int(done.stdout)
        except (OSError, ValueError, subprocess.TimeoutExpired) as e:
            raise SimError("%s cannot tell its word size: %s" % (binary, e)) from None
        _word_factors[binary] = 2 if maxsize > 2 ** 31 else 1
    return _word_factors[binary]


_SCENARIO = object()  # pace: as the scenario says


class Device:
    """One simulated device process with its flash, console port and link proxies.

    board: a name or a profile (None: the scenario's); scenario: one device's scenario (a
    dict, as host_sim.scenario.load() returns them), whose files are put on the flash
    now; pace: at most this many times real time (default: the scenario's; None: as fast
    as it goes); serial: the ids of the UARTs wired to host ptys (default: the
    scenario's); romfs: the bytes of a ROMFS image for /rom (MicroPython only)."""

    def __init__(self, board, root, runtime=None, repl_port=0, network=None, name=None,
                 scenario=None, pace=_SCENARIO, serial=None, romfs=None):
        spec = dict(scenario or {})
        self.board = load_board(board if board is not None else spec.get("board"))
        self.scenario = check_scenario(spec, self.board)
        self.runtime = runtime or spec.get("runtime") or self.board.get("runtime", "micropython")
        if self.runtime not in RUNTIMES:
            raise SimError("unknown runtime %r (known: %s)" % (self.runtime, ", ".join(RUNTIMES)))
        self.name = name or spec.get("name") or self.board.get("name", "device")
        wired = self._check_serial(serial)
        self.root = os.path.abspath(root)
        os.makedirs(self.root, exist_ok=True)
        if romfs is not None:
            self.put_romfs(romfs)
        self.network = network or self.scenario.get("network") or {}
        self.pace = self.scenario.get("pace") if pace is _SCENARIO else pace
        self.proxies = []
        self.boots = 0
        self.exit_status = None   # how the last process ended (None while one runs)
        self.world = RemoteWorld(self)
        self._cause = None        # the reset cause of the last boot
        self.cut_at_next_boot = None  # fault injection: power_cut_after(n, next_boot=True)
        self._process = None
        self._stopped = False
        self._lock = threading.RLock()
        self.control = ControlChannel(self._from_device)
        self.console = Console(repl_port, self._exited)
        self.serial = SerialLines(wired)
        if self.scenario.get("files"):
            self.put_files(self.scenario["files"])

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
        with self._lock:  # not while a power cut or a reboot is half done
            return self._process is not None

    def describe(self):
        return {"name": self.name, "board": self.board.get("name"), "runtime": self.runtime,
                "repl": self.url, "root": self.root, "flash": self.flash,
                "pid": self._process.pid if self._process else None,
                "serial": self.serial.paths()}

    def serial_port(self, uart_id):
        """The host path of the pty wired to UART uart_id ("/dev/pts/7"): what a host
        program opens as it would a USB-serial adapter's port. It stays while the Device
        does, across resets and power cuts."""
        try:
            return self.serial.path(uart_id)
        except KeyError:
            raise SimError("UART%s of %s is not wired to the host (wired: %s): Device("
                           "serial=[...]) wires it" % (uart_id, self.name, sorted(
                               self.serial.lines) or "none")) from None

    def _check_serial(self, serial):
        uart_ids = (self.scenario.get("serial") or ()) if serial is None else serial
        try:
            return check_uarts(self.board, list(uart_ids))
        except (TypeError, ValueError) as e:
            raise SimError("serial: %s" % e) from None

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

    def power_cut_after(self, commits, next_boot=False):
        """Fault injection: cut the power right after the device's `commits`-th flash
        commit from now (next_boot: from the next boot's mount on). A commit is a change
        reaching the flash: a LittleFS sync on MicroPython (a file closed after writing,
        a rename, a removal take one or two); on CPython a file closed after writing, a
        rename, a removal or a directory made or removed. The process is killed there,
        as power_cut() does; device.running turns False."""
        if next_boot:
            self.cut_at_next_boot = commits
        else:
            self.request("power_cut_after", commits=commits)

    def reset(self, wait=True):
        """A hard reset (the EN pin): kill, then boot with reset cause HARD_RESET."""
        with self._lock:
            self._kill()
            self._spawn(self.reset_cause("HARD_RESET"))
        if wait:
            self.wait_booted()

    def stop(self):
        """Power off and close every port; the state directory stays."""
        with self._lock:
            self._stopped = True
            self._kill()
        self.console.close()
        self.control.close()
        self.serial.close()
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
        world = scenario.device_config(self.scenario, self.boots + 1)
        world["changes"] = self.world.kept()
        config = {"repo": REPO, "runtime": self.runtime, "board": self.board,
                  "flash": self.flash, "reset_cause": cause, "run_main": run_main,
                  "network": self.network, "pace": self.pace, "world": world,
                  "boot": self.boots + 1, "control_port": self.control.port,
                  "serial": self.serial.config(),
                  "cut_after_commits": self.cut_at_next_boot}
        self.cut_at_next_boot = None
        if self.runtime == "micropython":
            config["heap_bytes"] = word_factor() * self._board_int("heap_bytes")
            if os.path.exists(self.romfs_path):
                config["romfs"] = self.romfs_path
            config["frozen_sim"] = frozen_sim(micropython_binary())
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
        heap = word_factor() * self._board_int("heap_bytes") + SIM_HEAP
        if os.path.exists(self.romfs_path):
            heap += os.path.getsize(self.romfs_path)
        if self.serial.lines:
            heap += SERIAL_HEAP
        binary = micropython_binary()
        if frozen_sim(binary):  # the simulator runs from the binary (host_sim.flash)
            return [binary, "-X", "heapsize=%d" % heap, "-i", "-c",
                    "import sys\nsys.argv[1:] = [%r]\nfrom host_sim import device_boot\n"
                    "device_boot.start(globals())" % config_path]
        return [binary, "-X", "heapsize=%d" % heap, "-i", DEVICE_BOOT, config_path]

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
        self.control.drop()

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
            self.control.drop()
            if status in (0, -signal.SIGINT):
                self.console.log(b"MPY: soft reboot\r\n")
                self._spawn(self._cause_after("soft_reset"), not raw_repl, raw_repl)

    # ---------------------------------------------------------------- control socket

    def request(self, op, timeout=REQUEST_TIMEOUT, **args):
        """Ask the running device (see RemoteWorld, which is what tests use)."""
        self.wait_booted(timeout)
        return self.control.request(op, timeout, **args)

    def _from_device(self, conn, message):
        with self._lock:
            if conn is not self.control.current:
                return  # from a boot that is over
            if message.get("booted"):
                self.console.boot_done()
                due = {}  # faults at one time act together, in the scenario's order
                for fault in scenario.timed_faults(self.scenario, self.boots):
                    due.setdefault(fault["after_s"], []).append(fault)
                for after_s, faults in due.items():
                    timer = threading.Timer(after_s, self._timed_faults, (faults, self._process))
                    timer.daemon = True
                    timer.start()
            elif "reset" in message:
                self._reboot(message["reset"], message.get("reason"), message.get("sleep_us"))
            elif "halt" in message:
                self._kill()
            elif "fault" in message:  # due on the device, which has done its half
                self._host_half(message["fault"])
                self.control.send({"done": message.get("seq")}, conn)

    # ---------------------------------------------------------------- faults

    def fault(self, kind, **args):
        """Inject a fault now: power_cut (off_s), link_down, link_up, latency (ms), drop,
        wifi_fail (status, count); see host_sim/SCENARIOS.md."""
        try:
            fault = scenario.check_fault(dict(args, fault=kind))
        except ValueError as e:
            raise SimError(str(e)) from None
        with self._lock:
            self._both_halves(fault)

    def _timed_faults(self, faults, process):
        with self._lock:
            if process is self._process:  # that boot still runs
                for fault in faults:
                    self._both_halves(fault)

    def _both_halves(self, fault):
        self._host_half(fault)
        if fault["fault"] in scenario.DEVICE_HALF:
            self.control.send({"op": "fault", "fault": fault})

    def _host_half(self, fault):
        kind = fault["fault"]
        if kind == "power_cut":
            self._kill()
            if fault.get("off_s") is not None:
                timer = threading.Timer(fault["off_s"], self._power_on)
                timer.daemon = True
                timer.start()
        for link in self.proxies:
            if kind == "link_down":
                link.cut()
            elif kind == "link_up":
                link.restore()
            elif kind == "latency":
                link.latency = fault["ms"] / 1000
            elif kind == "drop":
                link.drop()

    def _power_on(self):
        with self._lock:
            if self._process is None and not self._stopped:
                self._spawn(self.reset_cause("PWRON_RESET"))

    # ---------------------------------------------------------------- network

    def proxy(self, target_port):
        """A LinkProxy to 127.0.0.1:target_port that link faults cut, slow and restore."""
        link = LinkProxy(target_port)
        self.proxies.append(link)
        return link

    def set_link(self, up):
        """Wi-Fi link up or down: the proxies cut or relay; the network shim is told."""
        self.fault("link_up" if up else "link_down")

    # ---------------------------------------------------------------- flash

    def _flash(self):
        return Flash(self.runtime, self.root, self._board_int("fs_bytes"), self._environment())

    def prepare_flash(self):
        """Create a blank flash (an erased image, or an empty directory) if there is none."""
        self._flash().prepare()

    def put_files(self, files):
        """Copy files onto the flash while the device is off: {device path: bytes or str}."""
        self._require_off()
        try:
            self._flash().put(files)
        except FlashError as e:
            raise SimError(str(e)) from None

    def read_file(self, path):
        """The bytes of a file on the flash (the device must be off); OSError if missing."""
        self._require_off()
        try:
            return self._flash().read(path)
        except FlashError as e:
            raise SimError(str(e)) from None

    def read_files(self):
        """Every file on the flash, {device path: bytes}, read at once (the device must
        be off): cheaper than read_file() for many files on a MicroPython device."""
        self._require_off()
        try:
            return self._flash().read_all()
        except FlashError as e:
            raise SimError(str(e)) from None

    @property
    def romfs_path(self):
        return os.path.join(self.root, "romfs.img")

    def put_romfs(self, image):
        """Write the ROMFS partition (the bytes of an image); it counts from the next boot."""
        if self.runtime != "micropython":
            raise SimError("romfs needs the micropython runtime, not %s" % self.runtime)
        with open(self.romfs_path, "wb") as f:
            f.write(image)

    def _require_off(self):
        if self._process is not None:
            raise SimError("%s is running: power it off first (power_cut)" % self.name)


def _take_terminal():
    """In the child: make the pty on stdin the controlling terminal (Ctrl-C -> SIGINT)."""
    import fcntl
    import termios
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)

