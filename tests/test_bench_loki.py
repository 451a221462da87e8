"""The Loki benchmark runs end to end with a few calls and reports every number: built-in
tool against Python script on MicroPython, Python against Lua script on CPython. Timings
are not asserted (machines differ)."""
import json
import os
import subprocess
import sys

BENCH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bench", "bench_loki.py")


def test_bench_loki_reports_every_measurement(tmp_path):
    out = tmp_path / "loki.json"
    done = subprocess.run([sys.executable, BENCH, "--calls", "20", "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Loki call cost" in done.stdout
    report = json.loads(out.read_text())
    assert report["errors"] == [] and report["calls"] == 20
    for runtime, kinds in (("micropython", ("builtin", "python_script")),
                           ("cpython", ("builtin", "python_script", "lua_script"))):
        for kind in kinds:
            entry = report[runtime][kind]
            assert entry["calls"] == 20 and 0 < entry["p50_us"] <= entry["p99_us"]
    assert report["micropython"]["script_over_builtin_p50"] > 0
    assert report["cpython"]["lua_over_python_p50"] > 0
