# The controller half of `jotunheim demo`.
#
# The device is the real firmware (firmware/: boot.py, main.py and the agent) on a
# simulated ESP32 (host_sim.runner.Device): under MicroPython's unix port by default, with
# its code compiled to .mpy by mpy-cross as it is deployed to a board, or under CPython
# from source. Its settings put the agent in listen mode on a free port, and a tools.json
# adds a "lamp" tool bound to pin_write on GPIO 2. This side connects over loopback TCP and
# walks through a session -- Hello and version negotiation, the capability document,
# device_echo, the lamp by its id (then the simulated pin's level), device_info and
# device_heap, a frame of a type nobody defines, Ping, Goodbye -- checking every answer.
# Each frame, both ways, goes to a `report` callback as
# {"event": "frame", "from": ..., "to": ..., "wire": bytes}; remarks go as
# {"event": "note", "text": ...}. The device and its state directory are gone when
# run_demo() returns, whatever happened (Ctrl-C included).
import random
import re
import socket
import tempfile
import time

import protocol
from host_sim.runner import Device, SimError, load_board

from . import bundle, frames

BOARD = "esp32"
TIMEOUT = 10.0
BOOT_TIMEOUT = 30.0
UNKNOWN_TYPE = 1000  # no schema defines it: the device must answer UNIMPLEMENTED
LAMP_PIN = 2
TOOLS = {"tools": [
    {"name": "lamp", "description": "The lamp on GPIO %d" % LAMP_PIN,
     "parameters": [{"name": "value", "type": "bool", "description": "light or not"}],
     "bind": {"op": "pin_write", "args": {"pin": LAMP_PIN}}},
]}
ECHO_VALUE = {"greeting": "hello, device", "numbers": [2, 40, 2.5], "raw": b"\x00\xff",
              "nothing": None}
RUNTIMES = {"micropython": "the MicroPython unix port (code compiled to .mpy)",
            "cpython": "CPython (code from source)"}
CONTROLLER_HELLO = {
    "version_min": protocol.PROTOCOL_VERSION_MIN,
    "version_max": protocol.PROTOCOL_VERSION,
    "role": "ROLE_CONTROLLER",
    "device_id": "jotunheim-demo",
    "name": "jotunheim demo controller",
    "max_frame": frames.MAX_FRAME,
}


class DemoError(Exception):
    """The device answered wrongly, or not at all."""


class DemoSetupError(DemoError):
    """The device could not be started: a program, a port or memory is missing."""


# The device's port comes from just below Linux's ephemeral range (32768 up): a port the
# kernel hands out to outgoing connections could be taken by one between the check here
# and the device's bind.
DEMO_PORTS = range(32000, 32768)


def free_port(ports=DEMO_PORTS, first=None):
    """A loopback TCP port from `ports` that nothing holds, looked for from index `first`
    (a random one by default) on, round the range."""
    if first is None:
        first = random.randrange(len(ports))
    for i in range(len(ports)):
        port = ports[(first + i) % len(ports)]
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise DemoSetupError("no free port from %d to %d on 127.0.0.1" % (ports[0], ports[-1]))


def device_files(runtime, board, port):
    """The flash of the demo device: firmware, board profile, settings, tools.json."""
    settings = {"agent.mode": "listen", "agent.listen_port": port,
                "agent.listen_host": "127.0.0.1"}
    try:
        return bundle.firmware_files(runtime, board, settings=settings, tools=TOOLS)
    except bundle.BundleError as e:
        raise DemoSetupError(str(e)) from None


def wait_listening(device, timeout=BOOT_TIMEOUT):
    """Wait for the agent's "listening on port" line; DemoSetupError if it fails first."""
    deadline = time.monotonic() + timeout
    while True:
        console = device.console.text()
        if re.search(r"listening on port \d+", console):
            return
        if "Traceback" in console or not device.running:
            raise DemoError("the device did not start: %s" % failure(console))
        if time.monotonic() > deadline:
            raise DemoError("the device did not start within %d s; its console said: %s"
                                 % (timeout, last_line(console)))
        time.sleep(0.05)


def failure(console):
    """The exception line of the last traceback on the console, else its last line."""
    lines = console.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("Traceback")]
    if starts:
        for line in lines[starts[-1] + 1:]:
            if line and not line[0].isspace():
                return line
    return last_line(console) or "(nothing on its console)"


def last_line(text):
    lines = [line for line in text.splitlines() if line.strip() and line.strip() != ">>>"]
    return lines[-1].strip() if lines else ""


def demo_board(heap):
    """The ESP32's profile, with `heap` bytes of free heap if given."""
    board = load_board(BOARD)
    if heap is not None:
        board["heap_bytes"] = heap
    return board


