"""The OTA benchmark runs end to end with a small update and reports every number: the
phases of a push to a MicroPython device and the device's signature verification time.
Timings are not asserted (machines differ)."""
import json
import os
import subprocess
import sys

import pytest

BENCH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bench", "bench_ota.py")


def test_bench_ota_reports_every_measurement(tmp_path):
    out = tmp_path / "ota.json"
    done = subprocess.run([sys.executable, BENCH, "--size", "200000", "--iterations", "10",
                           "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Signature verification" in done.stdout and "Targets" in done.stdout
    report = json.loads(out.read_text())
    assert report["errors"] == []
    push = report["push"]
    assert push["payload_bytes"] == 200000 and push["final_offset"] == 200000
    for phase in ("begin_verify_s", "transfer_s", "commit_hash_s", "reboot_validate_s"):
        assert push[phase] > 0
    assert push["end_to_end_s"] == pytest.approx(push["begin_verify_s"] + push["transfer_s"] +
                                                 push["commit_hash_s"])
    assert push["chunks"] > 1 and 0 < push["largest_chunk"] <= push["first_credit"]
    verify = report["verification"]
    assert verify["key_bits"] == 3072 and verify["iterations"] == 10
    assert verify["verify_ms"] > 0 and verify["pow3_ms"] > 0
    assert set(report["targets"]) == {"end_to_end_s", "verify_ms"}
