"""Tool calls under load and faults on simulated devices (both runtimes): concurrency,
queue, deadlines, cancellation, retries, link loss, watchdog, reboots, duty cycle, Wi-Fi."""
import asyncio
import time

import pytest

from agent_support import (RUNTIMES, RawPeer, console_lines, console_lines_async, free_port,
                           install, run)
from jotunheim_host.controller import CallError, Hub, connect

COUNTER = """\
import time
from jotunheim import port
count = 0


async def bump(ms):
    global count
    count += 1
    mine = count
    await port.sleep_ms(ms)
    return mine


def total():
    return count


def wedge(s):
    time.sleep(s)  # blocks the whole device, as a badly written tool would
"""
COUNTER_TOOLS = {"tools": [
    {"name": "bump", "parameters": [{"name": "ms", "type": "int", "default": 0}],
     "returns": {"type": "int"}, "bind": {"module": "counter", "function": "bump"}},
    {"name": "total", "returns": {"type": "int"},
     "bind": {"module": "counter", "function": "total"}},
    {"name": "wedge", "parameters": [{"name": "s", "type": "int"}],
     "bind": {"module": "counter", "function": "wedge"}},
]}
WIFI = {"access_points": [{"ssid": "greenhouse", "password": "hunter2", "rssi": -48}],
        "associate_ms": 1500}


def counting_device(make_device, runtime, settings, **options):
    device = make_device(runtime, **options)
    return install(device, settings, tools=COUNTER_TOOLS, files={"lib/counter.py": COUNTER})


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_concurrency_queue_deadline_and_cancel(make_device, runtime):
    port = free_port()
    device = counting_device(make_device, runtime, {
        "agent.mode": "listen", "agent.listen_port": port, "calls.concurrency": 2,
        "calls.queue": 1})
    device.start()
    console_lines(device, "listening")

    async def scenario():
        d = await connect("tcp://127.0.0.1:%d" % port, reconnect=False)
        calls = [d.submit("bump", ms=400) for _ in range(4)]
        results = await asyncio.gather(*(c.result() for c in calls), return_exceptions=True)
        refused = [r for r in results if isinstance(r, CallError)]
        assert len(refused) == 1 and refused[0].status_name == "RESOURCE_EXHAUSTED"
        assert sorted(r for r in results if isinstance(r, int)) == [1, 2, 3]

        with pytest.raises(CallError) as e:
            await d.call("bump", ms=5000, deadline_ms=300)
        assert e.value.status_name == "DEADLINE_EXCEEDED"

        slow = d.submit("bump", ms=5000)
        await asyncio.sleep(0.3)
        await slow.cancel()
        with pytest.raises(CallError) as e:
            await slow.result()
        assert e.value.status_name == "CANCELLED"
        assert await d.call("total") == 5           # every call ran exactly once
        assert await d.call("bump") == 6            # and the device is free again

        # the link goes while a call runs: a controller that will not dial again says so
        # at once (the timeout is far longer than this test may take)
        slow = d.submit("bump", ms=60000, timeout=3600)
        await asyncio.sleep(0.3)
        device.power_cut()
        with pytest.raises(CallError) as e:
            await slow.result()
        assert e.value.status_name == "UNAVAILABLE" and "may have run" in e.value.message
        await d.close()
    run(scenario())


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_retried_request_id_is_answered_not_run_again(make_device, runtime):
    port = free_port()
    device = counting_device(make_device, runtime, {"agent.mode": "listen",
                                                    "agent.listen_port": port})
    device.start()
    console_lines(device, "listening")
    call = {"request_id": 5, "tool_name": "bump", "args": {"ms": 300}}
    raw = RawPeer(port)
    raw.hello(device_id="ctl-a")
    raw.send("ToolCall", call)
    raw.send("ToolCall", call)                     # while it runs: one answer for both
    first = raw.receive("ToolResult")[1]
    assert first["value"] == 1
    raw.send("Ping", {"seq": 1})
    assert raw.receive()[0] == "Pong"
    raw.send("ToolCall", call)                     # after it ran
    assert raw.receive("ToolResult")[1] == first
    raw.close()

    raw = RawPeer(port)                            # the same controller, reconnected
    raw.hello(device_id="ctl-a")
    raw.send("ToolCall", call)
    assert raw.receive("ToolResult")[1] == first
    raw.close()

    raw = RawPeer(port)                            # another controller's request 5
    raw.hello(device_id="ctl-b")
    raw.send("ToolCall", call)
    assert raw.receive("ToolResult")[1]["value"] == 2
    raw.send("ToolCall", {"request_id": 6, "tool_name": "total"})
    assert raw.receive("ToolResult")[1]["value"] == 2
    raw.close()


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_link_loss_during_calls_loses_nothing_and_runs_nothing_twice(make_device, runtime):
    async def scenario():
        async with Hub() as hub:
            device = make_device(runtime)
            link = device.proxy(hub.port)
            counting_device(lambda *a, **k: device, runtime, {
                "agent.controller": "127.0.0.1:%d" % link.port,
                "agent.reconnect_min_s": 0.2, "agent.reconnect_max_s": 1})
            device.start()
            d = await hub.device()
            calls = [d.submit("bump", ms=1500) for _ in range(3)]
            await asyncio.sleep(0.5)                 # all three are running
            device.fault("link_down")
            await d.next_event("disconnected")
            late = d.submit("bump", ms=0)            # made while the link is down
            await asyncio.sleep(1.0)
            device.fault("link_up")
            results = await asyncio.gather(*(c.result() for c in calls + [late]))
            assert sorted(results) == [1, 2, 3, 4]   # every call answered ...
            assert await d.call("total") == 4        # ... and run once
            assert d.connections == 2

            device.power_cut()                       # a device that never comes back
            with pytest.raises(CallError) as e:
                await d.call("bump", timeout=1.5)
            assert e.value.status_name == "UNAVAILABLE" and "link" in e.value.message
    run(scenario())


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_watchdog_resets_a_wedged_device_but_not_an_idle_one(make_device, runtime):
    async def scenario():
        async with Hub() as hub:
            device = counting_device(make_device, runtime, {
                "agent.controller": "127.0.0.1:%d" % hub.port, "watchdog.timeout_s": 2,
                "agent.heartbeat_s": 1})
            device.start()
            d = await hub.device()
            assert await d.call("bump", ms=6000, timeout=15) == 1  # waiting is healthy
            assert device.boots == 1
            wedged = d.submit("wedge", s=10)
            await d.next_event("disconnected", timeout=20)
            await d.wait_connected(timeout=20)           # it came back by itself
            assert device.boots == 2
            assert await d.call("total") == 0            # a fresh boot
            assert (await d.call("device_info"))["sessions"] == 1
            with pytest.raises(CallError) as e:          # reported failed, not re-run
                await wedged.result()
            assert e.value.status_name == "ABORTED" and "restarted" in e.value.message
    run(scenario())


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_reboot_tool_says_goodbye_and_the_device_returns(make_device, runtime):
    async def scenario():
        async with Hub() as hub:
            device = make_device(runtime)
            install(device, {"agent.controller": "127.0.0.1:%d" % hub.port})
            device.start()
            d = await hub.device()
            assert await d.call("device_reboot", delay_ms=100) is None
            name, reason = await d.next_event("disconnected")
            assert "rebooting" in reason
            await d.wait_connected(timeout=20)
            assert device.boots == 2 and d.connections == 2
    run(scenario())


