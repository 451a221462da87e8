# Virtual-clock checks that run unchanged on MicroPython and CPython, set up as a simulated
# device is: the test suite runs this script on both and requires the same results. Only
# the row marked "real" (a loopback peer answers late: real time shows there) and the order
# of events within one instant may differ between the interpreters.
#
# usage: sim_clock_checks.py [PORT]   the checks; PORT: a loopback peer that answers a
#                                     "ping" line with "pong" after a real delay
#        sim_clock_checks.py bench    one virtual hour of timers, with its real duration
# Under MicroPython, host_sim/shims must come first on sys.path (MICROPYPATH), then the
# repository root; under CPython the repository root must be on PYTHONPATH.
import sys

from host_sim import world as sim_world
from host_sim.clock import Clock
from host_sim.world import World

sim_world.install(World({}, Clock()))  # first: the stdlib reads the clock at import (logging)
if sys.implementation.name == "micropython":
    from utime import ticks_diff as real_diff
    from utime import ticks_us as real_us
else:
    from host_sim import vclock

    _real_time = vclock.install()  # a CPython device process: `import time` is the shim

    def real_us():
        return int(_real_time.perf_counter() * 1000000)

    def real_diff(end, start):
        return end - start

import asyncio  # noqa: E402 - after the shim is installed
import json  # noqa: E402
import time  # noqa: E402

from host_sim import vasyncio  # noqa: E402

PERIOD = 1 << 30  # ticks wrap here


def fresh(start_us, board=None):
    """Install and return a new World whose clock starts at start_us."""
    return sim_world.install(World(board or {}, Clock(start_us=start_us)))


def emit(row):
    print(json.dumps(row))


# ---------------------------------------------------------------- time module

def check_ticks():
    fresh((PERIOD - 1500) * 1000)  # ticks_ms wraps 1.5 s from now
    t0 = time.ticks_ms()
    time.sleep_ms(3000)
    t1 = time.ticks_ms()
    fresh(3 * PERIOD - 700)  # ticks_us wraps 700 us from now
    u0 = time.ticks_us()
    time.sleep_us(1000)
    u1 = time.ticks_us()
    edges = [time.ticks_add(0, -1), time.ticks_diff(0, PERIOD - 1), time.ticks_diff(PERIOD - 1, 0),
             time.ticks_diff(PERIOD >> 1, 0), time.ticks_diff(0, PERIOD >> 1),
             time.ticks_diff((PERIOD >> 1) - 1, 0), time.ticks_add(PERIOD - 10, 25),
             time.ticks_add(5, -(PERIOD >> 1))]
    emit({"ticks": {"ms": [t0, t1, time.ticks_diff(t1, t0), time.ticks_diff(t0, t1),
                           time.ticks_add(t0, 3000)],
                    "us": [u0, u1, time.ticks_diff(u1, u0), time.ticks_cpu() == u1],
                    "edges": edges}})


def check_sleep():
    world = fresh(0)
    steps = []
    for how, amount in (("sleep", 1.5), ("sleep", 2), ("sleep_ms", 250), ("sleep_us", 7),
                        ("sleep", 0), ("sleep_ms", 0), ("sleep", 0.000001)):
        getattr(time, how)(amount)
        steps.append(world.clock.uptime_us())
    try:
        time.sleep_ms(1.5)
        refused = None
    except TypeError:
        refused = "TypeError"
    emit({"sleep": {"uptime_us": steps, "ticks_ms": time.ticks_ms(), "sleep_ms_float": refused}})


