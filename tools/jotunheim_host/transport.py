"""Byte transports to a device, addressed by URL (host side, asyncio).

    tcp://HOST:PORT                    a device in listen mode, or a hub's device link
    serial:///dev/ttyUSB0?baud=115200  a device wired by UART/USB-serial (pyserial); any
                                       pyserial URL works after serial:// (socket://, rfc2217://)

A transport reads bytes (b"" at end of stream), writes bytes and closes; `framing` says
which frames it carries: "stream" (TCP) or "serial" (COBS + CRC on a line that may drop
bytes). Nothing here knows the protocol's messages.
"""

import asyncio
import urllib.parse

DEFAULT_BAUD = 115200
NOWAIT_QUEUED = 65536  # bytes a TCP transport may hold unsent before a write waits


class TransportError(Exception):
    """A transport cannot be opened or has failed."""


class TcpTransport:
    framing = "stream"

    def __init__(self, reader, writer, label):
        self.reader = reader
        self.writer = writer
        self.label = label

    async def read(self):
        try:
            return await self.reader.read(65536)
        except (ConnectionError, OSError):
            return b""

    async def write(self, data):
        self.writer.write(data)
        await self.writer.drain()

    def write_nowait(self, data):
        """Write without waiting when little is queued (True); False: use write()."""
        if self.writer.transport.get_write_buffer_size() > NOWAIT_QUEUED:
            return False
        self.writer.write(data)
        return True

    def close(self):
        self.writer.close()


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
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(parsed.hostname, parsed.port), timeout)
        except (OSError, asyncio.TimeoutError) as e:
            raise TransportError("cannot connect to %s:%d: %s" % (
                parsed.hostname, parsed.port, e or "timed out")) from None
        return TcpTransport(reader, writer, url)
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
