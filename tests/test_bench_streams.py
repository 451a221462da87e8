"""The stream benchmark runs end to end with a small size and reports every number:
throughput both ways per chunk size, the device's heap while streaming, the raw TCP
reference of the same micropython binary. Timings are not asserted (machines differ)."""
import json
import os
import subprocess
import sys

BENCH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bench", "bench_streams.py")


def test_bench_streams_reports_every_measurement(tmp_path):
    out = tmp_path / "streams.json"
    done = subprocess.run([sys.executable, BENCH, "--kbytes", "16", "--chunks", "256,1024",
                           "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Stream throughput" in done.stdout
    report = json.loads(out.read_text())
    assert report["errors"] == []
    assert report["bytes_per_measurement"] == 16 * 1024
    idle = report["heap_idle_free_bytes"]
    assert 0 < idle < report["heap_budget_bytes"]
    for size in ("256", "1024"):
        for direction in ("device_to_host", "host_to_device"):
            entry = report["chunks"][size][direction]
            assert entry["bytes"] == 16 * 1024 and entry["chunk_bytes"] == int(size)
            assert entry["kbytes_per_s"] > 0 and entry["seconds"] > 0
            assert entry["heap_samples"] >= 1
            assert entry["heap_held_bytes"] == idle - entry["heap_lowest_free_bytes"]
            assert entry["vs_raw_tcp"] > 0
            assert report["raw_tcp"][size][direction] > 0
    assert report["raw_tcp_bytes"] >= 16 * 1024
    assert report["to_file"]["kbytes_per_s"] > 0
