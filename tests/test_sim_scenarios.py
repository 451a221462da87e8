"""Scenarios on simulated devices: the same firmware on both runtimes, watched from the host.

Each test puts firmware (main.py) on a device's flash, wires the device up with a scenario
(host_sim.scenario), starts it as a real process (the MicroPython unix port or CPython)
and observes it from the host: what it prints on its console, what its flash holds, and
its World through the control socket (device.world). Times the firmware prints are
virtual milliseconds since it started; histories are virtual microseconds since boot.
"""
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest

from host_sim import scenario
from host_sim.remote import RequestError
from host_sim.runner import SimError
from sim_checks import check_flash_after_cut

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GREENHOUSE = os.path.join(ROOT, "host_sim", "scenarios", "greenhouse.json")
RUNTIMES = ["micropython", "cpython"]
FAST = 25  # pace for tests: 25 virtual seconds a second keeps output small and waits short


def lines(device, pattern, count=1, since=0, timeout=20):
    """The groups of the first `count` matches of `pattern` printed after `since`."""
    deadline = time.monotonic() + timeout
    while True:
        found = re.findall(pattern, device.console.text(since))
        if len(found) >= count:
            return found[:count]
        if time.monotonic() > deadline:
            raise AssertionError("%d x %r not printed; the device printed: %s" % (
                count, pattern, device.console.text(since)[-1200:]))
        time.sleep(0.02)


# ------------------------------------------------------------------ blink

BLINK_MAIN = """\
import time
from machine import Pin, Timer
led = Pin(2, Pin.OUT)
toggles = [0]
def tick(timer):
    led.toggle()
    toggles[0] += 1
    if toggles[0] == 6:
        timer.deinit()
        print('blinked')
Timer(0, mode=Timer.PERIODIC, period=250, callback=tick)
while True:
    time.sleep_ms(1000)
"""


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_blink_has_exact_virtual_timestamps(sim_device, runtime):
    device = sim_device(runtime, scenario={
        "pace": FAST, "files": {"main.py": BLINK_MAIN},
        "peripherals": [{"part": "LED", "pin": 2, "name": "status"}]})
    lines(device, r"blinked")
    assert device.world.history(2) == [(0, 0), (250000, 1), (500000, 0), (750000, 1),
                                       (1000000, 0), (1250000, 1), (1500000, 0)]
    assert device.world.clock()["uptime_us"] >= 1500000
    with pytest.raises(RequestError, match="no LED or Relay on pin 4"):
        device.world.history(4)


# ------------------------------------------------------------------ sensors

SENSORS_MAIN = """\
import time
start = time.ticks_us()  # at boot: the drivers' set-up below takes bus time
import dht, ds18x20, onewire
from machine import ADC, Pin
import bme280
air = bme280.BME280(i2cBus=0, i2cAddr=0x76)
probes = ds18x20.DS18X20(onewire.OneWire(Pin(4)))
rom = probes.scan()[0]
hygro = dht.DHT22(Pin(15))
soil = ADC(Pin(34))
while True:
    probes.convert_temp()
    time.sleep_ms(750)
    t, h, p = air.readForced(pollSleep=0.01, tempOversampling=bme280.OVSMPL_16,
                             pressureOversampling=bme280.OVSMPL_16,
                             humidityOversampling=bme280.OVSMPL_16)
    hygro.measure()
    print('air %.2f %.0f %.1f probe %.3f dht %.1f %.1f' % (
        t, p, h * 100, probes.read_temp(rom), hygro.temperature(), hygro.humidity()))
    print('soil %d %d' % (time.ticks_diff(time.ticks_us(), start), soil.read_uv()))
    time.sleep_ms(1250)
"""
READING = r"air ([-\d.]+) (\d+) ([\d.]+) probe ([-\d.]+) dht ([-\d.]+) ([\d.]+)"


