"""Fenrir, the scripts' hardware: the sensors of a simulated board (DHT22, DS18B20,
BME280) read back as the scenario and the test set them, LEDs and relays, the parts of
/wiring.json, SPI, and a UART wired to a host pseudo-terminal; on both runtimes."""
import json

import pytest
import serial

from agent_support import RUNTIMES, console_lines, free_port, install, run
from jotunheim_host.controller import connect
from test_loki import device_url, param, refused, registered

SCENARIO = {"board": "esp32", "peripherals": [
    {"part": "BME280", "name": "air", "bus": 0, "address": "0x76", "temperature": 23.5,
     "pressure": 100800, "humidity": 64},
    {"part": "DS18B20", "name": "soil", "pin": 4, "temperature": 16.5},
    {"part": "DHT22", "name": "shade", "pin": 15, "temperature": 21.0, "humidity": 58.0},
    {"part": "LED", "name": "status", "pin": 2},
    {"part": "Relay", "name": "pump", "pin": 5, "active_low": True}]}
WIRING = {"parts": [
    {"part": "BME280", "name": "air", "bus": 0, "address": "0x76"},
    {"part": "DS18B20", "name": "soil", "pin": 4},
    {"part": "DHT22", "name": "shade", "pin": 15},
    {"part": "Relay", "name": "pump", "pin": 5, "active_low": True}]}

HARDWARE = """\
async def run(ctx, action, on=True):
    f = ctx.fenrir
    if action == "sensors":
        return {"dht": f.dht22(15), "probes": await f.ds18b20(4), "air": await f.bme280(0)}
    if action == "named":
        await ctx.sleep_ms(2100)           # a DHT22 measures at most every 2 s
        return {"air": await f.read("air"), "shade": await f.read("shade"),
                "parts": [p["name"] for p in f.parts()]}
    if action == "switch":
        return [f.led(2, on), f.switch("pump", on)]
    if action == "spi":
        return list(f.spi_transfer(2, [0xD0, 0x00], cs=21))
    if action == "uart":
        f.uart_write(2, "ping\\n")
        return await f.uart_read(2, 5, timeout_ms=5000)
    if action == "missing":
        return await f.read("nothing")
    return await f.read("pump")
"""


def started(make_device, runtime, files=None):
    port = free_port()
    device = make_device(runtime, scenario=SCENARIO, serial=[2])
    install(device, {"agent.mode": "listen", "agent.listen_port": port}, files=files)
    device.start()
    console_lines(device, r"listening on port")
    return device, port


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_sensors_actuators_buses_and_wiring(make_device, runtime):
    device, port = started(make_device, runtime, {"/wiring.json": json.dumps(WIRING)})
    line = serial.serial_for_url(device.serial_port(2), baudrate=115200, timeout=10)

    async def scenario():
        d = await connect(device_url(port), reconnect=False)
        await registered(d, "hw", HARDWARE, parameters=[
            param("action", "string", required=True), param("on", "bool", default=True)])
        got = await d.call("Script_hw", action="sensors")
        assert got["dht"]["temperature"] == pytest.approx(21.0, abs=0.1)
        assert got["dht"]["humidity"] == pytest.approx(58.0, abs=0.1)
        assert len(got["probes"]) == 1 and len(got["probes"][0]["rom"]) == 16
        assert got["probes"][0]["rom"].startswith("28")           # the DS18B20 family code
        assert got["probes"][0]["temperature"] == pytest.approx(16.5, abs=0.07)
        assert got["air"]["temperature"] == pytest.approx(23.5, abs=0.05)
        assert got["air"]["pressure"] == pytest.approx(100800, abs=20)
        assert got["air"]["humidity"] == pytest.approx(64, abs=0.5)

        device.world.set("dht", 15, temperature=-4.5, humidity=91.0)   # the world changes
        device.world.set("i2c", 0, 0x76, temperature=30.0, pressure=95000)
        named = await d.call("Script_hw", action="named")
        assert named["shade"]["temperature"] == pytest.approx(-4.5, abs=0.1)
        assert named["shade"]["humidity"] == pytest.approx(91.0, abs=0.1)
        assert named["air"]["temperature"] == pytest.approx(30.0, abs=0.05)
        assert named["air"]["pressure"] == pytest.approx(95000, abs=20)
        assert named["parts"] == ["air", "soil", "shade", "pump"]

        assert await d.call("Script_hw", action="switch", on=True) == [1, 0]   # active low
        assert device.world.level(2) == 1 and device.world.level(5) == 0
        assert await d.call("Script_hw", action="switch", on=False) == [0, 1]
        assert device.world.level(2) == 0 and device.world.level(5) == 1

        assert await d.call("Script_hw", action="spi") == [0xFF, 0xFF]   # nothing on SPI 2

        call = d.call("Script_hw", action="uart")
        import asyncio
        task = asyncio.ensure_future(call)
        assert await asyncio.get_running_loop().run_in_executor(None, line.readline) \
            == b"ping\n"
        line.write(b"pong!")
        assert await task == b"pong!"

        status, message = await refused(d.call("Script_hw", action="missing"))
        assert status == "INVALID_ARGUMENT" and "no part 'nothing' in wiring.json" in message
        status, message = await refused(d.call("Script_hw", action="not a sensor"))
        assert status == "INVALID_ARGUMENT" and "pump is a Relay, not a sensor" in message
        children = {c["name"]: c for c in (await d.request("ChildrenStatusRequest", {}))[
            "children"]}
        assert children["Fenrir"]["errors"] == 2
        await d.close()
    try:
        run(scenario())
    finally:
        line.close()
