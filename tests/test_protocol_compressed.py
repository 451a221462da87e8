"""Compressed messages: inflated within the limits, merged with their tail, never a bomb."""

import zlib

import pytest

import protocol
from protocol import Limits, ProtocolError
from protocol_support import load_vectors, normalize

CAPS = [v for v in load_vectors() if v[0] == "capabilities_small"][0][2]


def _wrapped(payload, **overrides):
    deflater = zlib.compressobj(9, zlib.DEFLATED, 10)
    fields = {"message_type": 6, "encoding": "zlib", "size": len(payload),
              "data": deflater.compress(payload) + deflater.flush()}
    fields.update(overrides)
    return protocol.encode("Compressed", fields)


def test_compressed_document_with_live_tail():
    tail = protocol.encode("Capabilities", {"request_id": 9, "resources": {"free_memory": 77},
                                            "tools": [{"id": 3, "name": "Script_new"}]})
    wrapped = protocol.compress("Capabilities", CAPS, tail=tail)
    assert len(wrapped) < len(protocol.encode("Capabilities", CAPS))
    frames = protocol.FrameDecoder().feed(protocol.frame(protocol.COMPRESSED, wrapped))
    name, fields = protocol.decode_payload(*frames[0])
    expected = normalize("Capabilities", CAPS)
    expected["request_id"] = 9
    expected["resources"]["free_memory"] = 77          # merged, the rest kept
    expected["tools"].append(normalize("Tool", {"id": 3, "name": "Script_new"}))  # appended
    assert (name, fields) == ("Capabilities", expected)


def test_declared_size_is_checked_before_inflating():
    body = protocol.encode("Capabilities", CAPS)
    with pytest.raises(ProtocolError, match="exceeds"):
        protocol.decode_payload(protocol.COMPRESSED, _wrapped(body), Limits(max_frame=100))


def test_inflating_beyond_the_declared_size_is_refused():
    bomb = bytes(1 << 20)
    with pytest.raises(ProtocolError, match="size"):
        protocol.decode_payload(protocol.COMPRESSED, _wrapped(bomb, size=1000))
    with pytest.raises(ProtocolError, match="size"):
        protocol.decode_payload(protocol.COMPRESSED, _wrapped(b"\x08\x01", size=3))


@pytest.mark.parametrize("overrides,error", [
    ({"data": b"not zlib at all"}, ProtocolError),
    ({"data": zlib.compress(b"\x08\x01")[:-1]}, ProtocolError),  # truncated: no checksum
    ({"encoding": "lz4"}, ProtocolError),
    ({"message_type": protocol.COMPRESSED}, ProtocolError),
    ({"message_type": 250}, protocol.UnknownMessageType),
])
def test_bad_compressed_messages(overrides, error):
    with pytest.raises(error):
        protocol.decode_payload(protocol.COMPRESSED, _wrapped(b"\x08\x01", **overrides))


def test_garbage_inside_is_a_protocol_error():
    with pytest.raises(ProtocolError):
        protocol.decode_payload(protocol.COMPRESSED, _wrapped(b"\x0a\xff\xff"))


def test_inflate_window_is_bounded():
    body = protocol.encode("Capabilities", CAPS)
    deflater = zlib.compressobj(9, zlib.DEFLATED, 15)  # a 32 KiB window
    big_window = _wrapped(body, data=deflater.compress(body) + deflater.flush())
    with pytest.raises(ProtocolError, match="window"):
        protocol.decode_payload(protocol.COMPRESSED, big_window, Limits(max_window_bits=10))
    assert protocol.decode_payload(protocol.COMPRESSED, big_window)[0] == "Capabilities"
    assert protocol.decode_payload(protocol.COMPRESSED, _wrapped(body),
                                   Limits(max_window_bits=10))[0] == "Capabilities"
