"""In-process simulated devices: many Worlds in the pytest process on one virtual clock.

Firmware-style code (`import machine`, `import time`, asyncio) runs as asyncio tasks of a
Fleet; each task sees its own device's World (host_sim.world.current() per task).
"""
import asyncio
import json
import os
import shutil
import subprocess
import sys
import time

from host_sim import firmware_modules, pins
from host_sim import world as sim_world
from host_sim.clock import Clock
from host_sim.inprocess import InProcessDevice
from host_sim.sensors import Dht22
from host_sim.shims import machine
from host_sim.shims import time as vtime
from host_sim.world import World

WIFI = {"access_points": [{"ssid": "greenhouse", "password": "hunter2", "rssi": -48}],
        "associate_ms": 1500}


# ------------------------------------------------------------------ one World per task

def test_current_world_is_per_task_and_falls_back_to_the_installed_one():
    installed, first, second = World({}, Clock()), World({}, Clock()), World({}, Clock())
    seen = []

    async def as_device(world, label):
        sim_world.enter(world)
        for _ in range(3):
            seen.append((label, sim_world.current() is world))
            await asyncio.sleep(0)

    async def both():
        await asyncio.gather(as_device(first, "first"), as_device(second, "second"))
        return sim_world.current()

    previous = sim_world._current
    sim_world.install(installed)
    try:
        assert asyncio.run(both()) is installed  # the tasks' worlds stayed in the tasks
        assert sim_world.using(first, sim_world.current) is first
        assert sim_world.current() is installed
    finally:
        sim_world._current = previous
    assert len(seen) == 6 and all(ok for _, ok in seen)


# ------------------------------------------------------------------ isolation

ISOLATION_MAIN = """\
import asyncio, dht, machine, network, time
wlan = network.WLAN(network.STA_IF)
wlan.active(True)
wlan.connect('greenhouse', 'hunter2')
sensor = dht.DHT22(machine.Pin(4))
seen = []
async def main():
    led = machine.Pin(2, machine.Pin.OUT)
    period = 300 if machine.unique_id()[-1] & 1 else 200
    for n in range(10):
        led.value(n & 1)
        await asyncio.sleep(period / 1000)
        seen.append(led.value() == n & 1)
    sensor.measure()
    print('temperature', sensor.temperature(), 'wifi', wlan.isconnected())
asyncio.run(main())
"""


def test_two_devices_do_not_see_each_others_state(inprocess_device, fleet):
    a = inprocess_device("esp32", ISOLATION_MAIN, network=WIFI)
    b = inprocess_device("esp32", ISOLATION_MAIN, network=WIFI)
    a.attach("dht", 4, None, Dht22(temperature=18.5))
    b.attach("dht", 4, None, Dht22(temperature=31.0))
    fleet.run_for(1)
    b.set_link(False)
    a.call(machine.freq, 80000000)
    a.call(lambda: machine.RTC().datetime((2030, 6, 1, 0, 12, 0, 0, 0)))
    fleet.run_for(4)

    assert a.namespace["seen"] == [True] * 10 and b.namespace["seen"] == [True] * 10
    assert a.output == "temperature 18.5 wifi True\n"
    assert b.output == "temperature 31.0 wifi False\n"
    assert a.call(machine.unique_id) != b.call(machine.unique_id)
    assert (a.call(machine.freq), b.call(machine.freq)) == (80000000, 240000000)
    assert (a.call(vtime.localtime)[0], b.call(vtime.localtime)[0]) == (2030, 2025)
    # one instant for the whole fleet, counted from each device's own boot
    late = inprocess_device("esp32")
    assert a.clock.now_us == b.clock.now_us == late.clock.now_us == 5000000
    assert a.clock.uptime_us() == 5000000 and late.clock.uptime_us() == 0
    assert a.errors == b.errors == []


