# The one place where the codec differs between MicroPython and CPython.
#
# MicroPython accepts overlong and surrogate UTF-8 sequences that CPython (and Google's
# protobuf) reject, so on MicroPython decoded text is checked by a strict validator.
# ESP8266 builds lack binascii.crc32, so a bitwise fallback stands in. Inflating uses zlib
# on CPython and the deflate module on MicroPython (absent on some boards).
import sys

MICROPYTHON = sys.implementation.name == "micropython"

if MICROPYTHON:
    from micropython import const
else:
    def const(value):
        return value

try:
    from binascii import crc32
except ImportError:  # ESP8266
    crc32 = None

if crc32 is None:
    def crc32(data, crc=0):
        """CRC-32 (IEEE 802.3, as zlib) without a table: slow, but tiny."""
        crc ^= 0xFFFFFFFF
        for byte in data:
            crc ^= byte
            for _ in range(8):
                crc = (crc >> 1) ^ (0xEDB88320 & -(crc & 1))
        return crc ^ 0xFFFFFFFF


def _strict_utf8(data):
    """True when data is UTF-8 as RFC 3629 defines it (no overlongs, no surrogates)."""
    i = 0
    n = len(data)
    while i < n:
        b = data[i]
        if b < 0x80:
            i += 1
            continue
        if 0xC2 <= b <= 0xDF:
            need, lo, hi = 1, 0x80, 0xBF
        elif 0xE0 <= b <= 0xEF:
            need = 2
            lo = 0xA0 if b == 0xE0 else 0x80
            hi = 0x9F if b == 0xED else 0xBF
        elif 0xF0 <= b <= 0xF4:
            need = 3
            lo = 0x90 if b == 0xF0 else 0x80
            hi = 0x8F if b == 0xF4 else 0xBF
        else:
            return False
        if i + need >= n:
            return False
        c = data[i + 1]
        if c < lo or c > hi:
            return False
        for k in range(i + 2, i + need + 1):
            if data[k] & 0xC0 != 0x80:
                return False
        i += need + 1
    return True


def decode_utf8(data):
    """Decode UTF-8 text, raising UnicodeError for anything CPython would reject."""
    text = str(data, "utf-8")  # data may be a memoryview: no copy
    if MICROPYTHON and len(text) != len(data) and not _strict_utf8(data):
        raise UnicodeError("invalid UTF-8")
    return text


def inflate(data, size):
    """Inflate zlib data that must come to exactly `size` bytes; ValueError otherwise."""
    if MICROPYTHON:
        import io
        try:
            import deflate
        except ImportError:
            raise ValueError("this board cannot inflate")
        try:
            out = deflate.DeflateIO(io.BytesIO(data), deflate.ZLIB).read(size + 1)
        except OSError as e:
            raise ValueError("bad zlib data: %s" % (e,))
        except MemoryError:
            raise ValueError("not enough memory to inflate")
        if out is None or len(out) != size:
            raise ValueError("inflated size differs from the declared size")
        return out
    import zlib
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(bytes(data), size + 1)
    except zlib.error as e:
        raise ValueError("bad zlib data: %s" % (e,))
    if len(out) != size or not inflater.eof:
        raise ValueError("inflated size differs from the declared size")
    return out
