"""The jotunheim command: dump, the construct frame parser, and the demo on both runtimes."""
# Captures are made with the protocol codec and read back by the construct parser in
# jotunheim_host.frames, which must agree with protocol.FrameDecoder / SerialDecoder on
# what is a frame and what is not. The demo runs the real firmware on simulated boards, the
# real MicroPython unix port and real loopback sockets.
import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest

import protocol
from jotunheim_host import frames
from jotunheim_host.cli import main
from protocol_support import TOP_LEVEL, load_vectors

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

MESSAGES = [
    ("Hello", {"version_min": 1, "version_max": 1, "role": 1, "device_id": "esp32-a1",
               "name": "greenhouse", "device_type": 1, "max_frame": 16384}),
    ("CapabilitiesRequest", {"request_id": 7}),
    ("ToolCall", {"request_id": 9, "tool_name": "add",
                  "args": {"a": 2, "b": -40, "blob": b"\x00\xff"}}),
    ("ToolResult", {"request_id": 9, "status": 5, "error": "no such tool"}),
    ("Ping", {"seq": 1, "time_ms": 2 ** 40}),
    # long enough for a two-byte length and COBS blocks of 254 bytes
    ("StreamData", {"stream_id": 3, "data": bytes(range(1, 256)) * 2 + bytes(40)}),
]


def stream_capture():
    return b"".join(protocol.encode_frame(name, fields) for name, fields in MESSAGES)


def serial_capture():
    return b"".join(protocol.encode_serial_frame(name, fields) for name, fields in MESSAGES)


def frame_offsets(wires):
    offsets, at = [], 0
    for wire in wires:
        offsets.append(at)
        at += len(wire)
    return offsets


def run_dump(tmp_path, capsys, data, *options):
    path = tmp_path / "capture"
    path.write_bytes(data)
    code = main(list(options) + [str(path)])
    out, err = capsys.readouterr()
    return code, out, err


# ------------------------------------------------------------------ dump

def test_dump_stream_binary(tmp_path, capsys):
    code, out, err = run_dump(tmp_path, capsys, stream_capture(), "dump")
    assert code == 0, err
    assert out.startswith("offset 0: Hello (type 1), payload")
    for name, _ in MESSAGES:
        assert "%s (type %d)" % (name, protocol.message_type(name)) in out
    assert 'device_id: "esp32-a1"' in out
    assert "device_type: ESP32 (1)" in out
    assert "blob: <2 bytes 00ff>" in out
    assert "b: -40" in out
    assert "status: NOT_FOUND (5)" in out
    assert "time_ms: %d" % 2 ** 40 in out


