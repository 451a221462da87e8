"""Streams on the controller side (protocol/SPEC.md 1.11): async iterators and writers.

    stream = await device.open_stream("sensor", source="adc:34", params={"rate_hz": 50})
    async for chunk in stream:              # Chunk(data, timestamp_us, seq, offset)
        ...
    async for t_us, value in samples(stream):   # a sensor stream, decoded
        ...
    out = await device.open_stream("file", "in", "/data/x.bin", {"size": n, "sha256": d})
    await out.write(data)                   # waits for the device's credit
    print(await out.close())                # the device's verdict ("sha256:...")

Credit: a stream opened here grants `window` bytes and grants them again as the reader
consumes them, half a window at a time, so at most `window` bytes wait in its buffer. A
writer never sends more than the device granted. A lost link ends every stream of that
connection: reads and writes raise StreamError (UNAVAILABLE) saying so.
"""

import asyncio
import collections
import hashlib
import struct

from jotunheim_host.session import STATUS, CallError, ControllerError

KINDS = {"raw": 1, "sensor": 2, "log": 3, "file": 4, "audio": 5, "video": 6}
DIRECTIONS = {"in": 1, "out": 2, "both": 3}
KIND_NAMES = {number: name for name, number in KINDS.items()}
DEFAULT_WINDOW = 16384
OVERHEAD = 48           # StreamData bytes besides the data, at most
SAMPLE = struct.Struct("<Ii")
OK, UNAVAILABLE, DATA_LOSS, RESOURCE_EXHAUSTED = 0, 14, 15, 8


class StreamError(ControllerError):
    """A stream ended with a status other than OK (or its link was lost)."""

    def __init__(self, status, message):
        self.status = status
        self.status_name = STATUS.get(status, str(status))
        self.message = message
        super().__init__("%s: %s" % (self.status_name, message))


Chunk = collections.namedtuple("Chunk", "data timestamp_us seq offset")


