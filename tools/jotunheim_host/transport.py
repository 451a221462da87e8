"""Byte transports to a device, addressed by URL (host side, asyncio).

    tcp://HOST:PORT                    a device in listen mode, or a hub's device link
    serial:///dev/ttyUSB0?baud=115200  a device wired by UART/USB-serial (pyserial); any
                                       pyserial URL works after serial:// (socket://, rfc2217://)

A transport reads bytes (b"" at end of stream), writes bytes and closes; a TCP one can
also hand what arrives to a function as it comes (subscribe), which is how a session reads
it: an answer then resolves its call's future with no task in between. `framing` says
which frames it carries: "stream" (TCP) or "serial" (COBS + CRC on a line that may drop
bytes). Nothing here knows the protocol's messages.
"""

import asyncio
import urllib.parse

DEFAULT_BAUD = 115200
NOWAIT_QUEUED = 65536  # bytes a TCP transport may hold unsent before a write waits


class TransportError(Exception):
    """A transport cannot be opened or has failed."""


class TcpTransport(asyncio.Protocol):
    """A TCP connection, as the asyncio protocol of its socket. What arrives goes to the
    function given to subscribe() from the event loop's own callback, so no task has to
    wake for it (a session's answers resolve their futures at once); until then, and for
    read(), it waits in a queue."""

    framing = "stream"

    def __init__(self, label=""):
        self.label = label
        self.transport = None
        self._receiver = None   # function(bytes), b"" at the end
        self._chunks = []       # what came before a receiver, or for read()
        self._readable = None   # the future read() waits on
        self._paused = False    # the socket's send buffer is full (pause_writing)
        self._drained = []      # futures write() waits on while it is
        self._ended = False

    # ------------------------------------------------------------ asyncio's side

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        if self._receiver is not None:
            self._receiver(data)
            return
        self._chunks.append(data)
        self._wake_reader()

    def eof_received(self):
        self._end()
        return False  # close our side too

    def connection_lost(self, exc):
        self._end()
        self._paused = False
        self._wake_writers()

    def pause_writing(self):
        self._paused = True

    def resume_writing(self):
        self._paused = False
        self._wake_writers()

    def _end(self):
        if self._ended:
            return
        self._ended = True
        self.data_received(b"")

    def _wake_reader(self):
        if self._readable is not None and not self._readable.done():
            self._readable.set_result(None)

    def _wake_writers(self):
        for future in self._drained:
            if not future.done():
                future.set_result(None)
        self._drained = []

    # ------------------------------------------------------------ the transport API

    def subscribe(self, receiver):
        """Deliver what arrives to receiver(bytes) from now on (b"" once, at the end),
        starting with what is queued."""
        chunks, self._chunks = self._chunks, []
        for data in chunks:
            receiver(data)
        self._receiver = receiver

    async def read(self):
        while not self._chunks:
            self._readable = asyncio.get_running_loop().create_future()
            await self._readable
        data = self._chunks.pop(0)
        if not data:
            self._chunks.append(data)  # the end stays the end
        return data

    async def write(self, data):
        if self._ended:
            raise ConnectionResetError("the connection is closed")
        self.transport.write(data)
        while self._paused:
            future = asyncio.get_running_loop().create_future()
            self._drained.append(future)
            await future

    def write_nowait(self, data):
        """Write without waiting when little is queued (True); False: use write()."""
        if self.transport.get_write_buffer_size() > NOWAIT_QUEUED:
            return False
        if self._ended:
            raise ConnectionResetError("the connection is closed")
        self.transport.write(data)
        return True

    def close(self):
        if self.transport is not None:
            self.transport.close()


async def serve_tcp(on_connection, host, port):
    """An asyncio server on host:port that runs `await on_connection(transport)` for
    each connection, a TcpTransport labelled tcp://PEER:PORT."""
    def made():
        return _Accepted(on_connection)
    return await asyncio.get_running_loop().create_server(made, host, port)


class _Accepted(TcpTransport):
    def __init__(self, on_connection):
        super().__init__()
        self._on_connection = on_connection
        self._task = None

    def connection_made(self, transport):
        super().connection_made(transport)
        self.label = "tcp://%s:%d" % transport.get_extra_info("peername")[:2]
        self._task = asyncio.ensure_future(self._on_connection(self))


class SerialTransport:
    """A pyserial port read through the event loop: its file descriptor when it has one
    (a tty), a thread otherwise."""

    framing = "serial"

    def __init__(self, port, label):
        self.port = port
        self.label = label
        self.loop = asyncio.get_running_loop()
        self.queue = asyncio.Queue()
        self.fd = None
        try:
            self.fd = port.fileno()
        except (AttributeError, OSError, ValueError):
            pass
        if self.fd is not None:
            self.loop.add_reader(self.fd, self._readable)
        else:
            import threading
            threading.Thread(target=self._pump, daemon=True).start()

    def _readable(self):
        try:
            data = self.port.read(self.port.in_waiting or 1)
        except Exception:  # pyserial raises SerialException and OSError subclasses
            data = b""
        if not data:
            self.loop.remove_reader(self.fd)
        self.queue.put_nowait(data)

    def _pump(self):
        while self.port.is_open:
            try:
                data = self.port.read(self.port.in_waiting or 1)
            except Exception:
                data = b""
            if data or not self.port.is_open:
                self.loop.call_soon_threadsafe(self.queue.put_nowait, data)
            if not data and not self.port.is_open:
                return

    async def read(self):
        return await self.queue.get()

    async def write(self, data):
        await self.loop.run_in_executor(None, self.port.write, data)

    def close(self):
        if self.fd is not None:
            self.loop.remove_reader(self.fd)
        self.port.close()
        self.queue.put_nowait(b"")


async def open_transport(url, timeout=10.0):
    """Open `url` (see the module docstring); TransportError says what failed."""
    scheme, _, rest = url.partition("://")
    if scheme == "tcp":
        parsed = urllib.parse.urlsplit(url)
        if not parsed.hostname or not parsed.port:
            raise TransportError("%s: expected tcp://HOST:PORT" % url)
        loop = asyncio.get_running_loop()
        try:
            _, transport = await asyncio.wait_for(loop.create_connection(
                lambda: TcpTransport(url), parsed.hostname, parsed.port), timeout)
        except (OSError, asyncio.TimeoutError) as e:
            raise TransportError("cannot connect to %s:%d: %s" % (
                parsed.hostname, parsed.port, e or "timed out")) from None
        return transport
    if scheme == "serial":
        import serial
        path, _, query = rest.partition("?")
        options = urllib.parse.parse_qs(query)
        try:
            baud = int(options.get("baud", [DEFAULT_BAUD])[0])
        except ValueError:
            raise TransportError("%s: baud must be a number" % url) from None
        try:
            port = serial.serial_for_url(path, baudrate=baud, timeout=0)
        except (serial.SerialException, ValueError) as e:
            raise TransportError("cannot open %s: %s" % (path, e)) from None
        port.reset_input_buffer()
        return SerialTransport(port, url)
    raise TransportError("%s: unknown transport (use tcp://HOST:PORT or serial://PATH)" % url)
