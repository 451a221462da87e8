# Serial frames: how messages travel on a UART or another noisy line.
#
#     0x00 | COBS(varint message type | payload | CRC-32 of both, little-endian) | 0x00
#
# A zero byte only ever delimits frames, so after noise the decoder resynchronises at the
# next zero (the leading one keeps line noise before a frame from spoiling it); a frame
# whose COBS or CRC is wrong is dropped and counted, never raised. Stream frames (TCP) are
# in protocol/framing.py; this module is loaded only where a serial line is used.
from ._compat import const
from .errors import ProtocolError
from .framing import _check_type, _read_varint, _varint_bytes

_TYPE_WIDTH = const(2)  # as in framing: message types fit a two-byte varint

try:
    from binascii import crc32
except ImportError:  # ESP8266 builds lack it
    def crc32(data, crc=0):
        """CRC-32 (IEEE 802.3, as zlib) without a table: slow, but tiny."""
        crc ^= 0xFFFFFFFF
        for byte in data:
            crc ^= byte
            for _ in range(8):
                crc = (crc >> 1) ^ (0xEDB88320 & -(crc & 1))
        return crc ^ 0xFFFFFFFF


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