class Stream:
    """One stream: iterate it (or read()) for data from the device; write() and close()
    for data to it. `status`, `message` and `total_bytes` say how it ended."""

    def __init__(self, table, session, stream_id, kind, direction, source, params, window,
                 content_type=""):
        self.table = table
        self.session = session
        self.id = stream_id
        self.kind = kind
        self.direction = direction
        self.source = source
        self.params = params
        self.content_type = content_type
        self.window = window            # the most bytes buffered here
        self.granted = window           # bytes the device may still send
        self.unreported = 0
        self.buffer = collections.deque()
        self.buffered = 0
        self.received = 0
        self.credit = 0                 # bytes we may send
        self.sent = 0
        self.seq = 0
        self.status = None
        self.message = ""
        self.total_bytes = None         # what the device says it sent, at its close
        self.closing = False
        self.opened = ""                # the message of the Ack that opened it
        self._changed = asyncio.Event()
        frame = min(session.hello.get("max_frame") or 4096, session.max_frame)
        self.max_chunk = min(frame - OVERHEAD, params.get("chunk") or frame)

    @property
    def closed(self):
        return self.status is not None

    # ------------------------------------------------------------ from the device

    def _data(self, fields):
        data = fields["data"]
        if len(data) > self.granted:
            return self.abort(RESOURCE_EXHAUSTED, "window overrun: %d bytes with %d of credit"
                              % (len(data), self.granted))
        if fields["offset"] != self.received:
            return self.abort(DATA_LOSS, "data at offset %d, expected %d" % (
                fields["offset"], self.received))
        self.granted -= len(data)
        self.received += len(data)
        self.buffer.append(Chunk(data, fields["timestamp_us"], fields["seq"],
                                 fields["offset"]))
        self.buffered += len(data)
        self._changed.set()

    async def read(self):
        """The next Chunk; None at a normal end; StreamError if it failed."""
        while not self.buffer:
            if self.status is not None:
                if self.status != OK:
                    raise StreamError(self.status, self.message)
                return None
            self._changed.clear()
            await self._changed.wait()
        chunk = self.buffer.popleft()
        self.buffered -= len(chunk.data)
        self.unreported += len(chunk.data)
        if self.status is None and self.unreported * 2 >= self.window:
            amount, self.unreported = self.unreported, 0
            self.granted += amount
            await self._send("StreamCredit", {"stream_id": self.id, "bytes": amount})
        return chunk

    def __aiter__(self):
        return self

    async def __anext__(self):
        chunk = await self.read()
        if chunk is None:
            raise StopAsyncIteration
        return chunk

    async def read_all(self):
        """Everything until the end, as bytes."""
        parts = []
        async for chunk in self:
            parts.append(chunk.data)
        return b"".join(parts)

    # ------------------------------------------------------------ to the device

    def _credit(self, fields):
        self.credit += fields["bytes"]
        self._changed.set()

    async def write(self, data):
        """Send data, in chunks the device's frame and credit allow."""
        view = memoryview(bytes(data))
        done = 0
        while done < len(view):
            while self.status is None and self.credit <= 0:
                self._changed.clear()
                await self._changed.wait()
            if self.status is not None:
                raise StreamError(self.status if self.status != OK else 9,
                                  self.message or "the stream has ended")
            n = min(len(view) - done, self.credit, self.max_chunk)
            self.credit -= n
            await self._send("StreamData", {"stream_id": self.id, "seq": self.seq,
                                            "offset": self.sent,
                                            "data": bytes(view[done:done + n])})
            self.seq += 1
            self.sent += n
            done += n

    async def drain(self):
        """Wait until the device grants credit again (a writer's pause point)."""
        while self.status is None and self.credit <= 0:
            self._changed.clear()
            await self._changed.wait()

    async def close(self, status=OK, message="", timeout=30.0):
        """End the stream; the device's last word (its StreamClose message). StreamError
        if it ended in failure."""
        if self.status is None and not self.closing:
            self.closing = True
            await self._send("StreamClose", {"stream_id": self.id, "status": status,
                                             "message": message, "total_bytes": self.sent})
        return await self.wait_closed(timeout)

    async def wait_closed(self, timeout=None):
        """Wait for the device's StreamClose; its message, or StreamError."""
        async def ended():
            while self.status is None:
                self._changed.clear()
                await self._changed.wait()
        await asyncio.wait_for(ended(), timeout)
        if self.status != OK:
            raise StreamError(self.status, self.message)
        return self.message

    # ------------------------------------------------------------ ending

    def _closed(self, fields):
        """The device's StreamClose: the end (answered, unless it answers ours)."""
        if not self.closing:
            self.closing = True
            asyncio.ensure_future(self._send("StreamClose", {
                "stream_id": self.id, "status": OK, "total_bytes": self.sent}))
        self._end(fields["status"], fields["message"], fields["total_bytes"])

    def abort(self, status, message):
        """End the stream here, telling the device."""
        if self.status is None:
            asyncio.ensure_future(self._send("StreamClose", {
                "stream_id": self.id, "status": status, "message": message,
                "total_bytes": self.sent}))
            self._end(status, message)

    def _end(self, status, message, total=None):
        if self.status is None:
            self.status, self.message, self.total_bytes = status, message, total
            self.table.forget(self)
        self._changed.set()

    async def _send(self, name, fields):
        try:
            await self.session.send(name, fields)
        except ControllerError as e:
            self._end(UNAVAILABLE, "the link to the device was lost: %s" % e)


