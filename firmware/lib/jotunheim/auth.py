# HMAC-SHA256 for the session's challenge-response (protocol/SPEC.md 1.5). MicroPython has
# hashlib.sha256 but no hmac module, so HMAC (RFC 2104) is spelled out here.
import hashlib

from jotunheim.port import const

_BLOCK = const(64)


def hmac_sha256(key, message):
    if len(key) > _BLOCK:
        key = hashlib.sha256(key).digest()
    key = key + bytes(_BLOCK - len(key))
    inner = hashlib.sha256(bytes([b ^ 0x36 for b in key]))
    inner.update(message)
    outer = hashlib.sha256(bytes([b ^ 0x5C for b in key]))
    outer.update(inner.digest())
    return outer.digest()


def equal(a, b):
    """Compare two MACs in time independent of where they differ."""
    if len(a) != len(b):
        return False
    diff = 0
    for i in range(len(a)):
        diff |= a[i] ^ b[i]
    return diff == 0


def key_from_hex(text):
    """The key bytes of the settings' hex text (b"" when empty)."""
    import binascii
    return binascii.unhexlify(text) if text else b""
