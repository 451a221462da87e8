# The decoder: any valid protobuf, canonical or not, to a dict.
#
# Unknown fields, and known fields on an unexpected wire type, are skipped; the last
# value of a singular field (and of a oneof) wins; packed and unpacked repeated numbers
# are both read. A singular message seen more than once merges with its earlier
# occurrences, which protobuf defines as decoding their bodies concatenated: such fields
# are decoded once, at the end of their message, so hostile repetition costs linear time.
# Decoded dicts hold every implicit-presence field (its default when absent), [] and {}
# for repeated and map fields, and explicit-presence fields only when they were present.
#
# Everything the peer controls is bounded by a Limits before it is allocated; any bad
# input raises ProtocolError and nothing else.
#
# The one-byte fast paths for tags, varints and lengths are written out in each loop on
# purpose: on MicroPython a function call costs more than the rest of the loop body.
import struct

from ._compat import const, decode_utf8
from .codec import (DEFAULT_LIMITS, FIELD_NAMES, FIELDS, MAPS, MASK32, MASK64, MISSING,
                    STRUCT, TABLE, WIRE, message_index, span)
from .errors import ProtocolError

# codec's kinds and labels as constants the compiler writes into the code: a global
# looked up at each use would cost time and a slot of RAM (tests/test_protocol_codec.py
# checks that they agree with codec's).
_INT32 = const(0)
_INT64 = const(1)
_UINT32 = const(2)
_UINT64 = const(3)
_SINT32 = const(4)
_SINT64 = const(5)
_BOOL = const(6)
_ENUM = const(7)
_FLOAT = const(12)
_DOUBLE = const(13)
_STRING = const(14)
_BYTES = const(15)
_MESSAGE = const(16)
_VALUE = const(17)
_IMPLICIT = const(0)
_REPEATED = const(2)
_MAP = const(3)


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
        return raw & MASK64
    if kind == _UINT32:
        return raw & MASK32
    if kind == _INT32 or kind == _ENUM:
        return _signed(raw & MASK32, 32)
    if kind == _INT64:
        return _signed(raw & MASK64, 64)
    if kind == _BOOL:
        return raw & MASK64 != 0  # Google truncates to 64 bits first
    if kind == _SINT32:
        raw &= MASK32
    else:
        raw &= MASK64
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
    width = 4 if WIRE[kind] == 5 else 8
    if pos + width > end:
        raise ProtocolError("truncated fixed-width field")
    return struct.unpack(STRUCT[kind], bytes(data[pos:pos + width]))[0], pos + width


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
    first, stop = span(idx)
    for o in range(first, stop, 6):
        name = FIELD_NAMES[FIELDS[o + 5]]
        kind = FIELDS[o + 1]
        label = FIELDS[o + 2]
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
    fields = FIELDS  # locals: a global is a dictionary lookup at each use on MicroPython
    names = FIELD_NAMES
    wire_of = WIRE
    out = _defaults(idx)
    first = (TABLE[idx * 4 + 1] | (TABLE[idx * 4 + 2] << 8)) * 6  # span(idx), without its tuple
    last = first + TABLE[idx * 4 + 3] * 6
    oneofs = 0
    deferred = None  # singular message fields: field offset -> [pos, size, pos, size...]
    while pos < end:
        tag = data[pos]
        if tag < 0x80:
            pos += 1
        else:
            tag, pos = _varint(data, pos, end, 5)
            if tag > MASK32:
                raise ProtocolError("invalid tag %d" % tag)
        number = tag >> 3
        wire = tag & 7
        if number == 0:
            raise ProtocolError("invalid tag %d" % tag)
        # most messages number their fields 1, 2, 3...: try the direct slot first
        o = first + (number - 1) * 6
        if o >= last or fields[o] != number:
            o = first
            while o < last and fields[o] != number:
                o += 6
            if o == last:
                pos = _skip(data, pos, end, wire)
                continue
        name = names[fields[o + 5]]
        kind = fields[o + 1]
        label = fields[o + 2]
        expected = wire_of[kind]
        if label >= _REPEATED:
            if wire == 2 and label == _MAP:  # one entry: every argument of a call is one
                if pos < end and data[pos] < 0x80:
                    size = data[pos]
                    pos += 1
                    if size > end - pos:
                        raise ProtocolError("length %d runs past the end of the message" % size)
                else:
                    size, pos = _length(data, pos, end)
                container = out[name]
                _count(container, limits)
                key, value = _decode_entry(MAPS[fields[o + 3]], data, pos, pos + size,
                                           depth + 1, limits)
                container[key] = value
                pos += size
                continue
            if wire == 2 and expected != 2:
                pos = _decode_container(out[name], kind, data, pos, end, limits)
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
            if kind >= _MESSAGE and label != _REPEATED:
                if deferred is None:
                    deferred = {}
                spans = deferred.get(o)
                if spans is None or fields[o + 4] and oneofs & (1 << fields[o + 4]) and \
                        name not in out:
                    _set_oneof(out, deferred, first, last, fields[o + 4], oneofs)
                    deferred[o] = [pos, size]
                else:
                    spans += (pos, size)
                out[name] = None  # a placeholder until the end of the message
                if fields[o + 4]:
                    oneofs |= 1 << fields[o + 4]
                pos += size
                continue
            value = _read_len_value(kind, fields[o + 3], data, pos, size, depth, limits)
            pos += size
        else:
            value, pos = _read_fixed(kind, data, pos, end)
        if label == _REPEATED:
            _count(out[name], limits)
            out[name].append(value)
            continue
        oneof = fields[o + 4]
        if oneof:
            _set_oneof(out, deferred, first, last, oneof, oneofs)
            oneofs |= 1 << oneof
        out[name] = value
    if deferred is not None:
        for o, spans in deferred.items():
            view, start, stop = _gather(data, spans)
            out[names[fields[o + 5]]] = _read_len_value(
                fields[o + 1], fields[o + 3], view, start, stop - start, depth, limits)
    return out


