"""The streams of one agent: credit, sequence numbers, their tasks, and the requests.
The kinds' own code is in jotunheim.stream_sensor, stream_log, stream_file and
stream_script, each loaded by the first stream of its kind."""
# How this works (protocol/SPEC.md 1.11): a Stream belongs to one session and is known by
# its id there (odd when the controller opened it, even when the device did). Data going
# out waits in Stream.send() until the peer's credit covers it and the session's outbox is
# nearly empty, so a slow receiver slows the producer and the device holds at most a
# couple of frames per stream. Data coming in is consumed as it arrives (written to the
# file, or handed to a plugin's sink within its window) and credit is granted back when
# half the window is used. Each stream's work runs as an asyncio task; a link loss ends
# every stream of the session (UNAVAILABLE) and frees what they held.
import asyncio

import protocol
from jotunheim import port, streams as registry

OK = 0
INVALID_ARGUMENT = 3
DEADLINE_EXCEEDED = 4
NOT_FOUND = 5
ALREADY_EXISTS = 6
PERMISSION_DENIED = 7
RESOURCE_EXHAUSTED = 8
FAILED_PRECONDITION = 9
ABORTED = 10
UNIMPLEMENTED = 12
INTERNAL = 13
UNAVAILABLE = 14
DATA_LOSS = 15
RAW, SENSOR, LOG, FILE = 1, 2, 3, 4     # StreamKind
IN, OUT, BOTH = 1, 2, 3                 # Direction, seen from the device
STREAM_DATA = 33
OVERHEAD = 48           # StreamData bytes besides the data, at most
BACKLOG = 1             # frames in the session's outbox before a sender waits
_DIRECTIONS = ("", "in", "out", "both")


def manager(agent):
    """The agent's streams, made by the first stream message."""
    streams = getattr(agent, "streams", None)
    if streams is None:
        streams = agent.streams = Streams(agent)
    return streams


def idle(agent):
    """The last stream ended: let go of the code (jotunheim.streams loads it again)."""
    agent.streams = None
    port.drop("stream_core", "stream_sensor", "stream_log", "stream_file", "stream_script",
              "stream_delta")


class Refused(Exception):
    """A stream request that cannot be served: its status and why."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


class Ended(Exception):
    """The stream ended (closed by the peer, or the link was lost) while data waited."""


def ticks_us():
    import time
    if hasattr(time, "ticks_us"):
        return time.ticks_us()
    return int(time.monotonic() * 1000000)


def us_diff(a, b):
    import time
    if hasattr(time, "ticks_diff"):
        return time.ticks_diff(a, b)
    return a - b


class Clock:
    """Microseconds since a start, unwrapped from the device's ticks_us."""

    def __init__(self):
        self.start = self.last = ticks_us()
        self.elapsed = 0

    def now(self):
        t = ticks_us()
        self.elapsed += us_diff(t, self.last)
        self.last = t
        return self.elapsed


