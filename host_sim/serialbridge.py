# The two ends of a simulated board's UART wired to a pseudo-terminal on the host, which a
# host program opens as it opens a USB-serial adapter on /dev/ttyUSB0
# (`serial.serial_for_url("/dev/pts/7", baudrate=115200)`).
#
# The host's end (SerialLines, host only; host_sim.runner makes one per Device): each line
# has a pty and a loopback port. The pty is made when the Device is and closed when it
# stops, so its path outlives reboots and power cuts. Its slave side is raw, as
# cfmakeraw(3) leaves a serial port (no echo, no line editing, no CR/LF translation, no
# flow control characters, 8 bits), and the relay holds a slave descriptor of its own: the
# pty keeps its settings and never reports a hang-up while no host program has it open.
# One thread relays every line of a device: what the host writes goes to the newest device
# connection, or nowhere while the device is off or still booting (lost, as on a board's
# wire); what the device writes goes into the pty, and what the pty cannot take (a host
# program that does not read) is dropped, as a USB-serial driver drops it. There is no
# line speed: the pty accepts whatever baud rate the host sets, and bytes move as fast as
# the relay moves them.
#
# The device's end (HostLine, on MicroPython and CPython; imported by device_boot only
# when the runner wires a line, before the flash is mounted): a UartPeer at the pins of the
# UART, as the adapter's wires would be, over a loopback socket to the relay that is read
# only when the firmware reads (host_sim.spi_uart). Host bytes wait in that socket until
# the UART's receive buffer has room: a real line delivers them at its baud rate, the
# bridge in bursts, and a burst overflowing the buffer would be the simulator's artefact.
# They reach the firmware only while its UART is open. A read with a timeout waits for
# them in real time, the clock moving on by the time waited. An open UART is listed in
# world.realtime, which makes host_sim.vasyncio wait for real instead of skipping ahead:
# firmware polling any() between asyncio sleeps then lives in real time, as its host
# does. A plain time.sleep_ms() still skips: run such firmware paced (Device(pace=1)).
import select
import socket
import sys

from host_sim.control import RealTime
from host_sim.spi_uart import UartPeer

if sys.implementation.name != "micropython":  # the host's end
    import os
    import pty
    import selectors
    import termios
    import threading

CHUNK = 65536


# ---------------------------------------------------------------- the host's end


def uart_port(board, uart_id):
    """The profile entry of UART uart_id if a USB-serial adapter can be wired to it, as on
    the board; ValueError says why not. The REPL's UART can be: see host_sim/SCENARIOS.md
    (Serial ports) for how its line is split."""
    ports = board.get("buses", {}).get("uart", {}).get("ports", [])
    for entry in ports:
        if entry["id"] == uart_id and not isinstance(uart_id, bool):
            break
    else:
        raise ValueError("the %s has no UART %r (it has %s)" % (
            board.get("name", "board"), uart_id,
            ", ".join(str(port["id"]) for port in ports) or "none"))
    reserved = board.get("reserved", {})
    for role in ("tx", "rx"):
        if str(entry.get(role)) in reserved:
            raise ValueError("UART%s's %s pin %s is the board's %s: nothing can be wired "
                             "there" % (uart_id, role.upper(), entry[role],
                                        reserved[str(entry[role])]))
    return entry


def check_uarts(board, uart_ids):
    """{uart id: profile entry} of the UARTs to wire; ValueError if one cannot be."""
    return {uart_id: uart_port(board, uart_id) for uart_id in uart_ids}


def make_raw(fd):
    """Set a terminal as cfmakeraw(3) does (tty.setraw leaves INLCR, IGNCR and ECHONL)."""
    attrs = termios.tcgetattr(fd)
    attrs[0] &= ~(termios.IGNBRK | termios.BRKINT | termios.PARMRK | termios.ISTRIP
                  | termios.INLCR | termios.IGNCR | termios.ICRNL | termios.IXON)
    attrs[1] &= ~termios.OPOST
    attrs[2] = (attrs[2] & ~(termios.CSIZE | termios.PARENB)) | termios.CS8
    attrs[3] &= ~(termios.ECHO | termios.ECHONL | termios.ICANON | termios.ISIG
                  | termios.IEXTEN)
    attrs[6][termios.VMIN] = 1
    attrs[6][termios.VTIME] = 0
    termios.tcsetattr(fd, termios.TCSANOW, attrs)


class _Line:
    """One UART's pty and loopback port, and the device connections to it."""

    def __init__(self, entry):
        self.pins = [entry.get("tx"), entry.get("rx")]  # where the adapter's wires go
        self.master, self._slave = pty.openpty()
        make_raw(self._slave)
        os.set_blocking(self.master, False)
        self.path = os.ttyname(self._slave)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.setblocking(False)
        self.port = self.listener.getsockname()[1]
        self.device = None  # the newest device connection: host bytes go there

    def close(self):
        for fd in (self.master, self._slave):
            os.close(fd)
        self.listener.close()


