"""The simulated machine module at pin level: Pin, Signal, ADC, PWM, Timer, RTC, WDT, resets,
and the parts on the pins (LED, Relay, Button).

In-process on CPython with direct control of the World, then the scenarios of
tests/upy/sim_pin_checks.py on the MicroPython unix port (compiled with mpy-cross, with the
board's heap) and on CPython, whose outputs must be identical.
"""

import asyncio
import json
import os
import shutil
import subprocess
import sys

import pytest

from host_sim import boards, parts, pins
from host_sim.shims import machine
from host_sim.world import World, install

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HERE = os.path.join(ROOT, "tests")
MICROPYTHON = shutil.which("micropython")
MPY_CROSS = shutil.which("mpy-cross")
Pin = machine.Pin


def board(name):
    """A fresh simulated device of board `name`, installed as the current World."""
    return install(World(boards.load(name)))


def test_blink_has_a_timestamped_history():
    world = board("esp32")
    led = parts.LED(2)
    pin = Pin(2, Pin.OUT)
    for _ in range(4):
        pin.toggle()
        world.clock.advance(250000)
    assert led.history == [(0, 0), (0, 1), (250000, 0), (500000, 1), (750000, 0)]
    assert not led.is_on()


def test_parts_are_off_while_the_pin_is_not_driven():
    world = board("esp8266")
    led = parts.LED(2, active_low=True)  # the ESP-12 LED: lit when GPIO2 is low
    relay = parts.Relay(5)
    pin = Pin(2, Pin.IN, Pin.PULL_UP)
    assert led.history == [(0, 0)]
    pin.init(Pin.OUT, value=0)
    world.clock.advance(1000)
    pin.init(Pin.IN)
    Pin(5, Pin.OUT).on()
    assert led.history == [(0, 0), (0, 1), (1000, 0)]
    assert relay.is_energized() and relay.history == [(0, 0), (1000, 1)]


def test_button_fires_irqs_with_the_pull_honoured():
    world = board("pico_w")
    button = parts.Button("GP15")
    pin = Pin(15, Pin.IN, Pin.PULL_UP)
    seen = []
    pin.irq(lambda p: seen.append((world.clock.uptime_us(), p.value(), p.irq().flags())))
    world.clock.advance(1000)
    button.click(20)
    assert seen == [(1000, 0, Pin.IRQ_FALLING), (21000, 1, Pin.IRQ_RISING)]
    pin.irq(lambda p: seen.append("falling"), trigger=Pin.IRQ_FALLING)
    button.click(5)
    assert seen[2:] == ["falling"]
    pin.irq(None)
    button.click(5)
    assert len(seen) == 3
    # without a pull-up an active-low button leaves the pin floating: it never reads high
    pin.init(pull=None)
    pin.irq(lambda p: seen.append("edge"))
    button.click(5)
    assert pin.value() == 0 and seen[3:] == []


def test_an_output_pin_fires_its_own_irq():
    board("esp32")
    pin = Pin(4, Pin.OUT, value=0)
    seen = []
    pin.irq(lambda p: seen.append(p.value()), trigger=Pin.IRQ_RISING)
    pin.on()
    pin.off()
    assert seen == [1]


def test_disable_irq_holds_back_handlers_and_timers():
    world = board("esp32")
    seen = []
    pin = Pin(0, Pin.IN, Pin.PULL_UP)
    pin.irq(lambda p: seen.append(("pin", world.clock.uptime_us())))
    machine.Timer(0, mode=machine.Timer.ONE_SHOT, period=1,
                  callback=lambda t: seen.append(("timer", world.clock.uptime_us())))
    state = machine.disable_irq()
    pins.drive(world, 0, 0)
    world.clock.advance(5000)
    assert seen == []
    machine.enable_irq(state)
    assert seen == [("pin", 5000), ("timer", 5000)]


def test_open_drain_reads_the_wire():
    world = board("esp32")
    pin = Pin(21, Pin.OPEN_DRAIN, Pin.PULL_UP, value=1)
    assert pin.value() == 1
    pins.drive(world, 21, 0)  # another device pulls the line low
    assert pin.value() == 0
    pins.drive(world, 21, None)
    pin.off()
    assert pin.value() == 0


