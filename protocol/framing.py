# Frames: how messages travel on a byte stream.
#
# Stream frames (TCP and other reliable transports):
#     0x4A | varint payload length | varint message type | payload
# A reliable transport needs no checksum; a bad preamble, an oversized length or a zero
# type means the peer is broken, so the decoder raises ProtocolError and the connection
# is dropped.
#
# Serial frames (COBS + CRC-32, for UARTs) are in protocol/serial.py, loaded only where a
# serial line is used. Both decoders are sans-IO: feed() takes any chunk of bytes and
# returns the frames it completed as (type id, payload) pairs.
import struct

from ._compat import const
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
    size = len(payload)
    if size < 0x80 and type_id < 0x80:  # most frames: a three-byte head, made in one go
        head = struct.pack("BBB", PREAMBLE, size, type_id)
    else:
        head = bytearray((PREAMBLE,))
        head.extend(_varint_bytes(size))
        head.extend(_varint_bytes(type_id))
        head = bytes(head)
    return head + payload  # one copy of the payload: a small board's heap is tight


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
        elif self._buf:
            buf = self._buf
            buf.extend(data)
        else:  # the usual case: data starts with a frame, and is read where it is
            buf = data
        frames = []
        pos = 0
        end = len(buf)
        try:
            while pos < end:
                if buf[pos] != PREAMBLE:
                    raise ProtocolError("bad frame preamble 0x%02x" % buf[pos])
                short = pos + 2 < end and buf[pos + 1] < 0x80 and buf[pos + 2] < 0x80
                if short:  # a short frame's head, three bytes, read inline
                    length, at = buf[pos + 1], pos + 3
                else:
                    got = _read_varint(buf, pos + 1, _LENGTH_WIDTH)
                    if got is None:
                        break
                    length, at = got
                if length > self.max_frame:
                    raise ProtocolError("frame of %d bytes exceeds %d" % (length, self.max_frame))
                if short:
                    type_id = buf[pos + 2]
                else:
                    got = _read_varint(buf, at, _TYPE_WIDTH)
                    if got is None:
                        break
                    type_id, at = got
                if type_id == 0:
                    raise ProtocolError("frame with message type 0")
                if end - at < length:
                    if length > _GATHER:  # gather the rest in pieces
                        self._parts = [bytes(buf[pos:])]
                        self._have = end - pos
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
        if pos == end:
            if buf is self._buf:
                self._buf = bytearray()
        elif pos or buf is not self._buf:
            # what is left waits for the rest (MicroPython's bytearray has no slice deletion)
            self._buf = bytearray(buf[pos:])
        return frames

    def pending(self):
        """Bytes held while waiting for the rest of a frame."""
        return len(self._buf) + self._have
