# The `time` module of a simulated device: MicroPython's time API on the virtual clock.
#
# Ticks and sleeps read and move the clock of the current World (host_sim.world.current()):
# a sleep advances the clock and returns at once (resting now and then: REST_MS below).
# Wall time (time(), localtime()) is the clock's wall time counted from the board's epoch,
# 2000-01-01 unless the board profile says {"epoch": 1970} (MicroPython's rp2 and unix
# ports, a Linux board); boards keep UTC, so localtime() is gmtime(), as 8-tuples.
#
# Installing it: on the MicroPython unix port this file shadows the built-in `time` because
# host_sim/shims comes first on sys.path (the built-in stays reachable as `utime`). CPython
# cannot be shadowed through sys.path: host_sim.vclock.install() puts this module into
# sys.modules["time"] of a device process and stashes the real module in `_host`; names
# this module lacks (monotonic, perf_counter, struct_time, what the stdlib and asyncio
# need) are then read from the real module. Imported as host_sim.shims.time (pytest) it
# leaves the stdlib alone.
import sys as _sys

from host_sim import world as _world
from host_sim.clock import ticks_add, ticks_diff  # noqa: F401 - part of this module's API

_host = None  # the real time module, set by host_sim.vclock.install() (CPython only)
_SECONDS_1970_TO_2000 = 946684800
_DAYS_0000_TO_1970 = 719468  # from 0000-03-01 in the proleptic Gregorian calendar


def _clock():
    return _world.current().clock


def ticks_ms():
    return _clock().ticks_ms()


def ticks_us():
    return _clock().ticks_us()


def ticks_cpu():
    """The CPU cycle counter; the simulated CPU counts microseconds."""
    return _clock().ticks_us()


def sleep(seconds):
    _sleep(round(seconds * 1000000))


def sleep_ms(ms):
    _sleep(_whole(ms) * 1000)


def sleep_us(us):
    _sleep(_whole(us))


# A device process on an unpaced clock rests REST_MS of real time in a system call once
# every REST_EVERY_MS of real time it spends in blocking sleeps, or in asyncio sleeps that
# jump the clock (host_sim.vasyncio calls rest_now_and_then): virtual time runs at nearly
# full speed still, and the console (host_sim.console) finds a moment to deliver a Ctrl-C
# where the unix port can take it (not in the middle of a garbage collection, which it
# would leave locked: "heap is locked", then "FATAL: uncaught NLR").
REST_MS = 2
REST_EVERY_MS = 50
_rest = []  # [real ms now (a function), rest (a function), real ms of the last rest]


def _sleep(us):
    """Move the clock on: a paced clock waits for real time itself."""
    clock = _clock()
    clock.advance(us)
    if getattr(clock, "factor", None) is None and us > 0:
        rest_now_and_then()


def rest_now_and_then():
    """Rest REST_MS of real time if the last rest is REST_EVERY_MS of real time ago."""
    if not _rest:
        if _host is not None:  # a CPython device process
            _rest[:] = [lambda: int(_host.monotonic() * 1000),
                        lambda: _host.sleep(REST_MS / 1000), None]
        elif _sys.implementation.name == "micropython":
            import select
            import utime
            poller = select.poll()  # nothing registered: a plain wait
            _rest[:] = [utime.ticks_ms, lambda: poller.poll(REST_MS), None]
        else:  # imported in a host process (pytest): nothing to rest
            return
    now = _rest[0]()
    if _rest[2] is None or ticks_diff(now, _rest[2]) >= REST_EVERY_MS:
        _rest[1]()
        _rest[2] = now


def _whole(n):
    """n if it is an int; a board's sleep_ms/sleep_us reject floats with TypeError."""
    if not isinstance(n, int):
        raise TypeError("can't convert %s to int" % type(n).__name__)
    return n


def _epoch():
    """Seconds from 1970-01-01 to the board's epoch."""
    board = _world.current().board or {}
    return 0 if board.get("epoch", 2000) == 1970 else _SECONDS_1970_TO_2000


def _wall_us():
    clock = _clock()
    return int(clock.wall_start) * 1000000 + clock.uptime_us()


def time():
    """Whole seconds since the board's epoch."""
    return _wall_us() // 1000000 - _epoch()


def time_ns():
    return _wall_us() * 1000 - _epoch() * 1000000000


def _civil(days):
    """(year, month, day) of a day count from 1970-01-01 (H. Hinnant's algorithm)."""
    days += _DAYS_0000_TO_1970
    era = days // 146097
    doe = days - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    shifted = (5 * doy + 2) // 153  # months counted from March
    day = doy - (153 * shifted + 2) // 5 + 1
    month = shifted + 3 if shifted < 10 else shifted - 9
    year = yoe + era * 400
    return (year + 1 if month <= 2 else year), month, day


def _days(year, month, day):
    """Day count from 1970-01-01 of a date; the inverse of _civil()."""
    if month <= 2:
        year -= 1
    era = year // 400
    yoe = year - era * 400
    doy = (153 * (month - 3 if month > 2 else month + 9) + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - _DAYS_0000_TO_1970


def gmtime(secs=None):
    """(year, month, mday, hour, minute, second, weekday, yearday) of secs since the epoch."""
    if secs is None:
        secs = time()
    secs = int(secs) + _epoch()
    days = secs // 86400
    rest = secs - days * 86400
    year, month, day = _civil(days)
    return (year, month, day, rest // 3600, rest // 60 % 60, rest % 60,
            (days + 3) % 7, days - _days(year, 1, 1) + 1)


def localtime(secs=None):
    return gmtime(secs)


def mktime(t):
    """Seconds since the epoch of a local time tuple; out-of-range fields carry over."""
    year, month = t[0] + (t[1] - 1) // 12, (t[1] - 1) % 12 + 1
    days = _days(year, month, 1) + t[2] - 1
    return days * 86400 + t[3] * 3600 + t[4] * 60 + t[5] - _epoch()


def __getattr__(name):
    if _host is None:
        raise AttributeError(name)
    return getattr(_host, name)
