# Table-driven proto3 codec for MicroPython and CPython.
#
# Messages are plain dicts keyed by field name. Encoding writes canonical protobuf, byte
# for byte what Google's protobuf writes with deterministic=True: fields in number order,
# implicit-presence scalars left out when they hold their default, packed repeated
# numbers, map entries sorted by key with both key and value written. Decoding accepts any
# valid protobuf: unknown fields and fields of an unexpected wire type are skipped, the
# last value of a singular field (and of a oneof) wins, packed and unpacked repeated
# numbers are both read. Fields of type jotunheim.v1.Value are native Python values.
#
# Decoded dicts hold every implicit-presence field (its default when absent), [] and {}
# for repeated and map fields, and explicit-presence fields (messages, oneof members,
# `optional`) only when they were on the wire.
#
# Everything the peer controls is bounded by a Limits before it is allocated; any bad
# input raises ProtocolError and nothing else.
import struct

from . import schema
from ._compat import decode_utf8
from .errors import ProtocolError

_NAMES = schema.MESSAGE_NAMES
_TABLE = schema.MESSAGE_TABLE
_FIELDS = schema.FIELDS
_FIELD_NAMES = schema.FIELD_NAMES
_MAPS = schema.MAPS

# kinds (indexes of schema.KINDS)
_INT32 = 0
_INT64 = 1
_UINT32 = 2
_UINT64 = 3
_SINT32 = 4
_SINT64 = 5
_BOOL = 6
_ENUM = 7
_FIXED32 = 8
_FIXED64 = 9
_SFIXED32 = 10
_SFIXED64 = 11
_FLOAT = 12
_DOUBLE = 13
_STRING = 14
_BYTES = 15
_MESSAGE = 16
_VALUE = 17
# labels
_IMPLICIT = 0
_REPEATED = 2
_MAP = 3

# wire type of each kind
_WIRE = (0, 0, 0, 0, 0, 0, 0, 0, 5, 1, 5, 1, 5, 1, 2, 2, 2, 2)
_STRUCT = {_FIXED32: "<I", _FIXED64: "<Q", _SFIXED32: "<i", _SFIXED64: "<q",
           _FLOAT: "<f", _DOUBLE: "<d"}
_MASK64 = 0xFFFFFFFFFFFFFFFF
_MASK32 = 0xFFFFFFFF
_MISSING = object()


class Limits:
    """Bounds on what a peer may make us allocate; one per board profile."""

    def __init__(self, max_frame=65536, max_depth=32, max_string=None, max_items=4096):
        self.max_frame = max_frame
        self.max_depth = max_depth
        self.max_string = max_frame if max_string is None else max_string
        self.max_items = max_items


DEFAULT_LIMITS = Limits()

_index_cache = {}


def message_index(type_name):
    """Index of a message in schema.MESSAGE_NAMES; ValueError for an unknown name."""
    idx = _index_cache.get(type_name)
    if idx is None:
        try:
            idx = _NAMES.index(type_name)
        except ValueError:
            raise ValueError("unknown message type %r" % (type_name,))
        _index_cache[type_name] = idx
    return idx


def fields_of(idx):
    """The fields of a message as a list of (number, name, kind, label, sub, oneof)."""
    out = []
    start = _TABLE[idx * 4 + 1] | (_TABLE[idx * 4 + 2] << 8)
    for o in range(start * 6, (start + _TABLE[idx * 4 + 3]) * 6, 6):
        sub = _FIELDS[o + 3]
        if _FIELDS[o + 2] == _MAP:
            sub = _MAPS[sub]
        elif sub == 255:
            sub = -1
        out.append((_FIELDS[o], _FIELD_NAMES[_FIELDS[o + 5]], _FIELDS[o + 1],
                    _FIELDS[o + 2], sub, _FIELDS[o + 4]))
    return out


def enum_value(enum_index, value):
    """An enum number from a number or a value name."""
    if isinstance(value, int):
        return value
    from . import enums  # names are rarely needed on a device: load them lazily
    values = enums.ENUM_VALUES[enum_index]
    for i in range(0, len(values), 2):
        if values[i] == value:
            return values[i + 1]
    raise ValueError("%r is not a %s" % (value, enums.ENUM_NAMES[enum_index]))


