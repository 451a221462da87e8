"""Two versions of the device agent side by side: call round trips and device CPU per call
of this tree's firmware against another commit's, in one run.

    python tests/bench/ab_agent.py [--base REV] [--rounds N] [--per N] [--out FILE.json]
"""
# How this works. `git archive REV` unpacks the other commit into a temporary directory.
# Each version's device is started by that version's own code (a child process running
# this script with --serve ROOT: its bundle builds the flash, its simulator runs it; esp32,
# listen mode, code as .mpy, as bench_agent.py runs it), and prints its port and pid. This
# process then times device_echo on both with bench_agent's lean client, in ROUNDS batches
# of PER calls that take turns, the first of each round alternating: this machine's speed
# drifts by a factor of two within minutes, so two versions timed one after the other can
# differ by more than any change between them. Device CPU per call is read from the
# device process's schedstat (bench_agent.cpu_ns). p50 by nearest rank.
#
# The base commit must have tests/bench/bench_agent.py with start_device and
# listen_settings (any commit since the agent benchmark took its current shape).
# Prints a table and writes JSON; exit status 2 when the base cannot be had or started.
import argparse
import io
import os
import subprocess
import sys
import tarfile
import tempfile
import time

from results import ROOT, import_paths, write_report  # this script's directory

DEFAULT_OUT = os.path.join(ROOT, "bench-results", "ab_agent.json")
WARMUP = 200


class ABError(Exception):
    """The base version cannot be had or started."""


def serve(root):
    """--serve: start `root`'s device with `root`'s code; print "PORT PID FIRMWARE-DIR";
    stop it when stdin closes."""
    sys.path[:0] = [root, os.path.join(root, "tools"), os.path.join(root, "tests"),
                    os.path.join(root, "tests", "bench")]
    # this script's own `results` (imported at its start) would put this tree first on the
    # path again when root's bench_agent calls its import_paths(): root's, then
    sys.modules.pop("results", None)
    import bench_agent
    from agent_support import free_port
    from jotunheim_host import bundle
    with tempfile.TemporaryDirectory() as tmp:
        files = bundle.firmware_files("micropython", bench_agent.BOARD,
                                      settings=bench_agent.listen_settings(free_port()))
        device, port = bench_agent.start_device(os.path.join(tmp, "device"), files)
        try:
            print(port, device.describe()["pid"], bundle.FIRMWARE, flush=True)
            sys.stdin.read()
        finally:
            device.stop()


def unpack(rev, into):
    """The tree of commit `rev` of this repository, unpacked under `into`."""
    done = subprocess.run(["git", "-C", ROOT, "archive", "--format=tar", rev],
                          capture_output=True)
    if done.returncode:
        raise ABError("git archive %s: %s" % (rev, done.stderr.decode().strip()))
    with tarfile.open(fileobj=io.BytesIO(done.stdout)) as tar:
        if hasattr(tarfile, "data_filter"):  # Python 3.12 warns without a filter
            tar.extractall(into, filter="data")
        else:
            tar.extractall(into)
    if not os.path.exists(os.path.join(into, "tests", "bench", "bench_agent.py")):
        raise ABError("%s has no tests/bench/bench_agent.py" % rev)
    return into


def start(root):
    """(process, port, pid) of a device served by `root`'s code."""
    child = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--serve", root],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    line = child.stdout.readline().split()
    problem = None
    if len(line) != 3:
        problem = "the device of %s did not start" % root
    elif os.path.commonpath([os.path.realpath(line[2]), os.path.realpath(root)]) != \
            os.path.realpath(root):
        problem = "the device of %s was given the firmware in %s" % (root, line[2])
    if problem:
        child.stdin.close()
        child.wait()
        raise ABError(problem)
    return child, int(line[0]), int(line[1])


def measure(roots, rounds, per):
    """({name: {p50_us, p99_us, mean_us, device_cpu_us_per_call, calls}} for each (name,
    root), whether the processes were pinned to CPUs)."""
    import bench_agent
    children, sides = [], []
    try:
        for name, root in roots:
            child, port, pid = start(root)
            children.append(child)
            client = bench_agent.LeanClient(port)
            client.handshake()
            echo = client.tool_ids()["device_echo"]
            for _ in range(WARMUP):
                client.call(echo, value=bench_agent.ECHO_VALUE)
            sides.append((name, client, echo, pid, [], [0]))
        before = bench_agent.pin([child.pid for child in children] + [s[3] for s in sides])
        pinned = before is not None
        for r in range(rounds):
            for name, client, echo, pid, times, cpu in (sides if r % 2 == 0 else sides[::-1]):
                before = bench_agent.cpu_ns(pid)
                for _ in range(per):
                    begin = time.perf_counter_ns()
                    if client.call(echo, value=bench_agent.ECHO_VALUE) != bench_agent.ECHO_VALUE:
                        raise bench_agent.MeasureError("device_echo did not echo")
                    times.append(time.perf_counter_ns() - begin)
                cpu[0] += bench_agent.cpu_ns(pid) - before
        report = {}
        for name, client, echo, pid, times, cpu in sides:
            client.close()
            entry = bench_agent.latency_stats(times)
            entry["device_cpu_us_per_call"] = cpu[0] / len(times) / 1000
            report[name] = entry
        return report, pinned
    finally:
        for child in children:
            child.stdin.close()
            child.wait()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="HEAD", help="the commit to compare with "
                        "(default %(default)s: this tree's changes against it)")
    parser.add_argument("--rounds", type=int, default=20, help="batches per version "
                        "(default %(default)s)")
    parser.add_argument("--per", type=int, default=100, help="calls per batch "
                        "(default %(default)s)")
    parser.add_argument("--out", default=DEFAULT_OUT, help="JSON report path "
                        "(default %(default)s)")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        return serve(args.serve)
    if args.rounds < 1 or args.per < 1:
        parser.error("--rounds and --per must be at least 1")
    import_paths()
    with tempfile.TemporaryDirectory() as tmp:
        try:
            base = unpack(args.base, os.path.join(tmp, "base"))
            versions, pinned = measure((("base", base), ("this", ROOT)), args.rounds,
                                       args.per)
        except ABError as e:
            sys.stderr.write("ab_agent: %s\n" % e)
            return 2
    report = {"base": args.base, "rounds": args.rounds, "per": args.per, "pinned": pinned,
              "versions": versions,
              "this_vs_base": {key: versions["this"][key] / versions["base"][key]
                               for key in ("p50_us", "mean_us", "device_cpu_us_per_call")}}
    print("device_echo round trips, %d rounds of %d calls, turns taken\n" % (args.rounds,
                                                                            args.per))
    print("%-22s %9s %9s %9s %12s" % ("", "p50 us", "p99 us", "mean us", "device CPU"))
    for name, label in (("base", "base (%s)" % args.base), ("this", "this tree")):
        entry = report["versions"][name]
        print("%-22s %9.1f %9.1f %9.1f %12.1f" % (label[:22], entry["p50_us"], entry["p99_us"],
                                                   entry["mean_us"],
                                                   entry["device_cpu_us_per_call"]))
    ratios = report["this_vs_base"]
    print("%-22s %9.3f %9s %9.3f %12.3f" % ("this / base", ratios["p50_us"], "",
                                             ratios["mean_us"], ratios["device_cpu_us_per_call"]))
    write_report(args.out, report)
    print("\nwrote %s" % args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
