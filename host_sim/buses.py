# machine.I2C and machine.SoftI2C over the peripheral models of the World, the contract
# an I2C model implements, and (re-exported from host_sim.spi_uart) SPI, SoftSPI and UART.
#
# How this works: a bus object checks its id and pins against the board profile of the
# current World (host_sim.wiring), then every transfer goes to the models attached to the
# World as ("i2c", bus, address). A bus is known both by its hardware id and by its pins,
# so a model attached to I2C bus 0 answers I2C(0) and a SoftI2C on bus 0's default pins
# alike, and a model attached to the pins (scl, sda) answers any bus on those pins.
# Transfers take virtual time at the bus clock rate (9 clocks a byte), so a driver that
# polls a status register sees the device finish its work.
from host_sim import wiring
from host_sim.spi_uart import SPI, UART, Loopback, SoftSPI, SPIDevice, UartPeer  # noqa: F401
from host_sim.wiring import ENODEV, ETIMEDOUT, oserror, spend  # noqa: F401 (API)
from host_sim.world import current


class I2CDevice:
    """What an I2C bus needs of a model: answer to its address, take and give bytes."""

    connected = True  # False: the device does not acknowledge (unplugged, no power)

    def i2c_start(self, read):
        """A (repeated) start addressed to this device; True to acknowledge."""
        return self.connected

    def i2c_write(self, byte):
        """One byte from the controller; True to acknowledge."""
        return True

    def i2c_read(self):
        """One byte to the controller."""
        return 0xFF

    def i2c_stop(self):
        """The controller released the bus."""


class RegisterDevice(I2CDevice):
    """A register file: the first byte written sets the pointer, which then auto-increments."""

    def __init__(self, size=256):
        self.registers = bytearray(size)
        self.pointer = 0
        self._pointer_next = False

    def read_register(self, register):
        return self.registers[register]

    def write_register(self, register, value):
        self.registers[register] = value

    def i2c_start(self, read):
        self._pointer_next = not read
        return self.connected

    def i2c_write(self, byte):
        if self._pointer_next:
            self.pointer = byte
            self._pointer_next = False
        else:
            self.write_register(self.pointer, byte)
            self.pointer = (self.pointer + 1) % len(self.registers)
        return True

    def i2c_read(self):
        value = self.read_register(self.pointer)
        self.pointer = (self.pointer + 1) % len(self.registers)
        return value


def _memaddr(memaddr, addrsize):
    if addrsize not in (8, 16, 24, 32):
        raise ValueError("invalid addrsize")
    size = addrsize // 8
    return bytes((memaddr >> (8 * (size - 1 - i))) & 0xFF for i in range(size))


