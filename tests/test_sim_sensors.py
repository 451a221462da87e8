"""Buses and sensor models at the level drivers talk to.

tests/upy/sim_sensor_checks.py runs under the MicroPython unix port and under CPython and
must print the same results: an unmodified third-party driver (bme280-upy, copied from its
installed distribution into a temporary directory), the BMP280 datasheet compensation, the
onewire/ds18x20/dht shims, bus misuse on each board. The in-process tests below check the
models themselves against the datasheet's integer formulas, on CPython.
"""

import importlib.metadata
import os
import random
import shutil

import pytest

from host_sim import boards, bosch, sensors
from host_sim import world as sim_world
from host_sim.buses import I2C, SPI, UART, SoftI2C, SoftSPI, SPIDevice, UartPeer
from host_sim.clock import Clock
from host_sim.shims import dht, ds18x20, onewire
from host_sim.shims.machine import Pin
from host_sim.world import World
from sim_checks import run_check_script

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHECKS = os.path.join(ROOT, "tests", "upy", "sim_sensor_checks.py")
BOARDS = os.path.join(ROOT, "boards")
MICROPYTHON = shutil.which("micropython")
HEAP = "512k"  # the driver and the simulator are compiled from source on the device


def driver_package(tmp_path):
    """bme280-upy's `bme280` package copied as published, or None if not installed."""
    try:
        dist = importlib.metadata.distribution("bme280-upy")
    except importlib.metadata.PackageNotFoundError:
        return None
    target = tmp_path / "drivers"
    for name in dist.files:
        if name.parts[0] == "bme280" and name.suffix == ".py":
            (target / "bme280").mkdir(parents=True, exist_ok=True)
            shutil.copy(dist.locate_file(name), target / "bme280" / name.name)
    return str(target)


def run_checks(runtime, drivers):
    args = [BOARDS] + ([drivers] if drivers else [])
    return run_check_script(runtime, CHECKS, args, HEAP, timeout=300)


@pytest.fixture(scope="module")
def drivers(tmp_path_factory):
    return driver_package(tmp_path_factory.mktemp("sensors"))


@pytest.fixture(scope="module")
def results(drivers):
    runtimes = ["cpython"] + (["micropython"] if MICROPYTHON else [])
    return {runtime: run_checks(runtime, drivers) for runtime in runtimes}


def test_micropython_matches_cpython(results):
    assert results["micropython"] == results["cpython"]


def test_bme280_driver_reads_back_the_scenario(results, drivers):
    assert drivers is not None, "bme280-upy is not installed (pip install -e '.[dev]')"
    for rows in results.values():
        forced, normal = rows["bme280_driver"][:3], rows["bme280_driver"][3]
        assert [row[:2] for row in forced] == [[235, 9876], [-123, 10132], [410, 8700]]
        assert all(all(row[2:]) for row in forced)
        assert normal == [301, True, 500250]


def test_bmp280_through_the_datasheet_formulas(results):
    rows = results["cpython"]
    out = rows["bmp280_datasheet"]
    assert (out["chip"], out["t100"], out["p"], out["ok"]) == (0x58, -555, 95432, [True, True])
    assert out["polls"] > 0 and out["sleeping"] == 0  # forced mode measured, then slept
    assert out["after_reset"] == "000000800000800000"
    assert out["unplugged"] == ["OSError", "[Errno 19] ENODEV"]
    chip, unselected, t100, _, ok = rows["bmp280_spi"]
    assert (chip, unselected, t100, ok) == (0x58, "ffff", 1825, True)


def test_i2c_scan_enodev_and_primitives(results):
    out = results["cpython"]["i2c_bus"]
    assert out["scan"] == out["soft_scan"] == [0x23, 0x76, 0x77]
    assert out["pins_scan"] == [0x40] and out["bus1"] == []
    assert out["missing"] == ["OSError", "[Errno 19] ENODEV"] and out["errno"] == 19
    assert out["primitives"] == [3, 0x60, 0, ["OSError", "I2C operation not supported"]]