class SerialLines:
    """The host ends of one device's wired UARTs, relayed by one thread; wired: what
    check_uarts() returns."""

    def __init__(self, wired):
        self.lines = {}
        try:
            for uart_id, entry in wired.items():
                self.lines[uart_id] = _Line(entry)
        except BaseException:
            self._close_lines()
            raise
        self._connections = {}  # socket -> its line
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._selector.register(self._wake_r, selectors.EVENT_READ, ("wake", None))
        for line in self.lines.values():
            self._selector.register(line.listener, selectors.EVENT_READ, ("listener", line))
            self._selector.register(line.master, selectors.EVENT_READ, ("host", line))
        self._running = True
        self._thread = threading.Thread(target=self._loop, name="serial", daemon=True)
        self._thread.start()

    def path(self, uart_id):
        """The host path of UART uart_id's pty; KeyError if it is not wired."""
        return self.lines[uart_id].path

    def paths(self):
        return {uart_id: line.path for uart_id, line in self.lines.items()}

    def config(self):
        """What the device process needs to connect: [{"uart", "pins", "port"}]."""
        return [{"uart": uart_id, "pins": line.pins, "port": line.port}
                for uart_id, line in self.lines.items()]

    def close(self):
        """Close every pty and port (their paths go away)."""
        if self._running:
            self._running = False
            self._wake_w.send(b"x")
            self._thread.join(5)

    # ---------------------------------------------------------------- the thread

    def _loop(self):
        while self._running:
            for key, _ in self._selector.select():
                kind, line = key.data
                if kind == "wake":
                    self._wake_r.recv(64)
                elif kind == "listener":
                    self._accept(line)
                elif kind == "host":
                    self._from_host(line)
                elif key.fileobj in self._connections:  # not dropped earlier in this round
                    self._from_device(key.fileobj, line)
        for sock in list(self._connections):
            self._drop(sock)
        self._selector.close()
        self._close_lines()
        self._wake_r.close()
        self._wake_w.close()

    def _close_lines(self):
        for line in self.lines.values():
            line.close()

    def _accept(self, line):
        """Take the connections waiting; the newest is the device now running (an older
        one is a boot that is over: what it wrote still goes to the host)."""
        while True:
            try:
                sock, _ = line.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._connections[sock] = line
            self._selector.register(sock, selectors.EVENT_READ, ("device", line))
            line.device = sock

    def _drop(self, sock):
        line = self._connections.pop(sock)
        self._selector.unregister(sock)
        sock.close()
        if line.device is sock:
            line.device = None

    def _from_host(self, line):
        try:
            data = os.read(line.master, CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:  # no slave open: cannot happen while _Line holds one
            return
        self._accept(line)  # a device that has just connected gets these bytes
        if line.device is None:
            return  # the device is off or booting: lost
        try:
            line.device.send(data)  # what does not fit is lost: the device has not read
        except (BlockingIOError, InterruptedError):  # for a long while, its line overflows
            pass
        except OSError:
            self._drop(line.device)

    def _from_device(self, sock, line):
        try:
            data = sock.recv(CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:  # that boot is over
            self._drop(sock)
            return
        try:
            os.write(line.master, data)  # what does not fit is lost: the host does not read
        except (BlockingIOError, InterruptedError):
            pass


# ---------------------------------------------------------------- the device's end

_SLICE_MS = 20  # a real wait is cut into slices, so that timers and requests keep up


class HostLine(UartPeer):
    """A UART's far end that is a program on the host, reached over a loopback socket to
    the runner's relay on `port`."""

    realtime = True

    def __init__(self, port):
        UartPeer.__init__(self)
        self.sock = socket.socket()
        self.sock.connect(socket.getaddrinfo("127.0.0.1", port)[0][-1])
        self.sock.setsockopt(6, 1, 1)  # IPPROTO_TCP, TCP_NODELAY: bytes go as written
        self.poller = select.poll()
        self.poller.register(self.sock, select.POLLIN)
        self.users = []  # the UARTs that have it open

    def opened(self, uart):
        """A UART opened the line: what the host sent before is lost, as on a board."""
        if not self.users:
            while self.sock is not None and self.poller.poll(0):
                self.outbox = bytearray()
                self._fill(4096, 0)
            self.outbox = bytearray()
        self.users.append(uart)
        world = uart._world
        if getattr(world, "realtime", None) is None:
            world.realtime = []
        world.realtime.append(uart)

    def closed(self, uart):
        self.users.remove(uart)
        uart._world.realtime.remove(uart)

    def wait(self, room, wanted, timeout_ms, clock):
        """Take what the host sent, up to `room` bytes in the outbox; short of `wanted`,
        wait up to timeout_ms for it in real time."""
        self._fill(room, 0)
        if not timeout_ms or len(self.outbox) >= wanted:
            return
        real = RealTime()
        timeout_us = timeout_ms * 1000
        waited = 0
        while waited < timeout_us and len(self.outbox) < wanted and self.sock is not None:
            self._fill(room, min(_SLICE_MS, (timeout_us - waited) // 1000 + 1))
            now = min(real.us(), timeout_us)
            clock.advance(now - waited)
            waited = now
        if len(self.outbox) < wanted:
            clock.advance(timeout_us - waited)  # the runner has gone: the rest passes

    def _fill(self, room, wait_ms):
        want = room - len(self.outbox)
        if self.sock is None or want <= 0 or not self.poller.poll(wait_ms):
            return
        try:
            data = self.sock.recv(want)
        except OSError:
            data = b""
        if data:
            self.outbox += data
        else:
            self.close()  # the runner is gone

    def uart_receive(self, data):
        if self.sock is None:
            return
        view = memoryview(data)
        try:
            while len(view):
                view = view[self.sock.send(view):]
        except OSError:
            self.close()

    def close(self):
        if self.sock is not None:
            self.poller.unregister(self.sock)
            self.sock.close()
            self.sock = None
