"""Stream benchmark: throughput both ways between the controller library and a simulated
MicroPython device on loopback, per chunk size, with the device's heap while it streams,
against the raw TCP throughput of the same MicroPython binary.

    python tests/bench/bench_streams.py [--kbytes N] [--chunks 256,1024,2048] [--out F.json]
"""
# How this works. The firmware is built as for a board (esp32, listen mode, code as .mpy)
# and run on the MicroPython unix port (host_sim.runner), with one extra file: a
# /lib/stream_plugins.py that registers a "discard" sink (kind audio), so data sent to the
# device is measured without the simulated flash in the way.
#
# - device -> host: a stream script (StreamScript_) emits N kilobytes in blocks of the
#   chunk size through ctx.emit(); the controller reads the raw stream to its end. Timed
#   on the host from StreamOpen to the device's StreamClose.
# - host -> device: the controller writes N kilobytes in chunks of that size to the
#   discard sink, under the device's credit, and closes; timed until the device's answer.
#   The same to a file on the device's flash (a LittleFS image) is measured for the
#   largest chunk size, as "to_file".
# - heap: while each stream runs, the controller calls device_heap (the free heap after a
#   collection) every SAMPLE_S seconds; the lowest value against the free heap of the idle
#   device (streams module unloaded) is the high-water mark of what streaming holds.
# - reference: the same micropython binary, run as a plain script, sends and then receives
#   N kilobytes (at least RAW_TCP_MIN) over one loopback TCP connection with
#   socket.send/readinto in blocks of the chunk size, timing itself; the host side drains
#   or feeds as fast as it can. That is the physical limit of this path; the ratio says
#   how much of it streams reach.
#
# Prints a table and writes JSON. Exit status 0 when every measurement was taken, 1 if one
# failed (its error is in the JSON).
import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

from results import ROOT, import_paths, write_report  # this script's directory

import_paths()

from agent_support import console_lines, free_port  # noqa: E402
from host_sim import runner  # noqa: E402
from jotunheim_host import bundle  # noqa: E402
from jotunheim_host.controller import ControllerError, connect  # noqa: E402

DEFAULT_OUT = os.path.join(ROOT, "bench-results", "streams.json")
BOARD = "esp32"
DEFAULT_KBYTES = 512
DEFAULT_CHUNKS = (256, 1024, 2048)
SAMPLE_S = 0.2
RAW_TCP_MIN = 8 << 20   # the kernel buffers megabytes: less would time a memory copy
WINDOW = 32768          # the host's receive window (its credit)
EMITTER = """\
async def run(ctx, total=0, size=1024):
    block = bytes(size)
    left = total
    while left > 0:
        await ctx.emit(block if left >= size else block[:left])
        left -= size
"""
DISCARD_PLUGIN = """\
from jotunheim import streams


class Discard:
    async def run(self, stream):
        while True:
            await stream.receive()


streams.register_plugin("discard", lambda stream, params: Discard(), kind=5)
"""
TCP_SCRIPT = """\
import socket, sys, time
host, port, total, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
s = socket.socket()
s.connect(socket.getaddrinfo(host, port)[0][-1])
block = memoryview(bytes(size))
start = time.ticks_us()
left = total
while left > 0:
    n = min(size, left)
    sent = 0
    while sent < n:
        sent += s.send(block[sent:n])
    left -= n
s.recv(1)                       # the host has it all
send_us = time.ticks_diff(time.ticks_us(), start)
s.send(b"g")
start = time.ticks_us()
got = 0
buf = bytearray(size)
while got < total:
    n = s.readinto(buf)
    if not n:
        break
    got += n
receive_us = time.ticks_diff(time.ticks_us(), start)
s.close()
print(got, send_us, receive_us)
"""


def start_device(root):
    port = free_port()
    files = bundle.firmware_files("micropython", BOARD, settings={
        "agent.mode": "listen", "agent.listen_port": port, "agent.listen_host": "127.0.0.1"})
    files["/lib/stream_plugins.py"] = DISCARD_PLUGIN.encode()
    device = runner.Device(BOARD, root, runtime="micropython")
    device.put_files(files)
    device.start()
    console_lines(device, r"listening on port", timeout=60)
    return device, port


