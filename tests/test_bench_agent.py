"""The agent benchmark runs end to end with a few calls and reports every number: round
trips (lean client, asyncio controller, gRPC), bytes per call, RAM and code size.
Timings are not asserted (machines differ)."""
import json
import os
import subprocess
import sys

BENCH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bench", "bench_agent.py")


def test_bench_agent_reports_every_measurement(tmp_path):
    out = tmp_path / "agent.json"
    # as it is run by hand: conftest's pure-Python protobuf backend is for the codec tests
    env = {key: value for key, value in os.environ.items()
           if key != "PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION"}
    done = subprocess.run([sys.executable, BENCH, "--calls", "50", "--no-builds", "--out",
                           str(out)],
                          capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Call round trip" in done.stdout and "Targets" in done.stdout
    report = json.loads(out.read_text())
    assert report["errors"] == []

    trips = report["round_trip"]
    for client in ("lean_client", "asyncio_controller", "grpc"):
        entry = trips[client]
        assert entry["calls"] == 50
        assert 0 < entry["p50_us"] <= entry["p99_us"] and entry["mean_us"] > 0
        assert entry["bytes_per_call"] > 0
    lean = trips["lean_client"]
    assert lean["request_bytes"] > 0 and lean["response_bytes"] > 0
    assert lean["bytes_per_call"] == lean["request_bytes"] + lean["response_bytes"]
    assert lean["device_cpu_us_per_call"] > 0 and lean["tool_id"] > 0
    assert trips["grpc"]["bytes_per_call"] > lean["bytes_per_call"]  # HTTP/2 framing
    for ratio in report["ratios"].values():
        assert ratio > 0

    ram = report["ram"]
    baseline = ram["free_at_boot_without_agent_bytes"]
    assert ram["heap_budget_bytes"] - 2048 < baseline < ram["heap_budget_bytes"] + 2048
    assert ram["builds"] is None  # --no-builds
    for code in ("mpy_on_flash", "romfs"):
        entry = ram[code]
        for moment in ("after_handshake", "after_first_call"):
            free = entry["free_%s_bytes" % moment]
            retained = entry["retained_%s_bytes" % moment]
            assert 0 < free < baseline and retained == baseline - free
            assert entry["retained_%s_32bit_estimate_bytes" % moment] == retained // 2
    # bytecode in ROMFS is not in the heap
    assert ram["romfs"]["retained_after_handshake_bytes"] \
        < ram["mpy_on_flash"]["retained_after_handshake_bytes"]
    assert ram["free_at_boot_without_agent_bytes"] > 0
    assert "estimate" in ram["note"]

    code = report["code"]
    assert 0 < code["protocol_mpy_bytes"] < code["device_mpy_bytes"]
    assert code["romfs_image_bytes"] >= code["device_mpy_bytes"]
    assert set(report["targets"]) == {"lean_p50_us", "asyncio_p50_us", "lean_p50_vs_grpc",
                                      "asyncio_p50_vs_grpc", "retained_ram_romfs"}
    for target in report["targets"].values():
        assert target["value"] > 0 and target["met"] in (True, False)


AB = os.path.join(os.path.dirname(BENCH), "ab_agent.py")


def test_ab_agent_times_two_versions_of_the_firmware_in_turns(tmp_path):
    out = tmp_path / "ab.json"
    done = subprocess.run([sys.executable, AB, "--base", "HEAD", "--rounds", "2", "--per",
                           "20", "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(out.read_text())
    assert report["base"] == "HEAD" and report["rounds"] == 2 and report["per"] == 20
    for name in ("base", "this"):
        entry = report["versions"][name]
        assert entry["calls"] == 40
        assert 0 < entry["p50_us"] <= entry["p99_us"] and entry["device_cpu_us_per_call"] > 0
    assert set(report["this_vs_base"]) == {"p50_us", "mean_us", "device_cpu_us_per_call"}
    assert report["pinned"] == (len(os.sched_getaffinity(0)) >= 2)


def test_ab_agent_says_which_base_it_cannot_have(tmp_path):
    done = subprocess.run([sys.executable, AB, "--base", "no-such-commit", "--out",
                           str(tmp_path / "ab.json")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "no-such-commit" in done.stderr
    assert not (tmp_path / "ab.json").exists()