def test_signal_inverts():
    board("esp32")
    signal = machine.Signal(2, Pin.OUT, invert=True)
    signal.on()
    assert Pin(2).value() == 0 and signal.value() == 1
    signal(0)
    assert Pin(2).value() == 1


def test_adc_samples_waveforms_at_the_clock():
    world = board("esp32")
    adc = machine.ADC(Pin(34), atten=machine.ADC.ATTN_11DB)
    pins.set_voltage(world, 34, 1.95)
    assert adc.read() == 2048 and adc.read_uv() == 1950000
    pins.set_voltage(world, 34, lambda t_us: t_us / 1e6)  # one volt a second
    world.clock.advance(500000)
    assert adc.read_uv() == 500000
    pins.set_voltage(world, 34, [(1000000, 0.0), (2000000, 3.0), (2000000, 1.0)])
    readings = []
    for _ in range(4):
        readings.append(adc.read_uv())
        world.clock.advance(500000)
    assert readings == [0, 0, 1500000, 1000000]  # held, held, halfway, after the step


def test_adc_conversions_per_board():
    world = board("esp32")
    adc = machine.ADC(32)
    pins.set_voltage(world, 32, 0.55)
    adc.atten(machine.ADC.ATTN_0DB)  # 1.1 V full scale
    adc.width(machine.ADC.WIDTH_10BIT)
    assert adc.read() == 512 and adc.read_u16() == (512 << 6 | 512 >> 4)
    world = board("esp8266")
    a0 = machine.ADC(0)
    pins.set_voltage(world, "A0", 1.5)  # above the 1.0 V range
    assert a0.read() == 1024 and a0.read_u16() == 65535
    assert machine.ADC(1).read() == 3379  # the supply, 3.3 V, in 1/1024 V
    with pytest.raises(AttributeError):
        a0.read_uv()
    board("pico_w")
    temperature = machine.ADC(4).read_u16() >> 4
    assert abs(27 - (27 - (temperature * 3.3 / 4095 - 0.706) / 0.001721)) < 0.5
    assert machine.ADC(26).read_u16() == machine.ADC(0).read_u16() == 0


def test_esp32_adc2_is_busy_while_wifi_is_on():
    world = board("esp32")
    adc2, adc1 = machine.ADC(Pin(25)), machine.ADC(Pin(33))
    world.machine["radio_on"] = True
    with pytest.raises(OSError) as raised:
        adc2.read_u16()
    assert raised.value.args == (116, "ESP_ERR_TIMEOUT")
    assert adc1.read_u16() == 0


def test_pwm_duty_shows_on_the_led():
    world = board("esp32")
    led = parts.LED(5)
    pwm = machine.PWM(Pin(5), freq=1000, duty_u16=16384)
    assert (pwm.freq(), pwm.duty_u16(), pwm.duty()) == (1000, 16384, 256)
    world.clock.advance(1000)
    pwm.duty_ns(500000)
    world.clock.advance(1000)
    pwm.deinit()
    assert [(t, round(v, 3)) for t, v in led.history] == [
        (0, 0), (0, 0.25), (1000, 0.5), (2000, 0)]
    with pytest.raises(ValueError, match="duty must be from 0 to 1023"):
        pwm.duty(1024)
    with pytest.raises(ValueError, match="frequency must be from 1Hz to 40MHz"):
        pwm.freq(0)


def test_pwm_frequency_sharing_and_clamping():
    board("esp8266")
    first = machine.PWM(Pin(4), freq=2000, duty=512)
    assert first.freq() == 1000  # clamped to the ESP8266's 1 kHz
    machine.PWM(Pin(5), freq=50)
    assert first.freq() == 50  # one frequency for every channel
    assert first.duty() == 512 and first.duty_u16() == 512 * 65535 // 1024
    board("pico_w")
    a, b, c = machine.PWM(Pin(0), freq=1000), machine.PWM(Pin(1), freq=2000), machine.PWM(
        Pin(2), freq=3000)
    assert (a.freq(), b.freq(), c.freq()) == (2000, 2000, 3000)  # GP0 and GP1 share slice 0
    with pytest.raises(AttributeError):
        a.duty(10)
    with pytest.raises(ValueError, match="freq too small"):
        a.freq(1)


