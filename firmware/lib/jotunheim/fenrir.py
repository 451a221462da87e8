"""Fenrir's buses and parts: SPI and UART transfers, the DHT22, DS18B20 and BME280/BMP280
sensors, LEDs and relays, and the parts named in /wiring.json (jotunheim.children.Fenrir
loads this with the first use of any of them)."""
# How this works: each function opens what it needs through `machine` (and the ports' dht,
# onewire and ds18x20 modules) for one operation, as a board's drivers do. The BME280 and
# BMP280 are read over I2C in forced mode with the compensation formulas of Bosch's
# datasheet (floating-point versions; single precision on most boards). Waits (a DS18B20
# conversion, a BME280 measurement, a UART read) are asyncio sleeps: those functions return
# coroutines, which scripts await.
#
# /wiring.json names the parts wired to the board, in the simulator's scenario form:
# {"parts": [{"part": "DHT22", "name": "shade", "pin": 15},
#            {"part": "BME280", "name": "air", "bus": 0, "address": 118},
#            {"part": "DS18B20", "name": "soil", "pin": 4},
#            {"part": "Relay", "name": "pump", "pin": 5, "active_low": false}]}
# read(name) reads a sensor by its name, switch(name, on) drives an LED or a relay.
import json
import struct

from jotunheim import port

SENSORS = ("DHT22", "DHT11", "DS18B20", "BME280", "BMP280")
ACTUATORS = ("LED", "Relay")
_MEASURE_POLL_MS = 5


def _machine():
    import machine
    return machine


# ------------------------------------------------------------------ buses


def spi_transfer(bus, data, baudrate=1000000, cs=None, polarity=0, phase=0):
    """Clock data out on SPI bus `bus` (chip select `cs` held low meanwhile when given);
    the bytes read at the same time."""
    machine = _machine()
    data = _bytes(data)
    spi = machine.SPI(bus, baudrate=baudrate, polarity=polarity, phase=phase)
    select = None if cs is None else machine.Pin(cs, machine.Pin.OUT, value=1)
    got = bytearray(len(data))
    try:
        if select is not None:
            select.value(0)
        spi.write_readinto(data, got)
    finally:
        if select is not None:
            select.value(1)
    return bytes(got)


_uarts = {}


def _uart(uart_id, baudrate):
    uart = _uarts.get(uart_id)
    if uart is None or uart[1] != baudrate:
        uart = _uarts[uart_id] = (_machine().UART(uart_id, baudrate), baudrate)
    return uart[0]


def uart_write(uart_id, data, baudrate=115200):
    """Send bytes (or text) on a UART; how many were sent."""
    return _uart(uart_id, baudrate).write(_bytes(data)) or 0


async def uart_read(uart_id, count, timeout_ms=1000, baudrate=115200):
    """Up to `count` bytes from a UART, waiting at most timeout_ms for them."""
    uart = _uart(uart_id, baudrate)
    got = b""
    waited = 0
    while len(got) < count:
        n = uart.any()
        if n:
            got += uart.read(min(n, count - len(got))) or b""
            continue
        if waited >= timeout_ms:
            break
        await port.sleep_ms(10)
        waited += 10
    return got


def _bytes(data):
    if isinstance(data, str):
        return data.encode()
    if isinstance(data, list):
        return bytes(data)
    if isinstance(data, (bytes, bytearray)):
        return bytes(data)
    raise ValueError("data is bytes, text or a list of byte values")


# ------------------------------------------------------------------ sensors


def dht(pin, model="DHT22"):
    """{"temperature" (C), "humidity" (%RH)} of a DHT22 (or DHT11) on pin."""
    import dht as driver
    machine = _machine()
    sensor = (driver.DHT11 if model == "DHT11" else driver.DHT22)(machine.Pin(pin))
    sensor.measure()
    return {"temperature": sensor.temperature(), "humidity": sensor.humidity()}


async def ds18b20(pin):
    """[{"rom" (hex), "temperature" (C)}] of every DS18B20 on the 1-Wire bus on pin."""
    import ds18x20
    import onewire
    machine = _machine()
    bus = ds18x20.DS18X20(onewire.OneWire(machine.Pin(pin)))
    roms = bus.scan()
    if not roms:
        return []
    bus.convert_temp()
    await port.sleep_ms(750)
    return [{"rom": "".join(["%02x" % b for b in rom]),
             "temperature": bus.read_temp(rom)} for rom in roms]