# ------------------------------------------------------------------ encoding

def _put_varint(buf, value):
    while value > 0x7F:
        buf.append((value & 0x7F) | 0x80)
        value >>= 7
    buf.append(value)


def _varint_size(value):
    size = 1
    while value > 0x7F:
        value >>= 7
        size += 1
    return size


def _put_len(buf, tag, payload):
    _put_varint(buf, tag)
    _put_varint(buf, len(payload))
    buf.extend(payload)


def _check_int(value, lo, hi, name):
    # bools count as ints (MicroPython's isinstance(True, int) is False, CPython's True)
    if not isinstance(value, int) and value is not True and value is not False:
        raise TypeError("field %s: expected int, got %s" % (name, type(value).__name__))
    if value < lo or value > hi:
        raise ValueError("field %s: %d out of range" % (name, value))


def _scalar_bits(kind, value, sub, name):
    """The varint (wire type 0) representation of a scalar."""
    if kind == _BOOL:
        if not isinstance(value, int) and value is not True and value is not False:
            raise TypeError("field %s: expected bool" % name)
        return 1 if value else 0
    if kind == _ENUM:
        value = enum_value(sub, value)
        _check_int(value, -0x80000000, 0x7FFFFFFF, name)
        return value & _MASK64
    if kind == _INT32:
        _check_int(value, -0x80000000, 0x7FFFFFFF, name)
        return value & _MASK64
    if kind == _INT64:
        _check_int(value, -0x8000000000000000, 0x7FFFFFFFFFFFFFFF, name)
        return value & _MASK64
    if kind == _UINT32:
        _check_int(value, 0, _MASK32, name)
        return value
    if kind == _UINT64:
        _check_int(value, 0, _MASK64, name)
        return value
    if kind == _SINT32:
        _check_int(value, -0x80000000, 0x7FFFFFFF, name)
        return ((value << 1) ^ (value >> 31)) & _MASK32
    _check_int(value, -0x8000000000000000, 0x7FFFFFFFFFFFFFFF, name)
    return ((value << 1) ^ (value >> 63)) & _MASK64


def _fixed_bytes(kind, value, name):
    if kind == _FLOAT or kind == _DOUBLE:
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise TypeError("field %s: expected float" % name)
        return struct.pack(_STRUCT[kind], value)
    if kind == _FIXED32:
        _check_int(value, 0, _MASK32, name)
    elif kind == _FIXED64:
        _check_int(value, 0, _MASK64, name)
    elif kind == _SFIXED32:
        _check_int(value, -0x80000000, 0x7FFFFFFF, name)
    else:
        _check_int(value, -0x8000000000000000, 0x7FFFFFFFFFFFFFFF, name)
    return struct.pack(_STRUCT[kind], value)


def _is_default(kind, value, sub):
    if kind == _FLOAT or kind == _DOUBLE:
        # -0.0 is not the default: Google writes it (its bits are not zero)
        return value == 0 and struct.pack("<d", value) == b"\0\0\0\0\0\0\0\0"
    if kind == _ENUM and not isinstance(value, int):
        return enum_value(sub, value) == 0
    if kind == _STRING or kind == _BYTES:
        return len(value) == 0
    return not value


def _put_single(buf, number, kind, sub, value, name, depth):
    """Write one field value (not repeated) with its tag."""
    wire = _WIRE[kind]
    if wire == 0:
        _put_varint(buf, number << 3)
        if type(value) is int and 0 <= value < 0x80 and (kind < _SINT32 or kind == _ENUM):
            buf.append(value)  # the common case: a small number is its own varint
        else:
            _put_varint(buf, _scalar_bits(kind, value, sub, name))
    elif wire != 2:
        _put_varint(buf, (number << 3) | wire)
        buf.extend(_fixed_bytes(kind, value, name))
    elif kind == _STRING:
        if not isinstance(value, str):
            raise TypeError("field %s: expected str" % name)
        _put_len(buf, (number << 3) | 2, value.encode("utf-8"))
    elif kind == _BYTES:
        if not isinstance(value, (bytes, bytearray, memoryview)):
            raise TypeError("field %s: expected bytes" % name)
        _put_len(buf, (number << 3) | 2, value)
    elif kind == _MESSAGE:
        if not isinstance(value, dict):
            raise TypeError("field %s: expected dict" % name)
        _put_len(buf, (number << 3) | 2, _encode_message(sub, value, depth + 1))
    else:
        _put_len(buf, (number << 3) | 2, _encode_value(value, depth + 1))