def test_timers_fire_as_the_clock_advances():
    world = board("esp32")
    fired = []
    periodic = machine.Timer(0)
    periodic.init(period=100, callback=lambda t: fired.append(("p", world.clock.uptime_us())))
    machine.Timer(1, mode=machine.Timer.ONE_SHOT, period=150,
                  callback=lambda t: fired.append(("o", world.clock.uptime_us())))
    world.clock.advance(350000)  # one jump: every timer inside it runs at its own time
    assert fired == [("p", 100000), ("o", 150000), ("p", 200000), ("p", 300000)]
    assert world.clock.uptime_us() == 350000
    periodic.deinit()
    machine.lightsleep(1000)
    assert len(fired) == 4
    machine.Timer(2, freq=20, callback=lambda t: fired.append("f"))
    machine.lightsleep()  # until the next timer
    assert fired[4:] == ["f"] and world.clock.uptime_us() == 1400000


def test_timer_ids_per_board():
    board("pico_w")
    with pytest.raises(ValueError, match="Timer doesn't exist"):
        machine.Timer(0)
    machine.Timer(-1)
    board("esp8266")
    machine.Timer(7)


PIN = machine.Pin
MISUSE = [
    ("esp32", lambda: PIN(20), ValueError, ("invalid pin",)),
    ("esp32", lambda: PIN("D4"), ValueError, ("invalid pin",)),
    ("esp32", lambda: PIN(36, PIN.OUT), ValueError, ("pin can only be input",)),
    ("esp32", lambda: machine.PWM(PIN(39)), OSError, (-258, "ESP_ERR_INVALID_ARG")),
    ("esp32", lambda: machine.ADC(PIN(5)), ValueError, ("invalid pin",)),
    ("esp32", lambda: machine.ADC(0).atten(4), ValueError, ("invalid attenuation",)),
    ("esp32", lambda: machine.WDT(timeout=0), ValueError, ("WDT timeout too short",)),
    ("esp32", lambda: machine.freq(100000000), ValueError,
     ("frequency must be 20MHz, 40MHz, 80Mhz, 160MHz or 240MHz",)),
    ("esp8266", lambda: PIN(6), ValueError, ("invalid pin",)),
    ("esp8266", lambda: PIN(16).irq(print), OSError, ("pin does not have IRQ capabilities",)),
    ("esp8266", lambda: PIN(16, PIN.IN, PIN.PULL_UP), ValueError,
     ("Pin(16) doesn't support pull",)),
    ("esp8266", lambda: PIN(4, PIN.IN, PIN.PULL_DOWN), AttributeError,
     ("type object 'Pin' has no attribute 'PULL_DOWN'",)),
    ("esp8266", lambda: machine.PWM(PIN(16)), ValueError, ("PWM not supported on pin 16",)),
    ("esp8266", lambda: machine.ADC(2), ValueError, ("ADC(2) doesn't exist",)),
    ("esp8266", lambda: machine.WDT(timeout=2000), ValueError, ()),
    ("pico_w", lambda: PIN(30), ValueError, ("invalid pin",)),
    ("pico_w", lambda: PIN("GP23"), ValueError, ('unknown named pin "GP23"',)),
    ("pico_w", lambda: machine.ADC(PIN(5)), ValueError, ("Pin doesn't have ADC capabilities",)),
    ("pico_w", lambda: PIN("LED").irq(print), ValueError, ("expecting a regular GPIO Pin",)),
    ("pico_w", lambda: machine.PWM(PIN("LED")), ValueError, ("expecting a regular GPIO Pin",)),
    ("pico_w", lambda: PIN("LED", PIN.IN, PIN.PULL_UP), ValueError,
     ("pulls are not supported for external pins",)),
    ("pico_w", lambda: machine.WDT(timeout=9000), ValueError, ("timeout exceeds 8388",)),
    ("pico_w", lambda: machine.WDT(1), ValueError, ("WDT(1) doesn't exist",)),
    ("linux_sbc", lambda: PIN(1), ValueError, ("invalid pin",)),
    ("linux_sbc", lambda: machine.PWM(PIN(17)), ValueError, ("no hardware PWM on pin 17",)),
    ("linux_sbc", lambda: machine.ADC(0), ValueError, ("no ADC on this board",)),
]


