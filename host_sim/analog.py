# Analog parts of the machine shim: ADC and PWM (re-exported by host_sim/shims/machine.py).
#
# An ADC reads the voltage the world put on its source (host_sim.pins.set_voltage: a
# constant, a function of time, or points), sampled at the clock's now and converted the
# way the board's port converts it (resolution, attenuation, read_u16 scaling). A PWM keeps
# its frequency per group of pins that share one in hardware and puts its duty on the pin,
# where parts (an LED) record it. Both fail as the board's port does.
from host_sim import pins as _pins
from host_sim.world import current as _current


class ADC:
    """An analog input; it reads what host_sim.pins.set_voltage() put on its source."""

    ATTN_0DB = 0
    ATTN_2_5DB = 1
    ATTN_6DB = 2
    ATTN_11DB = 3
    WIDTH_9BIT = 9
    WIDTH_10BIT = 10
    WIDTH_11BIT = 11
    WIDTH_12BIT = 12

    def __init__(self, id, atten=None, **kwargs):
        world = _current()
        spec = world.board.get("adc")
        self._world = world
        self._spec = spec
        self._key = _pins.adc_source(world, spec, id)
        self._bits = spec["bits"]
        self._atten = spec.get("default_atten")
        self._radio = False
        for block in spec.get("radio_blocks", ()):
            self._radio = self._radio or self._key in spec["blocks"][str(block)]
        if atten is not None:
            self.atten(atten)

    def _volts(self):
        """(volts on the input, full-scale volts); the port's error if it cannot read."""
        if self._radio and self._world.machine.get("radio_on"):
            raise _pins.board_error(self._world, "adc_busy")
        spec = self._spec
        full = spec["atten_v"][self._atten] if "atten_v" in spec else spec["range_v"]
        return _pins.voltage(self._world, self._key), full

    def _raw(self):
        volts, full = self._volts()
        if self._key == "VDD":
            return int(volts * 1024 + 0.5)  # the ESP8266 reports its supply in 1/1024 V
        top = self._spec.get("raw_max", (1 << self._bits) - 1)
        return min(top, max(0, int(volts * top / full + 0.5)))

    def read_u16(self):
        raw = self._raw()
        if "raw_max" in self._spec:
            return raw * 65535 // self._spec["raw_max"]
        return (raw << (16 - self._bits)) | (raw >> (2 * self._bits - 16))

    def read(self):
        _pins.method_check(self._spec["methods"], "ADC", "read")
        return self._raw()

    def read_uv(self):
        """Calibrated microvolts, at millivolt resolution, within the input range."""
        _pins.method_check(self._spec["methods"], "ADC", "read_uv")
        volts, full = self._volts()
        return int(min(full, max(0.0, volts)) * 1000 + 0.5) * 1000

    def atten(self, value):
        _pins.method_check(self._spec["methods"], "ADC", "atten")
        if not 0 <= value < len(self._spec["atten_v"]):
            raise _pins.board_error(self._world, "adc_atten", value)
        self._atten = value

    def width(self, bits):
        _pins.method_check(self._spec["methods"], "ADC", "width")
        if bits not in self._spec["widths"]:
            raise _pins.board_error(self._world, "adc_width", bits)
        self._bits = bits


class PWM:
    """PWM on a pin; parts wired to the pin see the duty (LED brightness)."""

    def __init__(self, dest, freq=None, duty=None, *, duty_u16=None, duty_ns=None,
                 invert=False):
        world = _current()
        self._state = _pins.state(world, dest)
        _pins.check(world, "pwm" in self._state.caps, "no_pwm", self._state.id)
        self._world = world
        self._spec = world.board["pwm"]
        self._native = None  # the duty in hardware steps (spec["duty_resolution"])
        self._invert = False
        self.init(freq, duty, duty_u16=duty_u16, duty_ns=duty_ns, invert=invert)

    def init(self, freq=None, duty=None, *, duty_u16=None, duty_ns=None, invert=None):
        spec = self._spec
        if invert is not None:
            self._invert = bool(invert)
        if freq is not None:
            self.freq(freq)
        elif self._freqs().get(self._group()) is None and spec["default_freq"] is not None:
            self._freqs()[self._group()] = spec["default_freq"]
        if duty_u16 is not None:
            self.duty_u16(duty_u16)
        elif duty_ns is not None:
            self.duty_ns(duty_ns)
        elif duty is not None:
            self.duty(duty)
        elif self._native is None and spec["default_duty_u16"] is not None:
            self._set_u16(spec["default_duty_u16"])
        self._apply()

    def deinit(self):
        self._state.pwm = None
        self._state.changed()

    def _group(self):
        """Pins that share one frequency share a key: all (ESP8266), a slice (RP2)."""
        shared = self._spec["freq_shared"]
        if shared == "all":
            return "all"
        if shared == "slice":
            return "slice%d" % ((self._state.id >> 1) & 7)
        return self._state.id

    def _freqs(self):
        return self._world.machine.setdefault("pwm_freq", {})

    def freq(self, value=None):
        if value is None:
            return self._freqs().get(self._group()) or 0
        low, high = self._spec["freq_range"]
        if value < low:
            value = _pins.bounded(self._world, value, low, high, "pwm_freq_low")
        value = _pins.bounded(self._world, value, low, high, "pwm_freq_high")
        self._freqs()[self._group()] = value
        self._apply()

    def _set_u16(self, value):
        resolution = self._spec["duty_resolution"]
        self._native = value if resolution == 65536 else value * resolution // 65535

    def _u16(self):
        resolution = self._spec["duty_resolution"]
        native = self._native or 0
        return native if resolution == 65536 else native * 65535 // resolution

    def duty_u16(self, value=None):
        if value is None:
            return self._u16()
        self._set_u16(_pins.bounded(self._world, value, 0, 65535, "pwm_duty_u16"))
        self._apply()

    def duty(self, value=None):
        """The 10-bit duty of the ESP ports (0-1023)."""
        _pins.method_check(self._spec["methods"], "PWM", "duty")
        fine = self._spec["duty_resolution"] == 65536
        if value is None:
            return (self._native or 0) >> 6 if fine else self._native or 0
        value = _pins.bounded(self._world, value, 0, 1023, "pwm_duty")
        self._native = (65535 if value == 1023 else value << 6) if fine else value
        self._apply()

    def duty_ns(self, value=None):
        freq = self.freq()
        if value is None:
            return self._u16() * 1000000000 // (65535 * freq) if freq else 0
        if freq:
            self.duty_u16(min(65535, value * freq * 65535 // 1000000000))

    def _apply(self):
        duty = 0.0
        if self._native is not None and self.freq():
            duty = min(1.0, self._native / (self._spec["duty_resolution"] - 1))
        self._state.pwm = 1.0 - duty if self._invert else duty
        self._state.changed()
