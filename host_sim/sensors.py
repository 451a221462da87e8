# Peripheral models below the bus classes: the 1-Wire bus with the DS18B20 on it, and the
# DHT11/DHT22 single-wire sensors. The Bosch I2C/SPI sensors live in host_sim.bosch and
# are re-exported here.
#
# How this works: a 1-Wire bus is the pin it runs on. World.attach("onewire", pin, rom,
# model) puts a device on it; OneWireBus(world, pin) drives reset pulses and time slots, and
# every connected device sees every slot, as on the wire: a read slot reads the AND of what
# the devices drive (the pull-up reads 1). Each device runs the ROM layer (SEARCH, MATCH,
# SKIP, READ ROM) bit by bit, then its function commands. A DHT is attached as ("dht", pin,
# None) and answers one 40-bit frame per start signal. Slots, pulses and conversions take
# time on the World's clock.
from host_sim.bosch import Bme280, Bmp280  # noqa: F401 (one place to import models from)
from host_sim.wiring import ETIMEDOUT, oserror

_RESET_US = 960
_SLOT_US = 65
SEARCH_ROM, MATCH_ROM, SKIP_ROM, READ_ROM, ALARM_SEARCH = 0xF0, 0x55, 0xCC, 0x33, 0xEC
CONVERT_T, READ_SCRATCH, WRITE_SCRATCH = 0x44, 0xBE, 0x4E
COPY_SCRATCH, RECALL_E2 = 0x48, 0xB8


def crc8(data):
    """Dallas/Maxim CRC-8 (x^8 + x^5 + x^4 + 1, reflected); 0 over data plus its CRC."""
    crc = 0
    for byte in data:
        for _ in range(8):
            mix = (crc ^ byte) & 1
            crc >>= 1
            if mix:
                crc ^= 0x8C
            byte >>= 1
    return crc


class OneWireBus:
    """The 1-Wire bus on one pin of a World: reset pulses and time slots."""

    def __init__(self, world, pin):
        self.world = world
        self.pin = pin

    def _devices(self):
        return [model for model in self.world.on("onewire", self.pin).values()
                if model.connected]

    def reset(self):
        """A reset pulse; True if some device answered with a presence pulse."""
        self.world.clock.advance(_RESET_US)
        devices = self._devices()
        for device in devices:
            device.ow_reset()
        return bool(devices)

    def write_bit(self, bit):
        self.world.clock.advance(_SLOT_US)
        for device in self._devices():
            device.ow_write_bit(bit & 1)

    def read_bit(self):
        self.world.clock.advance(_SLOT_US)
        level = 1
        for device in self._devices():
            level &= device.ow_read_bit()
        return level

    def write_byte(self, byte):
        for i in range(8):
            self.write_bit(byte >> i)

    def read_byte(self):
        byte = 0
        for i in range(8):
            byte |= self.read_bit() << i
        return byte


class OneWireDevice:
    """The ROM layer of a 1-Wire slave; subclasses add function(command)."""

    def __init__(self, rom):
        if len(rom) != 8 or crc8(rom):
            raise ValueError("a ROM code is 8 bytes ending in their CRC-8")
        self.rom = bytes(rom)
        self.connected = True
        self.world = None
        self._state = "idle"
        self._out = b""

    def attached(self, world, kind, bus, address):
        if address != self.rom:
            raise ValueError("attach a 1-Wire device at its ROM code")
        self.world = world

    def _now(self):
        return self.world.clock.now_us if self.world is not None else 0

    def ow_reset(self):
        self._state = "rom"
        self._byte = self._nbits = 0
        self._out = b""
        self._out_bit = 0

    def _bit(self, index):
        return (self.rom[index >> 3] >> (index & 7)) & 1

    def ow_write_bit(self, bit):
        if self._state == "search":
            self._search_write(bit)
        elif self._state != "idle":
            self._byte |= bit << self._nbits
            self._nbits += 1
            if self._nbits == 8:
                byte, self._byte, self._nbits = self._byte, 0, 0
                self._take(byte)

    def ow_read_bit(self):
        if self._state == "search":
            bit = self._bit(self._position)
            self._phase += 1
            return bit if self._phase == 1 else bit ^ 1
        if self._out_bit < 8 * len(self._out):
            index, self._out_bit = self._out_bit, self._out_bit + 1
            return (self._out[index >> 3] >> (index & 7)) & 1
        return self.idle_bit() if self._state == "function" else 1

    def _search_write(self, bit):
        if bit != self._bit(self._position):
            self._state = "idle"  # the master took the other branch
            return
        self._position += 1
        self._phase = 0
        if self._position == 64:
            self._state = "function"

    def _take(self, byte):
        state = self._state
        if state == "rom":
            self._rom_command(byte)
        elif state == "match":
            self._matched.append(byte)
            if len(self._matched) == 8:
                self._state = "function" if bytes(self._matched) == self.rom else "idle"
        elif state == "function":
            self.function(byte)
        elif state == "receive":
            self._received.append(byte)
            if len(self._received) == self._want:
                self._state = "function"
                self._on_receive(bytes(self._received))

    def _rom_command(self, command):
        if command in (SEARCH_ROM, ALARM_SEARCH):
            alarmed = command == SEARCH_ROM or self.alarm()
            self._state = "search" if alarmed else "idle"
            self._position = self._phase = 0
        elif command == MATCH_ROM:
            self._state = "match"
            self._matched = bytearray()
        elif command == SKIP_ROM:
            self._state = "function"
        elif command == READ_ROM:
            self._state = "function"
            self.send(self.rom)
        else:
            self._state = "idle"

    def send(self, data):
        """Answer the next read slots with data, LSB first."""
        self._out = bytes(data)
        self._out_bit = 0

    def receive(self, count, callback):
        """Collect the next count bytes written, then call callback(data)."""
        self._state = "receive"
        self._received = bytearray()
        self._want = count
        self._on_receive = callback

    def function(self, command):
        """A function command after the ROM layer selected this device."""
        self._state = "idle"

    def idle_bit(self):
        """What a read slot reads when there is nothing to send (1: released)."""
        return 1

    def alarm(self):
        return False