def run_demo(report, runtime="micropython", port=0, heap=None):
    """Start the device, hold a session with it, stop it; DemoError on any problem.

    heap: the board's free heap in bytes (MicroPython only; default the ESP32's)."""
    port = port or free_port()
    with tempfile.TemporaryDirectory(prefix="jotunheim-demo-") as state:
        device = None
        try:
            # pace 1: the device's clock runs in real time, as a board's does
            device = Device(demo_board(heap), state, runtime=runtime, pace=1)
            device.put_files(device_files(runtime, device.board, port))
            device.start()
            wait_listening(device)
            report({"event": "note", "text": "device: a simulated %s running firmware/ on %s, "
                    "the agent listening on 127.0.0.1:%d" % (BOARD, RUNTIMES[runtime], port)})
            with connect(port) as sock:
                converse(Session(sock, report), device)
            ended = wait_console(device, r"[^\n]*session ended[^\n]*")
            report({"event": "note", "text": "the device's console: " + ended.strip()})
        except (SimError, OSError) as e:  # no board profile, interpreter or flash
            raise DemoSetupError(str(e)) from None
        except DemoError as e:
            if isinstance(e, DemoSetupError):
                raise
            said = last_line(device.console.text())
            raise DemoError("%s%s" % (e, "; the device's console said: " + said if said
                                      else "")) from None
        finally:
            if device is not None:
                device.stop()
    report({"event": "note", "text": "device stopped"})


def wait_console(device, pattern, timeout=TIMEOUT):
    """The first console text matching pattern; DemoError if none comes in time."""
    deadline = time.monotonic() + timeout
    while True:
        found = re.search(pattern, device.console.text())
        if found:
            return found.group(0)
        if time.monotonic() > deadline:
            raise DemoError("the device did not print %r" % pattern)
        time.sleep(0.05)


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
        """The next frame's bytes; None when the device has closed the connection."""
        while not self.inbox:
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                raise DemoError("the device did not answer within %d s" % TIMEOUT) from None
            except OSError as e:
                raise DemoError("cannot read from the device: %s" % e) from None
            if not data:
                return None
            self.buffer += data
            got, used, error = frames.split_stream(bytes(self.buffer))
            if error is not None:
                raise DemoError("the device sent a broken frame: %s" % error[1])
            self.inbox.extend(bytes(self.buffer[f.offset:f.offset + f.size]) for f in got)
            del self.buffer[:used]
        return self.inbox.pop(0)

    def _next_message(self):
        """The device's next message as (name, fields); (None, None) at the end."""
        wire = self._next_frame()
        if wire is None:
            return None, None
        self._record("device", wire)
        frame = frames.parse_capture(wire).frames[0]
        try:
            return protocol.decode_payload(frame.type_id, frame.payload)
        except protocol.ProtocolError as e:
            raise DemoError("the device sent a bad message: %s" % e) from None

    def receive(self, expected, also=()):
        """The device's next answer, which must be an `expected`; its decoded fields.

        Log records (and the events in `also`) may come at any time; a heartbeat Ping is
        answered on the way."""
        while True:
            name, fields = self._next_message()
            if name is None:
                raise DemoError("the device closed the connection")
            if name == "Ping":
                self.send("Pong", fields)
            elif name != "LogRecord" and name not in also:
                break
        if name != expected:
            raise DemoError("expected %s from the device, got %s" % (expected, name))
        return fields

    def until_closed(self):
        """Read (and report) what the device still sends until it closes the connection."""
        while self._next_message()[0] is not None:
            pass

    def next_request_id(self):
        self.request_id += 1
        return self.request_id

    def call(self, **call):
        """Send a ToolCall; return its ToolResult, which must be OK."""
        call["request_id"] = self.next_request_id()
        self.send("ToolCall", call)
        result = self.receive("ToolResult")
        expect(result["request_id"] == self.request_id, "ToolResult for another request")
        tool = call.get("tool_name") or "tool %d" % call["tool_id"]
        expect(status_name(result) == "OK", "%s failed: %s %s" % (
            tool, status_name(result), result["error"]))
        return result.get("value")


def expect(condition, problem):
    if not condition:
        raise DemoError(problem)


def status_name(reply):
    return protocol.enum_name("Status", reply["status"])


def note(session, text):
    session.report({"event": "note", "text": text})


def converse(session, device):
    """The demo session, from Hello to Goodbye."""
    session.send("Hello", CONTROLLER_HELLO)
    hello = session.receive("Hello")
    expect(protocol.enum_name("Role", hello["role"]) == "ROLE_DEVICE", "peer is not a device")
    try:
        version = protocol.negotiate_version(CONTROLLER_HELLO, hello)
    except protocol.ProtocolError as e:
        raise DemoError(str(e)) from None
    note(session, "negotiated protocol version %d with %s" % (version, hello["device_id"]))
    session.send("CapabilitiesRequest", {"request_id": session.next_request_id()})
    caps = session.receive("Capabilities")
    expect(caps["request_id"] == session.request_id, "Capabilities for another request")
    tools = {tool["name"]: tool for tool in summarize(session, caps)}
    expect({"device_echo", "device_info", "lamp"} <= set(tools),
           "the device does not offer device_echo, device_info and lamp")

    echoed = session.call(tool_name="device_echo", args={"value": ECHO_VALUE})
    expect(echoed == ECHO_VALUE, "device_echo gave %r" % (echoed,))
    switch_lamp(session, device, tools["lamp"]["id"])
    info = session.call(tool_name="device_info")
    note(session, "device_info: %s, up %d ms, heap free: %s, sessions open: %d" % (
        info["id"], info["uptime_ms"], byte_count(info.get("free_memory")), info["sessions"]))
    if device.runtime == "micropython":  # CPython does not report its free heap
        heap = session.call(tool_name="device_heap")
        note(session, "device_heap: %d bytes free after a collection" % heap)
    register_and_call_script(session, device)
    unknown_and_ping(session)
    session.send("Goodbye", {"reason": "demo finished"})
    session.until_closed()
    note(session, "controller sent %d frames (%d bytes), device sent %d frames (%d bytes)"
         % tuple(session.counts["controller"] + session.counts["device"]))


