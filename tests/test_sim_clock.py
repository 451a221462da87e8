"""The virtual clock: the device's `time` module and asyncio on virtual time.

tests/upy/sim_clock_checks.py runs as a simulated device under the MicroPython unix port and
under CPython; both must print the same results (a loopback peer in this process answers
late, so one row shows real time). The shim's calendar is checked against CPython's here.
"""

import calendar
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import threading
import time

import pytest

from host_sim import vasyncio
from host_sim import world as sim_world
from host_sim.clock import Clock
from host_sim.shims import time as vtime
from host_sim.world import World
from sim_checks import micropython_env, run_check_script

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHECKS = os.path.join(ROOT, "tests", "upy", "sim_clock_checks.py")
BENCH = os.path.join(ROOT, "tests", "bench", "bench_clock.py")
MICROPYTHON = shutil.which("micropython")
HEAP = "160k"
PEER_DELAY = 0.3  # seconds the loopback peer waits before it answers
BOTH = ["cpython", "micropython"]


def run_checks(runtime, *args):
    return run_check_script(runtime, CHECKS, args, HEAP)


@pytest.fixture(scope="module")
def peer():
    """A loopback peer that answers each "ping" line with "pong" after PEER_DELAY."""
    server = socket.create_server(("127.0.0.1", 0))

    def serve():
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.makefile("rb").readline()
                time.sleep(PEER_DELAY)
                conn.sendall(b"pong\n")

    threading.Thread(target=serve, daemon=True).start()
    yield server.getsockname()[1]
    server.close()


@pytest.fixture(scope="module")
def results(peer):
    runtimes = ["cpython"] + (["micropython"] if MICROPYTHON else [])
    return {runtime: run_checks(runtime, peer) for runtime in runtimes}


def comparable(rows):
    """What must match across interpreters: all but real time and the order within an instant."""
    rows = dict(rows)
    rows.pop("real")
    rows["hour"] = {k: v for k, v in rows["hour"].items() if k != "order"}
    for key in ("first", "last"):
        rows["hour"][key] = sorted(rows["hour"][key])
    rows["fortnight"] = dict(rows["fortnight"], log=sorted(rows["fortnight"]["log"],
                                                           key=lambda e: (e[1], e[0])))
    return rows


# ---------------------------------------------------------------- both interpreters

def test_micropython_matches_cpython(results):
    assert comparable(results["micropython"]) == comparable(results["cpython"])


@pytest.mark.parametrize("runtime", BOTH)
def test_runs_are_deterministic(results, runtime):
    again = run_checks(runtime)
    first = dict(results[runtime])
    first.pop("real")
    assert again == first


def test_ticks_wrap_at_2_30(results):
    ticks = results["cpython"]["ticks"]
    assert ticks["ms"] == [2**30 - 1500, 1500, 3000, -3000, 1500]
    assert ticks["us"] == [2**30 - 700, 300, 1000, True]
    assert ticks["edges"] == [2**30 - 1, 1, -1, -2**29, -2**29, 2**29 - 1, 15, 2**29 + 5]


def test_sleep_advances_exactly(results):
    sleep = results["cpython"]["sleep"]
    assert sleep["uptime_us"] == [1500000, 3500000, 3750000, 3750007, 3750007, 3750007, 3750008]
    assert sleep["ticks_ms"] == 3750 and sleep["sleep_ms_float"] == "TypeError"