def _encode_message(idx, fields, depth):
    if depth > DEFAULT_LIMITS.max_depth:
        raise ValueError("message nested deeper than %d" % DEFAULT_LIMITS.max_depth)
    buf = bytearray()
    oneofs = 0
    start = _TABLE[idx * 4 + 1] | (_TABLE[idx * 4 + 2] << 8)
    for o in range(start * 6, (start + _TABLE[idx * 4 + 3]) * 6, 6):
        name = _FIELD_NAMES[_FIELDS[o + 5]]
        value = fields.get(name, _MISSING)
        kind = _FIELDS[o + 1]
        if value is _MISSING or (value is None and kind != _VALUE):
            continue
        number = _FIELDS[o]
        label = _FIELDS[o + 2]
        sub = _FIELDS[o + 3]
        oneof = _FIELDS[o + 4]
        if oneof:
            bit = 1 << oneof
            if oneofs & bit:
                raise ValueError("%s: two members of one oneof are set" % _NAMES[idx])
            oneofs |= bit
        if label == _IMPLICIT:
            if not _is_default(kind, value, sub):
                _put_single(buf, number, kind, sub, value, name, depth)
        elif label == _REPEATED:
            if not isinstance(value, (list, tuple)):
                raise TypeError("field %s: expected list" % name)
            if value and _WIRE[kind] != 2:
                packed = bytearray()
                for item in value:
                    if _WIRE[kind] == 0:
                        _put_varint(packed, _scalar_bits(kind, item, sub, name))
                    else:
                        packed.extend(_fixed_bytes(kind, item, name))
                _put_len(buf, (number << 3) | 2, packed)
            else:
                for item in value:
                    _put_single(buf, number, kind, sub, item, name, depth)
        elif label == _MAP:
            if not isinstance(value, dict):
                raise TypeError("field %s: expected dict" % name)
            key_kind, value_kind, value_sub = _MAPS[sub]
            tag = (number << 3) | 2
            for key in sorted(value):
                if key_kind == _STRING and value_kind == _VALUE and isinstance(key, str):
                    # map<string, Value>, the shape of every argument list: no temporaries
                    kb = key.encode("utf-8")
                    vb = _encode_value(value[key], depth + 1)
                    _put_varint(buf, tag)
                    _put_varint(buf, _varint_size(len(kb)) + len(kb) + _varint_size(len(vb))
                                + len(vb) + 2)
                    buf.append(0x0A)
                    _put_varint(buf, len(kb))
                    buf.extend(kb)
                    buf.append(0x12)
                    _put_varint(buf, len(vb))
                    buf.extend(vb)
                    continue
                entry = bytearray()
                _put_single(entry, 1, key_kind, -1, key, name, depth)
                _put_single(entry, 2, value_kind, value_sub, value[key], name, depth + 1)
                _put_len(buf, (number << 3) | 2, entry)
        else:
            _put_single(buf, number, kind, sub, value, name, depth)
    return buf


