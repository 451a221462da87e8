"""Delta codec for sensor streams, the example plugin (params["codec"] = "delta").

Each SAMPLE-byte record (uint32 t_us, int32 value) becomes two zigzag varints: the change
of t_us and the change of the value since the previous sample of the stream (the first
against 0). Slowly changing readings at a steady rate shrink from 8 bytes to 2 or 3."""
import struct


def plugin(stream, params):
    if stream.kind != 2:   # StreamKind STREAM_SENSOR
        raise ValueError("delta encodes sensor streams only")
    return Delta()


def _varint(out, n):
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


def _zigzag(n):
    return n * 2 if n >= 0 else -n * 2 - 1


class Delta:
    def __init__(self):
        self.t = 0
        self.value = 0

    def encode(self, data):
        out = bytearray()
        for offset in range(0, len(data) - 7, 8):
            t, value = struct.unpack_from("<Ii", data, offset)
            _varint(out, _zigzag(t - self.t))
            _varint(out, _zigzag(value - self.value))
            self.t, self.value = t, value
        return bytes(out)
