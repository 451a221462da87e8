# smbus, as python3-smbus has it on a Linux board: SMBus(bus) talks to the I2C devices of
# the simulated board (host_sim.buses.I2C). Drivers written for both MicroPython and Linux
# (bme280-upy) take this path under CPython. A device process under MicroPython does not
# load it: a MicroPython board has no smbus.
from host_sim.buses import I2C


class SMBus:
    """An I2C bus by number, with the block and byte transfers drivers use."""

    def __init__(self, bus=None):
        self._i2c = None
        if bus is not None:
            self.open(bus)

    def open(self, bus):
        self._i2c = I2C(bus)

    def close(self):
        self._i2c = None

    def read_byte_data(self, addr, register):
        return self._i2c.readfrom_mem(addr, register, 1)[0]

    def write_byte_data(self, addr, register, value):
        self._i2c.writeto_mem(addr, register, bytes((value,)))

    def read_i2c_block_data(self, addr, register, length=32):
        return list(self._i2c.readfrom_mem(addr, register, length))

    def write_i2c_block_data(self, addr, register, data):
        self._i2c.writeto_mem(addr, register, bytes(data))

    def read_byte(self, addr):
        return self._i2c.readfrom(addr, 1)[0]

    def write_byte(self, addr, value):
        self._i2c.writeto(addr, bytes((value,)))
