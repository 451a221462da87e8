# machine.SPI, machine.SoftSPI and machine.UART over the peripheral models of the World.
#
# How this works: as for I2C (host_sim.buses), a bus checks its id and pins against the
# board profile and is known by its id and by its pins. An SPI model is attached at
# ("spi", bus, cs_pin) and follows the level of its chip-select pin, so the firmware selects
# it with an ordinary Pin as on a board (address None: chip select tied active). Every byte
# clocked goes to the selected models; MISO reads the AND of what they drive, 0xFF when
# none does. A UART's far end is a UartPeer attached at ("uart", bus, None): what the device
# writes arrives in its uart_receive(), what it send()s waits in the device's receive buffer
# (rxbuf bytes; the rest is lost, as on a board). A read that finds too little waits its
# timeout on the virtual clock.
#
# A peer whose `realtime` is true is a program on the host, on a pty the runner bridges
# (host_sim.serialbridge.HostLine): the receive buffer takes from it what it has room for,
# and a read with a timeout waits for it in real time. While a UART is open on such a line
# it is listed in world.realtime, and host_sim.vasyncio then waits for real instead of
# skipping ahead.
#
# On MicroPython a UART is an io.IOBase with the stream protocol's ioctl, as a board's is:
# select.poll() takes it and asyncio.StreamReader/StreamWriter work over it.
import io
import sys

from host_sim import pins, wiring
from host_sim.world import current


class SPIDevice:
    """What an SPI bus needs of a model: chip select edges and full-duplex bytes."""

    selected = False

    def attached(self, world, kind, bus, address):
        if address is None:
            self.selected = True
            self.spi_select()
        else:
            pin_state = pins.state(world, address)
            pin_state.watchers.append(self._chip_select)
            if pin_state.mode is not None:  # already configured: follow its level now
                self._chip_select(pin_state)

    def _chip_select(self, pin_state):
        active = pin_state.level() == 0
        if active != self.selected:
            self.selected = active
            if active:
                self.spi_select()
            else:
                self.spi_deselect()

    def spi_select(self):
        """Chip select went active: a transaction begins."""

    def spi_exchange(self, byte):
        """Clock one byte in; return the byte clocked out at the same time."""
        return 0xFF

    def spi_deselect(self):
        """Chip select went inactive: the transaction ends."""


def _reverse(byte):
    out = 0
    for _ in range(8):
        out = (out << 1) | (byte & 1)
        byte >>= 1
    return out


class _SPIBus:
    MSB = 0
    LSB = 1

    def _setup(self, world, bus_id, sck, mosi, miso, baudrate, polarity, phase, bits,
               firstbit):
        given = {"sck": sck, "mosi": mosi, "miso": miso}
        ids = wiring.resolve_pins(world, "spi", bus_id, given)
        self._world = world
        self._dead = wiring.is_dead(world, "spi", ids)
        self._keys = wiring.bus_keys(world, "spi", bus_id, ids)
        self.baudrate = baudrate
        self.polarity = polarity
        self.phase = phase
        self.bits = bits
        self.firstbit = firstbit

    def _selected(self):
        if self._dead:
            return []
        return [model for key, model in self._world.peripherals.items()
                if key[0] == "spi" and key[1] in self._keys and model.selected]

    def _exchange(self, out, buf):
        devices = self._selected()
        lsb = self.firstbit == self.LSB
        for i in range(len(out)):
            wire = _reverse(out[i]) if lsb else out[i]
            level = 0xFF
            for device in devices:
                level &= device.spi_exchange(wire)
            if buf is not None:
                buf[i] = _reverse(level) if lsb else level
        wiring.spend(self._world, 8 * len(out), self.baudrate)

    def read(self, nbytes, write=0x00):
        buf = bytearray(nbytes)
        self._exchange(bytes([write]) * nbytes, buf)
        return bytes(buf)

    def readinto(self, buf, write=0x00):
        self._exchange(bytes([write]) * len(buf), buf)

    def write(self, buf):
        self._exchange(buf, None)

    def write_readinto(self, write_buf, read_buf):
        if len(write_buf) != len(read_buf):
            raise ValueError("buffers must be the same length")
        self._exchange(bytes(write_buf), read_buf)

    def deinit(self):
        pass


class SPI(_SPIBus):
    """machine.SPI(id, baudrate=1000000, *, polarity, phase, bits, firstbit, sck, mosi,
    miso): a hardware bus; pins not given are the bus defaults."""

    def __init__(self, id, baudrate=1000000, *, polarity=0, phase=0, bits=8, firstbit=0,
                 sck=None, mosi=None, miso=None):
        self.id = id
        self._setup(current(), id, sck, mosi, miso, baudrate, polarity, phase, bits,
                    firstbit)

    def init(self, baudrate=1000000, *, polarity=0, phase=0, bits=8, firstbit=0,
             sck=None, mosi=None, miso=None):
        self._setup(self._world, self.id, sck, mosi, miso, baudrate, polarity, phase, bits,
                    firstbit)


class SoftSPI(_SPIBus):
    """machine.SoftSPI(baudrate=500000, *, polarity, phase, bits, firstbit, sck, mosi,
    miso): bit-banged on any pins."""

    def __init__(self, baudrate=500000, *, polarity=0, phase=0, bits=8, firstbit=0,
                 sck=None, mosi=None, miso=None):
        world = current()
        wiring.require_soft(world, "spi")
        self._setup(world, None, sck, mosi, miso, baudrate, polarity, phase, bits, firstbit)

    def init(self, baudrate=500000, *, polarity=0, phase=0, bits=8, firstbit=0, sck=None,
             mosi=None, miso=None):
        self._setup(self._world, None, sck, mosi, miso, baudrate, polarity, phase, bits,
                    firstbit)


