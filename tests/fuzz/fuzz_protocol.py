"""Atheris fuzz target for the protocol decoders.

Run: python tests/fuzz/fuzz_protocol.py [libFuzzer flags] [corpus_dir ...]
Without -runs= or -max_total_time= it stops after 60 seconds; -max_len defaults to 8192
and -timeout (seconds for one input, beyond which it reports a crash) to 5.
"""
# How this works: the first input byte picks a target, one of TARGETS: a top-level message
# type (its payload goes to protocol.decode), the stream FrameDecoder or the SerialDecoder.
# For the two decoders the low three bits of the second byte say how many chunk-size bytes
# follow; the stream after them is fed in chunks of (size byte + 1) bytes, taking the
# sizes in turn, or whole when there are none.
#
# Each target checks the contract: bad input raises ProtocolError and nothing else (the
# SerialDecoder raises nothing at all); what decodes stays within LIMITS, re-encodes, and
# its encoding is a fixed point. Any other exception, a failed assert included, is a crash
# that libFuzzer reports and saves as crash-<sha1>.
import os
import sys

import atheris

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

with atheris.instrument_imports():
    import protocol

# max_string below max_frame, or a string could never reach its limit inside a frame
LIMITS = protocol.Limits(max_frame=4096, max_depth=16, max_string=1024, max_items=256)
# Canonical re-encoding may be longer than the input (it writes both halves of a map
# entry and an explicit null for an empty Value), so only the size limit is relaxed.
REENCODED_LIMITS = protocol.Limits(max_frame=1 << 20, max_depth=LIMITS.max_depth,
                                   max_string=LIMITS.max_string, max_items=LIMITS.max_items)

STREAM = "stream"
SERIAL = "serial"
_MAX_TYPE = 0x3FFF
_REPEATED = 2  # field labels and kinds, as protocol.fields_of gives them
_MAP = 3
_MESSAGE = 16
_VALUE = 17


def _top_level_messages():
    names = []
    for name in protocol.schema.MESSAGE_NAMES:
        try:
            protocol.message_type(name)
        except ValueError:
            continue
        names.append(name)
    return tuple(names)


TARGETS = _top_level_messages() + (STREAM, SERIAL)


def target_input(target, body, chunks=()):
    """A fuzz input that gives body to target; chunks are size bytes for the decoders."""
    head = bytes((TARGETS.index(target),))
    if len(chunks) > 7:
        raise ValueError("at most 7 chunk sizes")
    if target in (STREAM, SERIAL):
        head += bytes((len(chunks),)) + bytes(chunks)
    return head + bytes(body)


def _split_chunks(data):
    count = data[0] & 7 if data else 0
    return data[1:1 + count], data[1 + count:]


def _chunked(stream, sizes):
    if not sizes:
        return [stream]
    chunks = []
    pos = 0
    while pos < len(stream):
        size = sizes[len(chunks) % len(sizes)] + 1
        chunks.append(stream[pos:pos + size])
        pos += size
    return chunks


# ------------------------------------------------------------------ limits

def _check_text(value):
    if isinstance(value, (str, bytes)):
        assert len(value) <= LIMITS.max_string, "%d-long string" % len(value)


def _check_value(value, depth):
    """A native Value at depth and what it holds."""
    assert depth <= LIMITS.max_depth, "Value at depth %d" % depth
    if isinstance(value, (list, dict)):
        assert depth + 1 <= LIMITS.max_depth, "ListValue or MapValue at depth %d" % (depth + 1)
        assert len(value) <= LIMITS.max_items, "Value holding %d items" % len(value)
        if isinstance(value, dict):
            for key, item in value.items():
                _check_text(key)
                _check_value(item, depth + 3)  # MapValue, entry, Value
        else:
            for item in value:
                _check_value(item, depth + 2)  # ListValue, Value
    else:
        _check_text(value)


def _check_message(idx, fields, depth):
    """A decoded message at depth, nesting counted as SPEC.md section 4 counts it."""
    assert depth <= LIMITS.max_depth, "message at depth %d" % depth
    for _, name, kind, label, sub, _ in protocol.fields_of(idx):
        if name not in fields:
            continue
        items = fields[name]
        child = depth + 1
        if label == _MAP:
            assert len(items) <= LIMITS.max_items, "%s holds %d entries" % (name, len(items))
            assert not items or child <= LIMITS.max_depth, "map entry at depth %d" % child
            for key in items:
                _check_text(key)
            _, kind, sub = sub
            items = items.values()
            child += 1
        elif label == _REPEATED:
            assert len(items) <= LIMITS.max_items, "%s holds %d items" % (name, len(items))
        else:
            items = (items,)
        for item in items:
            if kind == _MESSAGE:
                _check_message(sub, item, child)
            elif kind == _VALUE:
                _check_value(item, child)
            else:
                _check_text(item)


