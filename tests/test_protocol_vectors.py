"""Golden vectors: encode, decode and frame each one every way a transport may deliver it."""

import zlib

import pytest

import protocol
from protocol_support import load_vectors, normalize, google_module, to_google

VECTORS = load_vectors()
IDS = [v[0] for v in VECTORS]
FORMS = [bytes, bytearray, memoryview]


@pytest.mark.parametrize("name,type_name,fields,data", VECTORS, ids=IDS)
def test_encode_matches_vector(name, type_name, fields, data):
    assert protocol.encode(type_name, fields) == data


@pytest.mark.parametrize("name,type_name,fields,data", VECTORS, ids=IDS)
def test_vector_is_what_google_writes(name, type_name, fields, data, tmp_path_factory):
    pb2 = google_module(str(tmp_path_factory.getbasetemp()))
    google = to_google(pb2, type_name, fields)
    assert google.SerializeToString(deterministic=True) == data
    assert getattr(pb2, type_name).FromString(data) == google


@pytest.mark.parametrize("form", FORMS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("name,type_name,fields,data", VECTORS, ids=IDS)
def test_decode_vector(name, type_name, fields, data, form):
    assert protocol.decode(type_name, form(data)) == normalize(type_name, fields)


def _top_level():
    return [v for v in VECTORS if protocol.message_name(
        protocol.schema.MESSAGE_TABLE[protocol.message_index(v[1]) * 4]) == v[1]]


def _decoded(frames):
    return [protocol.decode_payload(t, p) for t, p in frames]


def _expected(vectors):
    """What decode_payload gives for each vector's frame (a Compressed one is unwrapped)."""
    out = []
    for _, type_name, fields, _ in vectors:
        if type_name == "Compressed":
            inner = protocol.message_name(fields["message_type"])
            body = zlib.decompress(fields["data"]) + fields["tail"]
            out.append((inner, protocol.decode(inner, body)))
        else:
            out.append((type_name, normalize(type_name, fields)))
    return out


FRAMINGS = {
    "stream": (protocol.frame, protocol.FrameDecoder),
    "serial": (protocol.serial_frame, protocol.SerialDecoder),
}


@pytest.mark.parametrize("framing", sorted(FRAMINGS))
@pytest.mark.parametrize("form", FORMS, ids=lambda f: f.__name__)
def test_frames_whole_bytewise_and_glued(framing, form):
    wrap, decoder_class = FRAMINGS[framing]
    vectors = _top_level()
    wire = [wrap(protocol.message_type(t), d) for _, t, _, d in vectors]
    for one, vector in zip(wire, vectors):
        assert _decoded(decoder_class().feed(form(one))) == _expected([vector])
        dec = decoder_class()
        got = []
        for i in range(len(one)):
            got += dec.feed(form(one[i:i + 1]))
        assert _decoded(got) == _expected([vector])
    glued = b"".join(wire)
    assert _decoded(decoder_class().feed(form(glued))) == _expected(vectors)
    # odd chunk sizes across frame boundaries
    dec = decoder_class()
    got = []
    for i in range(0, len(glued), 7):
        got += dec.feed(form(glued[i:i + 7]))
    assert _decoded(got) == _expected(vectors)


@pytest.mark.parametrize("name,type_name,fields,data", _top_level(), ids=[v[0] for v in _top_level()])
def test_stream_frame_then_trailing_garbage(name, type_name, fields, data):
    dec = protocol.FrameDecoder()
    one = protocol.frame(protocol.message_type(type_name), data)
    frames = dec.feed(one + b"\x13\x37garbage")
    assert _decoded(frames) == _expected([(name, type_name, fields, data)])
    with pytest.raises(protocol.ProtocolError):
        dec.feed(b"")


@pytest.mark.parametrize("name,type_name,fields,data", _top_level(), ids=[v[0] for v in _top_level()])
def test_serial_frame_survives_garbage_around_it(name, type_name, fields, data):
    dec = protocol.SerialDecoder()
    one = protocol.serial_frame(protocol.message_type(type_name), data)
    frames = dec.feed(b"\x13\x37garbage" + one + b"more\xffnoise\x00" + one)
    assert _decoded(frames) == _expected([(name, type_name, fields, data)] * 2)
    assert dec.dropped == 2  # the two runs of noise, each ended by a zero


def test_trailing_garbage_after_message_is_an_error_not_a_crash():
    data = protocol.encode("ToolCall", {"request_id": 1, "tool_id": 2})
    with pytest.raises(protocol.ProtocolError):
        protocol.decode("ToolCall", data + b"\xff")


UPB_CHECK = r"""
import json, sys
sys.path[:0] = [sys.argv[1], sys.argv[2], sys.argv[3]]
from google.protobuf.internal import api_implementation
assert api_implementation.Type() == "upb", api_implementation.Type()
from protocol_support import load_vectors, google_module, to_google
pb2 = google_module(sys.argv[4])
out = {}
for name, type_name, fields, data in load_vectors():
    google = to_google(pb2, type_name, fields)
    out[name] = [getattr(pb2, type_name).FromString(data) == google,
                 google.SerializeToString(deterministic=True) == data]
print(json.dumps(out))
"""


def _has_multi_entry_map(value):
    if isinstance(value, dict):
        return len(value) > 1 or any(_has_multi_entry_map(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_multi_entry_map(v) for v in value)
    return False


def test_google_upb_backend_agrees(tmp_path):
    """upb parses every vector to the same message; bytes match except upb's map order."""
    import json
    import os
    import subprocess
    import sys
    from protocol_support import HERE, ROOT

    env = dict(os.environ)
    env.pop("PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION", None)
    proc = subprocess.run([sys.executable, "-c", UPB_CHECK, HERE, ROOT, os.path.join(ROOT, "tools"),
                           str(tmp_path)], env=env, capture_output=True, text=True, check=True)
    results = json.loads(proc.stdout)
    for name, type_name, fields, data in VECTORS:
        parsed_equal, bytes_equal = results[name]
        assert parsed_equal, name
        # a message whose maps all have fewer than two entries has one canonical order
        if not any(_has_multi_entry_map(v) for k, v in fields.items()
                   if k in ("args", "params", "values", "fields")):
            assert bytes_equal, name