def test_dump_serial_hex_json(tmp_path, capsys):
    wires = [protocol.encode_serial_frame(name, fields) for name, fields in MESSAGES]
    text = "".join(wire.hex(" ") + "\n" for wire in wires)
    path = tmp_path / "capture.hex"
    path.write_text(text)
    assert main(["--format", "json", "dump", "--serial", "--hex", str(path)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["errors"] == []
    got = report["frames"]
    assert [f["name"] for f in got] == [name for name, _ in MESSAGES]
    assert [f["offset"] for f in got] == frame_offsets(wires)
    assert [f["size"] for f in got] == [len(w) for w in wires]
    assert got[0]["fields"]["role"] == "ROLE_DEVICE"
    assert got[2]["fields"]["args"] == {"a": 2, "b": -40, "blob": "00ff"}
    assert got[3]["fields"]["status"] == "NOT_FOUND"
    assert got[5]["fields"]["data"] == MESSAGES[5][1]["data"].hex()


def test_dump_format_after_the_command(tmp_path, capsys):
    code, out, _ = run_dump(tmp_path, capsys, stream_capture(), "dump", "--format", "json")
    assert code == 0
    assert len(json.loads(out)["frames"]) == len(MESSAGES)


def test_dump_reads_stdin_of_a_real_process():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.path.join(ROOT, "tools")]))
    done = subprocess.run([sys.executable, "-m", "jotunheim_host.cli", "dump", "-"],
                          input=stream_capture(), capture_output=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert b"StreamData (type 33)" in done.stdout


def test_dump_unknown_type_is_raw_hex(tmp_path, capsys):
    data = protocol.frame(1000, b"\x01\x02") + protocol.encode_frame("Ping", {"seq": 4})
    code, out, err = run_dump(tmp_path, capsys, data, "dump")
    assert code == 0, err
    assert "offset 0: unknown type 1000, payload 2 bytes, frame 6 bytes" in out
    assert "raw payload: 01 02" in out
    assert "offset 6: Ping (type 8)" in out


def test_dump_truncated_capture(tmp_path, capsys):
    data = stream_capture()
    last = frame_offsets([protocol.encode_frame(n, f) for n, f in MESSAGES])[-1]
    code, out, err = run_dump(tmp_path, capsys, data[:-3], "dump")
    assert code == 20
    assert "Ping (type 8)" in out
    assert "StreamData" not in out
    assert err.startswith("jotunheim: offset %d: capture ends inside a frame" % last)


def test_dump_garbage_after_frames(tmp_path, capsys):
    data = stream_capture()
    code, out, err = run_dump(tmp_path, capsys, data + b"\x00garbage", "dump")
    assert code == 20
    assert "StreamData (type 33)" in out
    assert "offset %d: error: bad preamble 0x00" % len(data) in out
    assert err == "jotunheim: offset %d: bad preamble 0x00 (expected 0x4a)\n" % len(data)


def test_dump_serial_skips_a_corrupt_frame(tmp_path, capsys):
    wires = [protocol.encode_serial_frame(name, fields) for name, fields in MESSAGES]
    broken = bytearray(wires[1])
    broken[3] ^= 0x40
    wires[1] = bytes(broken)
    code, out, err = run_dump(tmp_path, capsys, b"".join(wires), "dump", "--serial")
    assert code == 20
    assert "CapabilitiesRequest" not in out
    assert "ToolCall (type 16)" in out and "StreamData (type 33)" in out
    assert err.startswith("jotunheim: offset %d: CRC mismatch" % len(wires[0]))


def test_dump_malformed_payload(tmp_path, capsys):
    code, out, err = run_dump(tmp_path, capsys, protocol.frame(8, b"\x08"), "dump")
    assert code == 20
    assert "error: malformed Ping payload" in out
    assert err.startswith("jotunheim: offset 0: malformed Ping payload")


def test_dump_input_errors(tmp_path, capsys):
    code, _, err = run_dump(tmp_path, capsys, b"4a 02 08 zz", "dump", "--hex")
    assert (code, err) == (20, "jotunheim: --hex input: 'z' at hex digit 6 is not a hex digit\n")
    code, _, err = run_dump(tmp_path, capsys, b"4a0", "dump", "--hex")
    assert code == 20 and "odd number" in err
    assert main(["dump", str(tmp_path / "missing")]) == 30
    assert "jotunheim: cannot read" in capsys.readouterr().err


def test_usage_and_help(capsys):
    assert main(["dump", "--no-such-option"]) == 2
    assert main([]) == 2
    assert main(["--format", "yaml", "dump"]) == 2
    capsys.readouterr()
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "Exit codes:" in out and "130" in out


# ------------------------------------------------------------------ construct vs protocol

def reference_stream(data, max_frame):
    """protocol.FrameDecoder's view: (frames, "ok" | "pending" | "error")."""
    decoder = protocol.FrameDecoder(max_frame)
    got = []
    try:
        got += decoder.feed(data)
        got += decoder.feed(b"")  # an error after complete frames is raised here
    except protocol.ProtocolError:
        return got, "error"
    return got, "pending" if decoder.pending() else "ok"


def construct_stream(data, max_frame):
    capture = frames.parse_capture(data, max_frame=max_frame)
    got = [(f.type_id, f.payload) for f in capture.frames]
    if not capture.errors:
        return got, "ok"
    return got, "pending" if capture.errors[0][1].startswith("capture ends") else "error"


def golden_frames():
    return [protocol.frame(protocol.message_type(kind), encoded)
            for _, kind, _, encoded in load_vectors() if kind in TOP_LEVEL]


STREAM_CASES = [
    b"",
    stream_capture(),
    protocol.frame(0x3FFF, b"x" * 300),
    b"\x4a\x82\x80\x00\x88\x00\x08\x01",    # overlong varints within their widths
    b"\x4b\x00\x08",                        # bad preamble
    b"\x4a\x80\x80\x80\x80\x80\x00\x08",    # length varint of six bytes
    b"\x4a\x00\x80\x80\x01",                # type varint of three bytes
    b"\x4a\x00\x00",                        # type 0
    b"\x4a\x81\x08\x08",                    # 1025 > max_frame
    stream_capture()[:-1],
    protocol.encode_frame("Ping", {"seq": 1}) + b"\x4a\x01",
    protocol.encode_frame("Ping", {"seq": 1}) + b"\x00\x4a",
]


@pytest.mark.parametrize("data", STREAM_CASES + [b"".join(golden_frames())])
def test_construct_agrees_with_frame_decoder(data):
    assert construct_stream(data, 1024) == reference_stream(data, 1024)


def test_construct_agrees_with_frame_decoder_on_random_damage():
    rng = random.Random(1)
    wires = golden_frames()
    for _ in range(300):
        data = bytearray(b"".join(rng.sample(wires, 4)))
        for _ in range(rng.randrange(3)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        cut = rng.randrange(len(data) + 1)
        data = bytes(data[:cut])
        assert construct_stream(data, 4096) == reference_stream(data, 4096)


def reference_serial(data, max_frame):
    decoder = protocol.SerialDecoder(max_frame)
    return decoder.feed(data), decoder.dropped


def construct_serial(data, max_frame):
    capture = frames.parse_capture(data, serial=True, max_frame=max_frame)
    dropped = [e for e in capture.errors if not e[1].startswith("capture ends")]
    return [(f.type_id, f.payload) for f in capture.frames], len(dropped)


def raw_serial(body):
    """A serial frame around any body, with a correct CRC."""
    from binascii import crc32
    body += (crc32(body) & 0xFFFFFFFF).to_bytes(4, "little")
    return b"\x00" + bytes(cobs(body)) + b"\x00"


def cobs(data):
    out = bytearray()
    for block in data.split(b"\x00"):
        while len(block) >= 254:
            out += b"\xff" + block[:254]
            block = block[254:]
        out += bytes((len(block) + 1,)) + block
    return out


SERIAL_CASES = [
    serial_capture(),
    b"\x13\x37\x00" + serial_capture() + b"\x01\x02",    # noise before, a tail after
    raw_serial(b"\x00\x08\x01"),                          # type 0
    raw_serial(b"\x80\x80\x01\x08"),                      # type varint of three bytes
    raw_serial(b"\x08" + b"y" * 2000),                    # over max_frame
    b"\x00\x02\x01\x00",                                  # too short
    b"\x00\x05\x01\x02\x00",                              # COBS block past the end
]


@pytest.mark.parametrize("data", SERIAL_CASES)
def test_construct_agrees_with_serial_decoder(data):
    assert construct_serial(data, 1024) == reference_serial(data, 1024)


def test_construct_agrees_with_serial_decoder_on_random_damage():
    rng = random.Random(2)
    wires = [protocol.serial_frame(protocol.message_type(kind), encoded)
             for _, kind, _, encoded in load_vectors() if kind in TOP_LEVEL]
    for _ in range(300):
        data = bytearray(b"".join(rng.sample(wires, 4)))
        for _ in range(rng.randrange(3)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        data = bytes(data)
        assert construct_serial(data, 4096) == reference_serial(data, 4096)


def test_construct_builds_what_protocol_frames():
    for type_id, payload in [(1, b""), (16, b"\x08\x01"), (1000, bytes(200))]:
        built = frames.STREAM_FRAME.build(
            {"length": len(payload), "type": type_id, "payload": payload})
        assert built == protocol.frame(type_id, payload)


# ------------------------------------------------------------------ demo
#
# The installed `jotunheim demo`, run as a user runs it: a process of its own, with the
# real firmware on a simulated ESP32. TMPDIR points at tmp_path, so what the demo leaves
# behind (a state directory, a device process working in it) is there to be seen.

def jotunheim_command():
    """The installed console script: pip install -e . puts it beside the interpreter."""
    path = os.path.join(os.path.dirname(sys.executable), "jotunheim")
    assert os.path.exists(path), "jotunheim is not installed: pip install -e ."
    return path


def demo_env(tmp_path):
    return dict(os.environ, TMPDIR=str(tmp_path))


def run_demo(tmp_path, *options):
    done = subprocess.run([jotunheim_command(), *options], capture_output=True, text=True,
                          env=demo_env(tmp_path), timeout=120)
    assert demo_leftovers(tmp_path) == ([], [])
    return done


def demo_leftovers(tmp_path):
    """State directories of the demo under tmp_path, and processes still working in one."""
    states = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("jotunheim-demo-"))
    processes = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.readlink("/proc/%s/cwd" % pid).startswith(str(tmp_path)):
                processes.append(int(pid))
        except OSError:  # gone, or not ours to read
            pass
    return states, processes


@pytest.mark.parametrize("runtime", ["micropython", "cpython"])
def test_demo(runtime, tmp_path):
    done = run_demo(tmp_path, "demo", "--runtime", runtime)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert out.startswith("-- device: a simulated esp32 running firmware/ on ")
    assert ("MicroPython unix port" if runtime == "micropython" else "CPython") in out
    assert "device -> controller  Hello (type 1)" in out
    assert 'device_id: "esp32-a4cf12b3c4d5"' in out
    assert "-- capabilities: esp32-a4cf12b3c4d5" in out and ", board esp32, " in out
    assert "device_echo (" in out and "-- tools.json tools: lamp (" in out
    assert "-- hardware: I2C, SPI, UART" in out and "(6 input only)" in out
    assert 'greeting: "hello, device"' in out
    lamp_id = int(out.split("-- tools.json tools: lamp (")[1].split(")")[0])
    assert "tool_id: %d" % lamp_id in out
    assert "-- GPIO 2 on the simulated board: 0 before the call, 1 after" in out
    assert "-- device_info: esp32-a4cf12b3c4d5, up " in out
    assert ("-- device_heap: " in out) == (runtime == "micropython")
    assert "controller -> device  unknown type 1000, 6 bytes" in out
    assert "status: UNIMPLEMENTED (12)" in out and "message_type: 1000" in out
    assert "device -> controller  Pong (type 9)" in out
    assert 'reason: "demo finished"' in out
    assert "session ended: the controller said goodbye: demo finished" in out
    assert out.endswith("-- device stopped\n")


def test_demo_json_on_micropython(tmp_path):
    done = run_demo(tmp_path, "--format", "json", "demo")
    assert done.returncode == 0, done.stderr
    events = json.loads(done.stdout)
    replies = [e for e in events if e["event"] == "frame" and e["from"] == "device"]
    assert [e["name"] for e in replies] == [
        "Hello", "Capabilities", "ToolResult", "ToolResult", "ToolResult", "ToolResult",
        "CapabilityChanged", "Ack", "LogRecord", "ToolResult", "Error", "Pong", "LogRecord"]
    assert replies[7]["fields"]["status"] == "OK"                 # Script_blink registered
    assert replies[8]["fields"]["message"].endswith("blinked 3 times")  # the ctx.log
    assert replies[9]["fields"]["value"] == 0
    tools = {t["name"]: t for t in replies[1]["fields"]["tools"]}
    assert tools["lamp"]["kind"] == "TOOL_CONFIGURED"
    calls = [e["fields"] for e in events if e.get("name") == "ToolCall"]
    assert "tool_name" not in calls[1]  # the lamp is called by its id
    assert (calls[1]["tool_id"], calls[1]["args"]) == (tools["lamp"]["id"], {"value": True})
    heap = replies[5]["fields"]
    assert heap["status"] == "OK" and 0 < heap["value"] < 112640  # the ESP32's free heap
    assert replies[-3]["fields"]["status"] == "UNIMPLEMENTED"
    assert replies[-3]["wire"] == bytes(protocol.encode_frame(
        "Error", replies[-3]["fields"])).hex()
    notes = [e["text"] for e in events if e["event"] == "note"]
    assert "GPIO 2 on the simulated board: 0 before the call, 1 after" in notes


def test_demo_reports_a_device_that_cannot_start(tmp_path):
    # 8 KB of heap cannot hold the agent
    done = run_demo(tmp_path, "demo", "--heap", "8k")
    assert done.returncode == 10
    assert done.stderr.startswith("jotunheim: the device did not start: MemoryError")


def test_demo_cleans_up_when_interrupted(tmp_path):
    demo = subprocess.Popen([jotunheim_command(), "demo"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env=demo_env(tmp_path))
    try:
        deadline = time.monotonic() + 60
        while not demo_leftovers(tmp_path)[1]:  # until the device runs
            assert demo.poll() is None and time.monotonic() < deadline
            time.sleep(0.02)
        demo.send_signal(signal.SIGINT)
        assert demo.wait(timeout=30) == 130
    finally:
        demo.kill()
        err = demo.communicate()[1]
    assert err == "jotunheim: interrupted\n"
    assert demo_leftovers(tmp_path) == ([], [])
