"""Forward compatibility: newer peers add fields and messages; hello settles the version."""

import pytest

import protocol
from protocol import ProtocolError
from protocol_support import varint



# one field of every wire type a newer schema might add, numbered past ours
NEWER_FIELDS = (varint(100 << 3) + varint(123456)
                + varint((101 << 3) | 1) + bytes(8)
                + varint((102 << 3) | 2) + b"\x03new"
                + varint((103 << 3) | 5) + bytes(4)
                + varint((536870911 << 3) | 0) + b"\x01")  # the largest field number


@pytest.mark.parametrize("type_name,fields", [
    ("ToolCall", {"request_id": 5, "tool_id": 2, "positional": [1, "x"]}),
    ("Capabilities", {"request_id": 1, "device": {"id": "d1"}, "tools": [{"id": 1, "name": "t"}]}),
    ("Hello", {"version_min": 1, "version_max": 3, "device_id": "esp"}),
])
def test_unknown_fields_are_skipped(type_name, fields):
    plain = protocol.encode(type_name, fields)
    assert protocol.decode(type_name, NEWER_FIELDS + plain + NEWER_FIELDS) == \
        protocol.decode(type_name, plain)


def test_unknown_fields_inside_nested_messages_and_values():
    device = protocol.encode("Device", {"id": "d1"}) + NEWER_FIELDS
    caps = b"\x1a" + varint(len(device)) + device
    assert protocol.decode("Capabilities", caps)["device"]["id"] == "d1"
    value = b"\x10\x01" + NEWER_FIELDS  # Value{bool_value: true} from a newer peer
    result = b"\x1a" + varint(len(value)) + value
    assert protocol.decode("ToolResult", result)["value"] is True


def test_known_field_with_another_wire_type_is_skipped_like_google():
    # request_id sent as a string by a confused peer: treated as an unknown field
    data = b"\x0a\x02hi\x10\x03"
    assert protocol.decode("ToolCall", data) == protocol.decode("ToolCall", b"\x10\x03")


def test_unknown_message_type_can_be_answered_unimplemented():
    frames = protocol.FrameDecoder().feed(protocol.frame(777, b"\x08\x01"))
    type_id, payload = frames[0]
    with pytest.raises(protocol.UnknownMessageType) as info:
        protocol.decode_payload(type_id, payload)
    answer = protocol.encode_frame("Error", {"status": "UNIMPLEMENTED",
                                             "message": str(info.value), "message_type": type_id})
    (reply_type, reply), = protocol.FrameDecoder().feed(answer)
    name, fields = protocol.decode_payload(reply_type, reply)
    assert name == "Error" and fields["status"] == protocol.enums.UNIMPLEMENTED
    assert fields["message_type"] == 777


@pytest.mark.parametrize("a,b,version", [
    ((1, 1), (1, 1), 1),
    ((1, 3), (1, 2), 2),
    ((2, 5), (1, 3), 3),
    ((1, 1), (1, 9), 1),
])
def test_version_negotiation(a, b, version):
    local = {"version_min": a[0], "version_max": a[1]}
    peer = {"version_min": b[0], "version_max": b[1]}
    assert protocol.negotiate_version(local, peer) == version
    assert protocol.negotiate_version(peer, local) == version


@pytest.mark.parametrize("a,b", [((1, 1), (2, 3)), ((3, 4), (1, 2)), ((0, 0), (0, 0))])
def test_no_common_version(a, b):
    with pytest.raises(ProtocolError, match="no common protocol version"):
        protocol.negotiate_version({"version_min": a[0], "version_max": a[1]},
                                   {"version_min": b[0], "version_max": b[1]})


def test_hello_round_trip_negotiates_over_frames():
    ours = {"version_min": protocol.PROTOCOL_VERSION_MIN, "version_max": protocol.PROTOCOL_VERSION,
            "role": "ROLE_CONTROLLER"}
    theirs_wire = protocol.encode_frame("Hello", {"version_min": 1, "version_max": 7,
                                                  "role": "ROLE_DEVICE", "device_id": "x"})
    (type_id, payload), = protocol.FrameDecoder().feed(theirs_wire)
    name, theirs = protocol.decode_payload(type_id, payload)
    assert name == "Hello"
    assert protocol.negotiate_version(ours, theirs) == protocol.PROTOCOL_VERSION


def test_api_misuse_is_not_a_protocol_error():
    with pytest.raises(ValueError):
        protocol.encode("NoSuchMessage", {})
    with pytest.raises(TypeError):
        protocol.encode("ToolCall", {"request_id": "seven"})
    with pytest.raises(ValueError):
        protocol.encode("ToolCall", {"request_id": -1})
    with pytest.raises(ValueError):
        protocol.encode("ToolCall", {"tool_id": 1, "tool_name": "x"})  # one oneof member
    with pytest.raises(ValueError):
        protocol.encode("ToolResult", {"status": "NO_SUCH_STATUS"})
    with pytest.raises(TypeError):
        protocol.encode("ToolResult", {"value": object()})
    with pytest.raises(TypeError):
        protocol.decode("ToolCall", "not bytes")
    for misuse in (ValueError, TypeError):
        assert not issubclass(misuse, ProtocolError)