class UartPeer:
    """The far end of a UART line. baudrate: what it speaks (None: whatever the device
    uses); a mismatch garbles every byte both ways, as on a real line."""

    realtime = False  # a program on the host (serialbridge.HostLine), not a model

    def __init__(self, baudrate=None):
        self.baudrate = baudrate
        self.received = bytearray()  # what the device wrote
        self.outbox = bytearray()    # sent, not yet in the device's receive buffer

    def uart_receive(self, data):
        """Bytes the device wrote; override to answer (self.send)."""
        self.received += data

    def send(self, data):
        """Bytes for the device to read."""
        self.outbox += data


class Loopback(UartPeer):
    """TX wired to RX: the device reads what it wrote."""

    def uart_receive(self, data):
        self.send(data)


def _garble(data):
    return bytes(((b << 1) | 1) & 0xFF for b in data)


_Stream = io.IOBase if sys.implementation.name == "micropython" else object


class UART(_Stream):
    """machine.UART(id, baudrate=115200, bits=8, parity=None, stop=1, *, tx, rx, rxbuf,
    timeout, timeout_char, ...)."""

    def __init__(self, id, baudrate=115200, bits=8, parity=None, stop=1, **kwargs):
        self.id = id
        self._world = current()
        self._rx = bytearray()
        self._given = {"tx": None, "rx": None}
        self._line = None  # the host line it has open
        self.init(baudrate, bits, parity, stop, **kwargs)

    def init(self, baudrate=115200, bits=8, parity=None, stop=1, *, tx=None, rx=None,
             txbuf=256, rxbuf=256, timeout=0, timeout_char=0, invert=0, flow=0,
             rts=None, cts=None):
        world = self._world
        for role, pin in (("tx", tx), ("rx", rx)):
            if pin is not None:  # pins not given stay as they are
                self._given[role] = pin
        ids = wiring.resolve_pins(world, "uart", self.id, self._given)
        self._dead = wiring.is_dead(world, "uart", ids)
        self._keys = wiring.bus_keys(world, "uart", self.id, ids)
        self._can_read = ids[1] is not None
        self.baudrate = baudrate
        self.bits, self.parity, self.stop = bits, parity, stop
        self.rxbuf = rxbuf
        self.timeout = timeout
        self.timeout_char = timeout_char
        self._use_line(self._peer())

    def _use_line(self, peer):
        """Close the host line this UART was on, if any; open `peer` if it is one."""
        if self._line is not None:
            self._line.closed(self)
        self._line = peer if peer is not None and peer.realtime else None
        if self._line is not None:
            self._line.opened(self)

    def _peer(self):
        if self._dead:
            return None
        for key in self._keys:
            peer = self._world.peripherals.get(("uart", key, None))
            if peer is not None:
                return peer
        return None

    def _pull(self, wanted):
        """Move what the peer sent into the receive buffer; wait the timeout if short."""
        if not self._can_read:
            raise OSError("UART(%s) can't read" % (self.id,))
        peer = self._peer()
        if peer is not None and peer.realtime:
            peer.wait(self.rxbuf - len(self._rx), min(wanted, self.rxbuf) - len(self._rx),
                      self.timeout, self._world.clock)
        elif len(self._rx) < wanted and self.timeout:
            self._world.clock.advance(self.timeout * 1000)
            peer = self._peer()
        if peer is None or not peer.outbox:
            return
        data = bytes(peer.outbox)
        peer.outbox = bytearray()
        if peer.baudrate is not None and peer.baudrate != self.baudrate:
            data = _garble(data)
        room = self.rxbuf - len(self._rx)
        if len(data) > room:
            self._world.record("uart", "UART(%s) overflow: %d bytes lost"
                               % (self.id, len(data) - room))
        self._rx += data[:max(room, 0)]

    def _take(self, count):
        data = bytes(self._rx[:count])
        self._rx = self._rx[count:]
        return data

    def any(self):
        if not self._can_read:
            return 0
        self._pull(0)
        return len(self._rx)

    def read(self, nbytes=None):
        """Up to nbytes (all there is if None); None if nothing came within the timeout."""
        self._pull(1 if nbytes is None else nbytes)
        if not self._rx:
            return None
        return self._take(len(self._rx) if nbytes is None else nbytes)

    def readinto(self, buf, nbytes=None):
        data = self.read(len(buf) if nbytes is None else nbytes)
        if data is None:
            return None
        buf[:len(data)] = data
        return len(data)

    def readline(self):
        """Up to and including b"\\n", or what there is after the timeout."""
        if b"\n" not in self._rx:
            self._pull(len(self._rx) + 1)
        if not self._rx:
            return None
        end = self._rx.find(b"\n")
        return self._take(len(self._rx) if end < 0 else end + 1)

    def write(self, buf):
        """Send bytes; the number written."""
        data = bytes(buf)
        peer = self._peer()
        if peer is not None:
            if peer.baudrate is not None and peer.baudrate != self.baudrate:
                data = _garble(data)
            peer.uart_receive(data)
        return len(buf)

    def ioctl(self, request, arg):
        """The stream protocol (MicroPython): what select.poll and asyncio streams ask."""
        if request == 3:  # MP_STREAM_POLL: which of POLLIN (1) and POLLOUT (4) are ready
            return (arg & 4) | (1 if arg & 1 and self.any() else 0)
        if request in (1, 4):  # MP_STREAM_FLUSH, MP_STREAM_CLOSE
            return 0
        return -22  # EINVAL: no file descriptor (select.poll asks), nothing else

    def sendbreak(self):
        pass

    def flush(self):
        pass

    def txdone(self):
        return True

    def deinit(self):
        self._rx = bytearray()
        self._use_line(None)
