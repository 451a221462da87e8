# Bus and sensor checks that run unchanged on MicroPython and CPython, set up as a
# simulated device is; the test suite runs this script on both and requires identical
# output.
#
# usage: sim_sensor_checks.py BOARDS_DIR [DRIVERS_DIR]
# DRIVERS_DIR holds third-party drivers exactly as published (the `bme280` package of
# bme280-upy); without it the driver rows are left out. Under MicroPython host_sim/shims
# comes first on sys.path (MICROPYPATH), then the repository root; under CPython the root
# is on PYTHONPATH. Prints one JSON object per check. Measured values are printed as
# integers (tenths, Pa) and compared with what the scenario set, with a tolerance.
import sys

from host_sim import world as sim_world
from host_sim.clock import Clock
from host_sim.world import World

sim_world.install(World({}, Clock()))
MICROPYTHON = sys.implementation.name == "micropython"
if MICROPYTHON:
    import dht
    import ds18x20
    import machine
    import onewire
else:
    from host_sim import vclock

    vclock.install()  # a CPython device process: `import time` is the shim
    from host_sim.shims import dht, ds18x20, machine, onewire

import json
import time

from host_sim import boards, sensors, vasyncio
from host_sim.buses import I2C, SPI, UART, Loopback, SoftI2C, UartPeer

BOARDS = sys.argv[1]
Pin = machine.Pin


def fresh(name):
    world = sim_world.install(World(boards.load(name, BOARDS), Clock()))
    vasyncio.install(world)
    return world


def outcome(fn):
    """["ok", result] or [exception name, str(exception)]."""
    try:
        result = fn()
    except Exception as e:  # noqa: BLE001 - the exception is what we compare
        # CPython makes OSError(110) a TimeoutError; a board raises OSError
        return ["OSError" if isinstance(e, OSError) else type(e).__name__, str(e)]
    if isinstance(result, (bytes, bytearray)):
        result = "bytes:" + bytes(result).hex()
    return ["ok", result]


def near(got, want, tolerance):
    return abs(got - want) <= tolerance


def tenths(x):
    return round(x * 10)


# ---------------------------------------------------------------- Bosch sensors


class SMBus:
    """The part of smbus a Linux driver uses, over machine.I2C(bus) (CPython only)."""

    def __init__(self, bus):
        self._i2c = I2C(bus)

    def read_i2c_block_data(self, addr, register, length):
        return list(self._i2c.readfrom_mem(addr, register, length))

    def write_i2c_block_data(self, addr, register, data):
        self._i2c.writeto_mem(addr, register, bytes(data))

    def close(self):
        pass


def bme280_driver(drivers):
    """bme280-upy, unmodified: forced and normal mode through machine.I2C (MicroPython)
    or smbus (its Linux path) over the same simulated bus."""
    sys.path.insert(0, drivers)
    if not MICROPYTHON:
        import types

        sys.modules["smbus"] = types.ModuleType("smbus")
        sys.modules["smbus"].SMBus = SMBus
    import bme280

    rows = []
    world = fresh("esp32")
    model = world.attach("i2c", 0, 0x76, sensors.Bme280())
    bus = machine.I2C(0, freq=400000) if MICROPYTHON else 0
    driver = bme280.BME280(i2cBus=bus, i2cAddr=0x76)
    for t, p, h, ovs in ((23.47, 98760.0, 55.5, bme280.OVSMPL_1),
                         (-12.34, 101320.0, 80.0, bme280.OVSMPL_16),
                         (41.03, 87000.0, 12.5, bme280.OVSMPL_4)):
        model.temperature, model.pressure, model.humidity = t, p, h
        got_t, got_h, got_p = driver.readForced(tempOversampling=ovs,
                                                pressureOversampling=ovs,
                                                humidityOversampling=ovs, pollSleep=0.001)
        # bme280-upy 2.1.0 evaluates the H6/H3 term of the humidity compensation with the
        # offset-corrected reading where the datasheet (4.2.3) has t_fine - 76800: its
        # humidity is off by up to 6 %RH. The datasheet formula on the same registers is
        # checked to the sensor's resolution.
        rows.append([tenths(got_t), round(got_p / 10), near(got_t, t, 0.011),
                     near(got_p, p, 3.0), near(got_h * 100, h, 7.0),
                     near(bme280_humidity(I2C(0)) / 1024, h, 0.01)])
    model.temperature = 30.12
    driver.start(bme280.MODE_NORMAL, standbyTime=bme280.T_SB_125ms, filter=bme280.FILTER_4)
    start = world.clock.now_us
    time.sleep_ms(500)
    got_t = driver.read()[0]
    rows.append([tenths(got_t), near(got_t, 30.12, 0.011), world.clock.now_us - start])
    driver.close()
    return {"bme280_driver": rows}