def _encode_value(value, depth):
    """Encode a native value as a jotunheim.v1.Value message body."""
    if depth > DEFAULT_LIMITS.max_depth:
        raise ValueError("value nested deeper than %d" % DEFAULT_LIMITS.max_depth)
    if value is None:
        return b"\x08\x00"
    if value is True:
        return b"\x10\x01"
    if value is False:
        return b"\x10\x00"
    if type(value) is int and 0 <= value < 0x40:
        return bytes((0x18, value << 1))
    buf = bytearray()
    if isinstance(value, int):
        _check_int(value, -0x8000000000000000, 0x7FFFFFFFFFFFFFFF, "value")
        buf.append(0x18)
        _put_varint(buf, ((value << 1) ^ (value >> 63)) & _MASK64)
    elif isinstance(value, float):
        buf.append(0x21)
        buf.extend(struct.pack("<d", value))
    elif isinstance(value, str):
        _put_len(buf, 0x2A, value.encode("utf-8"))
    elif isinstance(value, (bytes, bytearray, memoryview)):
        _put_len(buf, 0x32, value)
    elif isinstance(value, (list, tuple)):
        inner = bytearray()
        for item in value:
            _put_len(inner, 0x0A, _encode_value(item, depth + 2))
        _put_len(buf, 0x3A, inner)
    elif isinstance(value, dict):
        inner = bytearray()
        for key in sorted(value):
            if not isinstance(key, str):
                raise TypeError("map keys must be str, got %s" % type(key).__name__)
            entry = bytearray()
            _put_len(entry, 0x0A, key.encode("utf-8"))
            _put_len(entry, 0x12, _encode_value(value[key], depth + 3))
            _put_len(inner, 0x0A, entry)
        _put_len(buf, 0x42, inner)
    else:
        raise TypeError("cannot encode %s as a Value" % type(value).__name__)
    return buf


def encode(type_name, fields):
    """Encode a message given as a dict of field values; returns bytes."""
    if not isinstance(fields, dict):
        raise TypeError("fields must be a dict")
    return bytes(_encode_message(message_index(type_name), fields, 0))


# ------------------------------------------------------------------ decoding

def _varint(data, pos, end, width):
    """Read a varint of at most `width` bytes; returns (value, new position)."""
    result = 0
    shift = 0
    limit = pos + width
    while True:
        if pos >= end:
            raise ProtocolError("truncated varint")
        if pos >= limit:
            raise ProtocolError("varint longer than %d bytes" % width)
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7


def _signed(value, bits):
    if value & (1 << (bits - 1)):
        return value - (1 << bits)
    return value


def _from_varint(kind, raw):
    if kind == _UINT64:
        return raw & _MASK64
    if kind == _UINT32:
        return raw & _MASK32
    if kind == _INT32 or kind == _ENUM:
        return _signed(raw & _MASK32, 32)
    if kind == _INT64:
        return _signed(raw & _MASK64, 64)
    if kind == _BOOL:
        return raw != 0
    if kind == _SINT32:
        raw &= _MASK32
    else:
        raw &= _MASK64
    return (raw >> 1) ^ -(raw & 1)


def _length(data, pos, end):
    if pos < end and data[pos] < 0x80:
        size = data[pos]
        pos += 1
    else:
        size, pos = _varint(data, pos, end, 5)
    if size > end - pos:
        raise ProtocolError("length %d runs past the end of the message" % size)
    return size, pos


def _skip(data, pos, end, wire):
    if wire == 0:
        return _varint(data, pos, end, 10)[1]
    if wire == 1:
        pos += 8
    elif wire == 5:
        pos += 4
    elif wire == 2:
        size, pos = _length(data, pos, end)
        pos += size
    else:
        raise ProtocolError("unsupported wire type %d" % wire)
    if pos > end:
        raise ProtocolError("truncated field")
    return pos


def _read_len_value(kind, sub, data, pos, size, depth, limits):
    """Decode a length-delimited value of the given kind from data[pos:pos+size]."""
    if kind == _STRING:
        if size > limits.max_string:
            raise ProtocolError("string of %d bytes exceeds %d" % (size, limits.max_string))
        return decode_utf8(data[pos:pos + size])
    if kind == _BYTES:
        if size > limits.max_string:
            raise ProtocolError("bytes of %d bytes exceeds %d" % (size, limits.max_string))
        return bytes(data[pos:pos + size])
    if kind == _MESSAGE:
        return _decode_message(sub, data, pos, pos + size, depth + 1, limits)
    return _decode_value(data, pos, pos + size, depth + 1, limits)


def _read_fixed(kind, data, pos, end):
    width = 4 if _WIRE[kind] == 5 else 8
    if pos + width > end:
        raise ProtocolError("truncated fixed-width field")
    return struct.unpack(_STRUCT[kind], bytes(data[pos:pos + width]))[0], pos + width


