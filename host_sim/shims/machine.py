# machine for a simulated board: Pin, Signal, ADC, PWM, Timer, RTC, WDT and the chip-level
# functions of MicroPython's machine module, acting on host_sim.world.current(). Valid on
# MicroPython and CPython. On the unix port this file comes first on sys.path and shadows
# the built-in machine (which stays reachable as umachine).
#
# Every call looks up the current World, so one imported module serves every simulated
# device of a process. What differs between boards (which pins exist and what they can do,
# error messages, reset-cause numbers, frequencies) comes from the board profile; the
# *_RESET constants are looked up there too (module __getattr__), so a port that lacks
# one lacks it here.
#
# Resets (reset(), soft_reset(), the watchdog, deepsleep()) raise host_sim.pins.DeviceReset:
# on a board the chip restarts; here the run ends and the runner may boot the device again.
# Timers and the watchdog follow the virtual clock: they fire while something advances it.
from host_sim import pins as _pins
from host_sim.analog import ADC, PWM  # noqa: F401 - part of machine
from host_sim.world import current as _current

_KEEP = object()


class _Switch:
    """What Pin and Signal share: calling them is value(); on() and off()."""

    def __call__(self, x=None):
        return self.value(x)

    def on(self):
        self.value(1)

    def off(self):
        self.value(0)


class Pin(_Switch):
    """A GPIO pin of the current board."""

    IN = _pins.IN
    OUT = _pins.OUT
    OPEN_DRAIN = _pins.OPEN_DRAIN
    PULL_UP = _pins.PULL_UP
    PULL_DOWN = _pins.PULL_DOWN
    IRQ_RISING = _pins.IRQ_RISING
    IRQ_FALLING = _pins.IRQ_FALLING

    def __init__(self, id, *args, **kwargs):
        world = _current()
        self._state = _pins.state(world, id)
        reason = world.board.get("reserved", {}).get(str(self._state.id))
        if reason:
            world.record("pins", "pin %s is reserved: %s" % (self._state.id, reason))
        if args or kwargs:
            self.init(*args, **kwargs)

    def __repr__(self):
        return "Pin(%s)" % (self._state.id,)

    def init(self, mode=-1, pull=-1, value=None, drive=-1, alt=-1):
        """Configure the pin; mode and pull stay as they are unless given."""
        s = self._state
        if value is not None:
            s.out = 1 if value else 0
        if mode is not None and mode != -1:
            if mode == _pins.OUT or mode == _pins.OPEN_DRAIN:
                _pins.check(s.world, "out" in s.caps, "input_only", s.id)
            s.mode = mode
        if pull != -1:
            s.pull = _accept_pull(s, pull)
        s.changed()

    def value(self, x=None):
        s = self._state
        if x is None:
            return s.level()
        s.out = 1 if x else 0
        s.changed()

    def toggle(self):
        self.value(0 if self._state.out else 1)

    def low(self):
        _pins.method_check(self._state.world.board["machine"]["pin_methods"], "Pin", "low")
        self.value(0)

    def high(self):
        _pins.method_check(self._state.world.board["machine"]["pin_methods"], "Pin", "high")
        self.value(1)

    def irq(self, handler=_KEEP, trigger=_pins.IRQ_FALLING | _pins.IRQ_RISING, hard=False,
            **kwargs):
        """Call handler(pin) on the edges in trigger; with no arguments, just the IRQ."""
        s = self._state
        _pins.check(s.world, "irq" in s.caps, "no_irq", s.id)
        if handler is not _KEEP:
            s.handler = handler
            s.trigger = trigger if handler is not None else 0
            s.irq_pin = self
        return _PinIRQ(s)


class _PinIRQ:
    """What Pin.irq() returns."""

    def __init__(self, pin_state):
        self._state = pin_state

    def trigger(self, value=None):
        if value is None:
            return self._state.trigger
        self._state.trigger = value

    def flags(self):
        return self._state.flags


def _accept_pull(pin_state, pull):
    """The pull a pin gets: None, or the request if the pin has it (else the port's way)."""
    if pull is None:
        return None
    world = pin_state.world
    if pull == _pins.PULL_DOWN and "no_pull_down" in world.board.get("errors", {}):
        raise _pins.board_error(world, "no_pull_down")
    cap = "pull_up" if pull == _pins.PULL_UP else "pull_down"
    return pull if _pins.check(world, cap in pin_state.caps, "no_pull", pin_state.id) else None


class Signal(_Switch):
    """A pin that may be inverted: on() means active, whatever the wiring."""

    def __init__(self, pin, *args, invert=False, **kwargs):
        if args or kwargs or not isinstance(pin, Pin):
            pin = Pin(pin, *args, **kwargs)
        self._pin = pin
        self._invert = 1 if invert else 0

    def value(self, x=None):
        if x is None:
            return self._pin.value() ^ self._invert
        self._pin.value((1 if x else 0) ^ self._invert)


class Timer:
    """A timer on the virtual clock: callback(timer) runs as the clock passes each period."""

    ONE_SHOT = 0
    PERIODIC = 1

    def __init__(self, id=-1, **kwargs):
        world = _current()
        ids = world.board["machine"]["timer_ids"]
        if ids is not None and id not in ids:
            raise _pins.board_error(world, "no_timer", id)
        self._world = world
        self._scheduler = _pins.scheduler(world)
        self.due_us = None
        if kwargs:
            self.init(**kwargs)

    def init(self, *, mode=1, period=-1, tick_hz=1000, freq=None, callback=None,
             hard=False):
        if freq is not None:
            period_us = int(1000000 / freq)
        else:
            period_us = (0xFFFFFFFF if period < 0 else period) * 1000000 // tick_hz
        self._period_us = max(1, period_us)
        self._mode = mode
        self._callback = callback
        self._scheduler.arm(self, self._world.clock.now_us + self._period_us)

    def deinit(self):
        self._scheduler.disarm(self)

    def _fire(self):
        if self._mode == Timer.PERIODIC:
            self.due_us += self._period_us
        else:
            self._scheduler.disarm(self)
        if self._callback is not None:
            _pins.dispatch(self._world, self._callback, self)