def test_wall_time_follows_the_board_epoch(results):
    rows = results["cpython"]["wall"]
    assert rows["2000"][0][:6] == [2000, 1, 1, 0, 0, 0]
    assert rows["1970"][0][:6] == [1970, 1, 1, 0, 0, 0]
    for epoch, offset in (("2000", 946684800), ("1970", 0)):
        row = rows[epoch]
        assert row[1] == 1735689600 - offset  # 2025-01-01
        assert row[2] == row[3] == [2025, 1, 1, 0, 0, 0, 2, 1]
        assert row[4] == row[1] and row[5] is True
        assert row[6] == 86400 * 366 + 3600 * 13 + 61
        assert row[7] == [2026, 1, 2, 13, 1, 1, 4, 2]
        assert row[9:11] == [[2024, 2, 29, 23, 59, 59, 3, 60], [2024, 3, 1, 0, 0, 0, 4, 61]]
        assert row[11] == calendar.timegm((2024, 2, 2, 2, 2, 1)) - offset
        assert row[12][:3] == [int(epoch) - 1, 1, 1]  # before the epoch
        assert row[13] == [2100, 3, 1, 12, 0, 0, 0, 60]  # 2100 is not a leap year


def test_virtual_hour_of_timers(results):
    hour = results["cpython"]["hour"]
    assert hour["count"] == 3600 + 2400 + 14400 + 60 + 1 and hour["end_ms"] == 3600000
    assert hour["first"] == [[250, "c"], [500, "c"], [750, "c"], [1000, "a"], [1000, "c"],
                             [1250, "c"], [1500, "b"], [1500, "c"]]
    assert sorted(hour["last"][-3:]) == [[3600000, "a"], [3600000, "b"], [3600000, "c"]]


def test_asyncio_semantics(results):
    assert results["cpython"]["semantics"] == [
        ["gather", 3000, ["x", "y", "z"]],
        ["woken", 5000, "w1"], ["woken", 5000, "w2"], ["woken", 5000, "w3"],
        ["wait_for timed out", 7000, None],
        ["wait_for", 8000, "ok"],
        ["cancelled", 9000, None],           # a cancelled sleeper wakes at once
        ["blocking sleep", 14000, None],     # time.sleep() holds the loop ...
        ["overdue timer", 14000, "late"],    # ... and a timer due meanwhile fires after it
        ["wait_for event", 15500, True],
    ]


def test_two_weeks_of_virtual_time(results):
    fortnight = results["cpython"]["fortnight"]
    day = 86400000
    assert sorted(fortnight["log"]) == sorted(
        [["three days", 3 * day * n] for n in (1, 2, 3, 4)]
        + [["six-hourly done", 14 * day], ["timeouts done", 14 * day]])
    assert fortnight["gaps"] == [6 * 3600000] and fortnight["ticks"] == 56  # ticks_ms wraps


@pytest.mark.parametrize("runtime", BOTH)
def test_real_socket_while_others_sleep(results, runtime):
    real = results[runtime]["real"]
    assert real["reply"] == "pong\n"
    # the clock moved by real time while the socket was awaited, the ticker with it
    assert PEER_DELAY * 800 < real["answered_ms"] < 10000
    assert real["ticks"] >= 10
    assert real["hour_ms"] == 3600000  # and jumped again once it was closed