def test_devices_interleave_without_mixing_pins(fleet):
    async def toggler(pin_value):
        import machine
        pin = machine.Pin(5, machine.Pin.OUT)
        readings = []
        for _ in range(50):
            pin.value(pin_value)
            await asyncio.sleep(0.001)
            readings.append(pin.value())
        return readings

    devices = [fleet.add("pico_w", lambda v=i & 1: toggler(v)) for i in range(6)]
    fleet.run_for(1)
    for i, device in enumerate(devices):
        assert device.result == [i & 1] * 50


# ------------------------------------------------------------------ firmware in-process

BLINK_MAIN = """\
import asyncio, time
from machine import Pin
led = Pin(2, Pin.OUT)
async def main():
    start = time.ticks_ms()
    while True:
        led.toggle()
        print('toggle', time.ticks_diff(time.ticks_ms(), start))
        await asyncio.sleep(0.25)
asyncio.run(main())
print('never')
"""


def test_blink_runs_in_process_with_exact_timestamps(inprocess_device, fleet):
    device = inprocess_device("esp32", BLINK_MAIN, start=False)
    led = device.led(2)
    device.start()
    fleet.run_for(1)
    assert led.history == [(0, 0), (0, 1), (250000, 0), (500000, 1), (750000, 0),
                           (1000000, 1)]
    assert device.output.splitlines() == ["toggle %d" % ms for ms in (0, 250, 500, 750, 1000)]
    assert device.running and device.errors == []


IRQ_MAIN = """\
import machine, time
led = machine.Pin(2, machine.Pin.OUT, value=0)
presses = []
def pressed(pin):
    presses.append(time.ticks_ms())
    led.value(not led.value())
button = machine.Pin(0, machine.Pin.IN, machine.Pin.PULL_UP)
button.irq(pressed, machine.Pin.IRQ_FALLING)
ticks = []
def tick(timer):
    ticks.append(time.ticks_ms())
machine.Timer(0).init(period=400, mode=machine.Timer.PERIODIC, callback=tick)
"""


def test_irq_and_timer_code_runs_in_process_with_exact_timestamps(inprocess_device, fleet):
    device = inprocess_device("esp32", IRQ_MAIN)
    other = inprocess_device("esp32", IRQ_MAIN)
    led = device.led(2)
    button = device.button(0)
    fleet.run_for(0.3)
    button.click(50)   # pressed at 300 ms, released at 350 ms (the clock moves for all)
    fleet.run_for(0.65)
    button.press()     # 1000 ms
    fleet.run_for(0.1)
    button.release()
    fleet.run_for(0.1)

    assert device.namespace["presses"] == [300, 1000]
    assert led.history == [(0, 0), (300000, 1), (1000000, 0)]
    assert device.namespace["ticks"] == [400, 800, 1200]
    assert other.namespace["presses"] == [] and other.namespace["ticks"] == [400, 800, 1200]
    assert device.errors == other.errors == []


def test_coroutine_firmware_sees_micropython_time_names(fleet):
    async def main():
        import machine
        start = time.ticks_ms()
        time.sleep_ms(5)  # blocking: the clock moves, for every device
        await asyncio.sleep(1)
        return time.ticks_diff(time.ticks_ms(), start), len(machine.unique_id())

    device = fleet.add("esp8266", main)
    fleet.run_for(2)
    assert device.result == (1005, 4)
    assert "machine" in sys.modules and hasattr(time, "ticks_us")


def test_firmware_names_are_gone_once_the_fleet_closes():
    had_machine, had_ticks = "machine" in sys.modules, hasattr(time, "ticks_ms")
    with InProcessDevice("esp32", BLINK_MAIN) as device:
        device.run_for(0.5)
        assert sys.modules["machine"] is firmware_modules.shims()["machine"]
    assert ("machine" in sys.modules) == had_machine
    assert hasattr(time, "ticks_ms") == had_ticks


# ------------------------------------------------------------------ resets and errors

RESETS_MAIN = """\
import asyncio, machine, sys
print('boot', machine.reset_cause())
async def main():
    await asyncio.sleep(1)
    cause = machine.reset_cause()
    if cause == machine.PWRON_RESET:
        machine.reset()
    if cause == machine.HARD_RESET:
        sys.exit()
    if cause == machine.SOFT_RESET:
        machine.deepsleep(3000)
    machine.WDT(timeout=2000)
    await asyncio.sleep(60)
asyncio.run(main())
"""