_templates = {}


def _defaults(idx):
    """A fresh dict of a message's defaults (built once per message type, then copied)."""
    template = _templates.get(idx)
    if template is None:
        template = _templates[idx] = _build_defaults(idx)
    out = dict(template[0])
    for name in template[1]:
        out[name] = []
    for name in template[2]:
        out[name] = {}
    return out


def _build_defaults(idx):
    out = {}
    lists = []
    maps = []
    start = _TABLE[idx * 4 + 1] | (_TABLE[idx * 4 + 2] << 8)
    for o in range(start * 6, (start + _TABLE[idx * 4 + 3]) * 6, 6):
        name = _FIELD_NAMES[_FIELDS[o + 5]]
        kind = _FIELDS[o + 1]
        label = _FIELDS[o + 2]
        if label == _IMPLICIT:
            if kind == _STRING:
                out[name] = ""
            elif kind == _BYTES:
                out[name] = b""
            elif kind == _FLOAT or kind == _DOUBLE:
                out[name] = 0.0
            elif kind == _BOOL:
                out[name] = False
            else:
                out[name] = 0
        elif label == _REPEATED:
            lists.append(name)
        elif label == _MAP:
            maps.append(name)
    return out, tuple(lists), tuple(maps)


def _count(container, limits):
    if len(container) >= limits.max_items:
        raise ProtocolError("more than %d items" % limits.max_items)


def _decode_message(idx, data, pos, end, depth, limits):
    if depth > limits.max_depth:
        raise ProtocolError("nested deeper than %d" % limits.max_depth)
    out = _defaults(idx)
    start = _TABLE[idx * 4 + 1] | (_TABLE[idx * 4 + 2] << 8)
    first = start * 6
    last = (start + _TABLE[idx * 4 + 3]) * 6
    begin = pos
    oneofs = 0
    while pos < end:
        at = pos
        tag = data[pos]
        if tag < 0x80:
            pos += 1
        else:
            tag, pos = _varint(data, pos, end, 5)
            if tag > _MASK32:
                raise ProtocolError("invalid tag %d" % tag)
        number = tag >> 3
        wire = tag & 7
        if number == 0:
            raise ProtocolError("invalid tag %d" % tag)
        # most messages number their fields 1, 2, 3...: try the direct slot first
        o = first + (number - 1) * 6
        if o >= last or _FIELDS[o] != number:
            o = first
            while o < last and _FIELDS[o] != number:
                o += 6
            if o == last:
                pos = _skip(data, pos, end, wire)
                continue
        name = _FIELD_NAMES[_FIELDS[o + 5]]
        kind = _FIELDS[o + 1]
        label = _FIELDS[o + 2]
        expected = _WIRE[kind]
        if label >= _REPEATED:
            if wire == 2 and (label == _MAP or expected != 2):
                pos = _decode_container(out[name], kind, label, _FIELDS[o + 3], data, pos, end,
                                        depth, limits)
                continue
            if label == _MAP or wire != expected:
                pos = _skip(data, pos, end, wire)
                continue
        elif wire != expected:
            pos = _skip(data, pos, end, wire)
            continue
        if expected == 0:
            if pos < end and data[pos] < 0x80:
                value = data[pos]
                pos += 1
                if kind == _SINT32 or kind == _SINT64:
                    value = (value >> 1) ^ -(value & 1)
                elif kind == _BOOL:
                    value = value != 0
            else:
                value, pos = _varint(data, pos, end, 10)
                value = _from_varint(kind, value)
        elif expected == 2:
            size, pos = _length(data, pos, end)
            if kind >= _MESSAGE and label != _REPEATED and name in out:
                # a singular message seen again merges with the earlier one, which in
                # protobuf is the same as decoding the bodies concatenated
                body = _earlier_bodies(data, begin, at, first, last, o) + bytes(
                    data[pos:pos + size])
                value = _read_len_value(kind, _FIELDS[o + 3], memoryview(body), 0, len(body),
                                        depth, limits)
            else:
                value = _read_len_value(kind, _FIELDS[o + 3], data, pos, size, depth, limits)
            pos += size
        else:
            value, pos = _read_fixed(kind, data, pos, end)
        if label == _REPEATED:
            _count(out[name], limits)
            out[name].append(value)
            continue
        oneof = _FIELDS[o + 4]
        if oneof:
            bit = 1 << oneof
            if oneofs & bit:
                _clear_oneof(out, first, last, oneof)
            oneofs |= bit
        out[name] = value
    return out


