# Pins of a simulated board: their electrical state, the board's own errors, analog
# sources, and the scheduler that runs Timer callbacks and the watchdog off the clock.
#
# A pin's level comes from whoever drives it: the firmware (OUT, or OPEN_DRAIN low), else
# the world (a button, a sensor model), else the pull resistor, else it floats and reads 0.
# Parts (host_sim.parts) watch pins; an IRQ handler fires on an edge of the level, whoever
# caused it. Times the world sees (histories, waveforms) are microseconds since boot, the
# same on both interpreters whatever tick the clock started at.
#
# Misuse fails with what the board's MicroPython raises: the messages live in the board
# profile ("errors"), so one code path serves every port.
#
# Timer callbacks and the watchdog run from a clock listener: when the clock jumps, every
# timer due inside the jump fires in order, with the clock set to its due time while the
# callback runs. IRQ handlers and timer callbacks are "soft" (scheduled) on real ports;
# here they run at once unless disable_irq() holds them back, with their own World current
# (whoever caused them: a test pressing a button, or another device of the process).
#
# State kept in World.machine: "scheduler", "analog" (voltages by source), "pwm_freq",
# "reset_cause", "freq_hz"; set by others: "unique_id" (a scenario), "radio_on" (True while
# Wi-Fi is up: the ESP32's ADC2 cannot be read then).
from host_sim import world as _world

IN = 1
OUT = 3
OPEN_DRAIN = 7
PULL_DOWN = 1
PULL_UP = 2
IRQ_RISING = 1
IRQ_FALLING = 2

_EXCEPTIONS = {"ValueError": ValueError, "OSError": OSError, "TypeError": TypeError,
               "AttributeError": AttributeError, "RuntimeError": RuntimeError}


class DeviceReset(SystemExit):
    """The device reset (watchdog, machine.reset(), deep sleep): the run ends here.

    A SystemExit, so firmware's `except Exception` cannot swallow it and asyncio lets it
    out of the event loop on both interpreters, as a real reset ends everything.
    `cause` is what machine.reset_cause() reports after the reboot; `sleep_us` is how
    long a deep sleep lasts (None: until woken by a pin or the power).
    """

    def __init__(self, reason, cause, sleep_us=None):
        super().__init__("device reset (%s)" % reason)
        self.reason = reason
        self.cause = cause
        self.sleep_us = sleep_us


def board_error(world, kind, arg=None):
    """The exception this board's port raises for a misuse, or None if it ignores it."""
    errors = world.board.get("errors", {})
    spec = errors.get(kind, ["ValueError", "invalid pin"])
    if spec is None:
        return None
    args = []
    for item in spec[1:]:
        if arg is not None and isinstance(item, str) and "%s" in item:
            item = item % (arg,)
        args.append(item)
    return _EXCEPTIONS[spec[0]](*args)


def check(world, ok, kind, arg=None):
    """True if ok; else raise the board's error, or return False if the port ignores it."""
    if ok:
        return True
    error = board_error(world, kind, arg)
    if error is None:
        world.record("pins", "ignored: %s %s" % (kind, arg))
        return False
    raise error


def method_check(where, cls, name):
    """AttributeError, as on the board, for a method this port's class lacks."""
    if name not in where:
        raise AttributeError("'%s' object has no attribute '%s'" % (cls, name))


def bounded(world, value, low, high, kind):
    """value if within [low, high]; else the board's error, or clamped if it has none."""
    if low <= value <= high:
        return value
    if kind in world.board.get("errors", {}):
        raise board_error(world, kind, value)
    return min(high, max(low, value))


def canonical(key):
    """Profile keys are strings; numbered pins are ints everywhere else."""
    if isinstance(key, str) and key.isdigit():
        return int(key)
    return key


def resolve(world, pin):
    """The pin id for a Pin, a number or a name; the board's error if it has no such pin."""
    state = getattr(pin, "_state", None)
    if state is not None:
        return state.id
    board = world.board
    if isinstance(pin, str):
        key = board.get("pin_names", {}).get(pin)
        if key is None and pin in board["pins"] and not pin.isdigit():
            key = pin
        if key is None:
            raise board_error(world, "unknown_name", pin)
        return canonical(key)
    if isinstance(pin, int) and str(pin) in board["pins"]:
        return pin
    raise board_error(world, "invalid_pin", pin)


