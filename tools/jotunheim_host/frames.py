# Captured frames, read by a second implementation of the frame layer.
#
# The two frame formats of protocol/framing.py are declared here again, with construct, so
# that `jotunheim dump` does not rely on the code it is used to debug:
#     stream: 0x4A | varint length (<= 5 bytes) | varint type (<= 2 bytes, not 0) | payload
#     serial: 0x00 | COBS(varint type | payload | CRC-32 LE of type+payload) | 0x00
# A capture is parsed whole. Every frame found comes back with its offset; a problem comes
# back as (offset, reason) instead of being raised. A stream capture ends at its first
# problem (a stream cannot resynchronise); a serial capture goes on at the next 0x00, as a
# serial line does.
#
# The second half turns a frame into something to show a person: a tree with enum values
# named (JSON-ready, bytes as hex) or indented text.
import binascii
import io
import json
from collections import namedtuple

from construct import (Bytes, Checksum, ChecksumError, Const, ConstError, Construct,
                       ConstructError, GreedyBytes, Int8ub, Int32ul, RestreamData,
                       StreamError, Struct, Tell, VarInt, this)

import protocol
from .schemagen import KINDS

PREAMBLE = 0x4A
MAX_FRAME = 65536
LENGTH_WIDTH = 5
TYPE_WIDTH = 2

Frame = namedtuple("Frame", "offset size type_id payload")
Capture = namedtuple("Capture", "frames errors")


class FrameRuleError(ConstructError):
    """A frame broke one of the limits the format sets."""

    def __init__(self, reason, path=None):
        ConstructError.__init__(self, reason, path=path)
        self.reason = reason


class Guard(Construct):
    """Zero-width rule: parsing fails with `reason(context)` unless `test(context)` holds."""

    def __init__(self, test, reason):
        Construct.__init__(self)
        self.test = test
        self.reason = reason
        self.flagbuildnone = True

    def _parse(self, stream, context, path):
        if not self.test(context):
            raise FrameRuleError(self.reason(context), path=path)

    def _build(self, obj, stream, context, path):
        self._parse(stream, context, path)

    def _sizeof(self, context, path):
        return 0


def _max_frame(context):
    return context._params.get("max_frame", MAX_FRAME)


STREAM_FRAME = Struct(
    "offset" / Tell,
    "preamble" / Const(PREAMBLE, Int8ub),
    "length" / VarInt,
    "type_at" / Tell,
    Guard(lambda c: c.type_at - c.offset - 1 <= LENGTH_WIDTH,
          lambda c: "length varint longer than %d bytes" % LENGTH_WIDTH),
    Guard(lambda c: c.length <= _max_frame(c),
          lambda c: "frame of %d bytes exceeds %d" % (c.length, _max_frame(c))),
    "type" / VarInt,
    "payload_at" / Tell,
    Guard(lambda c: c.payload_at - c.type_at <= TYPE_WIDTH,
          lambda c: "type varint longer than %d bytes" % TYPE_WIDTH),
    Guard(lambda c: c.type != 0, lambda c: "frame with message type 0"),
    "payload" / Bytes(this.length),
)

SERIAL_MESSAGE = Struct(
    "type" / VarInt,
    "payload_at" / Tell,
    Guard(lambda c: c.payload_at <= TYPE_WIDTH,
          lambda c: "type varint longer than %d bytes" % TYPE_WIDTH),
    Guard(lambda c: c.type != 0, lambda c: "frame with message type 0"),
    "payload" / GreedyBytes,
    Guard(lambda c: len(c.payload) <= _max_frame(c),
          lambda c: "frame of %d bytes exceeds %d" % (len(c.payload), _max_frame(c))),
)

# What COBS unwraps: the CRC is checked before the type, so line noise reads as noise.
SERIAL_BODY = Struct(
    Guard(lambda c: c._params.size >= 5, lambda c: "frame too short"),
    "checked" / Bytes(lambda c: c._params.size - 4),
    "crc" / Checksum(Int32ul, lambda data: binascii.crc32(data), this.checked),
    "message" / RestreamData(this.checked, SERIAL_MESSAGE),
)


def _reason(error, data, offset):
    if isinstance(error, FrameRuleError):
        return error.reason
    if isinstance(error, ConstError):
        return "bad preamble 0x%02x (expected 0x%02x)" % (data[offset], PREAMBLE)
    if isinstance(error, ChecksumError):
        return "CRC mismatch"
    return "malformed frame"


def split_stream(data, max_frame=MAX_FRAME):
    """Whole stream frames at the start of data: (frames, bytes used, error or None).

    A frame cut off by the end of data is not an error: it is left unused.
    """
    stream = io.BytesIO(data)
    frames = []
    offset = 0
    while offset < len(data):
        try:
            got = STREAM_FRAME.parse_stream(stream, max_frame=max_frame)
        except StreamError:
            return frames, offset, None
        except ConstructError as e:
            return frames, offset, (offset, _reason(e, data, offset))
        end = stream.tell()
        frames.append(Frame(offset, end - offset, got.type, got.payload))
        offset = end
    return frames, offset, None


def parse_stream_capture(data, max_frame=MAX_FRAME):
    """Stream frames in a capture: a Capture; parsing stops at the first error."""
    frames, used, error = split_stream(data, max_frame)
    if error is None and used < len(data):
        error = (used, "capture ends inside a frame (%d bytes left)" % (len(data) - used))
    return Capture(frames, [error] if error else [])


def cobs_decode(block):
    """Undo COBS on a block that holds no zero byte; ValueError if it is not COBS."""
    out = bytearray()
    i = 0
    while i < len(block):
        code = block[i]
        if i + code > len(block):
            raise ValueError("bad COBS block")
        out += block[i + 1:i + code]
        i += code
        if code < 0xFF and i < len(block):
            out.append(0)
    return bytes(out)


