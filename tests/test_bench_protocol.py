# Smoke test of the protocol benchmark: a --quick run writes a complete report, and our
# bytes beat MCP JSON-RPC for every message. Timings are not asserted (machines differ).
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "tests", "bench", "bench_protocol.py")
MESSAGES = ("capabilities", "capabilities_compressed", "tool_call", "tool_call_named_args",
            "tool_call_by_name", "tool_result", "stream_chunk")
TIMES = ("ours_cpython", "google_protobuf_cpython", "json_mcp_cpython", "ours_micropython",
         "json_mcp_micropython")


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """The JSON report of one quick benchmark run."""
    out = tmp_path_factory.mktemp("bench") / "protocol.json"
    done = subprocess.run([sys.executable, BENCH, "--quick", "--out", str(out)],
                          capture_output=True, text=True, timeout=120)
    # exit 1: a measurement failed and is reported in the JSON (checked below)
    assert done.returncode in (0, 1), done.stdout + done.stderr
    assert "Targets" in done.stdout
    with open(out) as f:
        return json.load(f)


def test_report_has_machine_messages_and_targets(report):
    assert report["machine"]["python"]
    assert report["machine"]["micropython"]
    assert set(report["messages"]) == set(MESSAGES)
    for target in ("tool_call_bytes", "capabilities_bytes", "micropython_call_us"):
        entry = report["targets"][target]
        assert set(entry) >= {"value", "limit", "pass"}
        assert isinstance(entry["pass"], bool)


def test_no_measurement_failed(report):
    assert report["errors"] == []


def test_every_message_is_measured_everywhere(report):
    for name, entry in report["messages"].items():
        assert set(entry["time_us"]) == set(TIMES), name
        assert all(entry["time_us"][key] is not None for key in TIMES), name
        assert entry["ratios"]["micropython_ours_vs_json"] is not None, name


@pytest.mark.parametrize("name", MESSAGES)
def test_ours_is_smaller_than_mcp(report, name):
    sizes = report["messages"][name]["bytes"]
    assert all(sizes[key] > 0 for key in ("ours_payload", "ours_frame", "mcp_json", "mcp_stdio"))
    assert sizes["ours_payload"] < sizes["ours_frame"] < sizes["mcp_json"] < sizes["mcp_stdio"]
    assert 0 < report["messages"][name]["ratios"]["frame_vs_mcp"] < 1


@pytest.mark.parametrize("name", MESSAGES)
def test_codec_bytes_agree_with_google_and_micropython(report, name):
    checks = report["messages"][name]["checks"]
    assert checks["google_protobuf_bytes_equal"], name
    assert checks["micropython_bytes_equal"], name
