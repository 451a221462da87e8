"""Write a seed corpus for fuzz_protocol.py: valid messages, stream frames, serial frames.

Run: python tests/fuzz/make_corpus.py [corpus_dir]   (default: tests/fuzz/corpus/)
"""
# Each file is one fuzz input in fuzz_protocol's layout (a target byte, then the target's
# body): every sample message alone (Compressed ones too), every message as a stream frame
# and as a serial frame, and short conversations fed whole, in odd chunks and byte by byte.
# The golden vectors in tests/vectors/golden.json are added too when that file is there.
# Last come inputs at and just past each of fuzz_protocol.LIMITS, which random mutation
# reaches slowly or (for serial frames, behind a CRC) not at all.
import binascii
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
for path in (ROOT, HERE):
    if path not in sys.path:
        sys.path.insert(0, path)

import protocol  # noqa: E402  (before fuzz_protocol, so this process runs it uninstrumented)
from protocol.serial import cobs_encode  # noqa: E402
from fuzz_protocol import LIMITS, SERIAL, STREAM, TARGETS, target_input  # noqa: E402

GOLDEN = os.path.join(ROOT, "tests", "vectors", "golden.json")
_CONVERSATION = 5  # messages in one multi-frame seed

_PARAMETERS = [
    {"name": "pin", "type": "TYPE_INT", "required": True, "description": "GPIO number",
     "minimum": 0.0, "maximum": 39.0},
    {"name": "mode", "type": "TYPE_STRING", "default_value": "out",
     "choices": ["in", "out", "pwm"]},
    {"name": "duty", "type": "TYPE_FLOAT", "default_value": 0.5, "minimum": 0.0,
     "maximum": 1.0},
    {"name": "pattern", "type": "TYPE_LIST", "default_value": [1, 0, 1, None]},
]
_LIMITS = {"timeout_ms": 5000, "memory_bytes": 32768, "storage_bytes": 4096,
           "concurrency": 2, "instructions": 1000000}
_SETTINGS = {"wifi.ssid": "greenhouse", "sample_period_ms": 30000, "calibration": -0.25,
             "debug": False, "cert": b"\x30\x82\x01\x0a", "tags": ["north", "bed-3"],
             "thresholds": {"low": 18.5, "high": 27.0}, "unset": None}
_MANIFEST = {"board": "esp32-wroom-32", "version": "0.2.0", "counter": 7,
             "size": 1048576, "sha256": bytes(range(32)), "kind": "app"}

