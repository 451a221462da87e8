# The codec's shared parts: field kinds, the schema tables, limits. encoder.py and
# decoder.py hold the two directions of this table-driven proto3 codec, which runs on
# MicroPython and CPython.
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
from . import schema

NAMES = schema.MESSAGE_NAMES
TABLE = schema.MESSAGE_TABLE
FIELDS = schema.FIELDS
FIELD_NAMES = schema.FIELD_NAMES
MAPS = schema.MAPS

# kinds (indexes of schema.KINDS)
INT32 = 0
INT64 = 1
UINT32 = 2
UINT64 = 3
SINT32 = 4
SINT64 = 5
BOOL = 6
ENUM = 7
FIXED32 = 8
FIXED64 = 9
SFIXED32 = 10
SFIXED64 = 11
FLOAT = 12
DOUBLE = 13
STRING = 14
BYTES = 15
MESSAGE = 16
VALUE = 17
# labels
IMPLICIT = 0
REPEATED = 2
MAP = 3

# wire type of each kind
WIRE = (0, 0, 0, 0, 0, 0, 0, 0, 5, 1, 5, 1, 5, 1, 2, 2, 2, 2)
STRUCT = {FIXED32: "<I", FIXED64: "<Q", SFIXED32: "<i", SFIXED64: "<q",
           FLOAT: "<f", DOUBLE: "<d"}
MASK64 = 0xFFFFFFFFFFFFFFFF
MASK32 = 0xFFFFFFFF
MISSING = object()


class Limits:
    """Bounds on what a peer may make us allocate; one per board profile."""

    def __init__(self, max_frame=65536, max_depth=32, max_string=None, max_items=4096,
                 max_window_bits=15):
        self.max_frame = max_frame
        self.max_depth = max_depth
        self.max_string = max_frame if max_string is None else max_string
        self.max_items = max_items
        # the inflate window a Compressed message may ask for: 2**bits bytes of RAM
        self.max_window_bits = max_window_bits


DEFAULT_LIMITS = Limits()

_index_cache = {}


def span(idx):
    """(first, stop) offsets of a message's fields in FIELDS."""
    start = TABLE[idx * 4 + 1] | (TABLE[idx * 4 + 2] << 8)
    return start * 6, (start + TABLE[idx * 4 + 3]) * 6


def message_index(type_name):
    """Index of a message in schema.MESSAGE_NAMES; ValueError for an unknown name."""
    idx = _index_cache.get(type_name)
    if idx is None:
        try:
            idx = NAMES.index(type_name)
        except ValueError:
            raise ValueError("unknown message type %r" % (type_name,))
        _index_cache[type_name] = idx
    return idx


def fields_of(idx):
    """The fields of a message as a list of (number, name, kind, label, sub, oneof)."""
    out = []
    start = TABLE[idx * 4 + 1] | (TABLE[idx * 4 + 2] << 8)
    for o in range(start * 6, (start + TABLE[idx * 4 + 3]) * 6, 6):
        sub = FIELDS[o + 3]
        if FIELDS[o + 2] == MAP:
            sub = MAPS[sub]
        elif sub == 255:
            sub = -1
        out.append((FIELDS[o], FIELD_NAMES[FIELDS[o + 5]], FIELDS[o + 1],
                    FIELDS[o + 2], sub, FIELDS[o + 4]))
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