def wait_for_reading(device, air, probe, hygro, since=0):
    """The first reading printed after `since` that shows these values (air: temperature,
    Pa, %RH; probe: C; hygro: C, %RH) within each sensor's resolution."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        for found in re.findall(READING, device.console.text(since)):
            t, p, h, probe_t, dht_t, dht_h = map(float, found)
            if abs(t - air[0]) <= 0.02 and abs(p - air[1]) <= 3 and abs(h - air[2]) <= 7 \
                    and probe_t == probe and (dht_t, dht_h) == hygro:
                return found
        time.sleep(0.05)
    raise AssertionError("no reading of %r %r %r; the device printed: %s" % (
        air, probe, hygro, device.console.text(since)[-1200:]))


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_sensors_read_through_the_drivers_what_the_host_sets(sim_device, runtime,
                                                             bme280_driver):
    device = sim_device(runtime, files=dict(bme280_driver, **{"main.py": SENSORS_MAIN}),
                        scenario={"pace": FAST, "peripherals": [
                            {"part": "BME280", "name": "air", "bus": 0, "address": "0x76",
                             "temperature": 21.5, "pressure": 100000, "humidity": 40},
                            {"part": "DS18B20", "name": "probe", "pin": 4, "temperature": 18.25},
                            {"part": "DHT22", "pin": 15, "temperature": 24.3, "humidity": 61.0}],
                            "analog": [{"pin": 34, "points": [[0, 0.0], [20000, 2.0]]}]})
    wait_for_reading(device, (21.5, 100000, 40), 18.25, (24.3, 61.0))
    since = device.console.mark()
    device.world.set("i2c", 0, 0x76, temperature=25.0, pressure=98765.0, humidity=55.0)
    device.world.set("probe", temperature=-3.5)
    device.world.set("dht", 15, temperature=-1.2, humidity=33.3)
    wait_for_reading(device, (25.0, 98765, 55), -3.5, (-1.2, 33.3), since)

    # the soil sensor follows its ramp, 0.1 V per virtual second, at millivolt resolution
    for at_us, microvolts in lines(device, r"soil (\d+) (\d+)", count=2):
        assert int(microvolts) == min(2000, int(int(at_us) / 10000 + 0.5)) * 1000
    since = device.console.mark()
    device.world.voltage(34, shape="square", period_ms=4000, amplitude=0.5, offset=1.0)
    readings = lines(device, r"soil (\d+) (\d+)", count=4, since=since)
    later = [(int(t), int(uv)) for t, uv in readings[1:]]  # the first may predate the change
    assert all(uv == (1500000 if t % 4000000 < 2000000 else 500000) for t, uv in later)

    with pytest.raises(RequestError, match="no setting 'colour'"):
        device.world.set("probe", colour="red")
    with pytest.raises(RequestError, match="nothing attached at i2c 0 address 119"):
        device.world.set("i2c", 0, 0x77, temperature=1.0)


PROBE_MAIN = """\
import time, ds18x20, onewire
from machine import Pin
probes = ds18x20.DS18X20(onewire.OneWire(Pin(4)))
rom = probes.scan()[0]
while True:
    probes.convert_temp()
    time.sleep_ms(750)
    print('probe %.3f' % probes.read_temp(rom))
"""


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_what_the_host_sets_survives_a_reboot(sim_device, runtime):
    device = sim_device(runtime, scenario={
        "pace": FAST, "files": {"main.py": PROBE_MAIN},
        "peripherals": [{"part": "DS18B20", "name": "probe", "pin": 4, "temperature": 18.25}]})
    lines(device, r"probe 18\.250")
    device.world.set("onewire", 4, temperature=30.5)
    lines(device, r"probe 30\.500")
    since = device.console.mark()
    device.reset()
    assert lines(device, r"probe ([-\d.]+)", since=since) == ["30.500"]
    assert device.boots == 2


# ------------------------------------------------------------------ a button and its IRQ

BUTTON_MAIN = """\
import time
from machine import Pin
relay = Pin(5, Pin.OUT, value=0)
start = time.ticks_ms()
def pressed(pin):
    relay.value(1 - relay.value())
    print('pressed at', time.ticks_diff(time.ticks_ms(), start), 'relay', relay.value())
