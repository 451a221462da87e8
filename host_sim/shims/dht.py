# dht, as frozen into the ESP32, ESP8266 and RP2 firmware: DHT11 and DHT22 sensors on one
# pin. measure() raises OSError(ETIMEDOUT) when no sensor answers, as the ports do.
from host_sim.pins import resolve
from host_sim.sensors import dht_readinto as _readinto
from host_sim.world import current


def dht_readinto(pin, buf):
    """The port's primitive: start signal, then 40 bits into buf."""
    world = current()
    _readinto(world, resolve(world, pin), buf)


class DHTBase:
    def __init__(self, pin):
        self.pin = pin
        self.buf = bytearray(5)

    def measure(self):
        buf = self.buf
        dht_readinto(self.pin, buf)
        if (buf[0] + buf[1] + buf[2] + buf[3]) & 0xFF != buf[4]:
            raise Exception("checksum error")


class DHT11(DHTBase):
    def humidity(self):
        return self.buf[0]

    def temperature(self):
        return self.buf[2]


class DHT22(DHTBase):
    def humidity(self):
        return (self.buf[0] << 8 | self.buf[1]) * 0.1

    def temperature(self):
        celsius = ((self.buf[2] & 0x7F) << 8 | self.buf[3]) * 0.1
        return -celsius if self.buf[2] & 0x80 else celsius
