# Jotunheim protocol: the sans-IO codec shared by devices and controllers.
#
# encode/decode turn dicts into canonical protobuf and back; frame/serial_frame wrap an
# encoded message for a byte stream; FrameDecoder/SerialDecoder turn any chunking of bytes
# back into (type id, payload) frames; decode_payload names and decodes a frame's payload.
# SPEC.md is the byte-level contract.
from .codec import Limits, DEFAULT_LIMITS, message_index, fields_of
from .decoder import decode
from .encoder import encode
from .errors import ProtocolError, UnknownMessageType
from .framing import PREAMBLE, FrameDecoder, SerialDecoder, frame, serial_frame
from . import schema
from ._compat import inflate

COMPRESSED = 14  # the Compressed message's frame type

PROTOCOL_VERSION = 1
PROTOCOL_VERSION_MIN = 1


def message_type(type_name):
    """Frame type number of a top-level message name ("ToolCall" -> 16)."""
    type_id = schema.MESSAGE_TABLE[message_index(type_name) * 4]
    if not type_id:
        raise ValueError("%s is not a top-level message" % type_name)
    return type_id


def message_name(type_id):
    """Message name for a frame type number, or None when this side does not know it."""
    table = schema.MESSAGE_TABLE
    for idx in range(len(schema.MESSAGE_NAMES)):
        if table[idx * 4] == type_id and type_id:
            return schema.MESSAGE_NAMES[idx]
    return None


def decode_payload(type_id, payload, limits=DEFAULT_LIMITS):
    """Decode a frame's payload: (message name, fields); UnknownMessageType if unknown.

    A Compressed message is unwrapped: the result is the message inside it.
    """
    name = message_name(type_id)
    if name is None:
        raise UnknownMessageType(type_id)
    fields = decode(name, payload, limits)
    if type_id != COMPRESSED:
        return name, fields
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


def encode_frame(type_name, fields):
    """Encode a message and wrap it in a stream frame."""
    return frame(message_type(type_name), encode(type_name, fields))


def encode_serial_frame(type_name, fields):
    """Encode a message and wrap it in a serial (COBS + CRC) frame."""
    return serial_frame(message_type(type_name), encode(type_name, fields))


def negotiate_version(local, peer):
    """The protocol version two Hello messages agree on; ProtocolError when none."""
    version = min(local.get("version_max", 0), peer.get("version_max", 0))
    if version < max(local.get("version_min", 0), peer.get("version_min", 0)) or version < 1:
        raise ProtocolError("no common protocol version: local %d-%d, peer %d-%d" % (
            local.get("version_min", 0), local.get("version_max", 0),
            peer.get("version_min", 0), peer.get("version_max", 0)))
    return version


def enum_name(enum, number):
    """Name of an enum value ("Status" or its index, 5 -> "NOT_FOUND"), or None."""
    from . import enums
    if not isinstance(enum, int):
        try:
            enum = enums.ENUM_NAMES.index(enum)
        except ValueError:
            raise ValueError("unknown enum %r" % (enum,))
    values = enums.ENUM_VALUES[enum]
    for i in range(1, len(values), 2):
        if values[i] == number:
            return values[i - 1]
    return None