button = Pin(0, Pin.IN, Pin.PULL_UP)
button.irq(pressed, trigger=Pin.IRQ_FALLING)
print('armed')
while True:
    time.sleep_ms(100)
"""


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_button_press_from_the_host_fires_the_irq(sim_device, runtime):
    device = sim_device(runtime, scenario={
        "pace": FAST, "files": {"main.py": BUTTON_MAIN},
        "peripherals": [{"part": "Button", "pin": 0}, {"part": "Relay", "pin": 5}]})
    lines(device, r"armed")
    assert device.world.level(0) == 1  # the pull-up, released
    device.world.press(0)
    assert device.world.level(0) == 0
    (at_ms, relay), = lines(device, r"pressed at (\d+) relay (\d)")
    assert relay == "1"
    device.world.release(0)  # a rising edge: not what the handler waits for
    since = device.console.mark()
    device.world.click(0, ms=50)
    (again_ms, relay), = lines(device, r"pressed at (\d+) relay (\d)", since=since)
    assert relay == "0" and int(again_ms) > int(at_ms)
    history = device.world.history(5)
    assert [value for _, value in history] == [0, 1, 0]
    assert history[1][0] < history[2][0] <= device.world.uptime_us()
    assert "pressed" not in device.console.text(since).split("relay 0", 1)[1]


# ------------------------------------------------------------------ Wi-Fi fails, then recovers

WIFI_MAIN = """\
import network, socket, time
PORT = %d
wlan = network.WLAN(network.STA_IF)
wlan.active(True)
start = time.ticks_ms()
def now():
    return time.ticks_diff(time.ticks_ms(), start)
def join():
    while True:
        wlan.connect('greenhouse', 'hunter2')
        while wlan.status() == network.STAT_CONNECTING:
            time.sleep_ms(100)
        if wlan.isconnected():
            print('joined', now())
            return
        print('join failed', wlan.status() == network.STAT_WRONG_PASSWORD, now())
        time.sleep_ms(2000)
def report(n):
    s = socket.socket()
    s.connect(socket.getaddrinfo('127.0.0.1', PORT)[0][-1])
    while wlan.isconnected():
        n += 1
        try:
            s.send(b'tick %%d\\n' %% n)
        except OSError:
            break
        time.sleep_ms(1000)
    s.close()
    print('lost', now())
    return n
join()
n = 0
while True:
    n = report(n)
    while not wlan.isconnected():
        time.sleep_ms(100)
    print('back', now())
"""
WIFI_SCENARIO = {
    "pace": FAST,
    "network": {"access_points": [{"ssid": "greenhouse", "password": "hunter2"}],
                "associate_ms": 1000},
    "faults": [{"at_ms": 0, "fault": "wifi_fail", "status": "STAT_WRONG_PASSWORD", "count": 2},
               {"at_ms": 20000, "fault": "link_down"},
               {"at_ms": 26000, "fault": "link_up"}]}


def ticks(conn):
    """The tick numbers a connection carried until it ended."""
    data = b""
    try:
        while True:
            chunk = conn.recv(4096)
            if not chunk:
                break
            data += chunk
    except ConnectionResetError:
        pass
    conn.close()
    return [int(line.split()[1]) for line in data.decode().splitlines()]


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_wifi_fails_then_recovers_as_the_scenario_says(make_device, runtime):
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.settimeout(20)
        device = make_device(runtime, scenario=WIFI_SCENARIO)
        link = device.proxy(server.getsockname()[1])
        device.put_files({"main.py": WIFI_MAIN % link.port})
        device.start()
        first, _ = server.accept()
        first.settimeout(20)
        before = ticks(first)  # ends when the link goes down at 20 s
        second, _ = server.accept()
        second.settimeout(20)
        lines(device, r"back \d+")
        assert lines(device, r"join failed (\w+) (\d+)", count=2) == [("True", "1000"),
                                                                     ("True", "4000")]
        assert lines(device, r"joined (\d+)") == ["7000"]
        assert lines(device, r"lost (\d+)") == ["20000"]
        assert lines(device, r"back (\d+)") == ["27000"]  # up at 26 s, associated 1 s later
        assert before == list(range(1, 14))  # one a second from 7 s; the link dies at 20 s
        second.settimeout(5)
        assert second.recv(64).startswith(b"tick 14\n")
        second.close()
        assert link.connections == 2 and not link.is_cut
        faults = [(t, event) for t, source, event in device.world.log() if source == "fault"]
        assert faults == [(0, "wifi_fail"), (20000000, "link_down"), (26000000, "link_up")]


DROP_MAIN = """\
import network, socket, time
wlan = network.WLAN(network.STA_IF)
wlan.active(True)
wlan.connect('greenhouse', 'hunter2')
while not wlan.isconnected():
    time.sleep_ms(100)