def bme280_humidity(i2c):
    """%RH * 1024 from the registers of the BME280 at 0x76 by the datasheet's formula."""
    raw = i2c.readfrom_mem(0x76, 0x88, 6)
    t1 = raw[0] | raw[1] << 8
    t2, t3 = (raw[2] | raw[3] << 8), (raw[4] | raw[5] << 8)
    t2, t3 = t2 - (t2 & 0x8000) * 2, t3 - (t3 & 0x8000) * 2
    h1 = i2c.readfrom_mem(0x76, 0xA1, 1)[0]
    e = i2c.readfrom_mem(0x76, 0xE1, 7)
    h2 = e[0] | e[1] << 8
    h2 -= (h2 & 0x8000) * 2
    h3 = e[2]
    h4 = e[3] << 4 | (e[4] & 0x0F)
    h5 = e[5] << 4 | e[4] >> 4
    h6 = e[6] - (e[6] & 0x80) * 2
    h4, h5 = h4 - (h4 & 0x800) * 2, h5 - (h5 & 0x800) * 2
    data = i2c.readfrom_mem(0x76, 0xFA, 5)
    adc_t = data[0] << 12 | data[1] << 4 | data[2] >> 4
    adc_h = data[3] << 8 | data[4]
    var1 = (((adc_t >> 3) - (t1 << 1)) * t2) >> 11
    var2 = (((((adc_t >> 4) - t1) * ((adc_t >> 4) - t1)) >> 12) * t3) >> 14
    v = var1 + var2 - 76800
    v = ((((adc_h << 14) - (h4 << 20) - (h5 * v)) + 16384) >> 15) * (
        ((((((v * h6) >> 10) * (((v * h3) >> 11) + 32768)) >> 10) + 2097152) * h2 + 8192) >> 14)
    v -= ((((v >> 15) * (v >> 15)) >> 7) * h1) >> 4
    return min(max(v, 0), 419430400) >> 12


def bmp280_compensate(cal, adc_t, adc_p):
    """The BMP280 datasheet's 32-bit temperature and 64-bit pressure formulas."""
    t1, t2, t3, p1, p2, p3, p4, p5, p6, p7, p8, p9 = cal
    var1 = (((adc_t >> 3) - (t1 << 1)) * t2) >> 11
    var2 = (((((adc_t >> 4) - t1) * ((adc_t >> 4) - t1)) >> 12) * t3) >> 14
    t_fine = var1 + var2
    celsius_100 = (t_fine * 5 + 128) >> 8
    var1 = t_fine - 128000
    var2 = var1 * var1 * p6 + ((var1 * p5) << 17) + (p4 << 35)
    var1 = ((var1 * var1 * p3) >> 8) + ((var1 * p2) << 12)
    var1 = (((1 << 47) + var1) * p1) >> 33
    p = (((1048576 - adc_p) << 31) - var2) * 3125 // var1
    var1 = (p9 * (p >> 13) * (p >> 13)) >> 25
    var2 = (p8 * p) >> 19
    return celsius_100, ((p + var1 + var2) >> 8) + (p7 << 4)


def read_bmp280(read):
    """Calibration, a forced measurement and its result through read(register, n) and
    write(register, value)."""
    raw = read(0x88, 24)
    cal = []
    for i in range(12):
        value = raw[2 * i] | raw[2 * i + 1] << 8
        cal.append(value - 65536 if i not in (0, 3) and value & 0x8000 else value)
    return cal