class Stream:
    """One stream of a session: credit both ways, sequence numbers, its task."""

    def __init__(self, streams, session, stream_id, kind, direction, source, params):
        self.streams = streams
        self.session = session
        self.id = stream_id
        self.kind = kind
        self.direction = direction
        self.source = source
        self.params = params
        self.window = 0          # bytes the peer lets us send
        self.chunks = -1         # messages it lets us send (-1: not limited)
        self.sent = 0
        self.seq = 0
        self.received = 0
        self.in_window = 0       # bytes we let the peer send
        self.unreported = 0      # consumed bytes not granted back yet
        self.status = None       # set when the stream has ended
        self.job = None          # what produces or consumes the data
        self.codec = None
        self.task = None
        self.inbox = []          # data for a plugin's sink, within in_window
        self.eof = False         # a script's input stream was closed by its sender
        self._wake = asyncio.Event()
        size = min(streams.agent.limits.max_frame, session.peer_max_frame) - OVERHEAD
        chunk = params.get("chunk")
        self.max_chunk = max(16, min(size, chunk if type(chunk) is int and chunk else size))

    # ------------------------------------------------------------ sending

    async def room(self, wanted):
        """Wait until some of `wanted` bytes may be sent; how many (Ended if it ended)."""
        while True:
            if self.status is not None:
                raise Ended("stream %d ended" % self.id)
            if self.window > 0 and self.chunks != 0 and self.session.queued() < BACKLOG:
                return min(wanted, self.window, self.max_chunk)
            if self.window > 0 and self.chunks != 0:
                await self.session.drained()   # the link is busy: its outbox first
            else:
                self._wake.clear()
                await self._wake.wait()

    async def send(self, data, timestamp_us=0):
        """Send bytes (a str is sent as UTF-8), waiting for credit; Ended if it ended."""
        if isinstance(data, str):
            data = data.encode()
        if self.codec is not None:
            data = self.codec.encode(data)
        view = memoryview(data)
        done = 0
        while done < len(data):
            n = await self.room(len(data) - done)
            self.send_now(view[done:done + n] if n < len(data) else data, timestamp_us)
            done += n

    def send_now(self, data, timestamp_us=0):
        # The message is built by hand around the data (fields 1-3, 4, 5: still canonical)
        # and, on a TCP link, framed in the same buffer: one allocation of the chunk's size
        # instead of four (encoding and framing each copy it), which a fragmented heap may
        # not have room for.
        session = self.session
        head = protocol.encode("StreamData", {"stream_id": self.id, "seq": self.seq,
                                              "offset": self.sent})
        tail = protocol.encode("StreamData", {"timestamp_us": timestamp_us})
        head += b"\x22" + _varint(len(data))
        length = len(head) + len(data) + len(tail)
        tcp = session.link.speaks_first
        if tcp:
            head = bytes((protocol.PREAMBLE,)) + _varint(length) + bytes((STREAM_DATA,)) + \
                head
        message = bytearray(len(head) + len(data) + len(tail))
        message[:len(head)] = head
        message[len(head):len(head) + len(data)] = data
        message[len(head) + len(data):] = tail
        if not tcp:
            session.send_payload(STREAM_DATA, message)
        else:
            session.send_frame(message)
        self.seq += 1
        self.sent += len(data)
        self.window -= len(data)
        if self.chunks > 0:
            self.chunks -= 1

    def credit(self, fields):
        self.window += fields["bytes"]
        if fields["chunks"]:
            self.chunks = max(self.chunks, 0) + fields["chunks"]
        self._wake.set()

    # ------------------------------------------------------------ receiving

    def grant(self, nbytes):
        self.in_window += nbytes
        self.session.send("StreamCredit", {"stream_id": self.id, "bytes": nbytes})

    def consumed(self, nbytes):
        """The consumer is done with nbytes: grant them again, half a window at a time."""
        self.unreported += nbytes
        if self.status is None and self.unreported * 2 >= self.streams.in_window(self):
            self.grant(self.unreported)
            self.unreported = 0

    async def receive(self):
        """The next chunk sent to a plugin's sink; Ended once the stream has ended."""
        inbox = self.inbox
        while not inbox:
            if self.status is not None:
                raise Ended("stream %d ended" % self.id)
            if self.eof:       # the sender closed it: a script's ctx.receive() sees None
                return None
            self._wake.clear()
            await self._wake.wait()
        data = inbox.pop(0)
        self.consumed(len(data))
        return data

    # ------------------------------------------------------------ ending

    def end(self, status, message="", tell=True):
        """End the stream: StreamClose to the peer (when `tell`), stop its work."""
        if self.status is not None:
            return
        self.status = status
        self.message = message
        if tell:
            self.session.send("StreamClose", {"stream_id": self.id, "status": status,
                                              "message": message, "total_bytes": self.sent})
        task, self.task = self.task, None
        if task is not None:
            task.cancel()
        abort = getattr(self.job, "abort", None)
        if abort is not None:
            if tell:
                abort()
            else:
                abort(True)   # the link was lost: a resumable upload keeps its part
        self._wake.set()
        self.streams.forget(self)

    async def main(self, work):
        """Run the stream's work; its end (or failure) ends the stream."""
        try:
            status, message = OK, await work or ""
        except Ended:
            return
        except asyncio.CancelledError:
            raise
        except Refused as e:
            status, message = e.status, str(e)
        except Exception as e:  # noqa: BLE001 - the stream fails, the device goes on
            status, message = failure(e)
        if self.status is None:
            self.task = None    # ending from inside: nothing to cancel
            self.end(status, message)


def _varint(n):
    out = b""
    while n > 0x7F:
        out += bytes(((n & 0x7F) | 0x80,))
        n >>= 7
    return out + bytes((n,))


def failure(e):
    """(status, message) of a stream's work that raised e."""
    if isinstance(e, asyncio.TimeoutError):
        return DEADLINE_EXCEEDED, "did not finish within its time limit"
    if isinstance(e, MemoryError):
        return RESOURCE_EXHAUSTED, "out of memory%s" % (": %s" % e if e.args else "")
    if isinstance(e, (ValueError, TypeError)):
        return INVALID_ARGUMENT, str(e)
    if isinstance(e, OSError):
        return UNAVAILABLE, "storage: %s" % e
    return INTERNAL, "%s: %s" % (type(e).__name__, e)


