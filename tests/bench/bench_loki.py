"""Loki benchmark: what calling a user script costs next to a built-in tool.

    python tests/bench/bench_loki.py [--calls N] [--out FILE.json]
"""
# How this works. The firmware (esp32 profile, listen mode; .mpy code on MicroPython) runs
# on a simulated device (host_sim.runner) and the asyncio controller library calls it over
# loopback, N calls after a warm-up of each, p50 and p99 by nearest rank:
# - on the MicroPython unix port: device_echo(value=42) (built-in) against a trivial
#   Python script, Script_echo(value=42) (`def run(ctx, value): return value`); the ratio
#   of their p50 is the overhead of a script call;
# - on CPython (with lua added to the profile's script languages, as lupa is there): the
#   same Python script against the same script in Lua (`function run(ctx, p) return
#   p.value end`; each Lua call builds a fresh Lua state in a worker thread).
# Prints the numbers and writes JSON (default bench-results/loki.json). Exit status 0 when
# every measurement was taken, 1 when one failed (its error is in the JSON).
import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time

from results import ROOT, import_paths, write_report  # this script's directory

import_paths()

from agent_support import console_lines, free_port, install  # noqa: E402
from host_sim.runner import Device  # noqa: E402
from jotunheim_host.controller import connect  # noqa: E402

PYTHON = "def run(ctx, value):\n    return value\n"
LUA = "function run(ctx, p) return p.value end\n"
PARAMS = [{"name": "value", "type": 3, "required": True}]


def percentile(samples, p):
    ordered = sorted(samples)
    return ordered[max(0, min(len(ordered) - 1, int(round(p / 100 * len(ordered))) - 1))]


def profile(languages):
    with open(os.path.join(ROOT, "boards", "esp32.json")) as f:
        board = json.load(f)
    board["script_languages"] = languages
    return board


async def timed(d, tool, calls):
    for _ in range(max(5, calls // 10)):          # warm-up: loads, compiles, caches
        assert await d.call(tool, value=42) == 42
    samples = []
    for _ in range(calls):
        start = time.perf_counter()
        value = await d.call(tool, value=42)
        samples.append((time.perf_counter() - start) * 1e6)
        assert value == 42
    return {"calls": calls, "p50_us": round(percentile(samples, 50), 1),
            "p99_us": round(percentile(samples, 99), 1),
            "mean_us": round(sum(samples) / len(samples), 1)}


async def measure(port, scripts, tools, calls):
    d = await connect("tcp://127.0.0.1:%d" % port, reconnect=False)
    try:
        for name, language, source in scripts:
            ack = await d.request("ScriptRegister", {
                "name": name, "language": language, "source": source, "parameters": PARAMS})
            if ack["status"]:
                raise RuntimeError("registering %s: %s" % (name, ack["message"]))
        return {tool: await timed(d, tool, calls) for tool in tools}
    finally:
        await d.close()


def on_device(runtime, board, scripts, tools, calls):
    with tempfile.TemporaryDirectory() as root:
        port = free_port()
        device = Device(board, os.path.join(root, "device"), runtime=runtime)
        try:
            install(device, {"agent.mode": "listen", "agent.listen_port": port})
            device.start()
            console_lines(device, r"listening on port")
            return asyncio.run(measure(port, scripts, tools, calls))
        finally:
            device.stop()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--out", default=os.path.join(ROOT, "bench-results", "loki.json"))
    args = parser.parse_args(argv)
    report = {"calls": args.calls, "machine": platform.machine(),
              "python": platform.python_version(), "errors": []}
    try:
        got = on_device("micropython", "esp32", [("echo", "python", PYTHON)],
                        ("device_echo", "Script_echo"), args.calls)
        report["micropython"] = {"builtin": got["device_echo"], "python_script": got[
            "Script_echo"], "script_over_builtin_p50": round(
            got["Script_echo"]["p50_us"] / got["device_echo"]["p50_us"], 2)}
    except Exception as e:  # noqa: BLE001 - reported
        report["errors"].append("micropython: %s: %s" % (type(e).__name__, e))
    try:
        got = on_device("cpython", profile(["python", "lua"]),
                        [("echo", "python", PYTHON), ("lecho", "lua", LUA)],
                        ("device_echo", "Script_echo", "Script_lecho"), args.calls)
        report["cpython"] = {"builtin": got["device_echo"], "python_script": got[
            "Script_echo"], "lua_script": got["Script_lecho"], "lua_over_python_p50": round(
            got["Script_lecho"]["p50_us"] / got["Script_echo"]["p50_us"], 2)}
    except Exception as e:  # noqa: BLE001 - reported
        report["errors"].append("cpython: %s: %s" % (type(e).__name__, e))
    write_report(args.out, report)
    print("Loki call cost (p50 / p99 us, %d calls over loopback)" % args.calls)
    for runtime in ("micropython", "cpython"):
        for kind in ("builtin", "python_script", "lua_script"):
            entry = report.get(runtime, {}).get(kind)
            if entry:
                print("  %-12s %-14s %9.1f %9.1f" % (runtime, kind, entry["p50_us"],
                                                     entry["p99_us"]))
    if "micropython" in report:
        print("  script / built-in (MicroPython p50): %.2f"
              % report["micropython"]["script_over_builtin_p50"])
    if "cpython" in report:
        print("  Lua / Python script (CPython p50):   %.2f"
              % report["cpython"]["lua_over_python_p50"])
    for error in report["errors"]:
        print("error: " + error)
    print("wrote " + args.out)
    return 1 if report["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
