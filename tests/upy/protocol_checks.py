# Protocol checks that run unchanged on MicroPython and CPython; the test suite runs this
# script on both and requires identical output.
#
# usage: protocol_checks.py VECTORS.json CORPUS.txt
# Prints one JSON object per line: per golden vector, what encoding, decoding and both
# framings produced (fed whole, byte by byte, glued, with garbage, as bytes, bytearray and
# memoryview); per corpus line (hex of a possibly corrupt stream), the outcome.
import binascii
import gc
import json
import sys

import protocol
from protocol import ProtocolError


def untag(x):
    if isinstance(x, dict):
        if len(x) == 1 and "$bytes" in x:
            return bytes.fromhex(x["$bytes"])
        return {k: untag(v) for k, v in x.items()}
    if isinstance(x, list):
        return [untag(v) for v in x]
    return x


def hexof(data):
    return binascii.hexlify(data).decode()


def decoded_frames(frames):
    out = []
    for type_id, payload in frames:
        name, fields = protocol.decode_payload(type_id, payload)
        out.append(name + ":" + hexof(protocol.encode(name, fields)))
    return out


def feed_bytewise(decoder, data, form):
    frames = []
    for i in range(len(data)):
        frames += decoder.feed(form(data[i:i + 1]))
    return frames


def framing_checks(type_name, data):
    type_id = protocol.message_type(type_name)
    expected = decoded_frames([(type_id, data)])  # a Compressed frame yields what it holds
    results = {}
    framings = (("stream", protocol.frame, protocol.FrameDecoder),
                ("serial", protocol.serial_frame, protocol.SerialDecoder))
    for label, wrap, decoder_class in framings:
        one = wrap(type_id, data)
        for form_name, form in (("bytes", bytes), ("bytearray", bytearray),
                                ("memoryview", memoryview)):
            whole = decoded_frames(decoder_class().feed(form(one)))
            bytewise = decoded_frames(feed_bytewise(decoder_class(), one, form))
            glued = decoded_frames(decoder_class().feed(form(one + one + one)))
            results[label + "/" + form_name] = [whole == expected, bytewise == expected,
                                                glued == expected * 3]
        dec = decoder_class()
        got = decoded_frames(dec.feed(one + b"\x13\x37garbage"))
        try:
            dec.feed(b"")
            broken = False
        except ProtocolError:
            broken = True
        results[label + "/garbage"] = [got == expected, broken]
    return results


def vectors_in(path):
    """The vectors one at a time (the file holds one per line), to spare the heap."""
    with open(path) as f:
        for line in f:
            line = line.strip().rstrip(",")
            if line.startswith("{"):
                yield json.loads(line)


def run_vectors(path):
    for v in vectors_in(path):
        gc.collect()  # the 1 KiB vectors need contiguous blocks on a small heap
        fields = untag(v["fields"])
        encoded = protocol.encode(v["type"], fields)
        data = bytes.fromhex(v["hex"])
        decoded = protocol.decode(v["type"], data)
        row = {"name": v["name"], "encoded": hexof(encoded),
               "reencoded": hexof(protocol.encode(v["type"], decoded))}
        if v["type"] == "Compressed":
            row["inner"] = decoded_frames([(protocol.COMPRESSED, data)])
        if protocol.message_name(protocol.schema.MESSAGE_TABLE[
                protocol.message_index(v["type"]) * 4]) == v["type"]:
            row["framing"] = framing_checks(v["type"], data)
        print(json.dumps(row))


def outcome(data):
    """What a controller would see from these bytes as a stream and as a serial line."""
    result = []
    try:
        for type_id, payload in protocol.FrameDecoder(4096).feed(data):
            result.append(decode_one(type_id, payload))
    except ProtocolError:
        result.append("error")
    serial = protocol.SerialDecoder(4096)
    for type_id, payload in serial.feed(data):
        result.append(decode_one(type_id, payload))
    result.append("dropped=%d" % serial.dropped)
    return result


def decode_one(type_id, payload):
    try:
        name, fields = protocol.decode_payload(type_id, payload, protocol.Limits(4096, 16, 4096, 256))
    except protocol.UnknownMessageType:
        return "unknown:%d" % type_id
    except ProtocolError:
        return "bad:%d" % type_id
    return name + ":" + hexof(protocol.encode(name, fields))


def run_corpus(path):
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line:
                try:
                    result = outcome(bytes.fromhex(line))
                except Exception as e:  # noqa: BLE001 - anything else is the bug we look for
                    result = ["crash", type(e).__name__, str(e)]
                print(json.dumps({"corpus": result}))


def main(vectors, corpus):
    run_vectors(vectors)
    run_corpus(corpus)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