def _set_oneof(out, deferred, first, last, oneof, oneofs):
    """Forget the members of a oneof before one of them is set again."""
    if not oneof or not oneofs & (1 << oneof):
        return
    for other in range(first, last, 6):
        if FIELDS[other + 4] == oneof:
            name = FIELD_NAMES[FIELDS[other + 5]]
            if name in out:
                del out[name]
            if deferred is not None and other in deferred:
                del deferred[other]


def _gather(data, spans):
    """(view, start, stop) of the bodies at `spans`, concatenated when there are several."""
    if len(spans) == 2:
        return data, spans[0], spans[0] + spans[1]
    body = bytearray()
    for i in range(0, len(spans), 2):
        body.extend(data[spans[i]:spans[i] + spans[i + 1]])
    return memoryview(body), 0, len(body)


def _decode_container(container, kind, data, pos, end, limits):
    """Decode one packed run of numbers into container; returns the new position."""
    size, pos = _length(data, pos, end)
    stop = pos + size
    while pos < stop:
        _count(container, limits)
        if WIRE[kind] == 0:
            raw, pos = _varint(data, pos, stop, 10)
            container.append(_from_varint(kind, raw))
        else:
            value, pos = _read_fixed(kind, data, pos, stop)
            container.append(value)
    return stop


