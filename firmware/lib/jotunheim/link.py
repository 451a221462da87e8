# Transports under a session: what carries frames between the device and a controller.
#
# A link reads frames (a list of (message type, payload) per read), writes framed bytes and
# closes. TcpLink carries stream frames over an asyncio stream (TCP over Wi-Fi);
# SerialLink carries serial frames (COBS + CRC) over a UART wired to a host. A TCP link
# speaks first (Hello as soon as it is up); a UART is always "up", so the device answers
# the host's Hello instead, and a new Hello starts a new session on the same line.
import protocol
from jotunheim import port
from jotunheim.port import const

_READ_SIZE = const(512)
_READ_BUFFER = const(256)  # MicroPython's per-connection buffer (a small heap is fragmented)
_UART_POLL_MS = const(5)
_NOWAIT_QUEUED = const(16384)  # CPython: bytes in the transport's buffer before a drain


class TcpLink:
    speaks_first = True

    def __init__(self, reader, writer, max_frame):
        self.reader = reader
        self.writer = writer
        self.decoder = protocol.FrameDecoder(max_frame)
        self.pending = []
        # MicroPython's streams read into one small buffer kept for the connection: a
        # fresh READ_SIZE block for every read is what a small fragmented heap fails to
        # find, and a bigger buffer kept for good splits the room a script compiles in
        self._buf = bytearray(_READ_BUFFER) if hasattr(reader, "readinto") else None

    def frame(self, type_id, payload):
        return protocol.frame(type_id, payload)

    async def read(self):
        if self._buf is None:  # CPython's StreamReader has no readinto
            data = await self.reader.read(_READ_SIZE)
        else:
            data = memoryview(self._buf)[:await self.reader.readinto(self._buf)]
        if not data:
            raise EOFError
        return self.decoder.feed(data)  # it copies what it keeps: the buffer is reused

    async def write(self, data):
        self.writer.write(data)
        await self.writer.drain()

    def write_now(self, data):
        """Hand data to the stream at once, unless bytes wait to go out before it: True
        if it did. The socket takes what it can; backlog() says what is left for drain()."""
        writer = self.writer
        if self.backlog():
            return False
        writer.write(data)  # MicroPython's Stream writes to the socket straight away
        return True

    def backlog(self):
        """Bytes the stream holds that only a drain() sends (MicroPython's Stream keeps
        them in out_buf; CPython's transport sends its buffer by itself, but beyond
        _NOWAIT_QUEUED it is time to wait for it)."""
        writer = self.writer
        held = getattr(writer, "out_buf", None)
        if held is not None:
            return len(held)
        queued = writer.transport.get_write_buffer_size()
        return queued if queued > _NOWAIT_QUEUED else 0

    async def close(self):
        # MicroPython's Stream.close() does nothing: wait_closed() closes the socket
        try:
            self.writer.close()
            await self.writer.wait_closed()
        except OSError:
            pass


class SerialLink:
    speaks_first = False

    def __init__(self, uart, max_frame):
        self.uart = uart
        self.decoder = protocol.SerialDecoder(max_frame)
        self.pending = []  # frames read past the end of a session

    def frame(self, type_id, payload):
        return protocol.serial_frame(type_id, payload)

    async def read(self):
        if self.pending:
            frames, self.pending = self.pending, []
            return frames
        while True:
            n = self.uart.any()
            if n:
                frames = self.decoder.feed(self.uart.read(min(n, _READ_SIZE)))
                if frames:
                    return frames
            else:
                await port.sleep_ms(_UART_POLL_MS)

    async def write(self, data):
        self.uart.write(data)

    def write_now(self, data):
        self.uart.write(data)
        return True

    def backlog(self):
        return 0

    async def close(self):
        pass  # the line stays; the next Hello starts over