class StreamTable:
    """A Device's streams, by id, on its current connection."""

    def __init__(self, device):
        self.device = device
        self.streams = {}
        self.next_id = -1
        self.incoming = asyncio.Queue()     # streams the device opened
        self.accepted = collections.OrderedDict()   # the latest of them, ended ones too

    def forget(self, stream):
        if self.streams.get(stream.id) is stream:
            del self.streams[stream.id]

    def new_id(self):
        while True:
            self.next_id = (self.next_id + 2) % 0xFFFFFFFF
            if self.next_id not in self.streams:
                return self.next_id

    async def open(self, kind, direction="out", source="", params=None, window=None,
                   content_type="", timeout=30.0):
        device = self.device
        session = await device._session(timeout)
        kind_number = KINDS[kind] if isinstance(kind, str) else kind
        direction_number = DIRECTIONS[direction] if isinstance(direction, str) else direction
        window = DEFAULT_WINDOW if window is None else window
        stream = Stream(self, session, self.new_id(), kind_number, direction_number, source,
                        dict(params or {}), window if direction_number != 1 else 0,
                        content_type)
        self.streams[stream.id] = stream
        fields = {"request_id": device._next_request_id(), "stream_id": stream.id,
                  "kind": kind_number, "direction": direction_number,
                  "content_type": content_type, "params": stream.params, "source": source,
                  "credit": stream.window}
        try:
            _, ack = await session.request("StreamOpen", fields, timeout)
        except CallError:
            self.forget(stream)
            raise
        except ControllerError as e:
            self.forget(stream)
            raise CallError(UNAVAILABLE, str(e)) from None
        if ack["status"] != OK:
            self.forget(stream)
            raise CallError(ack["status"], ack["message"])
        stream.opened = ack["message"]   # "resume at offset N" for a resumed upload
        return stream

    def on_message(self, session, name, fields):
        """A stream message from the device; True when it was one."""
        if name == "StreamOpen":
            self._device_opened(session, fields)
            return True
        if name not in ("StreamData", "StreamCredit", "StreamClose"):
            return False
        stream = self.streams.get(fields["stream_id"])
        if stream is None or stream.session is not session:
            return True    # ended here already; what was in flight is dropped
        if name == "StreamData":
            stream._data(fields)
        elif name == "StreamCredit":
            stream._credit(fields)
        else:
            stream._closed(fields)
        return True

    def _device_opened(self, session, fields):
        stream_id = fields["stream_id"]
        status, message = OK, ""
        if not stream_id or stream_id % 2 or stream_id in self.streams:
            status, message = 3, "a device's stream ids are even and unused"
        reply = {"request_id": fields["request_id"], "status": status, "message": message}
        if status != OK:
            asyncio.ensure_future(_quiet(session.send("Ack", reply)))
            return
        stream = Stream(self, session, stream_id, fields["kind"], fields["direction"],
                        fields["source"], fields["params"], DEFAULT_WINDOW,
                        fields["content_type"])
        self.streams[stream_id] = stream
        self.accepted[stream_id] = stream   # a StreamScript_ call's answer names it
        while len(self.accepted) > 32:
            self.accepted.popitem(last=False)
        stream.credit = fields["credit"]

        async def accept():
            await _quiet(session.send("Ack", reply))
            if stream.direction != 1:
                await _quiet(session.send("StreamCredit", {"stream_id": stream_id,
                                                            "bytes": stream.window}))
        asyncio.ensure_future(accept())
        if self.incoming.qsize() >= 32:   # nobody takes them: keep the latest
            self.incoming.get_nowait()
        self.incoming.put_nowait(stream)

    def session_lost(self, session, reason):
        for stream in list(self.streams.values()):
            if stream.session is session:
                stream._end(UNAVAILABLE, "the link to the device was lost: %s" % reason)

    def get(self, stream_id):
        """An open stream, or one the device opened lately (it may have ended since)."""
        return self.streams.get(stream_id) or self.accepted.get(stream_id)


async def _quiet(coroutine):
    try:
        await coroutine
    except ControllerError:
        pass


# ------------------------------------------------------------------ decoding


def _zigzag(n):
    return (n >> 1) ^ -(n & 1)


