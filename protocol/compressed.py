# Compressed messages (protocol/SPEC.md): a message deflated with zlib, plus a tail of
# plain protobuf of the same type merged after inflating. Loaded only when a Compressed
# frame arrives or a host compresses one: most devices never need it.
from . import COMPRESSED, encode, decode, message_name, message_type
from ._compat import MICROPYTHON
from .errors import ProtocolError, UnknownMessageType


def unwrap(fields, limits):
    """The message inside a decoded Compressed message: (name, fields)."""
    inner = message_name(fields["message_type"])
    if inner is None:
        raise UnknownMessageType(fields["message_type"])
    if fields["message_type"] == COMPRESSED or fields["encoding"] != "zlib":
        raise ProtocolError("unsupported compression %r of %s" % (fields["encoding"], inner))
    if fields["size"] + len(fields["tail"]) > limits.max_frame:
        raise ProtocolError("inflated %s of %d bytes exceeds %d" % (
            inner, fields["size"] + len(fields["tail"]), limits.max_frame))
    data = fields["data"]
    # the zlib header names the window the inflater will allocate: refuse one too large
    if len(data) < 2 or data[0] & 0x0F != 8 or (data[0] >> 4) + 8 > limits.max_window_bits:
        raise ProtocolError("compressed %s: bad zlib header or window over 2**%d bytes" % (
            inner, limits.max_window_bits))
    try:
        body = inflate(data, fields["size"])
    except ValueError as e:
        raise ProtocolError("compressed %s: %s" % (inner, e))
    return inner, decode(inner, body + fields["tail"], limits)


def compress(type_name, fields, tail=b"", level=9, window_bits=10):
    """Encode a message as a Compressed message (host side: needs zlib); returns bytes.

    `tail` is encoded protobuf of the same type appended after inflating (see the .proto).
    The receiver's inflater allocates the window named in the zlib header: 2**10 bytes by
    default, which a board can spare (the usual 32 KiB would not fit an ESP8266).
    """
    import zlib
    payload = encode(type_name, fields)
    deflater = zlib.compressobj(level, zlib.DEFLATED, window_bits)
    data = deflater.compress(payload) + deflater.flush()
    return encode("Compressed", {"message_type": message_type(type_name), "encoding": "zlib",
                                 "size": len(payload), "data": data, "tail": tail})


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
