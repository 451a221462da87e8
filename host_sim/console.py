# A simulated device's serial console (host only): the pseudo-terminal its process runs
# on, bridged to a TCP port that one client at a time (mpremote, a terminal, a test) talks
# to, plus a log of everything the device printed.
#
# One thread runs a selector over the listening socket, the client, and the pty of the
# process now running; other threads hand it work through call(), so only that thread
# ever touches a descriptor it selects on. Client input waits until the device has mounted
# its flash (boot_done()); the newest client wins, as a serial port reopened by another
# program would. When the pty reports that the process went away by itself, on_exit runs
# in a thread of its own with (process, exit status, whether the raw REPL was in use).
import os
import pty
import queue
import selectors
import socket
import termios
import threading
import time
import tty

LOG_LIMIT = 1 << 20  # bytes of output kept
# A Ctrl-C for the device waits (at most this long) until its process sleeps in a system
# call. The unix port takes SIGINT as a jump out of whatever C code runs at that moment
# (MICROPY_ASYNC_KBD_INTR); one that lands in a garbage collection leaves the heap locked
# for good ("MemoryError: heap is locked", then "FATAL: uncaught NLR"). A board raises
# KeyboardInterrupt at the next bytecode instead; a process waiting for input or a timer
# is at such a point. A loop that never sleeps gets its Ctrl-C when the wait is over.
CTRL_C_WAIT_S = 0.2


def _raw_terminal(fd):
    """Raw, but with ISIG: 0x03 becomes SIGINT whenever the program has not turned it off."""
    tty.setraw(fd)
    attrs = termios.tcgetattr(fd)
    attrs[3] |= termios.ISIG | termios.NOFLSH
    termios.tcsetattr(fd, termios.TCSANOW, attrs)


def _wait_asleep(pid, limit_s):
    """Wait until process `pid` sleeps in a system call (state S in /proc), at most
    limit_s; False if it did not (or /proc cannot tell)."""
    deadline = time.monotonic() + limit_s
    while True:
        try:
            with open("/proc/%d/stat" % pid, "rb") as f:
                state = f.read().rsplit(b")", 1)[1].split()[0]
        except (OSError, IndexError):
            return False
        if state == b"S":
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.0005)


