# The encoder: a dict of field values to canonical protobuf.
#
# Fields go out in number order; implicit-presence scalars holding their default are left
# out (-0.0 is not a default); repeated numbers are packed; map entries are sorted by key
# and carry both key and value. That is byte for byte what Google's protobuf writes with
# deterministic serialization. Misuse (a wrong type, an out-of-range number, two members
# of a oneof) raises TypeError or ValueError, never ProtocolError.
import struct

from ._compat import const
from .codec import (DEFAULT_LIMITS, FIELD_NAMES, FIELDS, MAPS, MASK32, MASK64, MISSING,
                    NAMES, STRUCT, WIRE, enum_value, message_index, span)

# codec's kinds and labels as constants the compiler writes into the code: a global
# looked up at each use would cost time and a slot of RAM (tests/test_protocol_codec.py
# checks that they agree with codec's).
_INT32 = const(0)
_INT64 = const(1)
_UINT32 = const(2)
_UINT64 = const(3)
_SINT32 = const(4)
_BOOL = const(6)
_ENUM = const(7)
_FIXED32 = const(8)
_FIXED64 = const(9)
_SFIXED32 = const(10)
_FLOAT = const(12)
_DOUBLE = const(13)
_STRING = const(14)
_BYTES = const(15)
_MESSAGE = const(16)
_VALUE = const(17)
_IMPLICIT = const(0)
_REPEATED = const(2)
_MAP = const(3)


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
        return value & MASK64
    if kind == _INT32:
        _check_int(value, -0x80000000, 0x7FFFFFFF, name)
        return value & MASK64
    if kind == _INT64:
        _check_int(value, -0x8000000000000000, 0x7FFFFFFFFFFFFFFF, name)
        return value & MASK64
    if kind == _UINT32:
        _check_int(value, 0, MASK32, name)
        return value
    if kind == _UINT64:
        _check_int(value, 0, MASK64, name)
        return value
    if kind == _SINT32:
        _check_int(value, -0x80000000, 0x7FFFFFFF, name)
        return ((value << 1) ^ (value >> 31)) & MASK32
    _check_int(value, -0x8000000000000000, 0x7FFFFFFFFFFFFFFF, name)
    return ((value << 1) ^ (value >> 63)) & MASK64


def _fixed_bytes(kind, value, name):
    if kind == _FLOAT or kind == _DOUBLE:
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise TypeError("field %s: expected float" % name)
        return struct.pack(STRUCT[kind], value)
    if kind == _FIXED32:
        _check_int(value, 0, MASK32, name)
    elif kind == _FIXED64:
        _check_int(value, 0, MASK64, name)
    elif kind == _SFIXED32:
        _check_int(value, -0x80000000, 0x7FFFFFFF, name)
    else:
        _check_int(value, -0x8000000000000000, 0x7FFFFFFFFFFFFFFF, name)
    return struct.pack(STRUCT[kind], value)


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
    wire = WIRE[kind]
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
    first, stop = span(idx)
    for o in range(first, stop, 6):
        name = FIELD_NAMES[FIELDS[o + 5]]
        value = fields.get(name, MISSING)
        kind = FIELDS[o + 1]
        if value is MISSING or (value is None and kind != _VALUE):
            continue
        number = FIELDS[o]
        label = FIELDS[o + 2]
        sub = FIELDS[o + 3]
        oneof = FIELDS[o + 4]
        if oneof:
            bit = 1 << oneof
            if oneofs & bit:
                raise ValueError("%s: two members of one oneof are set" % NAMES[idx])
            oneofs |= bit
        if label == _IMPLICIT:
            if not _is_default(kind, value, sub):
                _put_single(buf, number, kind, sub, value, name, depth)
        elif label == _REPEATED:
            if not isinstance(value, (list, tuple)):
                raise TypeError("field %s: expected list" % name)
            if value and WIRE[kind] != 2:
                packed = bytearray()
                for item in value:
                    if WIRE[kind] == 0:
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
            key_kind, value_kind, value_sub = MAPS[sub]
            tag = (number << 3) | 2
            for key in sorted(value):
                if key_kind == _STRING and value_kind == _VALUE and isinstance(key, str):
                    # map<string, Value>, the shape of every argument list: no temporaries
                    kb = key.encode("utf-8")
                    vb = _encode_value(value[key], depth + 2)  # as _put_single's would be
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
        _put_varint(buf, ((value << 1) ^ (value >> 63)) & MASK64)
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