n = 0
while True:
    n += 1
    s = socket.socket()
    try:
        s.connect(socket.getaddrinfo('127.0.0.1', %d)[0][-1])
        s.send(b'hello %%d\\n' %% n)
        while True:
            data = s.recv(64)
            if not data:
                break
            s.send(data)
    except OSError:
        pass
    s.close()
    print('dropped', n, wlan.isconnected())
    time.sleep_ms(200)
"""


def echo_time(conn, incoming):
    start = time.monotonic()
    conn.sendall(b"ping\n")
    assert incoming.readline() == b"ping\n"
    return time.monotonic() - start


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_dropped_connections_and_latency_in_real_time(make_device, runtime):
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.settimeout(20)
        device = make_device(runtime, scenario={
            "network": WIFI_SCENARIO["network"],
            "faults": [{"after_s": 0.5, "fault": "drop"},
                       {"after_s": 0.5, "fault": "latency", "ms": 150}]})
        link = device.proxy(server.getsockname()[1])
        device.put_files({"main.py": DROP_MAIN % link.port})
        device.start()
        first, _ = server.accept()
        first.settimeout(20)
        incoming = first.makefile("rb")
        assert incoming.readline() == b"hello 1\n"
        echo_time(first, incoming)
        assert ticks(first) == []  # the drop ends it; nothing else came
        assert lines(device, r"dropped (\d+) (\w+)") == [("1", "True")]  # the link stayed up
        second, _ = server.accept()
        second.settimeout(20)
        incoming = second.makefile("rb")
        assert incoming.readline() == b"hello 2\n"
        assert echo_time(second, incoming) >= 0.3  # 150 ms each way
        second.close()


# ------------------------------------------------------------------ power cuts

POWER_MAIN = """\
import machine, time
def number(name):
    try:
        with open(name) as f:
            return int(f.read())
    except OSError:
        return 0
boots = number('boots') + 1
with open('boots', 'w') as f:
    f.write(str(boots))
n = number('count')
print('boot', boots, 'cause', machine.reset_cause(), 'count', n)
while True:
    n += 1
    with open('data%d' % (n % 3), 'w') as f:
        for i in range(40):
            f.write('%d %d\\n' % (n, i))
    with open('count', 'w') as f:
        f.write(str(n))
    time.sleep_ms(10)
"""


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_power_cuts_from_the_fault_schedule(sim_device, runtime):
    device = sim_device(runtime, scenario={
        "files": {"main.py": POWER_MAIN},
        "faults": [{"after_s": 1.0, "fault": "power_cut", "off_s": 0.2},  # mid-write
                   {"boot": 2, "at_ms": 3000, "fault": "power_cut"}]})     # after 300 rounds
    boots = lines(device, r"boot (\d+) cause (\d+) count (\d+)", count=3)
    assert [boot[:2] for boot in boots] == [("1", "1"), ("2", "1"), ("3", "1")]  # PWRON_RESET
    assert int(boots[1][2]) > 0  # boot 1 wrote for a second of real time before its cut
    assert int(boots[2][2]) == int(boots[1][2]) + 300  # sleeps of 10 ms to 3 virtual s
    assert device.boots == 3
    device.power_cut()
    assert int(device.read_file("boots")) == 3
    assert check_flash_after_cut(device) >= int(boots[2][2])


# ------------------------------------------------------------------ when the device waits

ASYNCIO_MAIN = """\
import asyncio
from machine import Pin
async def main():
    pressed = asyncio.Event()
    Pin(0, Pin.IN, Pin.PULL_UP).irq(lambda pin: pressed.set(), trigger=Pin.IRQ_FALLING)
    reader, writer = await asyncio.open_connection('127.0.0.1', %d)
    async def echo():
        while True:
            writer.write(await reader.readline())
            await writer.drain()
    asyncio.create_task(echo())
    writer.write(b'hello\\n')
    await writer.drain()
    while True:  # no timer anywhere: asyncio waits on the socket, for real
        await pressed.wait()
        pressed.clear()
        writer.write(b'pressed\\n')
        await writer.drain()
