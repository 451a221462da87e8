# Frames: how messages travel on a byte stream.
#
# Stream frames (TCP and other reliable transports):
#     0x4A | varint payload length | varint message type | payload
# A reliable transport needs no checksum; a bad preamble, an oversized length or a zero
# type means the peer is broken, so the decoder raises ProtocolError and the connection
# is dropped.
#
# Serial frames (UART, noisy lines):
#     0x00 | COBS(varint message type | payload | CRC-32 of both, little-endian) | 0x00
# A zero byte only ever delimits frames, so after noise the decoder resynchronises at the
# next zero (the leading one keeps line noise before a frame from spoiling it); a frame whose COBS or CRC is wrong is dropped and counted, never raised.
#
# Both decoders are sans-IO: feed() takes any chunk of bytes and returns the frames it
# completed as (type id, payload) pairs.
from ._compat import const, crc32
from .errors import ProtocolError

PREAMBLE = const(0x4A)
_MAX_TYPE = const(0x3FFF)  # message types fit a two-byte varint
_LENGTH_WIDTH = const(5)
_TYPE_WIDTH = const(2)
_GATHER = const(256)       # frames longer than this arrive as pieces, joined once


def _varint_bytes(value):
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return out


def _check_type(type_id):
    if not 0 < type_id <= _MAX_TYPE:
        raise ValueError("message type %d out of range" % type_id)


def frame(type_id, payload):
    """Wrap an encoded message in a stream frame."""
    _check_type(type_id)
    out = bytearray((PREAMBLE,))
    out.extend(_varint_bytes(len(payload)))
    out.extend(_varint_bytes(type_id))
    out.extend(payload)
    return bytes(out)


def _read_varint(buf, pos, width):
    """(value, new pos) or None when buf ends first; ProtocolError past `width` bytes."""
    result = 0
    shift = 0
    n = len(buf)
    for i in range(pos, pos + width):
        if i >= n:
            return None
        b = buf[i]
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, i + 1
        shift += 7
    raise ProtocolError("frame varint longer than %d bytes" % width)


class FrameDecoder:
    """Incremental stream-frame decoder; raises ProtocolError on a broken stream.

    RAM: a frame longer than _GATHER bytes is not grown byte by byte in one buffer (each
    growth may copy it, and needs old and new at once); its pieces are kept as they
    arrive and joined once when it is complete, and its payload is cut out of that with
    one more copy. A board can take a frame of about a third of its free heap."""

    def __init__(self, max_frame=65536):
        self.max_frame = max_frame
        self._buf = bytearray()
        self._parts = []    # the pieces of a long frame still arriving
        self._have = 0      # bytes in _parts
        self._need = 0      # bytes _parts must reach before parsing goes on
        self._tail = bytearray()  # small pieces, frozen into _parts as they add up
        self._error = None

    def _freeze(self):
        if self._tail:
            self._parts.append(bytes(self._tail))
            self._tail = bytearray()

    def feed(self, data):
        """Add bytes; return the list of (type id, payload bytes) frames completed.

        Frames completed before a broken spot are returned first; the ProtocolError is
        raised then (when no frame came before it) or by the next call to feed.
        """
        if self._error is not None:
            raise ProtocolError(self._error)
        if self._need:
            tail = self._tail
            if len(data) < _GATHER:  # small pieces go together first
                tail.extend(data)
            else:
                self._freeze()
                self._parts.append(data if type(data) is bytes else bytes(data))
            if len(tail) >= _GATHER:
                self._freeze()
            self._have += len(data)
            if self._have < self._need:
                return []
            self._freeze()
            buf = b"".join(self._parts)
            self._parts = []
            self._have = self._need = 0
        else:
            buf = self._buf
            buf.extend(data)
        frames = []
        pos = 0
        try:
            while pos < len(buf):
                if buf[pos] != PREAMBLE:
                    raise ProtocolError("bad frame preamble 0x%02x" % buf[pos])
                got = _read_varint(buf, pos + 1, _LENGTH_WIDTH)
                if got is None:
                    break
                length, at = got
                if length > self.max_frame:
                    raise ProtocolError("frame of %d bytes exceeds %d" % (length, self.max_frame))
                got = _read_varint(buf, at, _TYPE_WIDTH)
                if got is None:
                    break
                type_id, at = got
                if type_id == 0:
                    raise ProtocolError("frame with message type 0")
                if len(buf) - at < length:
                    if length > _GATHER:  # gather the rest in pieces
                        self._parts = [bytes(buf[pos:])]
                        self._have = len(buf) - pos
                        self._need = at - pos + length
                        self._buf = bytearray()
                        return frames
                    break
                frames.append((type_id, bytes(memoryview(buf)[at:at + length])))
                pos = at + length
        except ProtocolError as e:
            self._error = str(e)
            self._buf = bytearray()
            if not frames:
                raise
            return frames
        if pos or type(buf) is not bytearray:
            # MicroPython's bytearray has no slice deletion
            self._buf = bytearray(buf[pos:])
        return frames

    def pending(self):
        """Bytes held while waiting for the rest of a frame."""
        return len(self._buf) + self._have


