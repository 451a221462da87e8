# Jotunheim protocol: the sans-IO codec shared by devices and controllers.
#
# encode/decode turn dicts into canonical protobuf and back; frame/serial_frame wrap an
# encoded message for a byte stream or a UART; FrameDecoder/SerialDecoder turn any
# chunking of bytes back into (type id, payload) frames; decode_payload names and decodes
# a frame's payload.
# SPEC.md is the byte-level contract.
from .codec import Limits, DEFAULT_LIMITS, message_index, fields_of  # noqa: F401 (API)
from .decoder import decode, decode_index  # noqa: F401 (API)
from .encoder import encode
from .errors import ProtocolError, UnknownMessageType
from .framing import PREAMBLE, FrameDecoder, frame  # noqa: F401 (API)
from . import schema

COMPRESSED = 14  # the Compressed message's frame type

PROTOCOL_VERSION = 1
PROTOCOL_VERSION_MIN = 1


def message_type(type_name):
    """Frame type number of a top-level message name ("ToolCall" -> 16)."""
    type_id = schema.MESSAGE_TABLE[message_index(type_name) * 4]
    if not type_id:
        raise ValueError("%s is not a top-level message" % type_name)
    return type_id


def _type_index(type_id):
    """The message index of a frame type, or -1 when this side does not know it."""
    table = schema.TYPE_INDEX
    if type_id <= 0 or type_id >= len(table) or table[type_id] == 255:
        return -1
    return table[type_id]


def message_name(type_id):
    """Message name for a frame type number, or None when this side does not know it."""
    idx = _type_index(type_id)
    return schema.MESSAGE_NAMES[idx] if idx >= 0 else None


def decode_payload(type_id, payload, limits=DEFAULT_LIMITS):
    """Decode a frame's payload: (message name, fields); UnknownMessageType if unknown.

    A Compressed message is unwrapped: the result is the message inside it.
    """
    idx = _type_index(type_id)
    if idx < 0:
        raise UnknownMessageType(type_id)
    fields = decode_index(idx, payload, limits)
    if type_id != COMPRESSED:
        return schema.MESSAGE_NAMES[idx], fields
    from .compressed import unwrap
    return unwrap(fields, limits)


def encode_frame(type_name, fields):
    """Encode a message and wrap it in a stream frame."""
    return frame(message_type(type_name), encode(type_name, fields))


def encode_serial_frame(type_name, fields):
    """Encode a message and wrap it in a serial (COBS + CRC) frame."""
    from .serial import serial_frame
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


def forget_caches():
    """Empty the codec's caches (message indexes, decoded defaults): RAM for a device that
    needs it more; they fill again as messages come."""
    from . import codec, decoder
    codec._index_cache.clear()
    decoder._templates.clear()


# What only some sides need is loaded when first used: serial framing (protocol.serial)
# and compression (protocol.compressed). A board on TCP never spends RAM on them.
_LAZY = {"SerialDecoder": "serial", "serial_frame": "serial", "cobs_encode": "serial",
         "cobs_decode": "serial", "compress": "compressed", "inflate": "compressed"}


def __getattr__(name):
    # MicroPython also asks here for a submodule not imported yet (`from . import enums`)
    try:
        module = __import__("protocol." + _LAZY.get(name, name), None, None, (name,))
    except ImportError:
        raise AttributeError(name)
    return module if name not in _LAZY else getattr(module, name)