def test_resets_end_one_device_and_boot_it_again(inprocess_device, fleet):
    device = inprocess_device("esp32", RESETS_MAIN)
    bystander = inprocess_device("esp32", BLINK_MAIN)
    fleet.run_for(9)
    assert [r.reason for r in device.resets] == ["reset", "soft_reset", "deepsleep",
                                                 "watchdog"]
    assert all(isinstance(r, pins.DeviceReset) for r in device.resets)
    # booted at 0, 1 s (reset), 2 s (sys.exit), 6 s (3 s deep sleep), 9 s (watchdog at 7 + 2)
    assert device.output.split() == ["boot", "1", "boot", "2", "boot", "5", "boot", "4",
                                     "boot", "3"]
    assert [t for t, source, event in device.world.log if event.startswith("reset")] == [
        1000000, 2000000, 3000000, 9000000]
    assert device.boots == 5 and device.errors == []
    assert bystander.output.count("toggle") == 37 and bystander.resets == []


def test_an_error_ends_one_device_only(fleet):
    async def broken():
        await asyncio.sleep(0.5)
        raise ValueError("sensor unplugged")

    async def steady():
        for _ in range(10):
            await asyncio.sleep(0.1)
        return "done"

    bad, good = fleet.add("esp32", broken), fleet.add("esp32", steady)
    assert fleet.run(asyncio.sleep(2, "host side")) == "host side"
    assert fleet.now == 2
    assert [str(e) for e in bad.errors] == ["sensor unplugged"] and not bad.running
    assert good.result == "done" and good.errors == []


# ------------------------------------------------------------------ a thousand devices

def periodic(index, results):
    """Device `index`: after index % 50 ms, blink every 400 + index % 17 * 25 ms, noting
    each ticks_ms(); beside it a machine.Timer every second."""
    async def main():
        import machine
        led = machine.Pin(2, machine.Pin.OUT)
        stamps, timer_ticks = [], []
        results[index] = stamps, timer_ticks
        machine.Timer(-1).init(period=1000, mode=machine.Timer.PERIODIC,
                               callback=lambda t: timer_ticks.append(time.ticks_ms()))
        await asyncio.sleep(index % 50 / 1000)
        while True:
            stamps.append(time.ticks_ms())
            led.toggle()
            await asyncio.sleep((400 + index % 17 * 25) / 1000)
    return main


def test_a_thousand_devices_run_a_virtual_minute(fleet):
    results = {}
    devices = [fleet.add("esp32", periodic(i, results)) for i in range(1000)]
    fleet.run_for(60)
    assert len(results) == 1000
    for index, device in enumerate(devices):
        stamps, timer_ticks = results[index]
        expected = list(range(index % 50, 60001, 400 + index % 17 * 25))
        assert stamps == expected, index
        assert timer_ticks == list(range(1000, 60001, 1000)), index
        assert device.world.pins[2].out == len(expected) & 1
        assert device.running and device.errors == [] and device.resets == []


# ------------------------------------------------------------------ the benchmark

def test_fleet_benchmark_reports(tmp_path):
    """The benchmark runs and reports; its numbers are read, not asserted."""
    out = tmp_path / "fleet.json"
    micropython = "2" if shutil.which("micropython") else ""
    bench = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bench", "bench_fleet.py")
    proc = subprocess.run([sys.executable, bench, "--inprocess", "20", "--micropython",
                           micropython, "--idle", "2", "--virtual", "5", "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(out.read_text())
    run = report["inprocess"]["runs"][0]
    assert run["devices"] == run["correct_devices"] == 20
    assert run["rss_kb_per_device"] >= 0 and "cpu_cores_per_device_at_real_speed" in run
    if micropython:
        run = report["micropython"]["runs"][0]
        assert run["devices"] == run["connected"] == run["alive"] == 2
        assert run["pss_kb_per_device"] > 0
    assert set(report["targets"]) == {"micropython", "inprocess"}
