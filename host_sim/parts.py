# Parts wired to a simulated board's pins: LEDs and relays that the firmware drives, and
# buttons that the world presses.
#
# Output parts watch their pin and keep a history of (microseconds since boot, value):
# 1 or 0 for on and off, or the duty (0.0-1.0) while a PWM drives the pin; they are off
# while the pin is not driven (an input, or an open drain let go). A button drives
# its pin only while pressed; released, the pin reads what the pull resistor makes it (an
# active-low button without a pull-up reads 0 either way, as a floating pin may).
from host_sim import pins as _pins
from host_sim.world import current as _current


class _Output:
    def __init__(self, pin, active_low=False, world=None):
        self.world = world if world is not None else _current()
        self.active_low = active_low
        self.pin = _pins.state(self.world, pin)
        self.history = []
        self.pin.watchers.append(self._changed)
        self._changed(self.pin)

    def _changed(self, pin_state):
        value = self.value()
        if not self.history or self.history[-1][1] != value:
            self.history.append((self.world.clock.uptime_us(), value))

    def value(self):
        """1 or 0 (on or off), or the PWM duty as seen by the part. An undriven pin (an
        input) passes no current: off, whichever way the part is wired."""
        if self.pin.pwm is not None:
            return 1.0 - self.pin.pwm if self.active_low else self.pin.pwm
        driven = self.pin.driven()
        if driven is None:
            return 0
        return driven ^ 1 if self.active_low else driven


class LED(_Output):
    """An LED on a pin: lit when the pin is high (active_low: when it is low)."""

    def is_on(self):
        return self.value() > 0


class Relay(_Output):
    """A relay (through its driver) on a pin: energized when the pin is high (active_low:
    low)."""

    def is_energized(self):
        return self.value() > 0


class Button:
    """A push button between a pin and ground (active_low) or the supply."""

    def __init__(self, pin, active_low=True, world=None):
        self.world = world if world is not None else _current()
        self.active_low = active_low
        self.pin = _pins.state(self.world, pin)
        self.pressed = False

    def press(self):
        self.pressed = True
        _pins.drive(self.world, self.pin.id, 0 if self.active_low else 1)

    def release(self):
        self.pressed = False
        _pins.drive(self.world, self.pin.id, None)

    def click(self, duration_ms=100):
        """Press, hold for duration_ms of device time, release."""
        self.press()
        self.world.clock.advance(duration_ms * 1000)
        self.release()
