"""The gRPC peer of the call round-trip benchmark: tools "add" and "echo" served by grpcio.

    python tests/bench/grpc_peer.py serve    # prints its port; serves until stdin closes
"""
# How this works: the request and the response are the project's own ToolCall and
# ToolResult, Google protobuf classes built from protocol/jotunheim.proto at run time
# (tests/google_pb.py); a generic method handler serves them as the unary method
# /jotunheim.bench.Tools/Call, which is what code generated from
# `service Tools { rpc Call(ToolCall) returns (ToolResult); }` would register. Tools are
# addressed by id (TOOL_IDS) or by name, and run as the device runs them.
#
# serve_in_subprocess() starts the server as its own process, as the device is one, so
# client and server do not share a GIL; the server uses protobuf's default (upb) backend
# whatever the caller's environment says. measure_grpc() times calls on a direct
# connection, then counts the bytes of as many calls through a CountingProxy on a second
# connection, after warm-up (connection setup and HPACK's first headers excluded): the
# proxy's thread hops would otherwise be in the latencies. measure_latencies() and
# CountingProxy are there for the Jotunheim side of the comparison too.
import contextlib
import itertools
import math
import os
import select
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent import futures

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.dirname(HERE)
if TESTS not in sys.path:
    sys.path.insert(0, TESTS)

import google_pb  # noqa: E402

SERVICE = "jotunheim.bench.Tools"
METHOD = "/%s/Call" % SERVICE
TOOL_IDS = {"add": 1, "echo": 2}  # as a device numbers its tools for a session
TOOL_NAMES = {number: name for name, number in TOOL_IDS.items()}
DEFAULT_ARGS = {"add": {"a": 2, "b": 3}, "echo": {"text": "hello"}}
START_TIMEOUT = 30.0
CHANNEL_OPTIONS = [("grpc.enable_http_proxy", 0)]  # loopback, whatever http_proxy says


def messages():
    """The jotunheim_pb2 module (ToolCall, ToolResult, Status ...), built once."""
    with tempfile.TemporaryDirectory() as tmp:
        return google_pb.google_module(tmp)


def tool_call(pb, request_id, tool, args):
    """A ToolCall addressing `tool` by id, with native argument values."""
    return google_pb.to_google(pb, "ToolCall", {"request_id": request_id,
                                                "tool_id": TOOL_IDS[tool], "args": args})


# ---------------------------------------------------------------- server


def run_tool(pb, call):
    """The ToolResult for a ToolCall: add (int a + int b) and echo (text)."""
    result = pb.ToolResult(request_id=call.request_id)
    if call.WhichOneof("tool") == "tool_name":
        name = call.tool_name
    else:
        name = TOOL_NAMES.get(call.tool_id)
    if name == "add":
        a, b = _argument(call, "a", "int_value"), _argument(call, "b", "int_value")
        if a is None or b is None:
            return _failed(pb, result, "INVALID_ARGUMENT", "add takes integers a and b")
        result.value.int_value = a + b
    elif name == "echo":
        text = _argument(call, "text", "string_value")
        if text is None:
            return _failed(pb, result, "INVALID_ARGUMENT", "echo takes a string text")
        result.value.string_value = text
    else:
        return _failed(pb, result, "NOT_FOUND", "no tool %r" % (name or call.tool_id,))
    return result


def _argument(call, key, kind):
    """Argument `key` of the call if it is a Value of that kind, else None."""
    if key in call.args and call.args[key].WhichOneof("kind") == kind:
        return getattr(call.args[key], kind)
    return None


def _failed(pb, result, status, error):
    result.status = pb.Status.Value(status)
    result.error = error
    return result


def serve(port=0, workers=4):
    """Start a grpcio server for the tools on 127.0.0.1; returns (server, port)."""
    import grpc
    pb = messages()
    handler = grpc.unary_unary_rpc_method_handler(
        lambda call, context: run_tool(pb, call),
        request_deserializer=pb.ToolCall.FromString,
        response_serializer=pb.ToolResult.SerializeToString)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
        SERVICE, {"Call": handler}),))
    port = server.add_insecure_port("127.0.0.1:%d" % port)
    server.start()
    return server, port


@contextlib.contextmanager
def serve_in_subprocess(started=None):
    """Run the server in its own process; yields its port. started(pid), if given, is
    called once it listens (bench_agent pins it to a CPU)."""
    env = {key: value for key, value in os.environ.items()
           if key != "PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION"}
    with tempfile.TemporaryFile("w+") as errors:
        process = subprocess.Popen([sys.executable, os.path.abspath(__file__), "serve"],
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                   stderr=errors, text=True, env=env)
        try:
            ready = select.select([process.stdout], [], [], START_TIMEOUT)[0]
            line = process.stdout.readline() if ready else ""
            if not line.strip().isdigit():
                errors.seek(0)
                raise RuntimeError("the gRPC peer did not start: %s" % (
                    (line + errors.read()).strip() or "no port within %g s" % START_TIMEOUT))
            if started is not None:
                started(process.pid)
            yield int(line)
        finally:
            process.stdin.close()  # the server's signal to stop
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            process.stdout.close()