class PinState:
    """One pin's electrical state, shared by every Pin object and part on it."""

    def __init__(self, world, pin_id, caps):
        self.world = world
        self.id = pin_id
        self.caps = caps
        self.mode = None        # None until configured, else IN, OUT or OPEN_DRAIN
        self.pull = None
        self.out = 0            # the output register
        self.external = None    # what the world drives: 0, 1, or None (released)
        self.pwm = None         # duty (0.0-1.0) while a PWM drives the pin
        self.handler = None     # IRQ handler, its trigger mask, the Pin it receives
        self.trigger = 0
        self.irq_pin = None
        self.flags = 0          # the edge that fired the last IRQ
        self.watchers = []      # parts: called as watcher(state) on every change
        self._seen = (self.level(), None)

    def driven(self):
        """What the firmware drives the pin to: 0 or 1, or None (input, or open drain
        released)."""
        if self.mode == OUT:
            return self.out
        if self.mode == OPEN_DRAIN and not self.out:
            return 0
        return None

    def level(self):
        """The logic level on the wire now."""
        driven = self.driven()
        if driven is not None:
            return driven
        if self.external is not None:
            return self.external
        return 1 if self.pull == PULL_UP else 0

    def changed(self):
        """Recompute the level; tell the watchers; fire the IRQ on a matching edge."""
        old = self._seen[0]
        new = self.level()
        if (new, self.pwm) == self._seen:
            return
        self._seen = (new, self.pwm)
        if self.mode == OUT and self.external is not None and self.external != self.out:
            self.world.record("pins", "contention on pin %s" % (self.id,))
        for watcher in self.watchers:
            watcher(self)
        edge = IRQ_RISING if new else IRQ_FALLING
        if new != old and self.handler is not None and self.trigger & edge:
            self.flags = edge
            dispatch(self.world, self.handler, self.irq_pin)

    def reset(self):
        """What a chip reset does to a pin: input, no pull, no PWM, no IRQ."""
        self.mode = self.pull = self.pwm = self.handler = self.irq_pin = None
        self.out = self.trigger = 0
        self.changed()


def state(world, pin):
    """The PinState of a pin (a Pin, number or name), created on first use."""
    pin_id = resolve(world, pin)
    found = world.pins.get(pin_id)
    if found is None:
        found = PinState(world, pin_id, world.board["pins"][str(pin_id)])
        world.pins[pin_id] = found
    return found


def drive(world, pin, value):
    """The world drives a pin: 0 or 1, or None to let go of it."""
    pin_state = state(world, pin)
    pin_state.external = None if value is None else (1 if value else 0)
    pin_state.changed()


def adc_source(world, spec, source):
    """The pin or named source that ADC(source) reads; the board's error if none."""
    if not spec:
        raise board_error(world, "no_adc", source)
    channels = spec.get("channels", {})
    if spec["by"] != "pin" and isinstance(source, int) and str(source) in channels:
        return canonical(channels[str(source)])
    if spec["by"] == "channel":
        raise board_error(world, "no_adc", source)
    pin_state = state(world, source)
    check(world, "adc" in pin_state.caps, "no_adc", pin_state.id)
    return pin_state.id


def _source_key(world, key):
    try:
        return resolve(world, key)
    except (ValueError, OSError):
        return key  # a named source that is not a pin: "A0", "VDD", "TEMP"


def set_voltage(world, key, source):
    """Set what an analog input sees: volts, a function of the time since boot in us,
    or a list of (t_us, volts) points joined by straight lines (held at both ends; two
    points at one time make a step)."""
    world.machine.setdefault("analog", {})[_source_key(world, key)] = source


def voltage(world, key):
    """The voltage on an analog input now (0.0 V when nothing was set)."""
    sources = world.machine.get("analog", {})
    source = sources.get(key)
    if source is None:
        adc = world.board.get("adc") or {}
        source = adc.get("sources", {}).get(str(key), 0.0)
    return sample(source, world.clock.uptime_us())