class Streams:
    """The open streams of one agent, by (session, stream id)."""

    def __init__(self, agent):
        self.agent = agent
        self.open = {}
        self.opening = {}       # request id -> stream the device opened, until its Ack
        self.next_id = 0        # the device's stream ids: even
        self.request_id = 0
        heap = agent.board.get("heap_bytes", 131072)
        self.most = max(2, min(8, heap // 16384))
        self.window_cap = max(1024, heap // 32)   # a frame is read in small pieces: its
        self.log_jobs = []                       # bytes must fit the heap several times

    def in_window(self, stream):
        """Credit for data coming in: two chunks of the size the opener asked for, within
        the cap (which also bounds the frames the peer can send on the stream)."""
        chunk = stream.params.get("chunk")
        if type(chunk) is not int or chunk <= 0:
            return self.window_cap
        return max(1024, min(2 * chunk, self.window_cap))

    def find(self, session, stream_id):
        return self.open.get((id(session), stream_id))

    def forget(self, stream):
        self.open.pop((id(stream.session), stream.id), None)
        if stream.job in self.log_jobs:
            self.log_jobs.remove(stream.job)
            if not self.log_jobs:
                self.agent.log_tap = None
        if not self.open and not self.opening:
            idle(self.agent)

    # ------------------------------------------------------------ requests

    def serve(self, session, fields):
        """A stream message or an Ack (told apart by their fields: all are decoded), or
        None: the session ended."""
        if fields is None:
            return self.session_ended(session)
        if "kind" in fields:
            request = "StreamOpen"
        elif "data" in fields:
            request = "StreamData"
        elif "chunks" in fields:
            request = "StreamCredit"
        elif "total_bytes" in fields:
            request = "StreamClose"
        else:
            request = "Ack"
        try:
            getattr(self, "_on_" + request)(session, fields)
        except Exception as e:  # noqa: BLE001 - out of memory, say: the session goes on
            status, message = failure(e)
            stream = self.find(session, fields.get("stream_id", 0))
            if stream is not None:
                stream.end(status, message)
            elif request == "StreamOpen":
                self._ack(session, fields, status, message)
        # a refused open, or a message that came after its stream ended (credit the peer
        # sent meanwhile), leaves no stream: the code goes again
        if not self.open and not self.opening and self.agent.streams is self:
            idle(self.agent)

    def _ack(self, session, fields, status, message=""):
        session.send("Ack", {"request_id": fields["request_id"], "status": status,
                             "message": message})

    def _on_StreamOpen(self, session, fields):
        try:
            stream = self._opened(session, fields)
        except Refused as e:
            self._ack(session, fields, e.status, "stream %d: %s" % (fields["stream_id"], e))
            return
        offset = getattr(stream.job, "offset", 0)   # a resumed upload
        stream.received = offset
        self._ack(session, fields, OK, "resume at offset %d" % offset if offset else "")
        stream.window = fields["credit"]
        stream.grant(self.in_window(stream) if stream.direction != OUT else 0)
        self.start(stream)

    def _opened(self, session, fields):
        stream_id = fields["stream_id"]
        if not stream_id or stream_id % 2 == 0:
            raise Refused(INVALID_ARGUMENT, "a controller's stream ids are odd")
        if self.find(session, stream_id) is not None:
            raise Refused(ALREADY_EXISTS, "the id is in use")
        if len(self.open) >= self.most:
            raise Refused(RESOURCE_EXHAUSTED, "%d streams are open, the most this device "
                          "keeps" % len(self.open))
        stream = Stream(self, session, stream_id, fields["kind"], fields["direction"],
                        fields["source"], fields["params"])
        stream.job = self._job(stream)
        codec = stream.params.get("codec")
        if codec:
            stream.codec = _plugin(codec, 0, stream)
        self.open[(id(session), stream_id)] = stream
        return stream

    def _job(self, stream):
        kind, direction = stream.kind, stream.direction
        if kind == RAW:   # a script produces it (out), consumes it (in), or both
            if not IN <= direction <= BOTH:
                _direction(stream, OUT)
            return port.module("stream_script").Script(self.agent, stream.source,
                                                       stream.params)
        if kind == SENSOR:
            _direction(stream, OUT)
            return port.module("stream_sensor").Sensor(stream.source, stream.params)
        if kind == LOG:
            _direction(stream, OUT)
            job = port.module("stream_log").Log(stream.params)
            self.log_jobs.append(job)
            self.agent.log_tap = self._tap
            return job
        if kind == FILE:
            _direction(stream, IN if direction == IN else OUT)
            path = resolve(self.agent.root, stream.source)
            files = port.module("stream_file")
            return files.FileIn(path, stream.params) if direction == IN else files.FileOut(
                path, stream.params)
        if kind in registry.PLUGIN_KINDS.values():
            return _plugin(stream.source, kind, stream)
        raise Refused(UNIMPLEMENTED, "this device has no stream kind %d (it has %s)" % (
            kind, ", ".join(self.agent.features["stream_kinds"])))

    def start(self, stream):
        job = stream.job
        if hasattr(job, "run"):
            stream.task = asyncio.create_task(stream.main(job.run(stream)))

    def _tap(self, message, level):
        for job in self.log_jobs:
            job.add(message, level)

    def _on_StreamData(self, session, fields):
        stream = self.find(session, fields["stream_id"])
        if stream is None:
            return  # data already in flight when the stream ended
        data = fields["data"]
        if stream.direction == OUT:
            return stream.end(FAILED_PRECONDITION, "data sent on a stream out of the device")
        if len(data) > stream.in_window:
            return stream.end(RESOURCE_EXHAUSTED, "window overrun: %d bytes sent with %d of "
                              "credit" % (len(data), stream.in_window))
        if fields["offset"] != stream.received:
            return stream.end(DATA_LOSS, "data at offset %d, expected %d" % (
                fields["offset"], stream.received))
        stream.in_window -= len(data)
        stream.received += len(data)
        write = getattr(stream.job, "write", None)
        if write is None:  # a plugin's sink takes it with stream.receive()
            stream.inbox.append(data)
            stream._wake.set()
            return
        try:
            write(data)
        except Refused as e:
            return stream.end(e.status, str(e))
        except OSError as e:
            return stream.end(UNAVAILABLE, "storage: %s" % e)
        stream.consumed(len(data))

    def _on_StreamCredit(self, session, fields):
        stream = self.find(session, fields["stream_id"])
        if stream is not None:
            stream.credit(fields)

    def _on_StreamClose(self, session, fields):
        stream = self.find(session, fields["stream_id"])
        if stream is None:
            return  # the answer to our own StreamClose
        if fields["status"] == OK and hasattr(stream.job, "input_done"):
            return stream.job.input_done(stream, fields["total_bytes"])
        finish = getattr(stream.job, "finish", None)
        if fields["status"] != OK:
            return stream.end(ABORTED if finish else OK, "closed by the controller: %s" % (
                fields["message"] or "status %d" % fields["status"]))
        if finish is None:
            return stream.end(OK, "closed by the controller")
        try:
            message = finish(stream.received, fields["total_bytes"])
        except Refused as e:
            return stream.end(e.status, str(e))
        except OSError as e:
            return stream.end(UNAVAILABLE, "storage: %s" % e)
        stream.job = None
        stream.end(OK, message)

    def _on_Ack(self, session, fields):
        stream = self.opening.pop(fields["request_id"], None)
        if stream is None:
            other = self.agent.ack_handler   # not ours: another add-on's
            if other is not None:
                other(session, fields)
            return
        stream.ack = fields
        stream._wake.set()

    # ------------------------------------------------------------ links

    def session_ended(self, session):
        why = "the session ended (%s)" % session.end_reason
        for stream in list(self.open.values()):
            if stream.session is session:
                stream.end(UNAVAILABLE, why, tell=False)
                self.agent.log("stream %d (%s) ended: %s" % (
                    stream.id, stream.source or "kind %d" % stream.kind, why), "warning")
        for request_id in list(self.opening):
            if self.opening[request_id].session is session:
                self.opening[request_id]._wake.set()


def _direction(stream, allowed):
    if stream.direction != allowed:
        raise Refused(INVALID_ARGUMENT, "this kind of stream goes %s, not %s" % (
            _DIRECTIONS[allowed], _DIRECTIONS[stream.direction] if stream.direction < 4
            else stream.direction))


def _plugin(name, kind, stream):
    """A plugin's object for a stream: a codec (kind 0) or a source/sink of `kind`."""
    factory = registry.PLUGINS.get(name)
    if factory is None or registry.PLUGIN_KINDS.get(name, 0) != kind:
        names = [n for n in registry.PLUGINS if registry.PLUGIN_KINDS.get(n, 0) == kind]
        raise Refused(NOT_FOUND, "no %s plugin %r (this device has %s)" % (
            "codec" if not kind else "source", name, ", ".join(sorted(names)) or "none"))
    if isinstance(factory, str):
        factory = port.module(factory).plugin
    try:
        return factory(stream, stream.params)
    except (ValueError, TypeError) as e:
        raise Refused(INVALID_ARGUMENT, "plugin %s: %s" % (name, e))


def resolve(root, path):
    """A device path inside the device's root, or Refused."""
    parts = [p for p in path.split("/") if p]
    if not parts or ".." in parts or "." in parts or "\\" in path or "\x00" in path:
        raise Refused(PERMISSION_DENIED, "path %r is outside the device's files" % path)
    return root + "/".join(parts)


def param_int(params, name, default, low, high):
    value = params.get(name, default)
    if type(value) is float and value == int(value):
        value = int(value)
    if type(value) is not int or not low <= value <= high:
        raise Refused(INVALID_ARGUMENT, "%s must be an integer from %d to %d" % (
            name, low, high))
    return value