# ---------------------------------------------------------------- client and measurement


def connect(port):
    """A channel to the server and its Call method: call(ToolCall) -> ToolResult."""
    import grpc
    pb = messages()
    channel = grpc.insecure_channel("127.0.0.1:%d" % port, options=CHANNEL_OPTIONS)
    call = channel.unary_unary(METHOD, request_serializer=pb.ToolCall.SerializeToString,
                               response_deserializer=pb.ToolResult.FromString)
    return channel, call


def measure_latencies(fn, n=2000, warmup=200):
    """Call fn() warmup times, then time n calls: {p50_us, p99_us, mean_us, calls}."""
    for _ in range(warmup):
        fn()
    clock = time.perf_counter_ns
    times = []
    for _ in range(n):
        start = clock()
        fn()
        times.append(clock() - start)
    times.sort()

    def percentile(p):  # nearest rank
        return times[max(0, math.ceil(p / 100 * len(times)) - 1)] / 1000
    return {"p50_us": percentile(50), "p99_us": percentile(99),
            "mean_us": sum(times) / len(times) / 1000, "calls": n}


def round_trip_of(call, tool="add", args=None):
    """A function that makes one call of `tool` through `call` (connect()'s) and checks
    its status."""
    pb = messages()
    args = DEFAULT_ARGS[tool] if args is None else args
    ids = itertools.count(1)

    def round_trip():
        result = call(tool_call(pb, next(ids) & 0xFFFFFFFF, tool, args), timeout=10)
        if result.status != pb.OK:
            raise RuntimeError("%s failed: %s" % (tool, result.error))
    return round_trip


def measure_grpc(port, n=2000, warmup=200, tool="add", args=None):
    """Round trips of `tool` against the server on `port`, and its bytes on the wire:
    {p50_us, p99_us, mean_us, calls, bytes_per_call}."""
    channel, call = connect(port)
    with channel:
        report = measure_latencies(round_trip_of(call, tool, args), n, warmup)
    report["bytes_per_call"] = measure_bytes(port, n, warmup, tool, args)
    return report


def measure_bytes(port, n=200, warmup=20, tool="add", args=None):
    """Bytes on the wire per call of `tool` (both ways, HTTP/2 and gRPC framing
    included), through a counting proxy in front of the server on `port`."""
    with CountingProxy(port) as proxy:
        channel, call = connect(proxy.port)
        round_trip = round_trip_of(call, tool, args)
        with channel:
            for _ in range(warmup):
                round_trip()
            before = proxy.total()
            for _ in range(n):
                round_trip()
            return (proxy.total() - before) / n


class CountingProxy:
    """Relay 127.0.0.1:port to target_port, counting the bytes each way (threads)."""

    def __init__(self, target_port):
        self.target = ("127.0.0.1", target_port)
        self.upstream = 0     # client to server
        self.downstream = 0   # server to client
        self._lock = threading.Lock()
        self._sockets = []
        self._running = True
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)  # accept() wakes up to see close()
        self.port = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._accept, name="counting-proxy",
                                        daemon=True)
        self._thread.start()

    def total(self):
        """Bytes relayed both ways so far."""
        with self._lock:
            return self.upstream + self.downstream

    def close(self):
        self._running = False
        self._thread.join(5)
        self._listener.close()
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _accept(self):
        while self._running:
            try:
                client, _ = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            client.settimeout(None)
            server = socket.create_connection(self.target)
            for sock in (client, server):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._sockets += [client, server]
            for source, sink, direction in ((client, server, "upstream"),
                                            (server, client, "downstream")):
                threading.Thread(target=self._pump, args=(source, sink, direction),
                                 daemon=True).start()

    def _pump(self, source, sink, direction):
        while True:
            try:
                data = source.recv(65536)
            except OSError:
                data = b""
            if not data:
                break
            with self._lock:  # counted before it is passed on: the receiver cannot be ahead
                setattr(self, direction, getattr(self, direction) + len(data))
            try:
                sink.sendall(data)
            except OSError:
                break
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


def main(argv):
    if argv != ["serve"]:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    server, port = serve()
    print(port, flush=True)
    sys.stdin.read()  # until the parent closes our stdin, or ends
    server.stop(0)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