class SampleDecoder:
    """Sensor samples out of a stream's bytes: (t_us since the first sample, value)
    records, plain (8 bytes each) or delta-coded (params codec "delta")."""

    def __init__(self, codec=""):
        self.codec = codec
        self.rest = b""
        self.t = 0
        self.value = 0

    def feed(self, data):
        data = self.rest + data
        out = []
        if self.codec == "delta":
            i = 0
            while True:
                start = i
                numbers = []
                while len(numbers) < 2:
                    n, shift = 0, 0
                    while i < len(data):
                        byte = data[i]
                        i += 1
                        n |= (byte & 0x7F) << shift
                        shift += 7
                        if not byte & 0x80:
                            break
                    else:
                        break
                    numbers.append(_zigzag(n))
                if len(numbers) < 2:
                    self.rest = data[start:]
                    return out
                self.t = (self.t + numbers[0]) & 0xFFFFFFFF
                self.value += numbers[1]
                out.append((self.t, self.value))
        whole = len(data) - len(data) % SAMPLE.size
        out = [SAMPLE.unpack_from(data, i) for i in range(0, whole, SAMPLE.size)]
        self.rest = data[whole:]
        return out


async def samples(stream):
    """(device time in us, value) of each sample of a sensor stream: the time is the
    device's microsecond clock (the first message's timestamp_us plus each sample's t_us)."""
    decoder = SampleDecoder(stream.params.get("codec", ""))
    start = None
    async for chunk in stream:
        if start is None:
            start = chunk.timestamp_us
        for t_us, value in decoder.feed(chunk.data):
            yield start + t_us, value


async def lines(stream):
    """The text lines of a log stream."""
    rest = b""
    async for chunk in stream:
        rest += chunk.data
        *whole, rest = rest.split(b"\n")
        for line in whole:
            yield line.decode("utf-8", "replace")
    if rest:
        yield rest.decode("utf-8", "replace")


def file_digest(message):
    """The SHA-256 a file stream's StreamClose names ("sha256:HEX"), as bytes, or None."""
    if message.startswith("sha256:"):
        try:
            return bytes.fromhex(message[7:])
        except ValueError:
            return None
    return None


async def download(device, path, sink, progress=None, offset=0):
    """Copy device file `path` into sink (a binary file object) from `offset`; the
    SHA-256 of the whole file is checked (sink must hold the bytes before offset if
    offset is given). Returns the bytes copied; StreamError DATA_LOSS on a mismatch."""
    stream = await device.open_stream("file", "out", path, {"offset": offset} if offset
                                      else None)
    digest = hashlib.sha256()
    if offset:
        sink.seek(0)
        digest.update(sink.read(offset))
        sink.seek(offset)
    copied = 0
    async for chunk in stream:
        sink.write(chunk.data)
        digest.update(chunk.data)
        copied += len(chunk.data)
        if progress is not None:
            progress(offset + copied, None)
    expected = file_digest(stream.message)
    if expected is None or expected != digest.digest():
        raise StreamError(DATA_LOSS, "%s: the SHA-256 of the bytes received does not match "
                          "the device's" % path)
    return copied


async def upload(device, path, data, progress=None, chunk=65536, resume=False):
    """Write `data` (bytes) to device file `path`, atomically; its SHA-256 is checked by
    the device. resume: an upload of the same data cut by a lost link goes on where the
    device has it. Returns the device's last word ("sha256:...")."""
    digest = hashlib.sha256(data).digest()
    params = {"size": len(data), "sha256": digest}
    if resume:
        params["resume"] = True
    stream = await device.open_stream("file", "in", path, params)
    offset = 0
    if stream.opened.startswith("resume at offset "):
        offset = int(stream.opened.rsplit(" ", 1)[1])
        stream.sent = offset
    try:
        for start in range(offset, len(data), chunk):
            await stream.write(data[start:start + chunk])
            if progress is not None:
                progress(min(start + chunk, len(data)), len(data))
        message = await stream.close()
    except BaseException:
        if not stream.closed:
            stream.abort(10, "the upload was abandoned")
        raise
    if file_digest(message) != digest:
        raise StreamError(DATA_LOSS, "%s: the device reports another SHA-256" % path)
    return message
