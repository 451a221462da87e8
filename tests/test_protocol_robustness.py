"""Bad bytes give ProtocolError and nothing else, within the limits, without hanging."""

import random
import tracemalloc

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import protocol
from protocol import Limits, ProtocolError
from protocol_support import ALL_MESSAGES, TOP_LEVEL, load_vectors, varint

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
VECTORS = load_vectors()


def _decode_or_error(type_name, data, limits=protocol.DEFAULT_LIMITS):
    try:
        fields = protocol.decode(type_name, data, limits)
    except ProtocolError:
        return None
    # whatever was accepted is a valid message again
    protocol.encode(type_name, fields)
    return fields


@SETTINGS
@given(type_name=st.sampled_from(ALL_MESSAGES), data=st.binary(max_size=200))
def test_random_bytes(type_name, data):
    _decode_or_error(type_name, data)


def _mutations(data, rng, count):
    for _ in range(count):
        b = bytearray(data)
        op = rng.randrange(4)
        if op == 0 and b:
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
        elif op == 1 and b:
            del b[rng.randrange(len(b)):]
        elif op == 2:
            b.insert(rng.randrange(len(b) + 1), rng.randrange(256))
        elif b:
            b[rng.randrange(len(b))] = rng.choice((0x00, 0x7F, 0x80, 0xFF))
        yield bytes(b)


@pytest.mark.parametrize("name,type_name,fields,data", VECTORS, ids=[v[0] for v in VECTORS])
def test_mutated_vectors(name, type_name, fields, data):
    rng = random.Random(name)
    for mutated in _mutations(data, rng, 300):
        _decode_or_error(type_name, mutated)
        framed = protocol.frame(protocol.message_type("ToolCall"), mutated)
        for cut in _mutations(framed, rng, 3):
            try:
                for type_id, payload in protocol.FrameDecoder(4096).feed(cut):
                    protocol.decode_payload(type_id, payload)
            except ProtocolError:
                pass



@pytest.mark.parametrize("data,why", [
    (b"\x08", "truncated varint"),
    (b"\x08" + b"\xff" * 10 + b"\x01", "varint longer than 10 bytes"),
    (b"\xff\xff\xff\xff\xff\x01\x00", "tag longer than 5 bytes"),
    (b"\x80\x80\x80\x80\x10\x00", "tag beyond 32 bits"),
    (b"\x00\x00", "field number 0"),
    (b"\x0b\x0c", "group start"),
    (b"\x0c", "group end"),
    (b"\x0e\x00", "wire type 6"),
    (b"\x0f\x00", "wire type 7"),
    (b"\x22\x05\x0a\x03", "length past the end"),
    (b"\x22\xff\xff\xff\xff\x0f", "huge length"),
    (b"\x1a\x02\xc0\x80", "overlong UTF-8"),
    (b"\x1a\x03\xed\xa0\x80", "UTF-8 surrogate"),
    (b"\x1a\x01\xff", "invalid UTF-8"),
    (b"\x29\x00\x00", "truncated fixed64"),
])
def test_malformed_tool_call(data, why):
    with pytest.raises(ProtocolError):
        protocol.decode("ToolCall", data)


def _nested_result(depth):
    """A ToolResult whose value is a list nested `depth` times around a null."""
    body = b"\x08\x00"  # null
    for _ in range(depth):
        entry = b"\x0a" + varint(len(body)) + body       # ListValue.values
        body = b"\x3a" + varint(len(entry)) + entry      # Value.list_value
    return b"\x1a" + varint(len(body)) + body            # ToolResult.value


def test_nesting_is_bounded():
    limits = Limits(max_depth=16)
    ok = protocol.decode("ToolResult", _nested_result(6), limits)
    assert ok["value"] == [[[[[[None]]]]]]
    with pytest.raises(ProtocolError):
        protocol.decode("ToolResult", _nested_result(8), limits)
    with pytest.raises(ProtocolError):
        protocol.decode("ToolResult", _nested_result(2000))
    deep = None
    for _ in range(20):
        deep = [deep]
    with pytest.raises(ValueError):
        protocol.encode("ToolResult", {"value": deep})


def test_item_counts_are_bounded():
    limits = Limits(max_items=100)
    packed = b"".join(varint(i) for i in range(101))
    gpio = b"\x0a" + varint(len(packed)) + packed
    with pytest.raises(ProtocolError):
        protocol.decode("Gpio", gpio, limits)
    assert len(protocol.decode("Gpio", protocol.encode("Gpio", {"available": list(range(100))}),
                               limits)["available"]) == 100
    many = protocol.encode("ToolCall", {"args": {str(i): i for i in range(101)}})
    with pytest.raises(ProtocolError):
        protocol.decode("ToolCall", many, limits)
    items = protocol.encode("ToolResult", {"value": list(range(101))})
    with pytest.raises(ProtocolError):
        protocol.decode("ToolResult", items, limits)