def test_bus_misuse_fails_as_on_the_board(results):
    out = results["cpython"]["misuse"]
    assert out["esp32"] == [["ValueError", "I2C(2) doesn't exist"], ["ValueError", "invalid pin"],
                            ["ValueError", "SPI(0) doesn't exist"],
                            ["ValueError", "UART(3) does not exist"], ["ok", []]]
    assert out["pico_w"][0] == ["ValueError", "bad SCL pin"]
    assert out["pico_w"][2] == ["ValueError", "bad SCK pin"]
    assert out["pico_w"][4:] == [["ValueError", "bad TX pin"],
                                 ["ValueError", "UART(2) doesn't exist"]]
    assert out["esp8266"][0] == ["ok", [0x76]]
    assert out["esp8266"][3] == ["OSError", "UART(1) can't read"]


def test_ds18b20_through_the_shims(results):
    out = results["cpython"]["ds18b20"]
    assert out["crc_ok"] == [True] * 3 and len(set(out["roms"])) == 3
    assert out["too_soon"] == [85.0] * 3
    assert sorted(out["after_750ms"]) == [-10.125, 21.5, 99.875]
    assert out["nine_bits"] == [23.0, -10.125, [0, 0, 0x1F]]  # the 12-bit probe is not done
    assert out["twelve_bits"] == 23.3125
    assert out["crc_error"] == ["Exception", "CRC error"]
    assert out["unplugged"] == 2 and out["empty_bus"] == ["OneWireError", ""]


def test_dht_through_the_shim(results):
    out = results["cpython"]["dht"]
    assert out["dht22"] == [-73, 642] and out["within_2s"] == -73 and out["after_2s"] == 300
    assert out["dht11"] == [25, 38]
    assert out["checksum"] == ["Exception", "checksum error"]
    assert out["absent"] == ["OSError", "[Errno 110] ETIMEDOUT"]


def test_uart(results):
    out = results["cpython"]["uart"]
    assert out["loopback"] == [6, ["ok", "bytes:41540d0a"], ["ok", "bytes:4f4b"], ["ok", None]]
    assert out["timeout_us"] == 20000
    assert out["overflow"] == [256, "UART(1) overflow: 44 bytes lost"]
    assert out["garbled"] != "6869" and out["matched"] == "6869"


# ---------------------------------------------------------------- in process (CPython)

@pytest.fixture
def world():
    previous = sim_world._current
    yield sim_world.install(World(boards.load("esp32"), Clock()))
    sim_world._current = previous


def int_temperature(trim, adc):
    t1, t2, t3 = trim[:3]
    var1 = (((adc >> 3) - (t1 << 1)) * t2) >> 11
    var2 = (((((adc >> 4) - t1) * ((adc >> 4) - t1)) >> 12) * t3) >> 14
    return var1 + var2, ((var1 + var2) * 5 + 128) >> 8


def int_pressure(trim, t_fine, adc):
    p1, p2, p3, p4, p5, p6, p7, p8, p9 = trim[3:]
    var1 = t_fine - 128000
    var2 = var1 * var1 * p6 + ((var1 * p5) << 17) + (p4 << 35)
    var1 = (((1 << 47) + ((var1 * var1 * p3) >> 8) + ((var1 * p2) << 12)) * p1) >> 33
    p = (((1048576 - adc) << 31) - var2) * 3125 // var1
    return (((p + ((p9 * (p >> 13) * (p >> 13)) >> 25) + ((p8 * p) >> 19)) >> 8) + (p7 << 4)) / 256


def int_humidity(trim_h, t_fine, adc):
    h1, h2, h3, h4, h5, h6 = trim_h
    v = t_fine - 76800
    v = ((((adc << 14) - (h4 << 20) - (h5 * v)) + 16384) >> 15) * (
        ((((((v * h6) >> 10) * (((v * h3) >> 11) + 32768)) >> 10) + 2097152) * h2 + 8192) >> 14)
    v -= ((((v >> 15) * (v >> 15)) >> 7) * h1) >> 4
    return (min(max(v, 0), 419430400) >> 12) / 1024


