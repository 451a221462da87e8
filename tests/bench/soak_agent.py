"""Soak the device agent: many tool calls to a MicroPython-unix device that has a board's
heap, sampling its free heap as they go (prints a table, writes JSON).

    python tests/bench/soak_agent.py [--board esp32] [--calls 10000] [--every 1000]
                                     [--code romfs|mpy|frozen] [--micropython BINARY]
                                     [--out bench-results/soak.json]

The calls mix what a controller sends: small and nested values echoed, device_info,
calls by name and by id, and calls that fail (bad arguments, no such tool). Every
`--every` calls the device reports its free heap after a collection (device_heap).
--code: where the device's code is: in ROMFS (the default), .mpy files on the flash, or
frozen into the binary (a binary from build_micropython.py, e.g. --micropython
build/micropython/32-frozen/micropython: a 32-bit binary gets the board's heap as it is,
a 64-bit one twice it). "Does not grow": no sample after the first is more than
GROWTH_SLACK bytes below it.
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
from ram_builds import CODES, binary_for, device_files, using  # noqa: E402

GROWTH_SLACK = 512  # bytes: the allocator's rounding between two samples
VALUES = (42, "forty-two", [1, 2.5, None, True], {"a": {"b": [b"\x00\xff"]}}, 2 ** 40, -7.25)


def start(board, root, code):
    files, image = device_files(code, free_port(), board)
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


def soak(board="esp32", calls=10000, every=1000, code="romfs", binary=None):
    """Run the soak; a report dict with the heap samples [(calls made, free bytes)].
    binary: the MicroPython to run (None: `micropython` on PATH)."""
    with using(binary):
        return _soak(board, calls, every, code)


def _soak(board, calls, every, code):
    path = binary_for(code)
    root = tempfile.mkdtemp(prefix="jotunheim-soak-")
    device, port = start(board, root, code)
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
    return {"board": board, "code": code, "binary": path, "word_factor": runner.word_factor(),
            "calls": calls, "heap_budget": budget, "samples": samples, "growth_bytes": growth,
            "grows": growth > GROWTH_SLACK, "slack_bytes": GROWTH_SLACK}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--board", default="esp32")
    parser.add_argument("--calls", type=int, default=10000)
    parser.add_argument("--every", type=int, default=1000)
    parser.add_argument("--code", choices=CODES, default="romfs",
                        help="where the code is (frozen: --micropython names a frozen build)")
    parser.add_argument("--micropython", metavar="BINARY",
                        help="the MicroPython unix port to run (default: micropython on PATH)")
    parser.add_argument("--out", default=os.path.join("bench-results", "soak.json"))
    args = parser.parse_args(argv)
    report = soak(args.board, args.calls, args.every, args.code, args.micropython)
    print("soak: %d calls to %s (code %s, heap budget %d B, %d-bit %s)" % (
        report["calls"], report["board"], report["code"], report["heap_budget"],
        64 if report["word_factor"] == 2 else 32, report["binary"]))
    for done, free in report["samples"]:
        print("  after %6d calls: %6d B free" % (done, free))
    print("heap %s (%d B lost after the first sample; slack %d B)" % (
        "GROWS" if report["grows"] else "does not grow", report["growth_bytes"],
        GROWTH_SLACK))
    write_report(args.out, report)
    return 1 if report["grows"] else 0


if __name__ == "__main__":
    sys.exit(main())
