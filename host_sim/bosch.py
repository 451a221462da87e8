# Register-level models of Bosch's BMP280 (temperature, pressure) and BME280 (plus
# humidity), on I2C and on 4-wire SPI.
#
# How this works: the chip is a 256-byte register file. The calibration ("trimming") bytes
# are fixed when the model is made. A measurement, forced or one cycle of normal mode, turns
# the scenario's temperature, pressure and humidity into raw ADC counts by inverting the
# datasheet's compensation formulas (bisection over the monotonic floating-point formulas),
# rounded to the resolution the oversampling gives, passed through the IIR filter, and
# latched into the data registers. A driver applying the datasheet compensation to those
# registers reads back the scenario's values within the sensor's resolution. Time is the
# World's clock: a measurement takes the datasheet's typical t_measure.
from host_sim.buses import RegisterDevice, SPIDevice

REG_ID = 0xD0
REG_RESET = 0xE0
REG_CTRL_HUM = 0xF2
REG_STATUS = 0xF3
REG_CTRL_MEAS = 0xF4
REG_CONFIG = 0xF5
REG_DATA = 0xF7
RESET_WORD = 0xB6
SLEEP, FORCED, NORMAL = 0, 1, 3
_OVERSAMPLING = (0, 1, 2, 4, 8, 16, 16, 16)
_FILTER = (1, 2, 4, 8, 16, 16, 16, 16)
_STANDBY_US = (500, 62500, 125000, 250000, 500000, 1000000, 10000, 20000)  # BME280
_SKIPPED = 0x80000

# T1..T3, P1..P9: the worked example of the BMP280 datasheet (section 3.12)
TRIMMING_TP = (27504, 26435, -1000, 36477, -10685, 3024, 2855, 140, -7, 15500, -14600, 6000)
# H1..H6 as read from a production BME280
TRIMMING_H = (75, 362, 0, 313, 50, 30)


def compensate_temperature(trim, adc_t):
    """(t_fine, degrees C) by the datasheet's double-precision formula."""
    var1 = (adc_t / 16384.0 - trim[0] / 1024.0) * trim[1]
    var2 = adc_t / 131072.0 - trim[0] / 8192.0
    t_fine = int(var1 + var2 * var2 * trim[2])
    return t_fine, t_fine / 5120.0


def compensate_pressure(trim, t_fine, adc_p):
    """Pascal by the datasheet's double-precision formula."""
    p1, p2, p3, p4, p5, p6, p7, p8, p9 = trim[3:12]
    var1 = t_fine / 2.0 - 64000.0
    var2 = var1 * var1 * p6 / 32768.0 + var1 * p5 * 2.0
    var2 = var2 / 4.0 + p4 * 65536.0
    var1 = (p3 * var1 * var1 / 524288.0 + p2 * var1) / 524288.0
    var1 = (1.0 + var1 / 32768.0) * p1
    if var1 == 0:
        return 0.0
    p = (1048576.0 - adc_p - var2 / 4096.0) * 6250.0 / var1
    return p + (p9 * p * p / 2147483648.0 + p * p8 / 32768.0 + p7) / 16.0


def compensate_humidity(trim_h, t_fine, adc_h):
    """Percent relative humidity by the datasheet's double-precision formula."""
    h1, h2, h3, h4, h5, h6 = trim_h
    var = t_fine - 76800.0
    var = (adc_h - (h4 * 64.0 + h5 / 16384.0 * var)) * (
        h2 / 65536.0 * (1.0 + h6 / 67108864.0 * var * (1.0 + h3 / 67108864.0 * var)))
    var = var * (1.0 - h1 * var / 524288.0)
    return min(max(var, 0.0), 100.0)


def _invert(function, target, top):
    """The integer x in [0, top] whose increasing function(x) is nearest to target."""
    low, high = 0, top
    while high - low > 1:
        middle = (low + high) // 2
        if function(middle) < target:
            low = middle
        else:
            high = middle
    if abs(function(low) - target) <= abs(function(high) - target):
        return low
    return high