asyncio.run(main())
"""


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_requests_are_served_while_asyncio_waits_on_a_socket(sim_device, runtime):
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.settimeout(20)
        device = sim_device(runtime, scenario={
            "files": {"main.py": ASYNCIO_MAIN % server.getsockname()[1]},
            "peripherals": [{"part": "Button", "pin": 0}]})
        conn, _ = server.accept()
        conn.settimeout(20)
        incoming = conn.makefile("rb")
        assert incoming.readline() == b"hello\n"
        conn.sendall(b"echo\n")
        assert incoming.readline() == b"echo\n"
        first = device.world.uptime_us()
        time.sleep(0.2)
        assert device.world.uptime_us() > first  # real waits move the clock in real time
        device.world.click(0)
        assert incoming.readline() == b"pressed\n"
        conn.close()


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_pacing_holds_virtual_time_to_real_time(make_device, runtime):
    device = make_device(runtime, {"main.py": "import time\nwhile True:\n    time.sleep(3600)\n"},
                         pace=2)
    started = time.monotonic()
    device.start()
    time.sleep(0.5)
    uptime = device.world.uptime_us()  # answered while the device sleeps its hour
    assert 0 < uptime <= 2 * (time.monotonic() - started) * 1000000


# ------------------------------------------------------------------ the pieces

def test_scenario_errors_say_where(tmp_path):
    with pytest.raises(scenario.ScenarioError, match=r"peripherals\[0\]\.pin: the esp32 has no pin 40"):
        scenario.check({"board": "esp32", "peripherals": [{"part": "LED", "pin": 40}]})
    with pytest.raises(scenario.ScenarioError, match=r"faults\[0\]: give one of at_ms"):
        scenario.check({"board": "esp32", "faults": [{"fault": "drop"}]})
    with pytest.raises(scenario.ScenarioError, match=r"faults\[0\]\.fault: one of power_cut"):
        scenario.check({"board": "esp32", "faults": [{"fault": "fire", "at_ms": 1}]})
    with pytest.raises(scenario.ScenarioError, match=r"analog\[0\]\.shape: one of sine"):
        scenario.check({"board": "esp32", "analog": [{"pin": 34, "shape": "zigzag",
                                                      "period_ms": 5}]})
    with pytest.raises(scenario.ScenarioError, match=r"^colour: unknown key"):
        scenario.check({"board": "esp32", "colour": "red"})
    path = tmp_path / "two.json"
    path.write_text(json.dumps({"board": "esp32", "pace": 1, "devices": [
        {"name": "a"}, {"name": "b", "peripherals": [{"part": "BME280", "bus": 7}]}]}))
    with pytest.raises(scenario.ScenarioError, match=r"devices\[1\]\.peripherals"):
        scenario.load(str(path))


def test_a_checked_scenario_has_its_defaults(tmp_path):
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "util.py").write_text("X = 1\n")
    (tmp_path / "main.py").write_text("print(1)\n")
    path = tmp_path / "one.json"
    path.write_text(json.dumps({
        "board": "pico_w", "files": {"main.py": {"from": "main.py"}, "/lib": {"from": "lib"}},
        "peripherals": [{"part": "BMP280", "address": "0x77"}],
        "faults": [{"fault": "wifi_fail", "at_ms": 0}, {"fault": "power_cut", "after_s": 2}]}))
    (spec,) = scenario.load(str(path))
    assert spec["files"] == {"main.py": b"print(1)\n", "/lib/util.py": b"X = 1\n"}
    assert spec["peripherals"] == [{"part": "BMP280", "address": 0x77, "bus": 0}]
    assert spec["faults"][0] == {"fault": "wifi_fail", "at_ms": 0, "boot": 1,
                                 "status": 203, "count": 1}  # STAT_ASSOC_FAIL
    assert spec["faults"][1]["off_s"] == 0
    assert scenario.check(spec) == spec
    assert scenario.device_config(spec, 1)["faults"] == [spec["faults"][0]]
    assert scenario.timed_faults(spec, 1) == [spec["faults"][1]]
    assert scenario.timed_faults(spec, 2) == []


def test_waveforms():
    sine = scenario.waveform({"shape": "sine", "period_ms": 1000, "amplitude": 2.0,
                              "offset": 1.0})
    assert [round(sine(t), 6) for t in (0, 250000, 500000, 750000)] == [1.0, 3.0, 1.0, -1.0]
    square = scenario.waveform({"shape": "square", "period_ms": 10, "phase_ms": 5})
    assert (square(0), square(5000)) == (-1.0, 1.0)
    triangle = scenario.waveform({"shape": "triangle", "period_ms": 4})
    assert [triangle(t) for t in (0, 1000, 2000, 3000)] == [-1.0, 0.0, 1.0, 0.0]
    saw = scenario.waveform({"shape": "sawtooth", "period_ms": 2, "offset": 1.0})
    assert [saw(t) for t in (0, 1000, 2000)] == [0.0, 1.0, 0.0]
    assert scenario.waveform({"points": [[0, 0.0], [2, 1.0]]}) == [(0, 0.0), (2000, 1.0)]


def test_a_device_that_is_off_does_not_answer(make_device):
    device = make_device("cpython", scenario={"peripherals": [{"part": "LED", "pin": 2}]})
    with pytest.raises(SimError, match="did not boot"):
        device.request("clock", timeout=0.2)
    with pytest.raises(SimError, match=r"fault\.ms: a number"):
        device.fault("latency")


# ------------------------------------------------------------------ the example

@pytest.mark.parametrize("runtime", RUNTIMES)
def test_the_greenhouse_example_runs(make_device, runtime):
    (spec,) = scenario.load(GREENHOUSE)
    device = make_device(runtime, scenario=spec, pace=100)
    device.start()
    found = lines(device, r"reading (\d+) soil ([\d.]+)C air ([\w.]+) humidity ([\d.]+)%",
                  count=2)
    assert found[0][1] == "16.50" and found[0][3] == "58.0"
    lines(device, r"wifi up")
    device.world.set("soil", temperature=12.0)
    lines(device, r"soil 12.00C", since=0)


def test_jotunheim_sim_says_where_a_scenario_is_wrong(tmp_path, capsys):
    from jotunheim_host.cli import main
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"board": "esp32", "faults": [{"fault": "power_cut",
                                                              "at_ms": -5}]}))
    assert main(["sim", "--scenario", str(path)]) == 2
    assert "faults[0].at_ms: -5 is out of range (>= 0)" in capsys.readouterr().err


def test_jotunheim_sim_runs_the_greenhouse_example(tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.path.join(ROOT, "tools")]))
    sim = subprocess.Popen(
        [sys.executable, "-m", "jotunheim_host.cli", "--format", "json", "sim", "--scenario",
         GREENHOUSE, "--runtime", "cpython", "--pace", "50", "--root", str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        text = ""
        for line in sim.stdout:  # the table, as pretty-printed JSON
            text += line
            if line.startswith("]"):
                break
        rows = json.loads(text)
        assert [row["name"] for row in rows] == ["greenhouse"]
        assert rows[0]["runtime"] == "cpython"
        sim.send_signal(signal.SIGINT)
        assert sim.wait(30) == 0
    finally:
        if sim.poll() is None:
            sim.kill()
            sim.wait()