SAMPLES = {
    "Hello": [
        {"version_min": 1, "version_max": 1, "role": "ROLE_DEVICE",
         "device_id": "esp32-a1b2c3", "name": "greenhouse", "device_type": "ESP32",
         "firmware_version": "0.1.0", "max_frame": 16384, "auth_required": True},
        {"version_min": 1, "version_max": 2, "role": "ROLE_CONTROLLER",
         "max_frame": 1048576},
    ],
    "AuthChallenge": [{"nonce": bytes(range(16)), "algorithm": "HMAC-SHA256"}],
    "AuthResponse": [{"mac": bytes(range(32)), "client_nonce": bytes(range(16, 0, -1))}],
    "AuthResult": [{"status": "OK", "mac": bytes(32)},
                   {"status": "PERMISSION_DENIED", "message": "bad key"}],
    "CapabilitiesRequest": [{"request_id": 1}],
    "CapabilityChanged": [{"revision": 4, "reason": "script registered"}],
    "Ping": [{"seq": 17, "time_ms": 1700000000123}],
    "Pong": [{"seq": 17, "time_ms": 1700000000150}],
    "Error": [{"request_id": 9, "status": "UNIMPLEMENTED",
               "message": "unknown message type 99", "message_type": 99}],
    "Ack": [{"request_id": 12, "status": "OK"}],
    "Goodbye": [{"status": "UNAVAILABLE", "reason": "rebooting for update"}],
    "LogRecord": [{"time_ms": 123456, "level": "LOG_WARNING", "source": "dht22",
                   "message": "read failed, retrying",
                   "fields": {"attempt": 2, "pin": 4, "error": "timeout",
                              "raw": b"\x00\xff"}}],
    "Capabilities": [{
        "request_id": 1, "revision": 3,
        "device": {"id": "esp32-a1b2c3", "name": "greenhouse", "type": "ESP32",
                   "firmware_version": "0.1.0", "protocol_version": 1,
                   "board": "esp32-wroom-32"},
        "tools": [
            {"id": 1, "name": "gpio_write", "description": "Set a pin",
             "parameters": _PARAMETERS[:2], "returns": {"type": "TYPE_NULL"},
             "kind": "TOOL_BUILTIN"},
            {"id": 2, "name": "Script_blink", "parameters": _PARAMETERS[2:],
             "returns": {"type": "TYPE_MAP", "description": "timings"},
             "kind": "TOOL_SCRIPT"},
        ],
        "hardware": {
            "gpio": {"available": [2, 4, 5, 12, 13, 14, 15, 25, 26, 27, 32, 33, 34, 35],
                     "digital": [2, 4, 5], "analog": [32, 33, 34, 35],
                     "pwm": [2, 4, 5, 25], "input_only": [34, 35]},
            "interfaces": ["I2C", "SPI", "UART", "ADC", "PWM"],
            "sensors": [{"kind": "BME280", "name": "air", "pins": [21, 22],
                         "bus": "i2c0", "address": 0x76}],
            "actuators": [{"kind": "Relay", "name": "pump", "pins": [26]}],
        },
        "resources": {"max_memory": 4194304, "free_memory": 118000, "cpu_mhz": 240,
                      "max_concurrent_tools": 4, "max_frame": 16384,
                      "storage_total": 2097152, "storage_free": 1500000},
        "features": {"streaming": True, "compression": ["deflate"],
                     "encryption": ["hmac-sha256"], "script_languages": ["python"],
                     "stream_kinds": ["sensor", "log"], "plugins": [],
                     "ota_method": "dual-partition"},
    }],
    "ToolCall": [
        {"request_id": 21, "tool_name": "gpio_write", "args": {"pin": 2, "value": True},
         "deadline_ms": 1000},
        {"request_id": 22, "tool_id": 0, "args": {"settings": _SETTINGS}},
    ],
    "ToolResult": [
        {"request_id": 21, "status": "OK", "value": None},
        {"request_id": 23, "status": "OK",
         "value": {"temperature": 21.5, "humidity": 48, "ok": True,
                   "history": [[1, 2.5], [2, -3.0e-9], float("inf")]}},
        {"request_id": 24, "status": "INVALID_ARGUMENT", "error": "pin 40 out of range"},
    ],
    "CancelCall": [{"request_id": 22}],
    "ScriptRegister": [{
        "request_id": 30, "name": "blink", "language": "python",
        "source": "def run(pin, times=3):\n    for _ in range(times):\n        toggle(pin)\n",
        "description": "Blink a pin", "parameters": _PARAMETERS,
        "returns": {"type": "TYPE_NULL"}, "limits": _LIMITS, "streams": True,
        "replace": True}],
    "ScriptUnregister": [{"request_id": 31, "name": "blink"}],
    "ScriptList": [{"request_id": 32}],
    "ScriptListResult": [{
        "request_id": 32, "status": "OK",
        "scripts": [{"name": "blink", "language": "python", "description": "Blink a pin",
                     "size": 88, "sha256": bytes(range(100, 132)),
                     "tools": ["Script_blink", "StreamScript_blink"], "limits": _LIMITS},
                    {"name": "ramp", "language": "lua", "size": 40}]}],
    "ChildrenStatusRequest": [{"request_id": 33}],
    "ChildrenStatus": [{
        "request_id": 33,
        "children": [{"name": "Fenrir", "state": "CHILD_BUSY", "running": 1, "queued": 2,
                      "memory_bytes": 20480},
                     {"name": "Hel", "state": "CHILD_ERROR", "errors": 3,
                      "last_error": "MemoryError", "storage_bytes": 1024}]}],
    "StreamOpen": [{"request_id": 40, "stream_id": 5, "kind": "STREAM_SENSOR",
                    "direction": "DIRECTION_OUT", "content_type": "application/x-jotunheim",
                    "params": {"period_ms": 100, "channels": ["t", "rh"]},
                    "source": "air", "credit": 8192}],
    "StreamData": [{"stream_id": 5, "seq": 1, "offset": 0, "data": bytes(range(256)) * 2,
                    "timestamp_us": 1700000000123456}],
    "StreamCredit": [{"stream_id": 5, "bytes": 8192, "chunks": 8}],
    "StreamClose": [{"stream_id": 5, "status": "CANCELLED", "message": "closed by peer",
                     "total_bytes": 4096}],
    "OtaBegin": [{"request_id": 50, "manifest": protocol.encode("OtaManifest", _MANIFEST),
                  "signature": bytes(range(64)), "key_id": "release-2024"}],
    "OtaChunk": [{"request_id": 51, "offset": 4096, "data": b"\xe9\x06\x02\x20" * 256}],
    "OtaCommit": [{"request_id": 52, "reboot": True}],
    "OtaAbort": [{"request_id": 53, "reason": "sha256 mismatch"}],
    "OtaStatusRequest": [{"request_id": 54}],
    "OtaStatus": [{"request_id": 54, "status": "OK", "state": "OTA_PENDING_VALIDATION",
                   "offset": 1048576, "version": "0.1.0", "pending_version": "0.2.0",
                   "message": "reboot to try", "credit": 16384, "failed_boots": 1}],
    "OtaRollback": [{"request_id": 55}],
    "SettingsGet": [{"request_id": 60, "keys": ["wifi.ssid", "sample_period_ms"]}],
    "SettingsSet": [{"request_id": 61, "values": _SETTINGS}],
    "SettingsResult": [{"request_id": 61, "status": "OK", "values": _SETTINGS},
                       {"request_id": 62, "status": "NOT_FOUND", "message": "no key x"}],
}


