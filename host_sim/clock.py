# A virtual clock: device time that advances only when the device waits.
#
# Sleeping advances the clock instead of waiting, so an hour of timers costs nothing. The
# tick counters wrap at 2**30 like MicroPython's, so code that forgets ticks_diff() breaks
# here as it would on a board. The clock starts at a given tick, by default the real
# ticks_us() on MicroPython: the C asyncio module stamps new tasks with the real tick.
_PERIOD = 1 << 30
_HALF = _PERIOD >> 1
_MASK = _PERIOD - 1
EPOCH_2000 = 946684800  # MicroPython's epoch is 2000-01-01 on most ports


class Clock:
    """Microseconds since boot (unbounded) plus the wall time at boot."""

    def __init__(self, start_us=0, wall_start=EPOCH_2000 + 789004800):
        self.now_us = start_us
        self.boot_us = start_us
        self.wall_start = wall_start  # seconds since 1970 at boot (default 2025-01-01)
        self.listeners = []  # called as listener(now_us) whenever the clock moves

    def advance(self, us):
        """Move the clock forward by us microseconds (never back)."""
        if us > 0:
            self.now_us += us
            for listener in self.listeners:
                listener(self.now_us)

    def due(self, us):
        """A listener's next deadline (None: none): it has nothing to do before `us`. This
        clock calls every listener on every move anyway; a fleet of in-process devices
        (host_sim.inprocess) calls a device's listeners only when they are due."""

    def advance_to(self, target_us):
        if target_us > self.now_us:
            self.advance(target_us - self.now_us)

    def ticks_us(self):
        return self.now_us & _MASK

    def ticks_ms(self):
        return (self.now_us // 1000) & _MASK

    def uptime_us(self):
        return self.now_us - self.boot_us

    def time(self):
        """Seconds since 1970 (float), for time.time() and the RTC."""
        return self.wall_start + (self.now_us - self.boot_us) / 1000000


def ticks_add(ticks, delta):
    return (ticks + delta) & _MASK


def ticks_diff(end, start):
    return ((end - start + _HALF) & _MASK) - _HALF
