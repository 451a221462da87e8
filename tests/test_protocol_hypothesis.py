"""Property tests: round trips for every message, and byte equality with Google protobuf."""

import math

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import protocol
from protocol_support import ALL_MESSAGES, google_module, messages, normalize, to_google

SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.fixture(scope="module")
def pb2(tmp_path_factory):
    return google_module(str(tmp_path_factory.mktemp("google")))


@pytest.mark.parametrize("type_name", ALL_MESSAGES)
@SETTINGS
@given(data=st.data())
def test_round_trip(type_name, data):
    fields = data.draw(messages(type_name))
    encoded = protocol.encode(type_name, fields)
    decoded = protocol.decode(type_name, encoded)
    assert decoded == normalize(type_name, fields)
    assert protocol.encode(type_name, decoded) == encoded


@pytest.mark.parametrize("type_name", ALL_MESSAGES)
@SETTINGS
@given(data=st.data())
def test_same_bytes_as_google(pb2, type_name, data):
    fields = data.draw(messages(type_name))
    ours = protocol.encode(type_name, fields)
    google = to_google(pb2, type_name, fields)
    theirs = google.SerializeToString(deterministic=True)
    assert ours == theirs
    # Google's bytes decode and re-encode to themselves, and Google parses ours
    assert protocol.encode(type_name, protocol.decode(type_name, theirs)) == theirs
    assert getattr(pb2, type_name).FromString(ours) == google


@SETTINGS
@given(value=st.floats(allow_nan=True, allow_infinity=True, width=64))
def test_special_floats_match_google(pb2, value):
    fields = {"request_id": 1, "value": value}
    ours = protocol.encode("ToolResult", fields)
    google = pb2.ToolResult(request_id=1)
    google.value.float_value = value
    assert ours == google.SerializeToString(deterministic=True)
    back = protocol.decode("ToolResult", ours)["value"]
    assert (math.isnan(back) and math.isnan(value)) or back == value
    call = {"positional": [value, -value], "args": {"x": value}}
    google = to_google(pb2, "ToolCall", call)
    assert protocol.encode("ToolCall", call) == google.SerializeToString(deterministic=True)


@SETTINGS
@given(noise=st.binary(max_size=64))
def test_google_accepts_what_we_accept(pb2, noise):
    """Where our decoder accepts random bytes, Google reads the same message from them."""
    try:
        ours = protocol.decode("ToolCall", noise)
    except protocol.ProtocolError:
        return
    google = pb2.ToolCall.FromString(noise)
    assert protocol.encode("ToolCall", ours) == _drop_unknown(google).SerializeToString(
        deterministic=True)


def _drop_unknown(message):
    message.DiscardUnknownFields()
    return message
