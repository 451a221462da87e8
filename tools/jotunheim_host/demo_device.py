# A small Jotunheim device for `jotunheim demo`: answers one controller over loopback TCP.
#
# Runs unchanged on MicroPython's unix port and on CPython: it needs only socket,
# select.poll and the protocol package. Usage: demo_device.py [PORT]. It listens on
# 127.0.0.1:PORT (0, the default, picks a free port itself: the unix port's sockets have
# no getsockname), prints the port as its first line on stdout, serves one connection, and
# exits when the controller says Goodbye or hangs up.
import gc
import random
import select
import socket
import sys

import protocol

DEVICE_ID = "demo-0001"
DEVICE_NAME = "Jotunheim demo device"
FIRMWARE_VERSION = "0.1.0-demo"
MAX_FRAME = 4096
IDLE_MS = 30000
# enum numbers from jotunheim.proto (protocol.enums would load every enum name)
OK = 0
INVALID_ARGUMENT = 3
FAILED_PRECONDITION = 9
NOT_FOUND = 5
UNIMPLEMENTED = 12
UNAVAILABLE = 14
ROLE_DEVICE = 1
LINUX = 4
TOOL_BUILTIN = 1
TYPE_INT = 3
TYPE_STRING = 5

HELLO = {
    "version_min": protocol.PROTOCOL_VERSION_MIN,
    "version_max": protocol.PROTOCOL_VERSION,
    "role": ROLE_DEVICE,
    "device_id": DEVICE_ID,
    "name": DEVICE_NAME,
    "device_type": LINUX,
    "firmware_version": FIRMWARE_VERSION,
    "max_frame": MAX_FRAME,
}


def _parameter(name, value_type, description):
    return {"name": name, "type": value_type, "required": True, "description": description}


TOOLS = [
    {"id": 1, "name": "echo", "kind": TOOL_BUILTIN,
     "description": "Return the text it is given",
     "parameters": [_parameter("text", TYPE_STRING, "text to send back")],
     "returns": {"type": TYPE_STRING, "description": "the same text"}},
    {"id": 2, "name": "add", "kind": TOOL_BUILTIN,
     "description": "Add two integers",
     "parameters": [_parameter("a", TYPE_INT, "first addend"),
                    _parameter("b", TYPE_INT, "second addend")],
     "returns": {"type": TYPE_INT, "description": "a + b"}},
    {"id": 3, "name": "heap", "kind": TOOL_BUILTIN,
     "description": "Free heap in bytes",
     "parameters": [],
     "returns": {"type": TYPE_INT, "description": "bytes free"}},
]

# The one place the interpreters differ: only MicroPython reports its free heap.
mem_free = getattr(gc, "mem_free", None)


def run_tool(name, args):
    """(status, value, error) of one tool run on checked arguments."""
    if name == "echo":
        return OK, args["text"], ""
    if name == "add":
        return OK, args["a"] + args["b"], ""
    if mem_free is None:
        return UNAVAILABLE, None, "this interpreter does not report its free heap"
    gc.collect()
    return OK, mem_free(), ""


def _fits(value, value_type):
    if value_type == TYPE_INT:
        return type(value) is int
    return type(value) is str


def check_args(tool, args):
    """What is wrong with a call's arguments, or None."""
    names = [p["name"] for p in tool["parameters"]]
    for key in args:
        if key not in names:
            return "unknown argument %s" % key
    for p in tool["parameters"]:
        if p["name"] not in args:
            return "missing argument %s" % p["name"]
        if not _fits(args[p["name"]], p["type"]):
            return "argument %s must be %s" % (
                p["name"], "an integer" if p["type"] == TYPE_INT else "a string")
    return None


def find_tool(call):
    for tool in TOOLS:
        if tool["id"] == call.get("tool_id") or tool["name"] == call.get("tool_name"):
            return tool
    return None