class Console:
    """The console of one device: pty, TCP port, output log."""

    def __init__(self, port, on_exit):
        self.on_exit = on_exit
        self.booted = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", port))
        self.port = self._listener.getsockname()[1]
        self._log = bytearray()
        self._dropped = 0          # log bytes discarded from the front
        self._changed = threading.Condition()
        self._client = None
        self._master = None
        self._pending_master = None  # from open_terminal(), until attach()
        self._process = None
        self._raw_repl = False
        self._held = bytearray()   # client input waiting for the boot
        self._backlog = bytearray()  # input the pty has not taken yet
        self._calls = queue.Queue()
        self._wake_r, self._wake_w = socket.socketpair()
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._listener, selectors.EVENT_READ)
        self._selector.register(self._wake_r, selectors.EVENT_READ)
        self._running = True
        self._thread = threading.Thread(target=self._loop, name="console", daemon=True)
        self._thread.start()

    # ---------------------------------------------------------------- for the runner

    def open_terminal(self):
        """A new pty for the next process: returns the slave end to give it."""
        master, slave = pty.openpty()
        _raw_terminal(slave)
        os.set_blocking(master, False)
        self._pending_master = master
        return slave

    def attach(self, process, raw_repl=False):
        """Serve `process` on the pty from open_terminal(); Ctrl-A first if raw_repl."""
        master, self._pending_master = self._pending_master, None
        self.booted.clear()
        self.call(self._attach, process, master, raw_repl)

    def discard_terminal(self):
        """Close the pty from open_terminal() when no process came to use it."""
        if self._pending_master is not None:
            os.close(self._pending_master)
            self._pending_master = None

    def detach(self, process):
        """Stop serving `process` (killed): log what it left on the line, do not report
        its end."""
        self.call(self._detach, process)

    def boot_done(self):
        """The device mounted its flash: let client input through."""
        self.booted.set()
        self.call(self._release)

    def close(self):
        if self._running:
            self._running = False
            self._wake_w.send(b"x")
            self._thread.join(5)

    def call(self, function, *args):
        """Run function(*args) on the console thread and return what it returns."""
        if threading.current_thread() is self._thread:
            return function(*args)
        if not self._running:
            return None  # closed: nothing left to serve
        done = queue.Queue()
        self._calls.put((function, args, done))
        self._wake_w.send(b"x")
        ok, value = done.get()
        if not ok:
            raise value
        return value

    # ---------------------------------------------------------------- the log

    def log(self, data):
        """Add to the output (runner messages such as "MPY: soft reboot")."""
        self.call(self._output, data)

    def mark(self):
        """The position of the end of the output, for wait_for(since=...)."""
        with self._changed:
            return self._dropped + len(self._log)

    def output(self, since=0):
        with self._changed:
            return bytes(self._log[max(0, since - self._dropped):])

    def text(self, since=0):
        return self.output(since).decode("utf-8", "replace")

    def wait_for(self, pattern, timeout=10.0, since=0):
        """Wait until `pattern` (bytes or str) is in the output after `since`; returns the
        position just past it. TimeoutError says what the device printed instead."""
        if isinstance(pattern, str):
            pattern = pattern.encode()
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                start = max(0, since - self._dropped)
                at = self._log.find(pattern, start)
                if at >= 0:
                    return self._dropped + at + len(pattern)
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("%r not seen within %g s; the device printed: %r" % (
                        pattern, timeout, bytes(self._log[start:])[-600:]))
                self._changed.wait(left)

    # ---------------------------------------------------------------- the thread

    def _loop(self):
        while self._running:
            for key, events in self._selector.select():
                if key.fileobj is self._listener:
                    self._accept()
                elif key.fileobj is self._wake_r:
                    self._run_calls()
                elif key.fileobj is self._client:
                    self._from_client()
                elif key.fileobj == self._master:
                    if events & selectors.EVENT_READ:
                        self._from_device()
                    if events & selectors.EVENT_WRITE and self._master is not None:
                        self._flush_backlog()
        self._shut()

    def _run_calls(self):
        self._wake_r.recv(4096)
        while not self._calls.empty():
            function, args, done = self._calls.get()
            try:
                done.put((True, function(*args)))
            except Exception as e:
                done.put((False, e))

    def _attach(self, process, master, raw_repl):
        self._detach(self._process)
        self._process, self._master, self._raw_repl = process, master, raw_repl
        self._held = bytearray(b"\x01" if raw_repl else b"")
        self._backlog = bytearray()
        self._selector.register(master, selectors.EVENT_READ)

    def _detach(self, process):
        if process is None or process is not self._process:
            return
        while self._master is not None and self._read_device():
            pass  # what it printed before it went is on the line still
        self._selector.unregister(self._master)
        os.close(self._master)
        self._master = self._process = None

    def _release(self):
        if self._master is None:
            return
        self._backlog += self._held
        self._held = bytearray()
        self._flush_backlog()

    def _accept(self):
        client, _ = self._listener.accept()
        self._drop_client()
        client.settimeout(5)
        self._client = client
        self._selector.register(client, selectors.EVENT_READ)

    def _drop_client(self):
        if self._client is not None:
            self._selector.unregister(self._client)
            self._client.close()
            self._client = None

    def _from_client(self):
        try:
            data = self._client.recv(4096)
        except OSError:
            data = b""
        if not data:
            self._drop_client()
            return
        if self._master is None:
            return  # the device is off: what is typed is lost
        for byte in data:
            if byte in (1, 2):  # Ctrl-A enters the raw REPL, Ctrl-B leaves it
                self._raw_repl = byte == 1
        if self.booted.is_set():
            self._backlog += data
            self._flush_backlog()
        else:
            self._held += data

    def _flush_backlog(self):
        if 3 in self._backlog and self._process is not None:
            _wait_asleep(self._process.pid, CTRL_C_WAIT_S)
        try:
            written = os.write(self._master, self._backlog) if self._backlog else 0
        except (BlockingIOError, InterruptedError):
            written = 0
        except OSError:
            written = len(self._backlog)  # the process is gone: drop it
        del self._backlog[:written]
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if self._backlog else 0)
        self._selector.modify(self._master, events)

    def _from_device(self):
        if self._read_device() is None:
            process, raw_repl = self._process, self._raw_repl
            self._detach(process)
            threading.Thread(target=self._report_exit, args=(process, raw_repl),
                             daemon=True).start()

    def _read_device(self):
        """Log what the pty holds: True if something was read, False if nothing is
        waiting, None once the process has gone (EIO)."""
        try:
            data = os.read(self._master, 65536)
        except BlockingIOError:
            return False
        except OSError:  # EIO: every holder of the terminal has gone
            data = b""
        if not data:
            return None
        self._output(data)
        return True

    def _report_exit(self, process, raw_repl):
        self.on_exit(process, process.wait(), raw_repl)

    def _output(self, data):
        with self._changed:
            self._log += data
            if len(self._log) > LOG_LIMIT:
                excess = len(self._log) - LOG_LIMIT
                del self._log[:excess]
                self._dropped += excess
            self._changed.notify_all()
        if self._client is not None:
            try:
                self._client.sendall(data)
            except OSError:
                self._drop_client()

    def _shut(self):
        while not self._calls.empty():  # callers still waiting get nothing done
            self._calls.get()[2].put((True, None))
        self._detach(self._process)
        self._drop_client()
        self._selector.close()
        self._listener.close()
        self._wake_r.close()
        self._wake_w.close()