# ------------------------------------------------------------------ targets

def check_decoded(name, fields):
    """A decoded message is within LIMITS, re-encodes, and its encoding is a fixed point."""
    _check_message(protocol.message_index(name), fields, 0)
    encoded = protocol.encode(name, fields)
    again = protocol.encode(name, protocol.decode(name, encoded, REENCODED_LIMITS))
    assert again == encoded, "%s: re-encoding gives %d bytes, then other %d bytes" % (
        name, len(encoded), len(again))


def check_message(name, payload):
    try:
        fields = protocol.decode(name, payload, LIMITS)
    except protocol.ProtocolError:
        return
    check_decoded(name, fields)


def check_payload(type_id, payload):
    """A frame's payload through decode_payload, the way a receiver reads it."""
    assert 0 < type_id <= _MAX_TYPE, "frame type %d" % type_id
    assert len(payload) <= LIMITS.max_frame, "%d-byte frame payload" % len(payload)
    try:
        name, fields = protocol.decode_payload(type_id, payload, LIMITS)
    except protocol.ProtocolError:
        return
    if type_id != protocol.COMPRESSED:  # which decodes as the message inside it
        assert protocol.message_type(name) == type_id, "type %d decoded as %s" % (type_id, name)
    check_decoded(name, fields)


def _feed_stream(chunks):
    """(frames, broken, pending bytes) after feeding chunks to a fresh FrameDecoder."""
    decoder = protocol.FrameDecoder(LIMITS.max_frame)
    frames = []
    try:
        for chunk in chunks:
            frames.extend(decoder.feed(chunk))
        frames.extend(decoder.feed(b""))  # raises an error held back with earlier frames
    except protocol.ProtocolError:
        try:
            decoder.feed(b"")
        except protocol.ProtocolError:
            return frames, True, None
        raise AssertionError("FrameDecoder went on after an error")
    return frames, False, decoder.pending()


def check_stream(data):
    sizes, stream = _split_chunks(data)
    expected = _feed_stream([stream])
    got = _feed_stream(_chunked(stream, sizes))
    assert got == expected, "fed in chunks, the stream gives other frames or errors"
    for type_id, payload in got[0]:
        check_payload(type_id, payload)
        again = protocol.FrameDecoder(LIMITS.max_frame).feed(protocol.frame(type_id, payload))
        assert again == [(type_id, payload)], "re-framed frame decodes as %r" % (again,)


def check_serial(data):
    sizes, stream = _split_chunks(data)
    whole = protocol.SerialDecoder(LIMITS.max_frame)
    expected = whole.feed(stream)
    decoder = protocol.SerialDecoder(LIMITS.max_frame)
    frames = []
    for chunk in _chunked(stream, sizes):
        frames.extend(decoder.feed(chunk))
    assert frames == expected, "chunking changed the frames"
    assert decoder.dropped == whole.dropped, "chunking changed the dropped count"
    for type_id, payload in frames:
        check_payload(type_id, payload)
        fresh = protocol.SerialDecoder(LIMITS.max_frame)
        again = fresh.feed(protocol.serial_frame(type_id, payload))
        assert again == [(type_id, payload)] and not fresh.dropped, (
            "re-framed serial frame decodes as %r (%s)" % (again, fresh.last_error))


def TestOneInput(data):
    """libFuzzer entry point: raises on a broken contract, returns otherwise."""
    if not data:
        return
    target = TARGETS[data[0] % len(TARGETS)]
    if target == STREAM:
        check_stream(data[1:])
    elif target == SERIAL:
        check_serial(data[1:])
    else:
        check_message(target, data[1:])


def main(argv):
    argv = list(argv)
    if not any(arg.startswith(("-runs=", "-max_total_time=")) for arg in argv[1:]):
        argv.append("-max_total_time=60")
    if not any(arg.startswith("-max_len=") for arg in argv[1:]):
        argv.append("-max_len=%d" % (2 * LIMITS.max_frame))  # room to cross every limit
    if not any(arg.startswith("-timeout=") for arg in argv[1:]):
        argv.append("-timeout=5")  # decoding a few KiB in seconds is a bug of its own
    atheris.Setup(argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