def check_wall():
    rows = {}
    for epoch in (2000, 1970):
        world = fresh(0, {"epoch": epoch})
        world.clock.wall_start = 1735689600  # 2025-01-01
        now = time.time()
        row = [time.gmtime(0), now, time.gmtime(), time.localtime(now), time.mktime(time.gmtime()),
               time.time_ns() // 1000000000 == now]
        time.sleep(86400 * 366 + 3600 * 13 + 61)
        row += [time.time() - now, time.gmtime()]
        leap = time.mktime((2024, 2, 29, 23, 59, 59, 0, 0))
        row += [leap, time.gmtime(leap), time.gmtime(leap + 1),
                time.mktime((2023, 13, 32, 25, 61, 61, 0, 0)), time.gmtime(-86400 * 365)]
        row.append(time.gmtime(time.mktime((2100, 2, 28, 12, 0, 0, 0, 0)) + 86400))
        rows[str(epoch)] = [list(x) if isinstance(x, tuple) else x for x in row]
    emit({"wall": rows})


# ---------------------------------------------------------------- asyncio

def mix(checksum, t, event):
    return (checksum * 31 + t * 131 + len(event) * 7 + ord(event[0])) & 0x3FFFFFFF


class Digest:
    """Checksums of (virtual ms, event): one of the exact order, one of each instant's events
    sorted (interpreters may order the events of one instant differently)."""

    def __init__(self):
        self.t0 = time.ticks_ms()
        self.count = 0
        self.order = 0
        self.instants = 0
        self.instant = 0
        self.bucket = []
        self.first = []
        self.last = []

    def add(self, event):
        t = time.ticks_diff(time.ticks_ms(), self.t0)
        if t != self.instant:
            self.flush()
            self.instant = t
        self.bucket.append(event)
        self.count += 1
        self.order = mix(self.order, t, event)
        if len(self.first) < 8:
            self.first.append([t, event])
        self.last = (self.last + [[t, event]])[-8:]

    def flush(self):
        for event in sorted(self.bucket):
            self.instants = mix(self.instants, self.instant, event)
        self.bucket = []

    def row(self):
        self.flush()
        return {"count": self.count, "order": self.order, "instants": self.instants,
                "first": self.first, "last": self.last,
                "end_ms": time.ticks_diff(time.ticks_ms(), self.t0)}


async def ticker(digest, name, seconds, count, event=None, at=None):
    for i in range(count):
        await asyncio.sleep(seconds)  # periods in whole ms: MicroPython sleeps in ms
        digest.add(name)
        if i + 1 == at:
            event.set()


async def timeouts(digest, never, count):
    for _ in range(count):
        try:
            await asyncio.wait_for(never.wait(), 55)
        except asyncio.TimeoutError:
            digest.add("w:timeout")
        await asyncio.sleep(5)


async def waiter(digest, event):
    await asyncio.wait_for(event.wait(), 3600)
    digest.add("x:set")


async def virtual_hour():
    """One virtual hour: 20,400 sleeps in three tasks, 60 wait_for timeouts, one Event."""
    digest = Digest()
    half, never = asyncio.Event(), asyncio.Event()
    await asyncio.gather(ticker(digest, "a", 1, 3600, half, 1800),
                         ticker(digest, "b", 1.5, 2400), ticker(digest, "c", 0.25, 14400),
                         timeouts(digest, never, 60), waiter(digest, half))
    return digest.row()


def check_hour(bench=False):
    world = fresh((PERIOD - 1800 * 1000) * 1000)  # ticks_ms wraps half way through
    start = real_us()
    row = vasyncio.run(virtual_hour(), world)
    if bench:
        row["real_us"] = real_diff(real_us(), start)
        row["implementation"] = sys.implementation.name
        emit({"bench": row})
    else:
        emit({"hour": row})


async def nap(seconds, value=None):
    await asyncio.sleep(seconds)
    return value


async def semantics():
    log = []
    t0 = time.ticks_ms()

    def note(label, value=None):
        log.append([label, time.ticks_diff(time.ticks_ms(), t0), value])

    note("gather", await asyncio.gather(nap(3, "x"), nap(1, "y"), nap(2, "z")))
    event = asyncio.Event()

    async def wait_event(name):
        await event.wait()
        note("woken", name)

    waiters = [asyncio.create_task(wait_event(name)) for name in ("w1", "w2", "w3")]
    await nap(2)
    event.set()
    for task in waiters:
        await task
    try:
        await asyncio.wait_for(nap(10), 2)
    except asyncio.TimeoutError:
        note("wait_for timed out")
    note("wait_for", await asyncio.wait_for(nap(1, "ok"), 2))
    sleeper = asyncio.create_task(nap(100))
    await asyncio.sleep(1)
    sleeper.cancel()
    try:
        await sleeper
    except asyncio.CancelledError:
        note("cancelled")
    late = asyncio.create_task(nap(1, "late"))
    await asyncio.sleep(0)
    time.sleep(5)  # blocks the loop: the timer is overdue when it ends
    note("blocking sleep")
    note("overdue timer", await late)
    flag = asyncio.Event()

    async def set_later():
        await asyncio.sleep(1.5)
        flag.set()

    asyncio.create_task(set_later())
    note("wait_for event", await asyncio.wait_for(flag.wait(), 10))
    return log


def check_semantics():
    emit({"semantics": vasyncio.run(semantics(), fresh(12345678))})


async def fortnight():
    """Fourteen virtual days: 6-hour ticks, 3-day sleeps, 12-hour wait_for timeouts."""
    clock = sim_world.current().clock
    log = []
    gaps = []

    def note(label):
        log.append([label, clock.uptime_us() // 1000])

    async def six_hourly():
        last = time.ticks_ms()
        for _ in range(56):
            await asyncio.sleep(6 * 3600)
            gaps.append(time.ticks_diff(time.ticks_ms(), last))
            last = time.ticks_ms()
        note("six-hourly done")

    async def three_days():
        for _ in range(4):
            await asyncio.sleep(3 * 86400)
            note("three days")

    async def half_days(never):
        for _ in range(28):
            try:
                await asyncio.wait_for(never.wait(), 12 * 3600)
            except asyncio.TimeoutError:
                pass
        note("timeouts done")

    await asyncio.gather(six_hourly(), three_days(), half_days(asyncio.Event()))
    return {"log": log, "gaps": sorted(set(gaps)), "ticks": len(gaps)}


def check_fortnight():
    emit({"fortnight": vasyncio.run(fortnight(), fresh(5 * 3600 * 1000000))})


async def loopback(port):
    """Ask a real peer while another task sleeps virtually, and one sleeps an hour."""
    t0 = time.ticks_ms()
    state = {"ticks": 0, "waiting": True}

    async def tick():
        while state["waiting"]:
            await asyncio.sleep(0.01)
            state["ticks"] += 1

    async def hour():
        await asyncio.sleep(3600)
        return time.ticks_diff(time.ticks_ms(), t0)

    ticking = asyncio.create_task(tick())
    sleeping = asyncio.create_task(hour())
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"ping\n")
    await writer.drain()
    line = await reader.readline()
    answered = time.ticks_diff(time.ticks_ms(), t0)
    state["waiting"] = False
    writer.close()
    await writer.wait_closed()
    await ticking
    return {"reply": line.decode(), "answered_ms": answered, "ticks": state["ticks"],
            "hour_ms": await sleeping}


def check_socket(port):
    emit({"real": vasyncio.run(loopback(port), fresh(0))})


def main(args):
    if args and args[0] == "bench":
        check_hour(bench=True)
        return
    check_ticks()
    check_sleep()
    check_wall()
    check_hour()
    check_semantics()
    check_fortnight()
    if args:
        check_socket(int(args[0]))


if __name__ == "__main__":
    main(sys.argv[1:])