def _serial_frame(data, start, end, max_frame):
    """(Frame, None) or (None, reason) for the COBS block data[start:end]."""
    offset = start - 1 if start else 0
    try:
        body = cobs_decode(data[start:end])
        got = SERIAL_BODY.parse(body, size=len(body), max_frame=max_frame)
    except ValueError as e:
        return None, str(e)
    except ConstructError as e:
        return None, _reason(e, data, offset)
    message = got.message
    return Frame(offset, end + 1 - offset, message.type, message.payload), None


def parse_serial_capture(data, max_frame=MAX_FRAME):
    """Serial frames in a capture: a Capture; a bad frame is reported and skipped."""
    frames, errors = [], []
    start = 0
    while start < len(data):
        end = data.find(b"\x00", start)
        if end < 0:
            errors.append((start, "capture ends inside a frame (no closing 0x00)"))
            break
        if end > start:
            frame, reason = _serial_frame(data, start, end, max_frame)
            if frame is None:
                errors.append((start - 1 if start else 0, reason))
            else:
                frames.append(frame)
        start = end + 1
    return Capture(frames, errors)


def parse_capture(data, serial=False, max_frame=MAX_FRAME):
    """Frames in a stream or serial capture, and where parsing failed."""
    if serial:
        return parse_serial_capture(bytes(data), max_frame)
    return parse_stream_capture(bytes(data), max_frame)


# ------------------------------------------------------------------ showing frames

_ENUM = KINDS.index("enum")
_MESSAGE = KINDS.index("message")
_IMPLICIT, _REPEATED, _MAP = 0, 2, 3


class EnumValue:
    """An enum number and its name (None when the schema does not know the number)."""

    __slots__ = ("number", "name")

    def __init__(self, enum_index, number):
        self.number = number
        self.name = protocol.enum_name(enum_index, number)


def _annotate_value(kind, sub, value, skip_defaults):
    if kind == _ENUM:
        return EnumValue(sub, value)
    if kind == _MESSAGE:
        return _annotate(sub, value, skip_defaults)
    return value


def _is_default(value):
    return value in (0, "", b"", False, [], {})


def _annotate(idx, fields, skip_defaults):
    out = {}
    for number, name, kind, label, sub, oneof in protocol.fields_of(idx):
        if name not in fields:
            continue
        value = fields[name]
        if skip_defaults and label in (_IMPLICIT, _REPEATED, _MAP) and _is_default(value):
            continue
        if label == _MAP:
            key_kind, value_kind, value_sub = sub
            out[name] = {key: _annotate_value(value_kind, value_sub, item, skip_defaults)
                         for key, item in value.items()}
        elif label == _REPEATED:
            out[name] = [_annotate_value(kind, sub, item, skip_defaults) for item in value]
        else:
            out[name] = _annotate_value(kind, sub, value, skip_defaults)
    return out


def annotate(type_name, fields, skip_defaults=False):
    """Decoded fields in schema order with enum values named; defaults left out if asked."""
    return _annotate(protocol.message_index(type_name), fields, skip_defaults)


def describe(type_id, payload, skip_defaults=False):
    """What a frame holds: type, name, length and fields; raw payload when not decoded.

    An unknown type has name None; a payload that does not decode has an "error".
    """
    name = protocol.message_name(type_id)
    out = {"type": type_id, "name": name, "length": len(payload)}
    if name is None:
        out["raw"] = payload
        return out
    try:
        out["fields"] = annotate(name, protocol.decode(name, payload), skip_defaults)
    except protocol.ProtocolError as e:
        out["error"] = "malformed %s payload: %s" % (name, e)
        out["raw"] = payload
    return out


def _json_default(value):
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    if isinstance(value, EnumValue):
        return value.number if value.name is None else value.name
    raise TypeError("cannot show %s as JSON" % type(value).__name__)


def to_json(tree, indent=2):
    """JSON text for a tree from describe(); bytes as hex, enum values by name."""
    return json.dumps(tree, indent=indent, default=_json_default, ensure_ascii=False)


def scalar_text(value):
    """One value as text: strings quoted, bytes as hex, enums as NAME (number)."""
    if isinstance(value, EnumValue):
        if value.name is None:
            return "%d (not in the schema)" % value.number
        return "%s (%d)" % (value.name, value.number)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "<%d bytes %s>" % (len(value), bytes(value).hex())
    return json.dumps(value, ensure_ascii=False)


def _is_tree(value):
    return isinstance(value, (dict, list))


def _value_lines(label, value, indent):
    if _is_tree(value) and not value:
        return ["%s %s" % (label, "{}" if isinstance(value, dict) else "[]")]
    if isinstance(value, list) and not any(_is_tree(item) for item in value):
        return ["%s [%s]" % (label, ", ".join(scalar_text(item) for item in value))]
    if _is_tree(value):
        return [label] + [indent + line for line in text_lines(value, indent)]
    return ["%s %s" % (label, scalar_text(value))]


def text_lines(tree, indent="  "):
    """Indented text lines for a dict or list from annotate()."""
    if isinstance(tree, dict):
        lines = []
        for key, value in tree.items():
            lines.extend(_value_lines("%s:" % (key,), value, indent))
        return lines
    lines = []
    for item in tree:
        if isinstance(item, dict) and item:
            inner = text_lines(item, indent)
            lines.append("- " + inner[0])
            lines.extend("  " + line for line in inner[1:])
        else:
            lines.extend(_value_lines("-", item, indent))
    return lines