def bmp280_datasheet():
    world = fresh("esp32")
    model = world.attach("i2c", 1, 0x77, sensors.Bmp280(-5.55, 95432.0))
    i2c = I2C(1)
    chip = i2c.readfrom_mem(0x77, 0xD0, 1)[0]
    cal = read_bmp280(lambda reg, n: i2c.readfrom_mem(0x77, reg, n))
    i2c.writeto_mem(0x77, 0xF4, bytes([0b01001001]))  # x2 T, x2 P, forced
    polls = 0
    while i2c.readfrom_mem(0x77, 0xF3, 1)[0] & 0x08:
        polls += 1
        time.sleep_ms(1)
    data = i2c.readfrom_mem(0x77, 0xF7, 6)
    adc_p = data[0] << 12 | data[1] << 4 | data[2] >> 4
    adc_t = data[3] << 12 | data[4] << 4 | data[5] >> 4
    t100, p256 = bmp280_compensate(cal, adc_t, adc_p)
    back_to_sleep = i2c.readfrom_mem(0x77, 0xF4, 1)[0] & 3
    out = {"chip": chip, "polls": polls, "t100": t100, "p": p256 // 256,
           "ok": [near(t100 / 100, -5.55, 0.011), near(p256 / 256, 95432.0, 1.5)],
           "sleeping": back_to_sleep}
    i2c.writeto_mem(0x77, 0xE0, b"\xb6")  # soft reset: sleep mode, data registers reset
    out["after_reset"] = bytes(i2c.readfrom_mem(0x77, 0xF4, 9)).hex()
    model.connected = False
    out["unplugged"] = outcome(lambda: i2c.readfrom_mem(0x77, 0xD0, 1))
    return {"bmp280_datasheet": out}


def bmp280_spi():
    """The same chip on SPI, selected with an ordinary Pin."""
    world = fresh("esp32")
    world.attach("spi", 2, 5, sensors.Bmp280(18.25, 100800.0))
    cs = Pin(5, Pin.OUT, value=1)
    spi = SPI(2, baudrate=1000000)

    def read(register, n):
        cs(0)
        spi.write(bytes([register | 0x80]))
        data = spi.read(n)
        cs(1)
        return data

    unselected = spi.read(2, 0xD0)
    cal = read_bmp280(read)
    cs(0)
    spi.write(bytes([0xF4 & 0x7F, 0b10110111]))  # x16 T, x16 P, normal
    cs(1)
    time.sleep_ms(100)
    data = read(0xF7, 6)
    t100, p256 = bmp280_compensate(cal, data[3] << 12 | data[4] << 4 | data[5] >> 4,
                                   data[0] << 12 | data[1] << 4 | data[2] >> 4)
    return {"bmp280_spi": [read(0xD0, 1)[0], bytes(unselected).hex(), t100, p256 // 256,
                           near(p256 / 256, 100800.0, 0.5)]}


# ---------------------------------------------------------------- I2C semantics


def i2c_bus():
    world = fresh("esp32")
    for address in (0x77, 0x23, 0x76):
        world.attach("i2c", 0, address, sensors.Bme280())
    world.attach("i2c", (33, 32), 0x40, sensors.Bmp280())  # wired to pins, not to a bus id
    hard = I2C(0)
    soft = SoftI2C(scl=Pin(18), sda=Pin(19))  # bus 0's default pins
    other = SoftI2C(scl=Pin(33), sda=Pin(32))
    out = {"scan": hard.scan(), "soft_scan": soft.scan(), "pins_scan": other.scan(),
           "bus1": I2C(1).scan()}
    out["missing"] = outcome(lambda: hard.readfrom(0x50, 1))
    try:
        hard.writeto(0x50, b"\x00")
    except OSError as e:
        out["errno"] = e.errno
    out["write_acks"] = hard.writeto(0x76, b"\xf4\x00")
    # the primitives, on the bit-banged bus only
    soft.start()
    acks = soft.write(bytes([0x76 << 1, 0xD0]))
    soft.start()
    acks += soft.write(bytes([0x76 << 1 | 1]))
    buf = bytearray(1)
    soft.readinto(buf)
    soft.stop()
    soft.start()
    nack = soft.write(bytes([0x51 << 1, 0x00]))
    soft.stop()
    out["primitives"] = [acks, buf[0], nack, outcome(hard.start)]
    out["mem16"] = outcome(lambda: hard.readfrom_mem(0x76, 0x00D0, 1, addrsize=16))
    return {"i2c_bus": out}


def misuse():
    out = {}
    fresh("esp32")
    out["esp32"] = [outcome(lambda: I2C(2)), outcome(lambda: I2C(0, scl=Pin(40))),
                    outcome(lambda: SPI(0)), outcome(lambda: UART(3)),
                    outcome(lambda: I2C(0, scl=Pin(34), sda=Pin(35)).scan())]
    fresh("pico_w")
    out["pico_w"] = [outcome(lambda: I2C(0, scl=Pin(4), sda=Pin(5))),
                     outcome(lambda: I2C(1, scl=Pin(3), sda=Pin(2)).scan()),
                     outcome(lambda: SPI(0, sck=Pin(10))), outcome(lambda: SPI(1, sck=Pin(10)).read(1)),
                     outcome(lambda: UART(1, tx=Pin(0))), outcome(lambda: UART(2))]
    world = fresh("esp8266")
    world.attach("i2c", -1, 0x76, sensors.Bme280())
    out["esp8266"] = [outcome(lambda: I2C(scl=Pin(5), sda=Pin(4)).scan()),
                      outcome(lambda: I2C(0)), outcome(lambda: SPI(0)),
                      outcome(lambda: UART(1).read())]
    return {"misuse": out}


