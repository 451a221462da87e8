"""The hex examples in protocol/SPEC.md are what the codec writes and reads today."""

import os
import re

import pytest

import protocol
from protocol_support import ROOT

HEADER = re.compile(r"^(\w+)( stream frame| serial frame)? \((\d+) bytes\)")


def _examples():
    with open(os.path.join(ROOT, "protocol", "SPEC.md"), encoding="utf-8") as f:
        lines = f.read().splitlines()
    found = []
    for i, line in enumerate(lines):
        match = HEADER.match(line)
        if not match or lines[i - 1] != "```":
            continue
        data = bytearray()
        for hex_line in lines[i + 2:]:
            if not hex_line.strip():
                break
            data += bytes.fromhex(hex_line)
        found.append((match.group(1), (match.group(2) or "").strip(), int(match.group(3)),
                      bytes(data)))
    return found


EXAMPLES = _examples()


def test_spec_has_examples_of_each_kind():
    kinds = {kind for _, kind, _, _ in EXAMPLES}
    assert len(EXAMPLES) >= 10 and kinds == {"", "stream frame", "serial frame"}


@pytest.mark.parametrize("name,kind,size,data", EXAMPLES,
                         ids=["%s %s %d" % (e[0], e[1], e[2]) for e in EXAMPLES])
def test_example_matches_codec(name, kind, size, data):
    assert len(data) == size
    if kind == "stream frame":
        frames = protocol.FrameDecoder().feed(data)
    elif kind == "serial frame":
        decoder = protocol.SerialDecoder()
        frames = decoder.feed(data)
        assert decoder.dropped == 0
    else:
        fields = protocol.decode(name, data)
        assert protocol.encode(name, fields) == data  # canonical
        frames = [(protocol.message_type(name), data)]
    assert len(frames) == 1
    type_id, payload = frames[0]
    assert protocol.message_name(type_id) == name
    inner, fields = protocol.decode_payload(type_id, payload)
    if name != "Compressed":
        assert protocol.encode(inner, fields) == payload