def _clear_oneof(out, first, last, oneof):
    for other in range(first, last, 6):
        if _FIELDS[other + 4] == oneof:
            name = _FIELD_NAMES[_FIELDS[other + 5]]
            if name in out:
                del out[name]


def _earlier_bodies(data, pos, end, first, last, o):
    """The bytes of earlier occurrences of field o in data[pos:end] that still count."""
    number = _FIELDS[o]
    oneof = _FIELDS[o + 4]
    body = b""
    while pos < end:
        tag, pos = _varint(data, pos, end, 5)
        if tag >> 3 == number and tag & 7 == 2:
            size, pos = _length(data, pos, end)
            body += bytes(data[pos:pos + size])
            pos += size
            continue
        if oneof:
            for other in range(first, last, 6):
                if _FIELDS[other] == tag >> 3 and _FIELDS[other + 4] == oneof:
                    body = b""  # a sibling in the oneof replaced it
        pos = _skip(data, pos, end, tag & 7)
    return body


def _decode_container(container, kind, label, sub, data, pos, end, depth, limits):
    """Decode one map entry or one packed run into container; returns the new position."""
    size, pos = _length(data, pos, end)
    stop = pos + size
    if label == _MAP:
        _count(container, limits)
        key, value = _decode_entry(_MAPS[sub], data, pos, stop, depth + 1, limits)
        container[key] = value
        return stop
    while pos < stop:
        _count(container, limits)
        if _WIRE[kind] == 0:
            raw, pos = _varint(data, pos, stop, 10)
            container.append(_from_varint(kind, raw))
        else:
            value, pos = _read_fixed(kind, data, pos, stop)
            container.append(value)
    return stop


def _decode_entry(sub, data, pos, end, depth, limits):
    key_kind, value_kind, value_sub = sub
    key = "" if key_kind == _STRING else 0
    value = _MISSING
    if depth > limits.max_depth:
        raise ProtocolError("nested deeper than %d" % limits.max_depth)
    while pos < end:
        tag = data[pos]
        if tag < 0x80:
            pos += 1
        else:
            tag, pos = _varint(data, pos, end, 5)
        number = tag >> 3
        wire = tag & 7
        if number == 0 or tag > _MASK32:
            raise ProtocolError("invalid tag %d" % tag)
        kind = key_kind if number == 1 else value_kind
        if number > 2 or wire != _WIRE[kind]:
            pos = _skip(data, pos, end, wire)
            continue
        if wire == 0:
            if pos < end and data[pos] < 0x80:
                raw = data[pos]
                pos += 1
            else:
                raw, pos = _varint(data, pos, end, 10)
            item = _from_varint(kind, raw)
        elif wire == 2:
            size, pos = _length(data, pos, end)
            item = _read_len_value(kind, value_sub, data, pos, size, depth, limits)
            pos += size
        else:
            item, pos = _read_fixed(kind, data, pos, end)
        if number == 1:
            key = item
        else:
            value = item
    if value is _MISSING:
        value = _default_of(value_kind, value_sub)
    return key, value


def _default_of(kind, sub):
    if kind == _MESSAGE:
        return _defaults(sub)
    if kind == _VALUE:
        return None
    if kind == _STRING:
        return ""
    if kind == _BYTES:
        return b""
    if kind == _FLOAT or kind == _DOUBLE:
        return 0.0
    if kind == _BOOL:
        return False
    return 0


