# The one place where the codec differs between MicroPython and CPython.
#
# MicroPython accepts overlong and surrogate UTF-8 sequences that CPython (and Google's
# protobuf) reject, so on MicroPython decoded text is checked by a strict validator.
import sys

MICROPYTHON = sys.implementation.name == "micropython"

if MICROPYTHON:
    from micropython import const
else:
    def const(value):
        return value


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