# ------------------------------------------------------------------ serial

def cobs_encode(data):
    """Consistent Overhead Byte Stuffing: the result has no zero byte."""
    out = bytearray()
    for segment in bytes(data).split(b"\x00"):
        while len(segment) >= 254:
            out.append(0xFF)
            out.extend(segment[:254])
            segment = segment[254:]
        out.append(len(segment) + 1)
        out.extend(segment)
    return out


def cobs_decode(data):
    """Undo cobs_encode; ProtocolError for a zero byte or a block past the end."""
    out = bytearray()
    i = 0
    n = len(data)
    while i < n:
        code = data[i]
        end = i + code
        if code == 0 or end > n:
            raise ProtocolError("bad COBS block")
        out.extend(data[i + 1:end])
        i = end
        if code != 0xFF and i < n:
            out.append(0)
    return out


def serial_frame(type_id, payload):
    """Wrap an encoded message in a serial frame (between 0x00 delimiters)."""
    _check_type(type_id)
    body = _varint_bytes(type_id)
    body.extend(payload)
    crc = crc32(body) & 0xFFFFFFFF
    body.extend(bytes((crc & 0xFF, (crc >> 8) & 0xFF, (crc >> 16) & 0xFF, crc >> 24)))
    out = bytearray(1)
    out.extend(cobs_encode(body))
    out.append(0)
    return bytes(out)


class SerialDecoder:
    """Incremental serial-frame decoder that survives noise.

    Corrupt frames are dropped: `dropped` counts them and `last_error` says why.
    """

    def __init__(self, max_frame=65536):
        self.max_frame = max_frame
        # COBS adds one byte per 254; the body adds a type varint and a CRC
        self._max_encoded = max_frame + _TYPE_WIDTH + 4 + (max_frame + 260) // 254 + 1
        self._buf = bytearray()
        self._overflow = False
        self.dropped = 0
        self.last_error = None

    def _drop(self, reason):
        self.dropped += 1
        self.last_error = reason

    def feed(self, data):
        """Add bytes; return the list of (type id, payload bytes) frames completed."""
        frames = []
        if not isinstance(data, bytes):
            data = bytes(data)  # for find()
        start = 0
        n = len(data)
        while start < n:
            zero = data.find(b"\x00", start)
            stop = n if zero < 0 else zero
            if not self._overflow:
                if len(self._buf) + stop - start > self._max_encoded:
                    self._overflow = True
                    self._buf = bytearray()
                else:
                    self._buf.extend(data[start:stop])
            if zero < 0:
                break
            start = zero + 1
            if self._overflow:
                self._overflow = False
                self._drop("frame longer than %d bytes" % self.max_frame)
                continue
            if self._buf:
                got = self._unframe(self._buf)
                self._buf = bytearray()
                if got is not None:
                    frames.append(got)
        return frames

    def _unframe(self, encoded):
        try:
            body = cobs_decode(encoded)
        except ProtocolError as e:
            self._drop(str(e))
            return None
        if len(body) < 5:
            self._drop("frame too short")
            return None
        crc = body[-4] | (body[-3] << 8) | (body[-2] << 16) | (body[-1] << 24)
        body = memoryview(body)[:-4]
        if crc32(body) & 0xFFFFFFFF != crc:
            self._drop("CRC mismatch")
            return None
        try:
            got = _read_varint(body, 0, _TYPE_WIDTH)
        except ProtocolError as e:
            self._drop(str(e))
            return None
        if got is None or got[0] == 0:
            self._drop("bad message type")
            return None
        type_id, at = got
        if len(body) - at > self.max_frame:
            self._drop("frame of %d bytes exceeds %d" % (len(body) - at, self.max_frame))
            return None
        return type_id, bytes(body[at:])