def sample(source, t_us):
    """A waveform's value at t_us: a constant, a callable, or a list of points."""
    if callable(source):
        return source(t_us)
    if isinstance(source, (list, tuple)):
        prev_t, prev_v = source[0]
        if t_us < prev_t:
            return prev_v
        for point_t, point_v in source[1:]:
            if t_us < point_t:
                return prev_v + (point_v - prev_v) * (t_us - prev_t) / (point_t - prev_t)
            prev_t, prev_v = point_t, point_v
        return prev_v  # at a step (two points at one time) the later point holds
    return source


class Scheduler:
    """Timers and the watchdog, run by the clock; the soft-IRQ mask."""

    def __init__(self, world):
        self.world = world
        self.timers = []            # armed timers, each with .due_us and ._fire()
        self.wdt_timeout_us = None
        self.wdt_due_us = None
        self.irq_disabled = 0
        self.pending = []           # (handler, argument) held back by disable_irq()
        world.clock.listeners.append(self.advanced)

    def arm(self, timer, due_us):
        timer.due_us = due_us
        if timer not in self.timers:
            self.timers.append(timer)
        self._tell_clock()

    def disarm(self, timer):
        if timer in self.timers:
            self.timers.remove(timer)
        self._tell_clock()

    def feed(self):
        self.wdt_due_us = self.world.clock.now_us + self.wdt_timeout_us
        self._tell_clock()

    def _tell_clock(self):
        """Tell the clock when this listener next has work (Clock.due)."""
        self.world.clock.due(self.next_due()[1])

    def next_due(self):
        """(timer, due_us) of the next event; timer None is the watchdog."""
        best = None
        for timer in self.timers:  # the first armed wins a tie
            if best is None or timer.due_us < best.due_us:
                best = timer
        wdt = self.wdt_due_us
        if wdt is not None and (best is None or wdt < best.due_us):
            return None, wdt  # a timer due at the same instant still runs first
        return best, (None if best is None else best.due_us)

    def advanced(self, now_us):
        clock = self.world.clock
        target = now_us
        try:
            while True:
                timer, due = self.next_due()
                if due is None or due > target:
                    return
                clock.now_us = due  # an error or a reset leaves the clock at this instant
                if timer is None:
                    raise reset(self.world, "watchdog")
                timer._fire()
                target = max(target, clock.now_us)
                clock.now_us = target
        finally:
            self._tell_clock()

    def release(self):
        """Run what disable_irq() held back."""
        while self.pending and not self.irq_disabled:
            handler, arg = self.pending.pop(0)
            _world.using(self.world, handler, arg)

    def stop(self):
        self.timers = []
        self.pending = []
        self.wdt_due_us = self.wdt_timeout_us = None
        self.irq_disabled = 0
        self._tell_clock()


def scheduler(world):
    """The World's Scheduler, hooked to its clock on first use."""
    found = world.machine.get("scheduler")
    if found is None:
        found = world.machine["scheduler"] = Scheduler(world)
    return found


def dispatch(world, handler, arg):
    """Run an IRQ handler or timer callback, or hold it while IRQs are disabled."""
    sched = scheduler(world)
    if sched.irq_disabled:
        sched.pending.append((handler, arg))
    else:
        _world.using(world, handler, arg)


def reset_cause_value(world, reason):
    """The reset_cause() number after a reset for `reason`, or None for unchanged."""
    machine = world.board["machine"]
    after = machine["reset_cause_after"].get(reason)
    if isinstance(after, str):
        return machine["reset_causes"][after]
    return after


def reset(world, reason, sleep_us=None):
    """Reset the chip: stop timers and watchdog, release the pins; the DeviceReset."""
    cause = reset_cause_value(world, reason)
    if cause is not None:
        world.machine["reset_cause"] = cause
    else:
        cause = world.machine.get("reset_cause",
                                  world.board["machine"]["reset_causes"]["PWRON_RESET"])
    scheduler(world).stop()
    world.machine.pop("freq_hz", None)
    world.record("machine", "reset: " + reason)
    for pin_state in list(world.pins.values()):
        pin_state.reset()
    return DeviceReset(reason, cause, sleep_us)
