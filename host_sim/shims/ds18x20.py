# ds18x20, as frozen into the ESP32, ESP8266 and RP2 firmware: DS18S20/DS1822/DS18B20
# temperature sensors on a onewire.OneWire bus.
_CONVERT = 0x44
_READ_SCRATCH = 0xBE
_WRITE_SCRATCH = 0x4E
_FAMILIES = (0x10, 0x22, 0x28)


class DS18X20:
    """Temperature sensors on one OneWire bus, addressed by ROM code."""

    def __init__(self, onewire):
        self.ow = onewire
        self.buf = bytearray(9)

    def scan(self):
        return [rom for rom in self.ow.scan() if rom[0] in _FAMILIES]

    def convert_temp(self):
        """Start a conversion on every sensor; read after the conversion time (750 ms)."""
        self.ow.reset(True)
        self.ow.writebyte(self.ow.SKIP_ROM)
        self.ow.writebyte(_CONVERT)

    def read_scratch(self, rom):
        self.ow.reset(True)
        self.ow.select_rom(rom)
        self.ow.writebyte(_READ_SCRATCH)
        self.ow.readinto(self.buf)
        if self.ow.crc8(self.buf):
            raise Exception("CRC error")
        return self.buf

    def write_scratch(self, rom, buf):
        """TH, TL and (DS18B20) the configuration byte."""
        self.ow.reset(True)
        self.ow.select_rom(rom)
        self.ow.writebyte(_WRITE_SCRATCH)
        self.ow.write(buf)

    def read_temp(self, rom):
        """Degrees Celsius from the last conversion."""
        buf = self.read_scratch(rom)
        if rom[0] == 0x10:  # DS18S20: half degrees plus the count-remain refinement
            half = buf[0] | (0xFF00 if buf[1] else 0)
            whole = (half - 0x10000 if half & 0x8000 else half) >> 1
            return whole - 0.25 + (buf[7] - buf[6]) / buf[7]
        raw = buf[1] << 8 | buf[0]
        if raw & 0x8000:
            raw -= 0x10000
        return raw / 16