def test_micropython_device_uses_plain_asyncio_run():
    """After vasyncio.install(), a device's own asyncio.run() runs on the virtual clock,
    also on a loop made by new_event_loop()."""
    script = (
        "import asyncio, time, utime\n"
        "from host_sim import world, vasyncio\n"
        "from host_sim.clock import Clock\n"
        "w = world.install(world.World({}, Clock()))\n"
        "vasyncio.install()\n"
        "async def main(n):\n"
        "    for _ in range(n):\n"
        "        await asyncio.sleep(60)\n"
        "    return time.ticks_ms()\n"
        "start = utime.ticks_ms()\n"
        "first = asyncio.run(main(60))\n"
        "asyncio.new_event_loop()\n"
        "print(first, asyncio.run(main(30)), utime.ticks_diff(utime.ticks_ms(), start) < 2000)\n")
    proc = subprocess.run([MICROPYTHON, "-c", script], env=micropython_env(), cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.stdout.split() == ["3600000", "5400000", "True"], proc.stderr


# ---------------------------------------------------------------- in process (CPython)

@pytest.fixture
def world():
    previous = sim_world._current
    yield sim_world.install(World({"epoch": 1970}, Clock(start_us=0)))
    sim_world._current = previous


def test_shim_in_process_leaves_the_stdlib_alone(world):
    assert sys.modules["time"] is time and vtime is not time
    vtime.sleep(2)
    assert vtime.ticks_ms() == 2000 and world.clock.now_us == 2000000
    assert not hasattr(vtime, "monotonic")  # only after vclock.install(), in a device process


def test_calendar_matches_cpython(world):
    rng = random.Random(3)
    stamps = [0, -1, 86399, 951782400, 4107542400, 253402300799] + [
        rng.randrange(-2**35, 2**35) for _ in range(3000)]
    for secs in stamps:
        want = time.gmtime(secs)
        assert vtime.gmtime(secs) == tuple(want)[:6] + (want.tm_wday, want.tm_yday), secs
        assert vtime.mktime(vtime.gmtime(secs)) == secs
    world.board = {}  # the 2000 epoch
    assert vtime.gmtime(0)[:3] == (2000, 1, 1)
    assert vtime.mktime((2000, 1, 1, 0, 0, 0, 0, 0)) == 0


def test_in_process_hour_is_fast_and_exact(world):
    import asyncio

    stamps = []

    async def blink(period, count):
        for _ in range(count):
            await asyncio.sleep(period)
            stamps.append(vtime.ticks_ms())

    async def main():
        await asyncio.gather(blink(0.5, 7200), blink(20, 180))

    started = time.perf_counter()
    vasyncio.run(main(), world)
    assert time.perf_counter() - started < 5
    assert len(stamps) == 7380 and stamps[-1] == 3600000 and world.clock.now_us == 3600000000
    assert stamps == sorted(stamps)


def test_cpython_device_process_keeps_the_stdlib_working(tmp_path):
    """After vclock.install(), stdlib users of `time` (logging, queue, asyncio) still work."""
    script = tmp_path / "device.py"
    script.write_text(
        "from host_sim import world\n"
        "from host_sim.clock import Clock\n"
        "w = world.install(world.World({}, Clock(wall_start=1735689600)))\n"
        "from host_sim import vclock\n"
        "real = vclock.install()\n"
        "import asyncio, logging, queue, time, io\n"
        "from host_sim import vasyncio\n"
        "vasyncio.install()\n"
        "stream = io.StringIO()\n"
        "logging.basicConfig(stream=stream, format='%(asctime)s %(message)s', level=logging.INFO)\n"
        "started = time.monotonic()\n"
        "time.sleep(600)\n"
        "async def main():\n"
        "    await asyncio.sleep(3600)\n"
        "    logging.info('woke')\n"
        "    return await asyncio.get_running_loop().run_in_executor(None, sum, [1, 2])\n"
        "assert asyncio.run(main()) == 3\n"
        "queue.Queue().put(1, timeout=1)\n"
        "assert time.monotonic() - started < 30\n"
        "assert 0 <= w.clock.uptime_us() - 4200 * 1000000 < 1000000  # + the executor's real time\n"
        "vclock.uninstall(real)\n"
        "import sys; assert sys.modules['time'] is real\n"
        "print(stream.getvalue().strip())\n")
    proc = subprocess.run([sys.executable, str(script)], env=dict(os.environ, PYTHONPATH=ROOT),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "2025-01-01 01:10:00,000 woke"


# ---------------------------------------------------------------- benchmark

def test_benchmark_reports_the_virtual_hour(tmp_path):
    """The benchmark runs and reports; its timings are read, not asserted (noisy machines)."""
    out = tmp_path / "clock.json"
    proc = subprocess.run([sys.executable, BENCH, "--out", str(out), "--repeat", "1"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(out.read_text())
    for runtime in ("micropython", "cpython"):
        run = report["runtimes"][runtime]
        assert run["virtual_seconds"] == 3600 and run["events"] == 20461
        assert run["real_seconds"] > 0 and "meets_target" in run