@pytest.mark.parametrize("oversampling, t_tol, p_tol", [(1, 0.01, 2.7), (16, 0.01, 0.2)])
def test_inverted_compensation_matches_the_datasheet_integers(oversampling, t_tol, p_tol):
    rng = random.Random(5)
    trim = bosch.TRIMMING_TP
    for _ in range(300):
        t, p, h = rng.uniform(-40, 85), rng.uniform(30000, 110000), rng.uniform(0, 100)
        model = sensors.Bme280(t, p, h)
        adc_t = model.raw_temperature(oversampling)
        assert adc_t % (16 // oversampling) == 0  # the resolution the oversampling gives
        t_fine, t100 = int_temperature(trim, adc_t)
        assert abs(t100 / 100 - t) <= t_tol + 0.005
        assert abs(int_pressure(trim, t_fine, model.raw_pressure(t_fine, oversampling)) - p) <= p_tol
        assert abs(int_humidity(bosch.TRIMMING_H, t_fine, model.raw_humidity(t_fine)) - h) <= 0.01


def read(i2c, register, n=1):
    return i2c.readfrom_mem(0x76, register, n)


def test_forced_mode_takes_t_measure_then_sleeps(world):
    model = world.attach("i2c", 0, 0x76, sensors.Bme280(20.0))
    i2c = I2C(0)
    i2c.writeto_mem(0x76, 0xF2, b"\x01")
    assert read(i2c, 0xF2)[0] == 1 and model.measure_time_us() == 1000  # not latched yet
    i2c.writeto_mem(0x76, 0xF4, bytes([0b00100101]))  # x1 T, x1 P, forced
    assert model.measure_time_us() == 1000 + 2000 + 2500 + 2500
    assert read(i2c, 0xF3)[0] == 0x08 and read(i2c, 0xF7, 8) == b"\x80\x00\x00\x80\x00\x00\x80\x00"
    world.clock.advance(8000)
    assert read(i2c, 0xF3)[0] == 0 and read(i2c, 0xF4)[0] & 3 == 0
    assert read(i2c, 0xFA, 3) != b"\x80\x00\x00"


def test_normal_mode_cycles_and_the_iir_filter(world):
    model = world.attach("i2c", 0, 0x76, sensors.Bmp280(10.0))
    i2c = I2C(0)
    i2c.writeto_mem(0x76, 0xF5, bytes([0b000 << 5 | 0b100 << 2]))  # 0.5 ms standby, filter 16
    i2c.writeto_mem(0x76, 0xF4, bytes([0b00100111]))  # x1 T, x1 P, normal
    cycle = model.measure_time_us() + 500
    world.clock.advance(cycle)
    trim = bosch.TRIMMING_TP

    def celsius():
        data = read(i2c, 0xFA, 3)
        return int_temperature(trim, data[0] << 12 | data[1] << 4 | data[2] >> 4)[1] / 100

    assert celsius() == 10.0
    model.temperature = 20.0
    readings = []
    for _ in range(5):
        world.clock.advance(cycle)
        readings.append(celsius())
    assert readings == sorted(readings) and 10.0 < readings[0] < 11.0 < readings[-1] < 20.0
    world.clock.advance(200 * cycle)
    assert abs(celsius() - 20.0) <= 0.01


def test_bosch_i2c_writes_are_register_value_pairs(world):
    world.attach("i2c", 0, 0x76, sensors.Bme280())
    i2c = I2C(0)
    i2c.writeto(0x76, bytes([0xF5, 0x10, 0xF2, 0x03]))
    assert read(i2c, 0xF5)[0] == 0x10 and read(i2c, 0xF2)[0] == 0x03
    i2c.writeto_mem(0x76, 0xF4, b"\x24\xa0")  # the second byte is a register address
    assert read(i2c, 0xF5)[0] == 0x10
    i2c.writeto_mem(0x76, 0xE0, b"\xb6")
    assert read(i2c, 0xF2, 4) == b"\x00\x00\x00\x00" and read(i2c, 0xD0)[0] == 0x60


def test_bus_time_follows_the_clock_rate(world):
    world.attach("i2c", 0, 0x76, sensors.Bme280())
    start = world.clock.now_us
    I2C(0, freq=100000).readfrom_mem(0x76, 0xD0, 1)  # 2 x (start, address) + 2 bytes + stop
    assert world.clock.now_us - start == (10 + 9 + 10 + 9 + 1) * 10


def test_soft_buses_need_a_board_that_has_them():
    previous = sim_world._current
    sim_world.install(World(boards.load("linux_sbc"), Clock()))
    try:
        with pytest.raises(ValueError):
            SoftI2C(scl=3, sda=2)
        with pytest.raises(ValueError):
            SoftSPI(sck=11, mosi=10, miso=9)
        assert I2C(1).scan() == []
    finally:
        sim_world._current = previous


class Echo(SPIDevice):
    """Answers each byte with the previous one; logs transactions."""

    def __init__(self):
        self.log, self.last = [], 0x00

    def spi_select(self):
        self.log.append("select")

    def spi_exchange(self, byte):
        self.last, answer = byte, self.last
        return answer

    def spi_deselect(self):
        self.log.append("deselect")


def test_spi_chip_select_and_bit_order(world):
    device = world.attach("spi", 1, 15, Echo())
    tied = world.attach("spi", (5, 23, 19), None, Echo())  # chip select tied low
    cs = Pin(15, Pin.OUT, value=1)
    spi = SPI(1)
    assert spi.read(2, 0x42) == b"\xff\xff" and device.log == []
    cs(0)
    buf = bytearray(3)
    spi.write_readinto(b"\x01\x02\x03", buf)
    cs(1)
    assert bytes(buf) == b"\x00\x01\x02" and device.log == ["select", "deselect"]
    with pytest.raises(ValueError):
        spi.write_readinto(b"\x01", bytearray(2))
    lsb = SoftSPI(sck=Pin(5), mosi=Pin(23), miso=Pin(19), firstbit=SoftSPI.LSB)
    lsb.write(b"\x01")
    assert tied.last == 0x80 and lsb.read(1) == b"\x01"


def test_onewire_search_finds_many_devices(world):
    rng = random.Random(3)
    probes = [sensors.Ds18b20(serial=rng.getrandbits(48)) for _ in range(12)]
    for probe in probes:
        world.attach("onewire", 4, probe.rom, probe)
    found = onewire.OneWire(Pin(4)).scan()
    assert sorted(bytes(r) for r in found) == sorted(p.rom for p in probes)
    assert all(sensors.crc8(r) == 0 for r in found)


def test_rom_codes_are_checked(world):
    with pytest.raises(ValueError):
        sensors.OneWireDevice(b"\x28\x01\x02\x03\x04\x05\x06\x00")
    probe = sensors.Ds18b20()
    with pytest.raises(ValueError):
        world.attach("onewire", 4, b"\x00" * 8, probe)


def test_match_rom_selects_only_that_probe(world):
    first, second = sensors.Ds18b20(30.0), sensors.Ds18b20(-2.5)
    for probe in (first, second):
        world.attach("onewire", 4, probe.rom, probe)
    sensor = ds18x20.DS18X20(onewire.OneWire(Pin(4)))
    sensor.convert_temp()
    world.clock.advance(750000)
    assert (sensor.read_temp(first.rom), sensor.read_temp(second.rom)) == (30.0, -2.5)
    with pytest.raises(Exception, match="CRC error"):
        sensor.read_temp(sensors.rom_code(0x28, 12345))  # nobody answers: all ones


def test_alarm_search_finds_only_alarmed_probes(world):
    calm, hot = sensors.Ds18b20(72.0), sensors.Ds18b20(80.0)
    for probe in (calm, hot):
        world.attach("onewire", 4, probe.rom, probe)
    bus = sensors.OneWireBus(world, 4)
    bus.reset()
    bus.write_byte(sensors.SKIP_ROM)
    bus.write_byte(sensors.CONVERT_T)
    world.clock.advance(750000)
    bus.reset()
    bus.write_byte(sensors.ALARM_SEARCH)  # TH 75, TL 70 by default: 72 C is calm
    rom = 0
    for index in range(64):
        bit, complement = bus.read_bit(), bus.read_bit()
        assert bit != complement  # a single device answers
        bus.write_bit(bit)
        rom |= bit << index
    assert rom.to_bytes(8, "little") == hot.rom


def test_dht_frames():
    model = sensors.Dht22(-7.3, 64.2)
    assert model.frame(0) == bytes([0x02, 0x82, 0x80, 0x49, 0x4D])
    model.checksum_error = True
    assert model.frame(0)[4] == 0x4E
    assert sensors.Dht11(24.6, 38.0).frame(0) == bytes([38, 0, 25, 0, 63])


def test_dht_shim_absent_sensor(world):
    with pytest.raises(OSError) as info:
        dht.DHT22(Pin(4)).measure()
    assert info.value.errno == 110


def test_uart_peer_sees_what_the_device_writes(world):
    peer = world.attach("uart", 2, None, UartPeer())
    uart = UART(2, 115200, timeout=0)
    assert uart.write(b"ping") == 4 and bytes(peer.received) == b"ping"
    assert uart.read() is None and uart.any() == 0
    peer.send(b"pong\n")
    buf = bytearray(8)
    assert uart.readinto(buf) == 5 and bytes(buf[:5]) == b"pong\n"
    with pytest.raises(ValueError):
        UART(1, tx=Pin(40))