@pytest.mark.parametrize("name,call,error,args", MISUSE,
                         ids=["%s-%d" % (m[0], i) for i, m in enumerate(MISUSE)])
def test_misuse_fails_as_on_the_board(name, call, error, args):
    board(name)
    with pytest.raises(error) as raised:
        call()
    assert type(raised.value) is error and raised.value.args == args


def test_what_the_port_ignores_or_allows_is_logged():
    world = board("esp32")
    pin = Pin(34, Pin.IN, Pin.PULL_UP)  # no pull resistors on GPIO 34-39: ignored
    assert pin.value() == 0
    Pin(7)  # a flash pin: it exists, but using it stops the board
    world = board("pico_w")
    Pin(23, Pin.OUT)
    assert [event for _, _, event in world.log] == ["pin 23 is reserved: wireless power (WL_ON)"]


def test_the_watchdog_resets_the_device():
    world = board("esp32")
    led = parts.LED(2)
    Pin(2, Pin.OUT, value=1)
    wdt = machine.WDT(timeout=1000)
    for _ in range(5):
        world.clock.advance(900000)
        wdt.feed()
    caught_by_firmware = False
    with pytest.raises(pins.DeviceReset) as raised:
        try:
            world.clock.advance(5000000)  # e.g. inside time.sleep(5)
        except Exception:  # noqa: BLE001 - a reset must not be swallowed like this
            caught_by_firmware = True
    assert not caught_by_firmware
    reset = raised.value
    assert (reset.reason, reset.cause, reset.sleep_us) == ("watchdog", machine.WDT_RESET, None)
    assert world.clock.uptime_us() == 5500000  # the clock stops at the reset
    assert led.history[-1] == (5500000, 0)  # outputs let go
    assert machine.reset_cause() == machine.WDT_RESET
    world.clock.advance(10000000)  # the watchdog is gone with the reset


@pytest.mark.parametrize("name,reset_after,deepsleep_after", [
    ("esp32", "HARD_RESET", "DEEPSLEEP_RESET"), ("esp8266", "SOFT_RESET", "DEEPSLEEP_RESET"),
    ("pico_w", "WDT_RESET", "WDT_RESET"), ("linux_sbc", "HARD_RESET", "DEEPSLEEP_RESET")])
def test_resets_and_deepsleep(name, reset_after, deepsleep_after):
    world = board(name)
    assert machine.reset_cause() == machine.PWRON_RESET
    fired = []
    machine.Timer(-1, period=10, callback=fired.append)
    with pytest.raises(pins.DeviceReset) as raised:
        machine.deepsleep(60000)
    assert raised.value.sleep_us == 60000000
    assert raised.value.cause == getattr(machine, deepsleep_after) == machine.reset_cause()
    world.clock.advance(1000000)
    assert fired == []
    with pytest.raises(pins.DeviceReset) as raised:
        machine.reset()
    assert raised.value.cause == getattr(machine, reset_after)


def test_a_reset_ends_asyncio_run():
    board("esp32")

    async def firmware():
        await asyncio.sleep(0)
        try:
            machine.reset()
        except Exception:  # noqa: BLE001, S110 - firmware that catches everything
            pass

    with pytest.raises(pins.DeviceReset):
        asyncio.run(firmware())


def test_reset_constants_follow_the_board():
    board("esp8266")
    assert (machine.PWRON_RESET, machine.WDT_RESET, machine.DEEPSLEEP_RESET) == (0, 1, 5)
    board("pico_w")
    assert (machine.PWRON_RESET, machine.WDT_RESET) == (1, 3)
    with pytest.raises(AttributeError):
        machine.DEEPSLEEP_RESET  # noqa: B018 - the RP2 port has no such constant