def test_strings_and_messages_are_bounded():
    limits = Limits(max_frame=1024, max_string=16)
    with pytest.raises(ProtocolError):
        protocol.decode("Hello", protocol.encode("Hello", {"name": "x" * 17}), limits)
    with pytest.raises(ProtocolError):
        protocol.decode("StreamData", protocol.encode("StreamData", {"data": bytes(17)}), limits)
    with pytest.raises(ProtocolError):
        protocol.decode("StreamData", protocol.encode("StreamData", {"seq": 1, "data": bytes(2000)}),
                        Limits(max_frame=1024))


def test_frame_length_is_checked_before_buffering():
    dec = protocol.FrameDecoder(max_frame=1024)
    with pytest.raises(ProtocolError):
        dec.feed(b"\x4a" + varint(1025))
    dec = protocol.FrameDecoder(max_frame=1024)
    with pytest.raises(ProtocolError):
        dec.feed(b"\x4a\xff\xff\xff\xff\xff\xff")  # length varint wider than 5 bytes
    with pytest.raises(ProtocolError):
        protocol.FrameDecoder().feed(b"\x4a\x00\x00")  # type 0
    with pytest.raises(ProtocolError):
        protocol.FrameDecoder().feed(b"\x4a\x00\xff\xff\x01")  # type wider than 2 bytes
    with pytest.raises(ProtocolError):
        protocol.FrameDecoder().feed(b"GET / HTTP/1.1\r\n")
    dec = protocol.FrameDecoder(max_frame=1024)
    assert dec.feed(b"\x4a" + varint(1024) + b"\x10" + bytes(1000)) == []
    assert dec.pending() == 1004


@pytest.mark.parametrize("piece", [1, 7, 100, 255, 256, 3000, 70000])
def test_long_frames_arrive_in_any_pieces(piece):
    """Long frames are gathered as pieces and joined once; the result is the same."""
    rng = random.Random(piece)
    payloads = [b"", bytes(rng.getrandbits(8) for _ in range(300)), b"\x01\x02",
                bytes(rng.getrandbits(8) for _ in range(20000)), b"x" * 257]
    stream = b"".join(protocol.frame(16 + i, p) for i, p in enumerate(payloads))
    dec = protocol.FrameDecoder()
    got = []
    for at in range(0, len(stream), piece):
        chunk = stream[at:at + piece]
        got.extend(dec.feed(bytearray(chunk) if at % 2 else chunk))
        held = len(stream) - at - len(chunk)
        done = sum(len(protocol.frame(t, p)) for t, p in got)
        assert dec.pending() == len(stream) - held - done
    assert got == [(16 + i, p) for i, p in enumerate(payloads)]
    assert all(type(p) is bytes for _, p in got)
    assert dec.pending() == 0


def test_broken_stream_stays_broken():
    dec = protocol.FrameDecoder()
    with pytest.raises(ProtocolError):
        dec.feed(b"\x00")
    with pytest.raises(ProtocolError):
        dec.feed(protocol.frame(16, b""))


def test_unknown_message_type_is_reported_not_fatal():
    dec = protocol.FrameDecoder()
    frames = dec.feed(protocol.frame(999, b"\x08\x01") + protocol.frame(8, b"\x08\x01"))
    with pytest.raises(protocol.UnknownMessageType) as info:
        protocol.decode_payload(*frames[0])
    assert info.value.type_id == 999
    assert protocol.decode_payload(*frames[1]) == ("Ping", {"seq": 1, "time_ms": 0})


@SETTINGS
@given(st.binary(max_size=600), st.integers(1, 64))
def test_serial_decoder_never_raises(noise, chunk):
    dec = protocol.SerialDecoder(max_frame=256)
    good = protocol.serial_frame(8, protocol.encode("Ping", {"seq": 7}))
    got = []
    stream = noise + good
    for i in range(0, len(stream), chunk):
        got += dec.feed(stream[i:i + chunk])
    assert got[-1] == (8, b"\x08\x07")


def test_serial_oversized_frame_is_dropped_without_buffering():
    dec = protocol.SerialDecoder(max_frame=64)
    for _ in range(100):
        assert dec.feed(b"\x01" * 1000) == []
    assert len(dec._buf) == 0
    assert dec.feed(b"\x00") == [] and dec.dropped == 1
    assert dec.feed(protocol.serial_frame(8, b"\x08\x07")) == [(8, b"\x08\x07")]


@pytest.mark.parametrize("type_name", TOP_LEVEL)
def test_allocation_stays_proportional_to_input(type_name):
    limits = Limits(max_frame=4096, max_depth=16, max_items=256)
    rng = random.Random(type_name)
    tracemalloc.start()
    try:
        worst = 0
        for _ in range(40):
            data = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 4096)))
            tracemalloc.reset_peak()
            base = tracemalloc.get_traced_memory()[0]
            _decode_or_error(type_name, data, limits)
            worst = max(worst, tracemalloc.get_traced_memory()[1] - base)
    finally:
        tracemalloc.stop()
    assert worst < 256 * 1024