def _round_to(value, step, top):
    return min((value + step // 2) // step * step, top + 1 - step)


def _put16(registers, at, value):
    registers[at] = value & 0xFF
    registers[at + 1] = (value >> 8) & 0xFF


def _put20(registers, at, value):
    registers[at] = value >> 12
    registers[at + 1] = (value >> 4) & 0xFF
    registers[at + 2] = (value & 0x0F) << 4


class Bmp280(RegisterDevice, SPIDevice):
    """BMP280 model; set .temperature (C) and .pressure (Pa) at any time."""

    CHIP_ID = 0x58
    STANDBY_US = (500, 62500, 125000, 250000, 500000, 1000000, 2000000, 4000000)

    def __init__(self, temperature=21.0, pressure=101325.0, trimming=TRIMMING_TP):
        RegisterDevice.__init__(self)
        self.temperature = temperature
        self.pressure = pressure
        self.trimming = tuple(trimming)
        self.world = None
        self._spi_state = "control"
        self._write_pending = None
        self._load_trimming()
        self.reset()

    def attached(self, world, kind, bus, address):
        self.world = world
        if kind == "spi":
            SPIDevice.attached(self, world, kind, bus, address)

    def _now(self):
        return self.world.clock.now_us if self.world is not None else None

    def _load_trimming(self):
        regs = self.registers
        for i, value in enumerate(self.trimming):
            _put16(regs, 0x88 + 2 * i, value)

    def reset(self):
        """Power-on state: sleep mode, nothing measured yet (soft reset 0xE0 <- 0xB6)."""
        regs = self.registers
        for register in range(0xF2, 0x100):
            regs[register] = 0
        regs[REG_ID] = self.CHIP_ID
        _put20(regs, REG_DATA, _SKIPPED)
        _put20(regs, REG_DATA + 3, _SKIPPED)
        self._mode = SLEEP
        self._started = 0
        self._done = 0
        self._filtered = None
        self._osrs_h = 0

    # -- registers ---------------------------------------------------------------------

    def read_register(self, register):
        if register == REG_STATUS:
            return 0x08 if self._measuring() else 0x00
        return self.registers[register]

    def write_register(self, register, value):
        self._sync()
        if register == REG_RESET:
            if value == RESET_WORD:
                self.reset()
        elif register == REG_CONFIG:
            self.registers[register] = value & 0xFD
            self._filtered = None  # the datasheet: writing the filter resets it
        elif register == REG_CTRL_MEAS:
            self.registers[register] = value
            self._start(value & 3)
        elif register == REG_CTRL_HUM and self.CHIP_ID == 0x60:
            self.registers[register] = value & 7

    def i2c_start(self, read):
        # results are latched at the start of a transfer: a burst read is consistent
        # (the datasheet's data shadowing)
        self._sync()
        self._write_pending = None
        return RegisterDevice.i2c_start(self, read)

    def i2c_write(self, byte):
        # Bosch's I2C writes are (register, value) pairs, not an auto-incremented run
        if self._write_pending is None:
            self.pointer = self._write_pending = byte
        else:
            self.write_register(self._write_pending, byte)
            self._write_pending = None
        return True

    def spi_select(self):
        self._spi_state = "control"

    def spi_exchange(self, byte):
        # a control byte: bit 7 set to read, clear to write, then a 7-bit register
        # address (the register's own bit 7 is implied); writes are pairs again
        state = self._spi_state
        if state == "read":
            return self.i2c_read()
        if state == "control":
            self._sync()
            self.pointer = byte | 0x80
            self._spi_state = "read" if byte & 0x80 else "data"
        else:
            self.write_register(self.pointer, byte)
            self._spi_state = "control"
        return 0xFF

    def spi_deselect(self):
        self._spi_state = "control"

    # -- measurement cycle -------------------------------------------------------------

    def _oversampling(self):
        ctrl = self.registers[REG_CTRL_MEAS]
        return _OVERSAMPLING[ctrl >> 5], _OVERSAMPLING[(ctrl >> 2) & 7], \
            _OVERSAMPLING[self._osrs_h]

    def measure_time_us(self):
        """The datasheet's typical t_measure for the current oversampling."""
        t, p, h = self._oversampling()
        us = 1000 + 2000 * t
        if p:
            us += 2000 * p + 500
        if h:
            us += 2000 * h + 500
        return us

    def _start(self, mode):
        self._osrs_h = self.registers[REG_CTRL_HUM] & 7
        self._mode = FORCED if mode in (1, 2) else mode
        now = self._now()
        self._started = 0 if now is None else now
        self._done = 0
        if now is None:  # not attached to a World: no time passes, results are ready
            self._sync()

    def _cycles_done(self, now):
        elapsed = now - self._started - self.measure_time_us()
        if elapsed < 0:
            return 0
        if self._mode == FORCED:
            return 1
        standby = self.STANDBY_US[self.registers[REG_CONFIG] >> 5]
        return elapsed // (self.measure_time_us() + standby) + 1

    def _measuring(self):
        now = self._now()
        if now is None or self._mode == SLEEP:
            return False
        phase = now - self._started
        if self._mode == NORMAL:
            standby = self.STANDBY_US[self.registers[REG_CONFIG] >> 5]
            phase %= self.measure_time_us() + standby
        return phase < self.measure_time_us()

    def _sync(self):
        """Latch the measurements that have finished by now."""
        if self._mode == SLEEP:
            return
        now = self._now()
        done = 1 if now is None else self._cycles_done(now)
        if done > self._done:
            self._measure(done - self._done)
            self._done = done
        if self._mode == FORCED and done:
            self._mode = SLEEP
            self.registers[REG_CTRL_MEAS] &= 0xFC

    def _measure(self, cycles):
        """Latch the outcome of `cycles` measurements of the current values."""
        regs = self.registers
        os_t, os_p, os_h = self._oversampling()
        coefficient = _FILTER[(regs[REG_CONFIG] >> 2) & 7]
        full = coefficient > 1  # the filter output has 20 bits whatever the oversampling
        adc_t = self.raw_temperature(16 if full else os_t)
        adc_p = self.raw_pressure(compensate_temperature(self.trimming, adc_t)[0],
                                  16 if full else os_p)
        if full and self._filtered is not None:
            # `cycles` filter steps with a constant input x: x + (start - x) * a**cycles
            kept = ((coefficient - 1) / coefficient) ** min(cycles, 4096)
            filtered_t = adc_t + (self._filtered[0] - adc_t) * kept
            filtered_p = adc_p + (self._filtered[1] - adc_p) * kept
            self._filtered = (filtered_t, filtered_p)
            adc_t, adc_p = int(filtered_t + 0.5), int(filtered_p + 0.5)
        else:
            self._filtered = (adc_t, adc_p)
        _put20(regs, REG_DATA, adc_p if os_p else _SKIPPED)
        _put20(regs, REG_DATA + 3, adc_t if os_t else _SKIPPED)
        self._measure_humidity(compensate_temperature(self.trimming, adc_t)[0], os_h)

    def _measure_humidity(self, t_fine, os_h):
        pass

    def raw_temperature(self, oversampling=16):
        """adc_T that compensates back to .temperature, in 16 + log2(oversampling) bits."""
        trim = self.trimming

        def temperature(adc):
            return compensate_temperature(trim, adc)[1]

        adc = _invert(temperature, self.temperature, 0xFFFFF)
        return _round_to(adc, 16 // max(oversampling, 1), 0xFFFFF)

    def raw_pressure(self, t_fine, oversampling=16):
        """adc_P that compensates back to .pressure at t_fine."""
        trim = self.trimming

        def negated_pressure(adc):
            return -compensate_pressure(trim, t_fine, adc)

        adc = _invert(negated_pressure, -self.pressure, 0xFFFFF)
        return _round_to(adc, 16 // max(oversampling, 1), 0xFFFFF)


class Bme280(Bmp280):
    """BME280 model; set .temperature (C), .pressure (Pa) and .humidity (%RH)."""

    CHIP_ID = 0x60
    STANDBY_US = _STANDBY_US

    def __init__(self, temperature=21.0, pressure=101325.0, humidity=45.0,
                 trimming=TRIMMING_TP, trimming_h=TRIMMING_H):
        self.humidity = humidity
        self.trimming_h = tuple(trimming_h)
        Bmp280.__init__(self, temperature, pressure, trimming)

    def _load_trimming(self):
        Bmp280._load_trimming(self)
        h1, h2, h3, h4, h5, h6 = self.trimming_h
        regs = self.registers
        regs[0xA1] = h1
        _put16(regs, 0xE1, h2)
        regs[0xE3] = h3
        regs[0xE4] = (h4 >> 4) & 0xFF
        regs[0xE5] = (h4 & 0x0F) | ((h5 & 0x0F) << 4)
        regs[0xE6] = (h5 >> 4) & 0xFF
        regs[0xE7] = h6 & 0xFF

    def reset(self):
        Bmp280.reset(self)
        self.registers[0xFD] = 0x80
        self.registers[0xFE] = 0x00

    def _measure_humidity(self, t_fine, os_h):
        adc_h = self.raw_humidity(t_fine) if os_h else 0x8000
        self.registers[0xFD] = adc_h >> 8
        self.registers[0xFE] = adc_h & 0xFF

    def raw_humidity(self, t_fine):
        """adc_H that compensates back to the scenario's humidity at t_fine."""
        trim_h = self.trimming_h

        def humidity(adc):
            return compensate_humidity(trim_h, t_fine, adc)

        return _invert(humidity, self.humidity, 0xFFFF)