def _decode_value(data, pos, end, depth, limits):
    """Decode a jotunheim.v1.Value body into a native value (an unset Value is None)."""
    if depth > limits.max_depth:
        raise ProtocolError("nested deeper than %d" % limits.max_depth)
    result = None
    last = 0
    body = None
    while pos < end:
        tag = data[pos]
        if tag < 0x80:
            pos += 1
        else:
            tag, pos = _varint(data, pos, end, 5)
        number = tag >> 3
        wire = tag & 7
        if number == 0 or tag > _MASK32:
            raise ProtocolError("invalid tag %d" % tag)
        if number > 8 or wire != (1 if number == 4 else 2 if number > 4 else 0):
            pos = _skip(data, pos, end, wire)
            continue
        if number >= 7:
            # a list or map seen again right after itself merges (protobuf oneof rules)
            size, pos = _length(data, pos, end)
            view = data
            start = pos
            pos += size
            if last == number:
                body = bytes(body) + bytes(data[start:pos])
                view = memoryview(body)
                start = 0
                size = len(body)
            else:
                body = data[start:pos]
            last = number
            if number == 7:
                result = _decode_list(view, start, start + size, depth + 1, limits)
            else:
                result = _decode_map(view, start, start + size, depth + 1, limits)
            continue
        last = number
        if number == 4:
            result, pos = _read_fixed(_DOUBLE, data, pos, end)
        elif number < 4:
            if pos < end and data[pos] < 0x80:
                raw = data[pos]
                pos += 1
            else:
                raw, pos = _varint(data, pos, end, 10)
            if number == 1:
                result = None
            elif number == 2:
                result = raw != 0
            else:
                raw &= _MASK64
                result = (raw >> 1) ^ -(raw & 1)
        else:
            size, pos = _length(data, pos, end)
            stop = pos + size
            if number == 5:
                result = _read_len_value(_STRING, 0, data, pos, size, depth, limits)
            else:
                result = _read_len_value(_BYTES, 0, data, pos, size, depth, limits)
            pos = stop
    return result


def _decode_list(data, pos, end, depth, limits):
    if depth > limits.max_depth:
        raise ProtocolError("nested deeper than %d" % limits.max_depth)
    out = []
    while pos < end:
        tag = data[pos]
        if tag < 0x80:
            pos += 1
        else:
            tag, pos = _varint(data, pos, end, 5)
        if tag >> 3 == 0 or tag > _MASK32:
            raise ProtocolError("invalid tag %d" % tag)
        if tag != 0x0A:
            pos = _skip(data, pos, end, tag & 7)
            continue
        size, pos = _length(data, pos, end)
        _count(out, limits)
        out.append(_decode_value(data, pos, pos + size, depth + 1, limits))
        pos += size
    return out


def _decode_map(data, pos, end, depth, limits):
    if depth > limits.max_depth:
        raise ProtocolError("nested deeper than %d" % limits.max_depth)
    out = {}
    sub = (_STRING, _VALUE, -1)
    while pos < end:
        tag = data[pos]
        if tag < 0x80:
            pos += 1
        else:
            tag, pos = _varint(data, pos, end, 5)
        if tag >> 3 == 0 or tag > _MASK32:
            raise ProtocolError("invalid tag %d" % tag)
        if tag != 0x0A:
            pos = _skip(data, pos, end, tag & 7)
            continue
        size, pos = _length(data, pos, end)
        _count(out, limits)
        key, value = _decode_entry(sub, data, pos, pos + size, depth + 1, limits)
        out[key] = value
        pos += size
    return out


def decode(type_name, data, limits=DEFAULT_LIMITS):
    """Decode bytes, bytearray or memoryview as a message; returns a dict."""
    idx = message_index(type_name)
    return decode_index(idx, data, limits)


def decode_index(idx, data, limits=DEFAULT_LIMITS):
    """Decode by schema index (the device's lean entry point)."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError("data must be bytes-like")
    if len(data) > limits.max_frame:
        raise ProtocolError("message of %d bytes exceeds %d" % (len(data), limits.max_frame))
    try:
        return _decode_message(idx, memoryview(data), 0, len(data), 0, limits)
    except ProtocolError:
        raise
    except (UnicodeError, ValueError, IndexError, KeyError, OverflowError) as e:
        raise ProtocolError("malformed message: %s" % (e,))
    except RuntimeError:  # recursion limit on MicroPython
        raise ProtocolError("message nested too deeply")