_serial = [0x0000_0B1E_5C01]  # the next serial number for a probe made without one


def rom_code(family, serial):
    """family byte, 48-bit serial number (LSB first), CRC-8."""
    body = bytes([family]) + bytes((serial >> (8 * i)) & 0xFF for i in range(6))
    return body + bytes([crc8(body)])


class Ds18b20(OneWireDevice):
    """DS18B20 model; set .temperature (C); faults: .connected, .crc_error."""

    FAMILY = 0x28
    CONVERSION_US = (93750, 187500, 375000, 750000)  # 9, 10, 11, 12 bits

    def __init__(self, temperature=20.0, serial=None):
        if serial is None:
            serial = _serial[0]
            _serial[0] += 0x1_0101
        OneWireDevice.__init__(self, rom_code(self.FAMILY, serial))
        self.temperature = temperature
        self.crc_error = False
        self.eeprom = bytes((75, 70, 0x7F))  # TH, TL, configuration
        self.scratchpad = bytearray(b"\x50\x05" + self.eeprom + b"\xff\x0c\x10")
        self._converting_until = None

    def resolution(self):
        """9..12 bits, from the configuration register."""
        return 9 + ((self.scratchpad[4] >> 5) & 3)

    def _sync(self):
        if self._converting_until is not None and self._now() >= self._converting_until:
            self._converting_until = None
            self._latch()

    def _latch(self):
        drop = 12 - self.resolution()
        celsius = min(max(self.temperature, -55.0), 125.0)
        raw = int(celsius * 16 + (0.5 if celsius >= 0 else -0.5))
        raw = (raw >> drop) << drop
        self.scratchpad[0] = raw & 0xFF
        self.scratchpad[1] = (raw >> 8) & 0xFF

    def function(self, command):
        self._sync()
        if command == CONVERT_T:
            if self.world is None:  # no clock: the conversion is done at once
                self._latch()
            else:
                self._converting_until = self._now() + self.CONVERSION_US[self.resolution() - 9]
        elif command == READ_SCRATCH:
            data = bytes(self.scratchpad)
            check = crc8(data) ^ (0x5A if self.crc_error else 0)
            self.send(data + bytes([check]))
        elif command == WRITE_SCRATCH:
            self.receive(3, self._write_scratch)
        elif command == COPY_SCRATCH:
            self.eeprom = bytes(self.scratchpad[2:5])
        elif command == RECALL_E2:
            self.scratchpad[2:5] = self.eeprom

    def _write_scratch(self, data):
        self.scratchpad[2] = data[0]
        self.scratchpad[3] = data[1]
        self.scratchpad[4] = (data[2] & 0x60) | 0x1F

    def idle_bit(self):
        self._sync()
        return 0 if self._converting_until is not None else 1  # 0 while converting

    def alarm(self):
        self._sync()
        raw = self.scratchpad[0] | (self.scratchpad[1] << 8)
        degrees = (raw - 0x10000 if raw & 0x8000 else raw) >> 4
        high = self.scratchpad[2] - 256 if self.scratchpad[2] & 0x80 else self.scratchpad[2]
        low = self.scratchpad[3] - 256 if self.scratchpad[3] & 0x80 else self.scratchpad[3]
        return degrees >= high or degrees <= low


class Dht22:
    """DHT22 (AM2302) model; set .temperature and .humidity; faults: .connected,
    .checksum_error. A new measurement at most every 2 s, as the part does."""

    MIN_INTERVAL_US = 2000000
    READ_US = 23000  # the 18 ms start signal and the 40-bit answer

    def __init__(self, temperature=21.0, humidity=50.0):
        self.temperature = temperature
        self.humidity = humidity
        self.connected = True
        self.checksum_error = False
        self._frame = None
        self._measured_us = None

    def encode(self):
        """The 4 data bytes for the current values."""
        humidity = int(min(max(self.humidity, 0.0), 99.9) * 10 + 0.5)
        celsius = min(max(self.temperature, -40.0), 80.0)
        tenths = int(abs(celsius) * 10 + 0.5)
        if celsius < 0:
            tenths |= 0x8000
        return bytes((humidity >> 8, humidity & 0xFF, tenths >> 8, tenths & 0xFF))

    def frame(self, now_us):
        """The 5-byte answer to a start signal at now_us."""
        if self._frame is None or now_us - self._measured_us >= self.MIN_INTERVAL_US:
            self._frame = self.encode()
            self._measured_us = now_us
        data = self._frame
        check = (sum(data) + (1 if self.checksum_error else 0)) & 0xFF
        return data + bytes([check])


class Dht11(Dht22):
    """DHT11 model: whole degrees and percent, one measurement per second."""

    MIN_INTERVAL_US = 1000000

    def encode(self):
        humidity = int(min(max(self.humidity, 0.0), 95.0) + 0.5)
        celsius = int(min(max(self.temperature, 0.0), 50.0) + 0.5)
        return bytes((humidity, 0, celsius, 0))


def dht_readinto(world, pin, buf):
    """What the ports' dht_readinto does: start signal, 40 bits into buf[0:5]."""
    world.clock.advance(Dht22.READ_US)
    model = world.peripherals.get(("dht", pin, None))
    if model is None or not model.connected:
        raise oserror(ETIMEDOUT, "ETIMEDOUT")
    frame = model.frame(world.clock.now_us)
    for i in range(5):
        buf[i] = frame[i]