def on_tool_call(call):
    reply = {"request_id": call["request_id"]}
    tool = find_tool(call)
    if tool is None:
        reply["status"] = NOT_FOUND
        reply["error"] = "no tool %s" % call.get("tool_name", call.get("tool_id"))
        return "ToolResult", reply
    problem = check_args(tool, call["args"])
    if problem is not None:
        reply["status"] = INVALID_ARGUMENT
        reply["error"] = "%s: %s" % (tool["name"], problem)
        return "ToolResult", reply
    status, value, error = run_tool(tool["name"], call["args"])
    reply["status"] = status
    reply["error"] = error
    if status == OK:
        reply["value"] = value
    return "ToolResult", reply


class Refused(Exception):
    """Answer with this Error, then close the connection."""


def on_hello(peer):
    # our own Hello went out on connect; a version both sides speak is all that is left
    try:
        protocol.negotiate_version(HELLO, peer)
    except protocol.ProtocolError as e:
        raise Refused({"status": FAILED_PRECONDITION, "message": str(e),
                       "message_type": protocol.message_type("Hello")})
    return None


def on_capabilities_request(request):
    free = mem_free() if mem_free is not None else 0
    return "Capabilities", {
        "request_id": request["request_id"],
        "revision": 1,
        "device": {"id": DEVICE_ID, "name": DEVICE_NAME, "type": LINUX,
                   "firmware_version": FIRMWARE_VERSION,
                   "protocol_version": protocol.PROTOCOL_VERSION},
        "tools": TOOLS,
        "resources": {"free_memory": free, "max_frame": MAX_FRAME},
    }


def on_ping(ping):
    return "Pong", {"seq": ping["seq"], "time_ms": ping["time_ms"]}


HANDLERS = {
    "Hello": on_hello,
    "CapabilitiesRequest": on_capabilities_request,
    "ToolCall": on_tool_call,
    "Ping": on_ping,
}


def answer(type_id, payload):
    """(message name, fields) answering one frame, or None; Refused ends the session."""
    try:
        name, fields = protocol.decode_payload(type_id, payload)
    except protocol.UnknownMessageType:
        return "Error", {"status": UNIMPLEMENTED, "message_type": type_id,
                         "message": "unknown message type %d" % type_id}
    except protocol.ProtocolError as e:
        return "Error", {"status": INVALID_ARGUMENT, "message_type": type_id,
                         "message": str(e)}
    if name == "Goodbye":
        raise Refused(None)
    handler = HANDLERS.get(name)
    if handler is None:
        return "Error", {"status": UNIMPLEMENTED, "message_type": type_id,
                         "request_id": fields.get("request_id", 0),
                         "message": "%s is not supported by this device" % name}
    return handler(fields)


def serve(conn):
    """Answer frames until Goodbye, hang-up, a broken stream or IDLE_MS of silence."""
    decoder = protocol.FrameDecoder(MAX_FRAME)
    poller = select.poll()
    poller.register(conn, select.POLLIN)
    conn.sendall(protocol.encode_frame("Hello", HELLO))  # both sides speak first
    while poller.poll(IDLE_MS):
        data = conn.recv(1024)
        if not data:
            return
        for type_id, payload in decoder.feed(data):
            try:
                reply = answer(type_id, payload)
            except Refused as refusal:
                if refusal.args[0] is not None:
                    conn.sendall(protocol.encode_frame("Error", refusal.args[0]))
                return
            if reply is not None:
                conn.sendall(protocol.encode_frame(reply[0], reply[1]))


def listen(port):
    """A listening socket on 127.0.0.1 and its port; port 0 tries random free ports."""
    for _ in range(100):
        chosen = port or random.randint(49152, 65535)
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            server.bind(socket.getaddrinfo("127.0.0.1", chosen)[0][-1])
        except OSError:
            server.close()
            if port:
                raise
            continue
        server.listen(1)
        return server, chosen
    raise OSError("no free port found")


def main():
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    server, port = listen(port)
    print(port)
    sys.stdout.flush()
    poller = select.poll()
    poller.register(server, select.POLLIN)
    if not poller.poll(IDLE_MS):
        print("no controller connected within %d ms" % IDLE_MS, file=sys.stderr)
        sys.exit(1)
    conn = server.accept()[0]
    try:
        serve(conn)
    except protocol.ProtocolError as e:
        print("dropped the connection: %s" % e, file=sys.stderr)
    finally:
        conn.close()
        server.close()


main()