class RTC:
    """The real-time clock: the wall time of the virtual clock. Setting it moves time.time()
    as well, as on a board."""

    def __init__(self, id=0):
        self._world = _current()

    def datetime(self, datetimetuple=None):
        """(year, month, day, weekday, hours, minutes, seconds, subseconds); Monday is 0."""
        clock = self._world.clock
        if datetimetuple is None:
            total_us = int(clock.wall_start * 1000000 + 0.5) + clock.uptime_us()
            seconds, micros = divmod(total_us, 1000000)
            days, seconds = divmod(seconds, 86400)
            if self._world.board["machine"]["rtc_subseconds"] != "us":
                micros = 0
            return _civil_from_days(days) + ((days + 3) % 7, seconds // 3600,
                                             seconds // 60 % 60, seconds % 60, micros)
        year, month, day, _, hours, minutes, seconds = datetimetuple[:7]
        micros = datetimetuple[7] if len(datetimetuple) > 7 else 0
        seconds += _days_from_civil(year, month, day) * 86400 + hours * 3600 + minutes * 60
        clock.wall_start = (seconds * 1000000 + micros - clock.uptime_us()) / 1000000


def _civil_from_days(days):
    """(year, month, day) of a day count since 1970-01-01 (proleptic Gregorian)."""
    days += 719468
    era = days // 146097
    doe = days - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    month = mp + 3 if mp < 10 else mp - 9
    year = yoe + era * 400 + (1 if month <= 2 else 0)
    return (year, month, doy - (153 * mp + 2) // 5 + 1)


def _days_from_civil(year, month, day):
    if month <= 2:
        year -= 1
    era = year // 400
    yoe = year - era * 400
    doy = (153 * (month - 3 if month > 2 else month + 9) + 2) // 5 + day - 1
    return era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468


class WDT:
    """The watchdog: unless fed within timeout ms, the clock advance that passes the
    deadline raises DeviceReset (the chip resets)."""

    def __init__(self, id=0, timeout=5000):
        world = _current()
        spec = world.board["machine"]["wdt"]
        if id != 0:
            raise _pins.board_error(world, "wdt_id", id)
        if (spec.get("fixed_ms", timeout) != timeout or timeout < spec.get("min_ms", 0)
                or timeout > spec.get("max_ms", timeout)):
            raise _pins.board_error(world, "wdt_timeout", timeout)
        self._scheduler = _pins.scheduler(world)
        self._scheduler.wdt_timeout_us = timeout * 1000
        self._scheduler.feed()

    def feed(self):
        self._scheduler.feed()


def reset():
    """Hard reset: ends the run with DeviceReset."""
    raise _pins.reset(_current(), "reset")


def soft_reset():
    """Soft reset (the interpreter restarts): ends the run with DeviceReset."""
    raise _pins.reset(_current(), "soft_reset")


def deepsleep(time_ms=None):
    """Deep sleep: the device boots again when it wakes, so the run ends (DeviceReset with
    sleep_us set; None sleeps until a pin or the power wakes it)."""
    raise _pins.reset(_current(), "deepsleep", None if time_ms is None else time_ms * 1000)


def lightsleep(time_ms=None):
    """Sleep with RAM kept: the clock advances (without a time, to the next timer)."""
    world = _current()
    if time_ms is not None:
        world.clock.advance(time_ms * 1000)
        return
    due = _pins.scheduler(world).next_due()[1]
    if due is not None:
        world.clock.advance_to(due)


def reset_cause():
    world = _current()
    return world.machine.get("reset_cause",
                             world.board["machine"]["reset_causes"]["PWRON_RESET"])


def unique_id():
    """The board's id: world.machine["unique_id"] if the scenario set one, else the
    profile's."""
    world = _current()
    found = world.machine.get("unique_id")
    return found if found is not None else bytes.fromhex(world.board["machine"]["unique_id"])


def freq(hz=None, *peripheral):
    """The CPU frequency in Hz; set it to one the board allows."""
    world = _current()
    if hz is None:
        return world.machine.get("freq_hz", world.board["cpu_mhz"] * 1000000)
    if hz // 1000000 not in world.board["machine"]["freq_mhz"]:
        raise _pins.board_error(world, "freq", hz)
    world.machine["freq_hz"] = hz // 1000000 * 1000000


def idle():
    """Wait for an interrupt: here 1 ms of device time passes (timers in it fire)."""
    _current().clock.advance(1000)


def disable_irq():
    """Hold back IRQ handlers and timer callbacks; returns the state for enable_irq()."""
    sched = _pins.scheduler(_current())
    state = sched.irq_disabled
    sched.irq_disabled = 1
    return state


def enable_irq(state=0):
    """Restore the state disable_irq() returned; held-back handlers run when enabled."""
    sched = _pins.scheduler(_current())
    sched.irq_disabled = 1 if state else 0
    sched.release()


def __getattr__(name):
    """PWRON_RESET, WDT_RESET, ...: the current board's reset-cause constants."""
    if name.endswith("_RESET"):
        causes = _current().board["machine"]["reset_causes"]
        if name in causes:
            return causes[name]
    raise AttributeError("module 'machine' has no attribute '%s'" % name)


from host_sim.buses import I2C, SoftI2C, SPI, SoftSPI, UART  # buses and their peripherals  # noqa: E402, F401