def _decode_entry(sub, data, pos, end, depth, limits):
    key_kind, value_kind, value_sub = sub
    key = "" if key_kind == _STRING else 0
    value = MISSING
    first = first_size = -1  # a message value's body; spans only when it comes again
    spans = None
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
        if number == 0 or tag > MASK32:
            raise ProtocolError("invalid tag %d" % tag)
        kind = key_kind if number == 1 else value_kind
        if number > 2 or wire != WIRE[kind]:
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
            if pos < end and data[pos] < 0x80:
                size = data[pos]
                pos += 1
                if size > end - pos:
                    raise ProtocolError("length %d runs past the end of the message" % size)
            else:
                size, pos = _length(data, pos, end)
            if number == 2 and kind >= _MESSAGE:
                # a message value seen again merges: decode once, at the end (the usual
                # single body needs no list: this runs for every argument of a call)
                if first < 0:
                    first, first_size = pos, size
                elif spans is None:
                    spans = [first, first_size, pos, size]
                else:
                    spans += (pos, size)
                pos += size
                continue
            item = _read_len_value(kind, value_sub, data, pos, size, depth, limits)
            pos += size
        else:
            item, pos = _read_fixed(kind, data, pos, end)
        if number == 1:
            key = item
        else:
            value = item
    if spans is not None:
        view, start, stop = _gather(data, spans)
        value = _read_len_value(value_kind, value_sub, view, start, stop - start, depth, limits)
    elif first >= 0 and value_kind == _VALUE:
        value = _decode_value(data, first, first + first_size, depth + 1, limits)
    elif first >= 0:
        value = _read_len_value(value_kind, value_sub, data, first, first_size, depth, limits)
    elif value is MISSING:
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
    spans = None  # a list or map body, decoded at the end (repeats of it merge)
    while pos < end:
        tag = data[pos]
        if tag < 0x80:
            pos += 1
        else:
            tag, pos = _varint(data, pos, end, 5)
        number = tag >> 3
        wire = tag & 7
        if number == 0 or tag > MASK32:
            raise ProtocolError("invalid tag %d" % tag)
        if number > 8 or wire != (1 if number == 4 else 2 if number > 4 else 0):
            pos = _skip(data, pos, end, wire)
            continue
        if number >= 7:
            size, pos = _length(data, pos, end)
            if last == number:
                spans += (pos, size)
            else:
                spans = [pos, size]
            last = number
            pos += size
            continue
        last = number
        spans = None
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
                result = raw & MASK64 != 0
            else:
                raw &= MASK64
                result = (raw >> 1) ^ -(raw & 1)
        else:
            size, pos = _length(data, pos, end)
            result = _read_len_value(_STRING if number == 5 else _BYTES, 0, data, pos, size,
                                     depth, limits)
            pos += size
    if spans is not None:
        view, start, stop = _gather(data, spans)
        if last == 7:
            return _decode_list(view, start, stop, depth + 1, limits)
        return _decode_map(view, start, stop, depth + 1, limits)
    return result


def _item(data, pos, end):
    """(position, size) of the next item (field 1) of a ListValue or MapValue, or (end, -1)."""
    while pos < end:
        tag = data[pos]
        if tag < 0x80:
            pos += 1
        else:
            tag, pos = _varint(data, pos, end, 5)
        if tag >> 3 == 0 or tag > MASK32:
            raise ProtocolError("invalid tag %d" % tag)
        if tag == 0x0A:
            size, pos = _length(data, pos, end)
            return pos, size
        pos = _skip(data, pos, end, tag & 7)
    return end, -1


def _decode_list(data, pos, end, depth, limits):
    if depth > limits.max_depth:
        raise ProtocolError("nested deeper than %d" % limits.max_depth)
    out = []
    pos, size = _item(data, pos, end)
    while size >= 0:
        _count(out, limits)
        out.append(_decode_value(data, pos, pos + size, depth + 1, limits))
        pos, size = _item(data, pos + size, end)
    return out


_STRING_VALUE = (_STRING, _VALUE, -1)


def _decode_map(data, pos, end, depth, limits):
    if depth > limits.max_depth:
        raise ProtocolError("nested deeper than %d" % limits.max_depth)
    out = {}
    pos, size = _item(data, pos, end)
    while size >= 0:
        _count(out, limits)
        key, value = _decode_entry(_STRING_VALUE, data, pos, pos + size, depth + 1, limits)
        out[key] = value
        pos, size = _item(data, pos + size, end)
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