async def awake_report(device):
    while True:
        name, record = await device.next_event("LogRecord")
        if record["source"] == "power":
            assert record["message"] == "awake"
            return record


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_duty_cycle_reports_sleeps_and_takes_calls_made_while_asleep(make_device, runtime):
    async def scenario():
        async with Hub() as hub:
            device = make_device(runtime)
            install(device, {"agent.controller": "127.0.0.1:%d" % hub.port,
                             "power.mode": "duty", "power.awake_s": 1, "power.sleep_s": 30})
            device.start()
            d = await hub.device()
            record = await awake_report(d)
            assert record["fields"]["sleep_ms"] == 30000
            assert record["fields"]["wake"] == "power on"
            name, reason = await d.next_event("disconnected")
            assert d.asleep_until is not None and "sleeping" in reason
            answer = await d.call("device_echo", value="queued while asleep", timeout=30)
            assert answer == "queued while asleep"
            assert device.boots >= 2
            assert (await awake_report(d))["fields"]["wake"] == "timer"
    run(scenario())


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_wifi_join_retries_then_connects(make_device, runtime):
    async def scenario():
        async with Hub() as hub:
            device = make_device(runtime, network=dict(
                WIFI, failures=["STAT_WRONG_PASSWORD", "STAT_NO_AP_FOUND"]))
            install(device, {"agent.controller": "127.0.0.1:%d" % hub.port,
                             "wifi.ssid": "greenhouse", "wifi.password": "hunter2",
                             "agent.reconnect_min_s": 0.5})
            device.start()
            d = await hub.device(timeout=30)
            assert d.connected
            await console_lines_async(device, r"cannot join greenhouse", count=2)
            await console_lines_async(device, r"joined greenhouse as 192\.168\.")
    run(scenario())


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_serial_transport_through_a_host_serial_port(make_device, runtime):
    device = make_device(runtime, serial=[2])
    install(device, {"agent.transport": "uart", "agent.uart_id": 2}, tools=COUNTER_TOOLS,
            files={"lib/counter.py": COUNTER})
    device.start()
    console_lines(device, r"serving on UART 2")
    url = "serial://%s?baud=115200" % device.serial_port(2)

    async def scenario():
        d = await connect(url, reconnect=False)
        assert d.hello["device_id"] == "esp32-a4cf12b3c4d5"
        caps = await d.capabilities()
        assert "bump" in [t["name"] for t in caps["tools"]]
        assert await asyncio.gather(*(d.call("bump", ms=50) for _ in range(3))) != []
        assert await d.call("device_echo", value=bytes(range(256))) == bytes(range(256))
        await d.close()
        again = await connect(url, reconnect=False)     # a new host session on the line
        assert await again.call("total") == 3
        await again.close()
    run(scenario())


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_sleeping_listener_is_dialed_again_when_it_wakes(make_device, runtime):
    port = free_port()
    device = make_device(runtime)
    install(device, {"agent.mode": "listen", "agent.listen_port": port, "power.mode": "duty",
                     "power.awake_s": 1.5, "power.sleep_s": 4})
    device.start()
    console_lines(device, "listening on port")

    async def scenario():
        d = await connect("tcp://127.0.0.1:%d" % port)
        assert (await awake_report(d))["fields"]["sleep_ms"] == 4000
        name, reason = await d.next_event("disconnected", timeout=10)
        assert "sleeping" in reason and d.asleep_until is not None
        asleep_until = d.asleep_until
        answer = d.submit("device_echo", value="after the nap", timeout=20)
        name, hello = await d.next_event("connected", timeout=20)
        assert d.connections == 2
        assert time.monotonic() >= asleep_until   # no attempt while it slept
        assert await answer.result() == "after the nap"
        await d.close()
    run(scenario())
