"""Repeated singular messages merge as Google merges them, in linear time."""

import pytest

import protocol
from protocol import decoder
from protocol_support import google_module


@pytest.fixture(scope="module")
def pb2(tmp_path_factory):
    return google_module(str(tmp_path_factory.mktemp("google")))


def _same_as_google(pb2, type_name, data):
    google = getattr(pb2, type_name).FromString(data)
    ours = protocol.decode(type_name, data)
    assert protocol.encode(type_name, ours) == google.SerializeToString(deterministic=True)
    return ours


def test_repeated_message_field_merges(pb2):
    first = protocol.encode("Capabilities", {"device": {"id": "a", "name": "n"}})
    second = protocol.encode("Capabilities", {"device": {"id": "b", "board": "esp32"}})
    ours = _same_as_google(pb2, "Capabilities", first + second)
    assert ours["device"]["id"] == "b" and ours["device"]["name"] == "n"
    assert ours["device"]["board"] == "esp32"


def test_repeated_value_lists_concatenate(pb2):
    one = protocol.encode("ToolResult", {"value": [1, 2]})
    two = protocol.encode("ToolResult", {"value": [3]})
    assert _same_as_google(pb2, "ToolResult", one + two)["value"] == [1, 2, 3]
    other = protocol.encode("ToolResult", {"value": "x"})
    assert _same_as_google(pb2, "ToolResult", one + other + two)["value"] == [3]


def test_map_entry_with_repeated_value_merges(pb2):
    inner = [protocol.encode("ListValue", {"values": [v]}) for v in (1, 2)]
    values = [b"\x3a" + bytes([len(i)]) + i for i in inner]  # Value{list_value}
    entry = b"\x0a\x01a" + b"".join(b"\x12" + bytes([len(v)]) + v for v in values)
    data = b"\x22" + bytes([len(entry)]) + entry  # ToolCall.args
    assert _same_as_google(pb2, "ToolCall", data)["args"] == {"a": [1, 2]}


def test_oneof_member_replaced_then_repeated(pb2):
    call = protocol.encode("ToolCall", {"tool_name": "x"}) + \
        protocol.encode("ToolCall", {"tool_id": 4}) + protocol.encode("ToolCall", {"tool_name": "y"})
    ours = _same_as_google(pb2, "ToolCall", call)
    assert ours["tool_name"] == "y" and "tool_id" not in ours


def test_bool_truncated_to_64_bits_like_google(pb2):
    two_to_64 = b"\x80" * 9 + b"\x02"  # a 10-byte varint whose low 64 bits are zero
    ours = _same_as_google(pb2, "Hello", b"\x48" + two_to_64)  # auth_required
    assert ours["auth_required"] is False
    value = b"\x10" + two_to_64  # Value.bool_value
    assert protocol.decode("ToolResult", b"\x1a" + bytes([len(value)]) + value)["value"] is False


def test_hostile_repetition_is_decoded_once(monkeypatch):
    """Each repeat used to re-decode everything before it (quadratic); now each body once."""
    calls = []
    real = decoder._decode_message

    def counting(*args):
        calls.append(1)
        return real(*args)

    monkeypatch.setattr(decoder, "_decode_message", counting)
    device = protocol.encode("Capabilities", {"device": {"id": "x"}})
    fields = protocol.decode("Capabilities", device * 4000, protocol.Limits(max_frame=1 << 20))
    assert fields["device"]["id"] == "x"
    assert len(calls) == 2  # the document, then the merged device once
    value = b"\x1a\x04\x3a\x02\x0a\x00" * 400  # ToolResult.value list, repeated
    assert protocol.decode("ToolResult", value)["value"] == [None] * 400


def test_anything_encodable_decodes_with_default_limits():
    deep = {"k": 1}
    depth = 0
    while True:
        try:
            data = protocol.encode("ToolCall", {"args": {"a": deep}})
        except ValueError:
            break
        protocol.decode("ToolCall", data)  # never refused by the decoder's own limit
        deep = [{"k": deep}]
        depth += 1
    assert depth > 3