async def bme280(bus=0, address=0x76):
    """{"temperature" (C), "pressure" (Pa), "humidity" (%RH; a BMP280 has none)}."""
    i2c = _machine().I2C(bus)
    chip = i2c.readfrom_mem(address, 0xD0, 1)[0]
    if chip not in (0x58, 0x60):
        raise OSError("no BME280/BMP280 at 0x%02x on I2C %d (chip id 0x%02x)"
                      % (address, bus, chip))
    humid = chip == 0x60
    trim = struct.unpack("<HhhHhhhhhhhh", i2c.readfrom_mem(address, 0x88, 24))
    if humid:
        i2c.writeto_mem(address, 0xF2, b"\x01")            # humidity x1
    i2c.writeto_mem(address, 0xF4, b"\x25")                # T x1, P x1, forced
    for _ in range(100):
        await port.sleep_ms(_MEASURE_POLL_MS)
        if not i2c.readfrom_mem(address, 0xF3, 1)[0] & 0x08:
            break
    raw = i2c.readfrom_mem(address, 0xF7, 8)
    adc_p = (raw[0] << 12) | (raw[1] << 4) | (raw[2] >> 4)
    adc_t = (raw[3] << 12) | (raw[4] << 4) | (raw[5] >> 4)
    t1, t2, t3 = trim[0], trim[1], trim[2]
    v1 = (adc_t / 16384.0 - t1 / 1024.0) * t2
    v2 = (adc_t / 131072.0 - t1 / 8192.0) ** 2 * t3
    t_fine = v1 + v2
    result = {"temperature": t_fine / 5120.0, "pressure": _pressure(trim, t_fine, adc_p)}
    if humid:
        adc_h = (raw[6] << 8) | raw[7]
        result["humidity"] = _humidity(i2c, address, t_fine, adc_h)
    return result


def _pressure(trim, t_fine, adc_p):
    p1, p2, p3, p4, p5, p6, p7, p8, p9 = trim[3:]
    v1 = t_fine / 2.0 - 64000.0
    v2 = v1 * v1 * p6 / 32768.0
    v2 = v2 + v1 * p5 * 2.0
    v2 = v2 / 4.0 + p4 * 65536.0
    v1 = (p3 * v1 * v1 / 524288.0 + p2 * v1) / 524288.0
    v1 = (1.0 + v1 / 32768.0) * p1
    if v1 == 0:
        return 0.0
    p = 1048576.0 - adc_p
    p = (p - v2 / 4096.0) * 6250.0 / v1
    v1 = p9 * p * p / 2147483648.0
    v2 = p * p8 / 32768.0
    return p + (v1 + v2 + p7) / 16.0


def _humidity(i2c, address, t_fine, adc_h):
    h1 = i2c.readfrom_mem(address, 0xA1, 1)[0]
    e = i2c.readfrom_mem(address, 0xE1, 7)
    h2 = struct.unpack("<h", e[0:2])[0]
    h3 = e[2]
    h4 = (struct.unpack("<b", e[3:4])[0] << 4) | (e[4] & 0x0F)
    h5 = (struct.unpack("<b", e[5:6])[0] << 4) | (e[4] >> 4)
    h6 = struct.unpack("<b", e[6:7])[0]
    h = t_fine - 76800.0
    h = (adc_h - (h4 * 64.0 + h5 / 16384.0 * h)) * (
        h2 / 65536.0 * (1.0 + h6 / 67108864.0 * h * (1.0 + h3 / 67108864.0 * h)))
    h = h * (1.0 - h1 * h / 524288.0)
    return min(100.0, max(0.0, h))


# ------------------------------------------------------------------ actuators


def actuator(pin, on, active_low=False):
    """Switch an LED or a relay on or off; the level now on the pin."""
    machine = _machine()
    level = (0 if on else 1) if active_low else (1 if on else 0)
    machine.Pin(pin, machine.Pin.OUT).value(level)
    return level


# ------------------------------------------------------------------ /wiring.json


def wiring(root):
    """The parts of /wiring.json ([] without the file); ValueError when it is malformed."""
    try:
        with open(root + "wiring.json") as f:
            doc = json.load(f)
    except OSError:
        return []
    except ValueError as e:
        raise ValueError("wiring.json is not JSON: %s" % e)
    parts = doc.get("parts") if type(doc) is dict else None
    if type(parts) is not list:
        raise ValueError("wiring.json holds {\"parts\": [...]}")
    for i in range(len(parts)):
        part = parts[i]
        if type(part) is not dict or part.get("part") not in SENSORS + ACTUATORS or \
                type(part.get("name")) is not str:
            raise ValueError("wiring.json parts[%d]: a part is {\"part\": one of %s, "
                             "\"name\": ...}" % (i, ", ".join(SENSORS + ACTUATORS)))
    return parts


def find(root, name):
    for part in wiring(root):
        if part["name"] == name:
            return part
    raise ValueError("no part %r in wiring.json" % name)


def read(root, name):
    """A named sensor's reading (a coroutine for those that wait)."""
    part = find(root, name)
    kind = part["part"]
    if kind in ("DHT22", "DHT11"):
        return dht(part["pin"], kind)
    if kind == "DS18B20":
        return ds18b20(part["pin"])
    if kind in ("BME280", "BMP280"):
        address = part.get("address", 0x76)
        if type(address) is str:
            address = int(address, 16)
        return bme280(part.get("bus", 0), address)
    raise ValueError("%s is a %s, not a sensor" % (name, kind))


def switch(root, name, on):
    part = find(root, name)
    if part["part"] not in ACTUATORS:
        raise ValueError("%s is a %s, not an LED or a relay" % (name, part["part"]))
    return actuator(part["pin"], on, part.get("active_low", False))