def test_rtc_unique_id_and_freq():
    world = board("esp32")
    rtc = machine.RTC()
    rtc.datetime((2025, 3, 1, 0, 12, 30, 0, 0))
    world.clock.advance(90 * 1000000)
    assert rtc.datetime() == (2025, 3, 1, 5, 12, 31, 30, 0)  # a Saturday
    assert abs(world.clock.time() - 1740832290) < 1e-3  # time.time() follows the RTC
    assert machine.unique_id() == bytes.fromhex("a4cf12b3c4d5")
    world.machine["unique_id"] = b"\x01\x02\x03\x04\x05\x06"
    assert machine.unique_id() == b"\x01\x02\x03\x04\x05\x06"
    assert machine.freq() == 240000000
    machine.freq(80000000)
    assert machine.freq() == 80000000
    machine.idle()
    assert world.clock.uptime_us() == 90 * 1000000 + 1000


# The same scenarios on both interpreters.

def _deploy(root):
    """host_sim compiled to .mpy as it would be deployed; what does not compile is left out
    (host-only modules)."""
    for directory in ("host_sim", os.path.join("host_sim", "shims")):
        os.makedirs(os.path.join(root, directory), exist_ok=True)
        for name in os.listdir(os.path.join(ROOT, directory)):
            if name.endswith(".py"):
                subprocess.run([MPY_CROSS, "-o", os.path.join(root, directory, name[:-3] + ".mpy"),
                                os.path.join(ROOT, directory, name)], capture_output=True)
    subprocess.run([MPY_CROSS, "-o", os.path.join(root, "sim_pin_checks.mpy"),
                    os.path.join(HERE, "upy", "sim_pin_checks.py")], check=True)


@pytest.fixture(scope="module")
def deployed(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("board"))
    _deploy(root)
    return root


def _micropython(root, heap, script):
    proc = subprocess.run([MICROPYTHON, "-X", "heapsize=%d" % heap, "-c", script],
                          env=dict(os.environ, MICROPYPATH=root), cwd=root,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return proc.stdout


MEASURE = """
import gc, sys
gc.collect()
free = gc.mem_free()
sys.path.insert(0, %r)
import machine
from host_sim import boards, parts, world
world.install(world.World(boards.load(%r, %r)))
gc.collect()
print(free - gc.mem_free())
"""


def _heap(root, name):
    """The board's heap, doubled for the 64-bit unix port, plus what the simulator itself
    takes (its modules and the board profile): the device code gets the board's share."""
    shims = os.path.join(root, "host_sim", "shims")
    overhead = int(_micropython(root, 1 << 20, MEASURE % (shims, name, os.path.join(
        ROOT, "boards"))))
    return min(2 * boards.load(name)["heap_bytes"], 1 << 20) + overhead


@pytest.mark.parametrize("name", boards.NAMES)
def test_micropython_matches_cpython(deployed, name):
    shims = os.path.join(deployed, "host_sim", "shims")
    upy = _micropython(deployed, _heap(deployed, name),
                       "import sim_pin_checks; sim_pin_checks.main(%r, %r, %r)"
                       % (name, os.path.join(ROOT, "boards"), shims))
    proc = subprocess.run([sys.executable, os.path.join(HERE, "upy", "sim_pin_checks.py"), name,
                           os.path.join(ROOT, "boards"), shims],
                          env=dict(os.environ, PYTHONPATH=ROOT), cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    upy_rows = [json.loads(line) for line in upy.splitlines()]
    cpy_rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [row["scenario"] for row in upy_rows] == [
        "blink", "button", "adc", "pwm", "timers", "misuse", "chip_misuse", "watchdog",
        "sleeps", "chip"]
    for got, want in zip(upy_rows, cpy_rows):
        assert got == want
    rows = {row["scenario"]: row for row in upy_rows}
    assert rows["button"]["events"][:4] == [[100000, 0], [130000, 1], [200000, 0], [201000, 1]]
    assert rows["timers"]["fired"][:3] == [["p", 100000], ["p", 200000], ["o", 250000]]
    assert rows["watchdog"]["reset"][0] == "watchdog"