# Compressed seeds: the capability document with live fields in its tail, and a reply.
_COMPRESSED = (
    ("Capabilities", protocol.encode("Capabilities", {"request_id": 7, "revision": 4,
                                                      "resources": {"free_memory": 96000}})),
    ("SettingsResult", b""),
)


def _golden():
    if not os.path.exists(GOLDEN):
        return []
    with open(GOLDEN) as f:
        return [(v["type"], bytes.fromhex(v["hex"])) for v in json.load(f)]


def _largest(name, build):
    """Encodings of build(n) for the largest n in 0..4096 that decodes within LIMITS,
    and of build(n + 1)."""
    def decodes(n):
        try:
            protocol.decode(name, protocol.encode(name, build(n)), LIMITS)
        except (protocol.ProtocolError, ValueError):  # ValueError: too deep to encode
            return False
        return True

    lo, hi = 0, 4096
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if decodes(mid):
            lo = mid
        else:
            hi = mid - 1
    return protocol.encode(name, build(lo)), protocol.encode(name, build(lo + 1))


def _nested(n, inner, value=1):
    for _ in range(n):
        value = inner(value)
    return value


def _raw_serial(body):
    """A serial frame around any body, with a correct CRC (serial_frame checks the type)."""
    body = bytes(body) + binascii.crc32(body).to_bytes(4, "little")
    return b"\x00" + bytes(cobs_encode(body)) + b"\x00"


