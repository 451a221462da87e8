"""Shared helpers for the protocol tests: golden vectors, Google protobuf, strategies."""

import json
import os
import struct

from hypothesis import strategies as st

import protocol
from protocol import codec, decoder

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
VECTORS = os.path.join(HERE, "vectors", "golden.json")
KINDS = ("int32", "int64", "uint32", "uint64", "sint32", "sint64", "bool", "enum",
         "fixed32", "fixed64", "sfixed32", "sfixed64", "float", "double",
         "string", "bytes", "message", "value")
IMPLICIT, EXPLICIT, REPEATED, MAP = 0, 1, 2, 3
TOP_LEVEL = [n for n in protocol.schema.MESSAGE_NAMES if protocol.schema.MESSAGE_TABLE[
    protocol.message_index(n) * 4]]
ALL_MESSAGES = list(protocol.schema.MESSAGE_NAMES)


def untag(x):
    """JSON vector form -> native (``{"$bytes": hex}`` becomes bytes)."""
    if isinstance(x, dict):
        if set(x) == {"$bytes"}:
            return bytes.fromhex(x["$bytes"])
        return {k: untag(v) for k, v in x.items()}
    if isinstance(x, list):
        return [untag(v) for v in x]
    return x


def load_vectors():
    """[(name, message type, fields, encoded bytes)] from tests/vectors/golden.json."""
    with open(VECTORS) as f:
        raw = json.load(f)
    return [(v["name"], v["type"], untag(v["fields"]), bytes.fromhex(v["hex"])) for v in raw]


# ------------------------------------------------------------------ Google protobuf

from google_pb import google_module, to_google  # noqa: E402,F401 - re-exported for the tests


def _fields(type_name):
    return codec.fields_of(protocol.message_index(type_name))


def _name_of(idx):
    return protocol.schema.MESSAGE_NAMES[idx]


def varint(n):
    """The protobuf varint of a non-negative integer."""
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


# ------------------------------------------------------------------ expected decode

def f32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]


def normalize(type_name, fields):
    """What decode(encode(fields)) must return: defaults filled, float32 rounded."""
    out = {}
    for number, name, kind, label, sub, oneof in _fields(type_name):
        k = KINDS[kind]
        present = name in fields and (fields[name] is not None or k == "value")
        if label == MAP:
            value = fields.get(name) or {}
            out[name] = {key: _norm_item(sub[1], sub[2], v) for key, v in value.items()}
        elif label == REPEATED:
            out[name] = [_norm_item(kind, sub, v) for v in (fields.get(name) or [])]
        elif present:
            out[name] = _norm_item(kind, sub, fields[name])
        elif label == IMPLICIT:
            out[name] = decoder._default_of(kind, sub)
    return out


def _norm_item(kind, sub, value):
    k = KINDS[kind]
    if k == "message":
        return normalize(_name_of(sub), value)
    if k == "float":
        return f32(value)
    if k == "enum" and isinstance(value, str):
        return codec.enum_value(sub, value)
    if k == "value":
        return _norm_value(value)
    if k == "double" and isinstance(value, int):
        return float(value)
    if k == "bytes":
        return bytes(value)
    return value


def _norm_value(value):
    if isinstance(value, (list, tuple)):
        return [_norm_value(v) for v in value]
    if isinstance(value, dict):
        return {k: _norm_value(v) for k, v in value.items()}
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    return value


# ------------------------------------------------------------------ strategies

_RANGES = {
    "int32": (-2**31, 2**31 - 1), "int64": (-2**63, 2**63 - 1), "uint32": (0, 2**32 - 1),
    "uint64": (0, 2**64 - 1), "sint32": (-2**31, 2**31 - 1), "sint64": (-2**63, 2**63 - 1),
    "fixed32": (0, 2**32 - 1), "fixed64": (0, 2**64 - 1), "sfixed32": (-2**31, 2**31 - 1),
    "sfixed64": (-2**63, 2**63 - 1), "enum": (-2**31, 2**31 - 1),
}

texts = st.text(max_size=12)
native_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**63, 2**63 - 1)
    | st.floats(allow_nan=False) | texts | st.binary(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=12)


def _scalar(kind, sub):
    k = KINDS[kind]
    if k in _RANGES:
        lo, hi = _RANGES[k]
        small = st.integers(-3, 300).filter(lambda v: lo <= v <= hi)
        return st.one_of(small, st.integers(lo, hi))
    if k == "bool":
        return st.booleans()
    if k == "float":
        return st.floats(width=32, allow_nan=False)
    if k == "double":
        return st.floats(allow_nan=False)
    if k == "string":
        return texts
    if k == "bytes":
        return st.binary(max_size=16)
    if k == "value":
        return native_values
    raise AssertionError(k)


def _item(kind, sub, depth):
    if KINDS[kind] == "message":
        return messages(_name_of(sub), depth + 1)
    return _scalar(kind, sub)


@st.composite
def _message(draw, type_name, depth):
    out = {}
    chosen_oneof = {}
    for number, name, kind, label, sub, oneof in _fields(type_name):
        if KINDS[kind] == "message" and label != MAP and depth >= 3:
            continue
        if oneof:
            pick = chosen_oneof.setdefault(oneof, draw(st.integers(0, 8)))
            if pick != number:
                continue
        elif not draw(st.booleans()):
            continue
        if label == MAP:
            out[name] = draw(st.dictionaries(_scalar(sub[0], -1), _item(sub[1], sub[2], depth),
                                             max_size=3))
        elif label == REPEATED:
            out[name] = draw(st.lists(_item(kind, sub, depth), max_size=3))
        else:
            out[name] = draw(_item(kind, sub, depth))
    return out


def messages(type_name, depth=0):
    """Hypothesis strategy for a message of the given type as a dict."""
    return _message(type_name, depth)