# ---------------------------------------------------------------- 1-Wire and DHT


def ds18b20():
    world = fresh("esp32")
    probes = [sensors.Ds18b20(21.5, serial=0x1122334455), sensors.Ds18b20(-10.125, serial=7),
              sensors.Ds18b20(99.9, serial=0x8000000001)]
    for probe in probes:
        world.attach("onewire", 4, probe.rom, probe)
    bus = onewire.OneWire(Pin(4))
    sensor = ds18x20.DS18X20(bus)
    roms = sensor.scan()
    out = {"roms": [bytes(r).hex() for r in roms],
           "crc_ok": [bus.crc8(r) == 0 and r[0] == 0x28 for r in roms]}
    sensor.convert_temp()
    out["too_soon"] = [sensor.read_temp(r) for r in roms]  # the power-on 85 C
    time.sleep_ms(750)
    out["after_750ms"] = [sensor.read_temp(r) for r in roms]
    sensor.write_scratch(probes[0].rom, b"\x00\x00\x1f")  # 9 bits: 93.75 ms, 0.5 C steps
    probes[0].temperature = probes[1].temperature = 23.3
    sensor.convert_temp()
    time.sleep_ms(94)
    out["nine_bits"] = [sensor.read_temp(probes[0].rom), sensor.read_temp(probes[1].rom),
                        list(sensor.read_scratch(probes[0].rom)[2:5])]
    time.sleep_ms(750)
    out["twelve_bits"] = sensor.read_temp(probes[1].rom)
    probes[2].crc_error = True
    out["crc_error"] = outcome(lambda: sensor.read_temp(probes[2].rom))
    probes[1].connected = False
    out["unplugged"] = len(sensor.scan())
    out["empty_bus"] = outcome(lambda: ds18x20.DS18X20(onewire.OneWire(Pin(5))).convert_temp())
    return {"ds18b20": out}


def dht_sensors():
    world = fresh("esp32")
    model = world.attach("dht", 14, None, sensors.Dht22(-7.3, 64.2))
    world.attach("dht", 27, None, sensors.Dht11(24.6, 38.0))
    d22 = dht.DHT22(Pin(14))
    d22.measure()
    out = {"dht22": [tenths(d22.temperature()), tenths(d22.humidity())]}
    model.temperature = 30.0
    time.sleep_ms(500)
    d22.measure()
    out["within_2s"] = tenths(d22.temperature())  # the part answers its last measurement
    time.sleep_ms(2000)
    d22.measure()
    out["after_2s"] = tenths(d22.temperature())
    d11 = dht.DHT11(Pin(27))
    d11.measure()
    out["dht11"] = [d11.temperature(), d11.humidity()]
    model.checksum_error = True
    time.sleep_ms(2000)
    out["checksum"] = outcome(d22.measure)
    out["absent"] = outcome(dht.DHT22(Pin(26)).measure)
    return {"dht": out}


# ---------------------------------------------------------------- UART


def uart():
    world = fresh("esp32")
    world.attach("uart", 2, None, Loopback())
    line = UART(2, 9600, timeout=20)
    line.write(b"AT\r\nOK")
    out = {"loopback": [line.any(), outcome(line.readline), outcome(line.read),
                        outcome(line.read)]}
    start = world.clock.now_us
    line.read(1)
    out["timeout_us"] = world.clock.now_us - start
    modem = world.attach("uart", (4, 5), None, UartPeer(baudrate=115200))  # wired to pins
    line = UART(1, 9600, tx=Pin(4), rx=Pin(5))
    modem.send(b"x" * 300)
    out["overflow"] = [line.any(), world.log[-1][2]]
    line.write(b"hi")
    out["garbled"] = bytes(modem.received).hex()
    line.init(115200, timeout=0)
    line.write(b"hi")
    out["matched"] = bytes(modem.received[2:]).hex()
    return {"uart": out}


def main():
    checks = [bmp280_datasheet, bmp280_spi, i2c_bus, misuse, ds18b20, dht_sensors, uart]
    for check in checks:
        print(json.dumps(check()))
    if len(sys.argv) > 2:
        print(json.dumps(bme280_driver(sys.argv[2])))


main()