def _edge_inputs():
    """Inputs at and just past each limit; "within" ones must decode, "past" ones not."""
    edges = []
    builds = (
        ("depth-list", "ToolResult", lambda n: {"value": _nested(n, lambda v: [v])}),
        ("depth-map", "ToolResult", lambda n: {"value": _nested(n, lambda v: {"k": v})}),
        ("depth-args", "ToolCall", lambda n: {"args": {"a": _nested(n, lambda v: [v, 0])}}),
        ("depth-entry", "ToolResult", lambda n: {"value": _nested(n, lambda v: [v], {"k": 1})}),
        ("items-packed", "Capabilities",
         lambda n: {"hardware": {"gpio": {"available": list(range(n))}}}),
        ("items-strings", "SettingsGet", lambda n: {"keys": ["k"] * n}),
        ("items-map", "SettingsSet", lambda n: {"values": {str(i): i for i in range(n)}}),
        ("items-value", "ToolResult", lambda n: {"value": [None] * n}),
        ("string", "Error", lambda n: {"message": "x" * n}),
        ("bytes", "StreamData", lambda n: {"stream_id": 1, "data": bytes(n)}),
        ("frame", "ToolResult", lambda n: {"value": ["x" * 1000] * 4 + ["y" * n]}),
    )
    for label, name, build in builds:
        within, past = _largest(name, build)
        edges.append(("edge-%s-within" % label, target_input(name, within)))
        edges.append(("edge-%s-past" % label, target_input(name, past)))
    ota_chunk = protocol.message_type("OtaChunk")
    for label, size in (("within", LIMITS.max_frame), ("past", LIMITS.max_frame + 1)):
        edges.append(("edge-stream-frame-" + label,
                      target_input(STREAM, protocol.frame(ota_chunk, bytes(size)))))
        edges.append(("edge-serial-frame-" + label,
                      target_input(SERIAL, protocol.serial_frame(ota_chunk, bytes(size)))))
    ping = protocol.encode_serial_frame("Ping", {"seq": 1})
    for label, body in (("type-zero", b"\x00\x08\x01"),
                        ("type-long", b"\x88\x80\x00\x08\x01")):
        edges.append(("edge-serial-" + label, target_input(SERIAL, _raw_serial(body))))
    flood = b"\x01" * (LIMITS.max_frame + 64) + ping
    edges.append(("edge-serial-overflow", target_input(SERIAL, flood)))
    return edges


def seed_inputs():
    """(file name, fuzz input) pairs for the whole seed corpus."""
    messages = [(name, protocol.encode(name, fields))
                for name in TARGETS if name not in (STREAM, SERIAL)
                for fields in SAMPLES.get(name, ())]
    messages += [("Compressed", protocol.compress(name, SAMPLES[name][0], tail))
                 for name, tail in _COMPRESSED]
    messages += [(name, b"") for name in TARGETS if name not in (STREAM, SERIAL)]
    messages += [(name, payload) for name, payload in _golden() if name in TARGETS]
    inputs = []
    for i, (name, payload) in enumerate(messages):
        inputs.append(("%s-%d" % (name, i), target_input(name, payload)))
        type_id = protocol.message_type(name)
        inputs.append(("stream-%s-%d" % (name, i),
                       target_input(STREAM, protocol.frame(type_id, payload))))
        inputs.append(("serial-%s-%d" % (name, i),
                       target_input(SERIAL, protocol.serial_frame(type_id, payload))))
    # short conversations (small inputs keep the fuzzer fast), fed whole and in pieces
    for start in range(0, len(messages), _CONVERSATION):
        group = messages[start:start + _CONVERSATION]
        stream = b"".join(protocol.frame(protocol.message_type(name), payload)
                          for name, payload in group)
        serial = b"".join(protocol.serial_frame(protocol.message_type(name), payload)
                          for name, payload in group)
        # line noise and a cut-off frame, which the serial decoder must drop and survive
        noisy = b"\x13\x37\xff" + serial[:len(serial) // 3] + b"\x00\x05\x11\x00" + serial
        for label, chunks in (("whole", ()), ("odd", (2, 16, 0, 200)), ("bytewise", (0,))):
            suffix = "%d-%s" % (start, label)
            inputs.append(("stream-" + suffix, target_input(STREAM, stream, chunks)))
            inputs.append(("serial-" + suffix, target_input(SERIAL, serial, chunks)))
            inputs.append(("serial-noisy-" + suffix, target_input(SERIAL, noisy, chunks)))
    return inputs + _edge_inputs()


def main(argv):
    directory = argv[1] if len(argv) > 1 else os.path.join(HERE, "corpus")
    os.makedirs(directory, exist_ok=True)
    inputs = seed_inputs()
    for name, data in inputs:
        with open(os.path.join(directory, name), "wb") as f:
            f.write(data)
    print("wrote %d seed inputs to %s" % (len(inputs), directory))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
