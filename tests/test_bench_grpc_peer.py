"""The gRPC peer of the call round-trip benchmark: a real grpcio server in its own process
serving the project's ToolCall/ToolResult, measured through a real loopback proxy.
Timings are not asserted (machines differ)."""
import os
import socket
import sys

import pytest

BENCH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bench")
if BENCH not in sys.path:
    sys.path.insert(0, BENCH)
import grpc_peer  # noqa: E402


@pytest.fixture(scope="module")
def port():
    with grpc_peer.serve_in_subprocess() as port:
        yield port


@pytest.fixture(scope="module")
def pb():
    return grpc_peer.messages()


def test_the_tools_answer_as_the_device_does(port, pb):
    channel, call = grpc_peer.connect(port)
    with channel:
        added = call(grpc_peer.tool_call(pb, 7, "add", {"a": 2, "b": 40}), timeout=10)
        assert (added.request_id, added.status, added.value.int_value) == (7, pb.OK, 42)
        echoed = call(grpc_peer.tool_call(pb, 8, "echo", {"text": "hälsa"}), timeout=10)
        assert (echoed.request_id, echoed.value.string_value) == (8, "hälsa")
        by_name = call(pb.ToolCall(request_id=9, tool_name="echo",
                                   args={"text": pb.Value(string_value="x")}), timeout=10)
        assert by_name.value.string_value == "x"
        wrong = call(grpc_peer.tool_call(pb, 10, "add", {"a": "2", "b": 40}), timeout=10)
        assert (wrong.status, wrong.HasField("value")) == (pb.INVALID_ARGUMENT, False)
        assert "integers" in wrong.error
        missing = call(pb.ToolCall(request_id=11, tool_name="nope"), timeout=10)
        assert missing.status == pb.NOT_FOUND and "nope" in missing.error


def test_measure_grpc_reports_latencies_and_wire_bytes(port, pb):
    report = grpc_peer.measure_grpc(port, n=60, warmup=10, tool="echo")
    assert set(report) == {"p50_us", "p99_us", "mean_us", "calls", "bytes_per_call"}
    assert report["calls"] == 60
    assert 0 < report["p50_us"] <= report["p99_us"]
    assert report["mean_us"] > 0
    call = grpc_peer.tool_call(pb, 1, "echo", grpc_peer.DEFAULT_ARGS["echo"])
    result = grpc_peer.run_tool(pb, call)
    payloads = len(call.SerializeToString()) + len(result.SerializeToString())
    assert report["bytes_per_call"] > payloads  # HTTP/2 and gRPC framing come on top


def test_measure_latencies_times_each_call_after_warmup():
    calls = []
    report = grpc_peer.measure_latencies(lambda: calls.append(1), n=30, warmup=5)
    assert len(calls) == 35 and report["calls"] == 30
    assert 0 < report["p50_us"] <= report["p99_us"]


def test_counting_proxy_counts_both_directions():
    with socket.create_server(("127.0.0.1", 0)) as listener:
        with grpc_peer.CountingProxy(listener.getsockname()[1]) as proxy:
            with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as client:
                client.sendall(b"x" * 100)
                server, _ = listener.accept()
                with server:
                    received = b""
                    while len(received) < 100:
                        received += server.recv(100)
                    server.sendall(b"y" * 30)
                    reply = b""
                    while len(reply) < 30:
                        reply += client.recv(30)
            assert (proxy.upstream, proxy.downstream, proxy.total()) == (100, 30, 130)