class HeapWatch:
    """device_heap every SAMPLE_S seconds while a stream runs: the lowest value seen."""

    def __init__(self, device):
        self.device = device
        self.lowest = None
        self.samples = 0
        self._task = None

    async def _run(self):
        while True:
            try:
                free = await self.device.call("device_heap")
            except ControllerError:
                return   # the stream's own result says what happened
            self.samples += 1
            self.lowest = free if self.lowest is None else min(self.lowest, free)
            await asyncio.sleep(SAMPLE_S)

    async def __aenter__(self):
        self._task = asyncio.ensure_future(self._run())
        return self

    async def __aexit__(self, *exc):
        self._task.cancel()
        if not self.samples:   # a stream too short for a sample: one after it
            self.lowest = await self.device.call("device_heap")
            self.samples = 1


async def out_of_device(d, total, size):
    start = time.perf_counter()
    async with HeapWatch(d) as heap:
        stream = await d.open_stream("raw", source="emitter", window=WINDOW,
                                     params={"total": total, "size": size, "chunk": size})
        received = len(await stream.read_all())
    seconds = time.perf_counter() - start
    if received != total:
        raise RuntimeError("received %d of %d bytes" % (received, total))
    return _rate(total, seconds, size, heap)


async def into_device(d, total, size, kind="audio", source="discard"):
    block = bytes(size)
    start = time.perf_counter()
    async with HeapWatch(d) as heap:
        if kind == "file":
            import hashlib
            data = bytes(total)
            stream = await d.open_stream("file", "in", source, {
                "size": total, "sha256": hashlib.sha256(data).digest(), "chunk": size})
        else:
            stream = await d.open_stream(kind, "in", source, {"chunk": size})
        left = total
        while left > 0:
            await stream.write(block if left >= size else block[:left])
            left -= size
        await stream.close()
    seconds = time.perf_counter() - start
    return _rate(total, seconds, size, heap)


def _rate(total, seconds, size, heap):
    return {"bytes": total, "chunk_bytes": size, "seconds": round(seconds, 4),
            "kbytes_per_s": round(total / seconds / 1024, 1),
            "heap_lowest_free_bytes": heap.lowest, "heap_samples": heap.samples}


def raw_tcp(total, size):
    """KB/s of the micropython binary over loopback TCP, sending and receiving, timed by
    the script itself: {"device_to_host", "host_to_device"}."""
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def serve():
        conn, _ = server.accept()
        with conn:
            got = 0
            while got < total:
                data = conn.recv(65536)
                if not data:
                    return
                got += len(data)
            conn.sendall(b"k")
            conn.recv(1)
            block = bytes(65536)
            left = total
            while left > 0:
                conn.sendall(block[:min(left, len(block))])
                left -= min(left, len(block))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(TCP_SCRIPT)
    try:
        done = subprocess.run([runner.micropython_binary(), f.name, "127.0.0.1", str(port),
                               str(total), str(size)], capture_output=True, text=True,
                              timeout=120)
    finally:
        os.unlink(f.name)
        thread.join(60)
        server.close()
    numbers = done.stdout.split()
    if done.returncode or len(numbers) != 3 or int(numbers[0]) != total:
        raise RuntimeError("the raw TCP script failed: %s" % (done.stderr or done.stdout))
    send_us, receive_us = int(numbers[1]), int(numbers[2])
    return {"device_to_host": round(total / (send_us / 1e6) / 1024, 1),
            "host_to_device": round(total / (receive_us / 1e6) / 1024, 1)}