class _I2CBus:
    """What I2C and SoftI2C share: addressing, transfers, the mem helpers, primitives."""

    def _setup(self, world, bus_id, scl, sda, freq, soft):
        ids = wiring.resolve_pins(world, "i2c", bus_id, {"scl": scl, "sda": sda})
        self._world = world
        self._dead = wiring.is_dead(world, "i2c", ids)
        self._keys = wiring.bus_keys(world, "i2c", bus_id, ids)
        self._freq = freq
        self._soft = soft
        self._active = None  # the device addressed since the last start
        self._want_address = False

    def _find(self, address):
        if self._dead:
            return None
        for key in self._keys:
            model = self._world.peripherals.get(("i2c", key, address))
            if model is not None:
                return model
        return None

    def _begin(self, address, read):
        spend(self._world, 10, self._freq)  # start condition and the address byte
        device = self._find(address)
        if device is None or not device.i2c_start(read):
            self._end(device)
            raise oserror(ENODEV, "ENODEV")
        return device

    def _end(self, device):
        spend(self._world, 1, self._freq)
        if device is not None:
            device.i2c_stop()

    def _send(self, device, data):
        acks = 0
        for byte in data:
            spend(self._world, 9, self._freq)
            if not device.i2c_write(byte):
                break
            acks += 1
        return acks

    def _receive(self, device, buf):
        for i in range(len(buf)):
            spend(self._world, 9, self._freq)
            buf[i] = device.i2c_read()

    def scan(self):
        """Addresses 0x08..0x77 that acknowledge, in ascending order."""
        found = []
        for address in range(0x08, 0x78):
            spend(self._world, 11, self._freq)
            device = self._find(address)
            if device is not None:
                if device.i2c_start(False):
                    found.append(address)
                device.i2c_stop()
        return found

    def writevto(self, addr, vector, stop=True):
        """Write each buffer in turn; the number of bytes acknowledged."""
        device = self._begin(addr, False)
        acks = 0
        for buf in vector:
            sent = self._send(device, buf)
            acks += sent
            if sent < len(buf):
                break
        if stop:
            self._end(device)
        return acks

    def writeto(self, addr, buf, stop=True):
        return self.writevto(addr, (buf,), stop)

    def readfrom_into(self, addr, buf, stop=True):
        device = self._begin(addr, True)
        self._receive(device, buf)
        if stop:
            self._end(device)

    def readfrom(self, addr, nbytes, stop=True):
        buf = bytearray(nbytes)
        self.readfrom_into(addr, buf, stop)
        return bytes(buf)

    def readfrom_mem_into(self, addr, memaddr, buf, addrsize=8):
        self.writeto(addr, _memaddr(memaddr, addrsize), False)
        self.readfrom_into(addr, buf)

    def readfrom_mem(self, addr, memaddr, nbytes, addrsize=8):
        buf = bytearray(nbytes)
        self.readfrom_mem_into(addr, memaddr, buf, addrsize)
        return bytes(buf)

    def writeto_mem(self, addr, memaddr, buf, addrsize=8):
        self.writevto(addr, (_memaddr(memaddr, addrsize), buf))

    def _primitives(self):
        if not self._soft:
            raise OSError("I2C operation not supported")

    def start(self):
        """A start (or repeated start) condition; the next byte written is an address."""
        self._primitives()
        spend(self._world, 1, self._freq)
        self._want_address = True

    def stop(self):
        self._primitives()
        self._want_address = False
        self._end(self._active)
        self._active = None

    def write(self, buf):
        """Write bytes after start(); the count acknowledged, up to the first NACK."""
        self._primitives()
        acks = 0
        for byte in buf:
            if self._want_address:
                self._want_address = False
                spend(self._world, 9, self._freq)
                device = self._find(byte >> 1)
                self._active = device
                if device is None or not device.i2c_start(byte & 1 == 1):
                    self._active = None
                    break
            elif self._active is None or not self._send(self._active, (byte,)):
                break
            acks += 1
        return acks

    def readinto(self, buf, nack=True):
        """Read len(buf) bytes from the addressed device (ones if none answers)."""
        self._primitives()
        if self._active is None:
            for i in range(len(buf)):
                buf[i] = 0xFF  # nobody drives SDA: the pull-up reads as ones
        else:
            self._receive(self._active, buf)

    def deinit(self):
        self._active = None


class SoftI2C(_I2CBus):
    """machine.SoftI2C(scl, sda, *, freq=400000, timeout=50000): bit-banged, any pins."""

    def __init__(self, scl, sda, *, freq=400000, timeout=50000):
        world = current()
        wiring.require_soft(world, "i2c")
        self._setup(world, None, scl, sda, freq, True)
        self.timeout = timeout

    def init(self, scl, sda, *, freq=400000, timeout=50000):
        self.__init__(scl, sda, freq=freq, timeout=timeout)


class I2C(_I2CBus):
    """machine.I2C(id, *, scl, sda, freq=400000, timeout): a hardware bus; on a board
    whose I2C is itself bit-banged (ESP8266), I2C(scl, sda, *, freq, timeout)."""

    def __init__(self, *args, **kwargs):
        world = current()
        if wiring.buses(world, "i2c").get("soft_only"):
            self._init_soft(world, *args, **kwargs)
        else:
            self._init_hard(world, *args, **kwargs)

    def _init_soft(self, world, scl=None, sda=None, *, freq=400000, timeout=50000):
        self._setup(world, None, scl, sda, freq, True)
        self.timeout = timeout

    def _init_hard(self, world, id, *, scl=None, sda=None, freq=400000, timeout=50000):
        self._setup(world, id, scl, sda, freq, False)
        self.id = id
        self.timeout = timeout

    def init(self, *args, **kwargs):
        if self._soft:
            self._init_soft(self._world, *args, **kwargs)
        else:
            self._init_hard(self._world, self.id, *args, **kwargs)

