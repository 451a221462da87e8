# onewire, as frozen into the ESP32, ESP8266 and RP2 firmware: OneWire(pin) drives the
# 1-Wire bus on that pin of the simulated board (host_sim.sensors.OneWireBus).
from host_sim.pins import resolve
from host_sim.sensors import OneWireBus
from host_sim.sensors import crc8 as _crc8
from host_sim.world import current


class OneWireError(Exception):
    pass


class OneWire:
    """A 1-Wire master on one pin (open drain with pull-up)."""

    SEARCH_ROM = 0xF0
    MATCH_ROM = 0x55
    SKIP_ROM = 0xCC

    def __init__(self, pin):
        self.pin = pin
        pin.init(pin.OPEN_DRAIN, pin.PULL_UP)
        world = current()
        self._bus = OneWireBus(world, resolve(world, pin))

    def reset(self, required=False):
        """A reset pulse; True if a device answered (OneWireError if required and none)."""
        present = self._bus.reset()
        if required and not present:
            raise OneWireError
        return present

    def readbit(self):
        return self._bus.read_bit()

    def readbyte(self):
        return self._bus.read_byte()

    def readinto(self, buf):
        for i in range(len(buf)):
            buf[i] = self._bus.read_byte()

    def writebit(self, value):
        self._bus.write_bit(value)

    def writebyte(self, value):
        self._bus.write_byte(value)

    def write(self, buf):
        for byte in buf:
            self._bus.write_byte(byte)

    def select_rom(self, rom):
        self.reset()
        self.writebyte(self.MATCH_ROM)
        self.write(rom)

    def scan(self):
        """The ROM codes on the bus (bytearrays), by the SEARCH ROM binary tree walk."""
        roms = []
        previous = bytearray(8)
        fork = 0
        for _ in range(0xFF):
            rom, fork = self._search(previous, fork)
            if rom is None:
                break
            roms.append(rom)
            previous = rom
            if fork == 0:
                break
        return roms

    def _search(self, previous, last_fork):
        # Maxim AN187: take the 1 branch at the last fork, the 0 branch past it
        if not self.reset():
            return None, 0
        self.writebyte(self.SEARCH_ROM)
        rom = bytearray(8)
        fork = 0
        for index in range(1, 65):
            bit = self.readbit()
            complement = self.readbit()
            if bit and complement:
                return None, 0
            if bit == complement:
                if index < last_fork:
                    bit = (previous[(index - 1) >> 3] >> ((index - 1) & 7)) & 1
                else:
                    bit = 1 if index == last_fork else 0
                if not bit:
                    fork = index
            self.writebit(bit)
            if bit:
                rom[(index - 1) >> 3] |= 1 << ((index - 1) & 7)
        return rom, fork

    def crc8(self, data):
        return _crc8(data)