async def measure(port, total, chunks, report):
    d = await connect("tcp://127.0.0.1:%d" % port, reconnect=False)
    try:
        await d.register_script("emitter", EMITTER, streams=True, parameters=[
            {"name": "total", "type": "int", "default": 0},
            {"name": "size", "type": "int", "default": 1024}])
        warm = await d.open_stream("raw", source="emitter", params={"total": 10, "size": 5})
        await warm.read_all()
        await asyncio.sleep(0.2)
        report["heap_idle_free_bytes"] = await d.call("device_heap")
        for size in chunks:
            entry = report["chunks"].setdefault(str(size), {})
            for name, work in (("device_to_host", out_of_device(d, total, size)),
                               ("host_to_device", into_device(d, total, size))):
                try:
                    entry[name] = await work
                    entry[name]["heap_held_bytes"] = (report["heap_idle_free_bytes"]
                                                      - entry[name]["heap_lowest_free_bytes"])
                except Exception as e:  # noqa: BLE001 - reported, the rest goes on
                    report["errors"].append("%s %d: %s: %s" % (name, size, type(e).__name__,
                                                               e))
        size = max(chunks)
        try:
            report["to_file"] = await into_device(d, min(total, 128 * 1024), size, "file",
                                                  "/bench.bin")
        except Exception as e:  # noqa: BLE001
            report["errors"].append("to_file: %s: %s" % (type(e).__name__, e))
    finally:
        await d.close()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kbytes", type=int, default=DEFAULT_KBYTES,
                        help="kilobytes per measurement")
    parser.add_argument("--chunks", default=",".join(map(str, DEFAULT_CHUNKS)),
                        help="chunk sizes in bytes, comma-separated")
    parser.add_argument("--out", default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    total = args.kbytes * 1024
    chunks = [int(c) for c in args.chunks.split(",")]
    report = {"board": BOARD, "bytes_per_measurement": total, "window_bytes": WINDOW,
              "heap_budget_bytes": runner.word_factor() * runner.load_board(BOARD)["heap_bytes"],
              "chunks": {}, "raw_tcp": {}, "errors": []}
    with tempfile.TemporaryDirectory() as root:
        device, port = start_device(os.path.join(root, "device"))
        try:
            asyncio.run(asyncio.wait_for(measure(port, total, chunks, report), 600))
        except Exception as e:  # noqa: BLE001
            report["errors"].append("%s: %s" % (type(e).__name__, e))
        finally:
            if report["errors"]:
                report["device_console_tail"] = device.console.text()[-1500:]
            device.stop()
    report["raw_tcp_bytes"] = reference_total = max(total, RAW_TCP_MIN)
    for size in chunks:
        try:
            reference = report["raw_tcp"][str(size)] = raw_tcp(reference_total, size)
        except Exception as e:  # noqa: BLE001
            report["errors"].append("raw tcp %d: %s" % (size, e))
            continue
        for direction in ("device_to_host", "host_to_device"):
            entry = report["chunks"].get(str(size), {}).get(direction)
            if entry:
                entry["vs_raw_tcp"] = round(entry["kbytes_per_s"] / reference[direction], 4)
    print_table(report)
    write_report(args.out, report)
    return 1 if report["errors"] else 0


def print_table(report):
    print("Stream throughput, %d bytes each, MicroPython unix device (%s) on loopback"
          % (report["bytes_per_measurement"], report["board"]))
    print("%-7s %-15s %10s %10s %9s %12s" % ("chunk", "direction", "KB/s", "raw TCP",
                                              "ratio", "heap held"))
    for size, entry in sorted(report["chunks"].items(), key=lambda item: int(item[0])):
        for direction in ("device_to_host", "host_to_device"):
            if direction in entry:
                e = entry[direction]
                raw = report["raw_tcp"].get(size, {}).get(direction, 0)
                print("%-7s %-15s %10.1f %10.1f %9.4f %10d B" % (
                    size, direction, e["kbytes_per_s"], raw, e.get("vs_raw_tcp", 0),
                    e["heap_held_bytes"]))
    if "to_file" in report:
        print("to a flash file (%d B chunks): %.1f KB/s" % (
            report["to_file"]["chunk_bytes"], report["to_file"]["kbytes_per_s"]))
    print("idle free heap %s B of %d B" % (report.get("heap_idle_free_bytes"),
                                          report["heap_budget_bytes"]))
    for error in report["errors"]:
        print("error: %s" % error)


if __name__ == "__main__":
    sys.exit(main())