BLINK = """\
def run(ctx, times=3):
    for _ in range(times):
        ctx.fenrir.pin_toggle(2)
    ctx.log("blinked %d times" % times)
    return ctx.fenrir.pin_read(2)
"""


def register_and_call_script(session, device):
    """Register a script at run time (it becomes tool Script_blink) and call it."""
    session.send("ScriptRegister", {
        "request_id": session.next_request_id(), "name": "blink", "language": "python",
        "source": BLINK, "description": "Toggle the lamp on GPIO 2 a number of times",
        "parameters": [{"name": "times", "type": 3, "required": False,
                        "default_value": 3, "description": "how many toggles"}],
        "returns": {"type": 3, "description": "the level GPIO 2 is left at"}})
    ack = session.receive("Ack", also=("CapabilityChanged",))
    expect(status_name(ack) == "OK", "ScriptRegister failed: %s" % ack["message"])
    before = device.world.level(2)
    level = session.call(tool_name="Script_blink", args={"times": 3})
    note(session, "registered the script blink as tool Script_blink and called it: GPIO 2 "
         "went from %d to %d after three toggles" % (before, level))


def summarize(session, caps):
    """Say what the capability document holds; its tools."""
    device, hardware, resources = caps["device"], caps["hardware"], caps["resources"]
    note(session, "capabilities: %s \"%s\", board %s, firmware %s, protocol %d" % (
        device["id"], device["name"], device["board"], device["firmware_version"],
        device["protocol_version"]))
    for kind in ("TOOL_BUILTIN", "TOOL_CONFIGURED"):
        names = ["%s (%d)" % (t["name"], t["id"]) for t in caps["tools"]
                 if protocol.enum_name("ToolKind", t["kind"]) == kind]
        note(session, "%s tools: %s" % ("builtin" if kind == "TOOL_BUILTIN" else
                                         "tools.json", ", ".join(names) or "none"))
    gpio = hardware["gpio"]
    note(session, "hardware: %s; %d GPIOs (%d input only), %d analog, %d PWM" % (
        ", ".join(hardware["interfaces"]), len(gpio["available"]), len(gpio["input_only"]),
        len(gpio["analog"]), len(gpio["pwm"])))
    note(session, "resources: memory %s, free %s; %d MHz; %d calls at a time; frames up to "
         "%s; storage %s, free %s" % (
             byte_count(resources["max_memory"]), byte_count(resources["free_memory"]),
             resources["cpu_mhz"], resources["max_concurrent_tools"],
             byte_count(resources["max_frame"]), byte_count(resources["storage_total"]),
             byte_count(resources["storage_free"])))
    return caps["tools"]


def byte_count(n):
    """A size from the device; 0 or None is what a device that cannot tell sends."""
    return "%d bytes" % n if n else "not reported"


def switch_lamp(session, device, lamp_id):
    """Light the lamp by its tool id; the simulated board's pin must go high."""
    before = device.world.level(LAMP_PIN)
    session.call(tool_id=lamp_id, args={"value": True})
    after = device.world.level(LAMP_PIN)
    note(session, "GPIO %d on the simulated board: %d before the call, %d after" % (
        LAMP_PIN, before, after))
    expect(after == 1, "the lamp is on but GPIO %d is low" % LAMP_PIN)


def unknown_and_ping(session):
    """A frame of an unknown type must get UNIMPLEMENTED and keep the connection: Ping."""
    session.send_frame(protocol.frame(UNKNOWN_TYPE, b"\x08\x07"))
    error = session.receive("Error")
    expect(status_name(error) == "UNIMPLEMENTED" and error["message_type"] == UNKNOWN_TYPE,
           "an unknown message type was not answered UNIMPLEMENTED")
    now = int(time.time() * 1000)
    session.send("Ping", {"seq": 1, "time_ms": now})
    pong = session.receive("Pong")
    expect(pong["seq"] == 1 and pong["time_ms"] == now, "Pong does not match Ping")
    note(session, "the device answered type %d with UNIMPLEMENTED and kept the connection"
         % UNKNOWN_TYPE)
