"""Soak the device agent: many tool calls to a MicroPython-unix device that has a board's
heap, sampling its free heap as they go (prints a table, writes JSON).

    python tests/bench/soak_agent.py [--board esp32] [--calls 10000] [--every 1000]
                                     [--flash] [--out bench-results/soak.json]

The calls mix what a controller sends: small and nested values echoed, device_info,
calls by name and by id, and calls that fail (bad arguments, no such tool). Every
`--every` calls the device reports its free heap after a collection (device_heap). The
code is in ROMFS, as a board would have it frozen (--flash: .mpy files on the flash).
"Does not grow": no sample after the first is more than GROWTH_SLACK bytes below it.
"""
import argparse
import os
import shutil
import sys
import tempfile

from results import write_report  # tests/bench, this script's directory

HERE = os.path.dirname(os.path.abspath(__file__))
for path in (HERE, os.path.dirname(HERE)):
    if path not in sys.path:
        sys.path.insert(0, path)

from bench_agent import LeanClient, MeasureError, start_device  # noqa: E402
from agent_support import free_port  # noqa: E402
from host_sim import runner  # noqa: E402
from jotunheim_host import bundle  # noqa: E402

GROWTH_SLACK = 512  # bytes: the allocator's rounding between two samples
VALUES = (42, "forty-two", [1, 2.5, None, True], {"a": {"b": [b"\x00\xff"]}}, 2 ** 40, -7.25)


def start(board, root, romfs):
    files = bundle.firmware_files("micropython", board, settings={
        "agent.mode": "listen", "agent.listen_port": free_port(),
        "agent.listen_host": "127.0.0.1"})
    image = None
    if romfs:
        image = bundle.romfs_image(files)
        files = {path: data for path, data in files.items() if not path.startswith("/lib/")}
    return start_device(root, files, image, board)


def one_call(client, ids, i):
    """Call number i of the mix; the device's answer must be what the call asks for."""
    kind = i % 8
    if kind < 4:
        value = VALUES[i % len(VALUES)]
        tool = ids["device_echo"] if kind % 2 else "device_echo"
        if client.call(tool, value=value) != value:
            raise MeasureError("device_echo changed %r" % (value,))
    elif kind == 4:
        client.call(ids["device_info"])
    elif kind == 5:
        client.call(ids["pin_read"], pin=2)
    else:
        client.request_id += 1
        fields = {"request_id": client.request_id, "args": {"pin": "two"}}
        fields.update({"tool_id": ids["pin_read"]} if kind == 6 else {"tool_name": "nope"})
        client.send("ToolCall", fields)
        result = client.receive("ToolResult", client.request_id)
        if result.get("status") not in (3, 5):
            raise MeasureError("a bad call was answered %r" % (result,))


def soak(board="esp32", calls=10000, every=1000, romfs=True):
    """Run the soak; a report dict with the heap samples [(calls made, free bytes)]."""
    root = tempfile.mkdtemp(prefix="jotunheim-soak-")
    device, port = start(board, root, romfs)
    try:
        client = LeanClient(port)
        client.handshake()
        ids = client.tool_ids()
        samples = [(0, client.call(ids["device_heap"]))]
        for i in range(1, calls + 1):
            one_call(client, ids, i)
            if i % every == 0:
                samples.append((i, client.call(ids["device_heap"])))
        client.close()
    finally:
        device.stop()
        shutil.rmtree(root, ignore_errors=True)
    budget = runner.word_factor() * runner.load_board(board)["heap_bytes"]
    after_warmup = [free for done, free in samples[1:]]
    growth = after_warmup[0] - min(after_warmup) if after_warmup else 0
    return {"board": board, "code": "romfs" if romfs else "mpy", "calls": calls,
            "heap_budget": budget, "samples": samples, "growth_bytes": growth,
            "grows": growth > GROWTH_SLACK, "slack_bytes": GROWTH_SLACK}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--board", default="esp32")
    parser.add_argument("--calls", type=int, default=10000)
    parser.add_argument("--every", type=int, default=1000)
    parser.add_argument("--flash", action="store_true", help="code as .mpy on the flash")
    parser.add_argument("--out", default=os.path.join("bench-results", "soak.json"))
    args = parser.parse_args(argv)
    report = soak(args.board, args.calls, args.every, romfs=not args.flash)
    print("soak: %d calls to %s (code in %s, heap budget %d B)" % (
        report["calls"], report["board"], report["code"], report["heap_budget"]))
    for done, free in report["samples"]:
        print("  after %6d calls: %6d B free" % (done, free))
    print("heap %s (%d B lost after the first sample; slack %d B)" % (
        "GROWS" if report["grows"] else "does not grow", report["growth_bytes"],
        GROWTH_SLACK))
    write_report(args.out, report)
    return 1 if report["grows"] else 0


if __name__ == "__main__":
    sys.exit(main())
