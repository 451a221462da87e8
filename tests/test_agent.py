"""The device agent on simulated devices (both runtimes): sessions, authentication,
bad input, configuration and settings. Calls, faults and power are in test_agent_calls.py."""
import asyncio
import json

import pytest

from agent_support import (KEY, RUNTIMES, RawPeer, console_lines, console_lines_async, free_port,
                           install, listening, run)
from jotunheim_host.controller import CallError, ConnectError, Hub, connect

LAMP_TOOLS = {"tools": [
    {"name": "lamp", "description": "Switch the lamp on GPIO 2",
     "parameters": [{"name": "value", "type": "bool", "description": "light or not"}],
     "returns": {"type": "null"}, "bind": {"op": "pin_write", "args": {"pin": 2}}},
    {"name": "twice", "description": "Double a number",
     "parameters": [{"name": "x", "type": "int", "minimum": 0, "maximum": 1000}],
     "returns": {"type": "int"}, "bind": {"module": "mytools", "function": "twice"}},
]}
MYTOOLS = "def twice(x):\n    return 2 * x\n"


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_dial_hello_capabilities_and_calls(make_device, runtime):
    async def scenario():
        async with Hub() as hub:
            device = make_device(runtime)
            install(device, {"agent.controller": "127.0.0.1:%d" % hub.port},
                    tools=LAMP_TOOLS, files={"lib/mytools.py": MYTOOLS})
            device.start()
            d = await hub.device("esp32-a4cf12b3c4d5")
            assert d.hello["device_type"] == 1 and d.hello["firmware_version"] == "0.1.0"
            assert not d.hello["auth_required"]
            caps = await d.capabilities()
            names = {t["name"]: t for t in caps["tools"]}
            assert {"lamp", "twice", "pin_read", "device_info"} <= set(names)
            assert names["lamp"]["kind"] == 2 and names["pin_read"]["kind"] == 1
            assert names["twice"]["parameters"][0]["maximum"] == 1000
            ids = [t["id"] for t in caps["tools"]]
            assert len(set(ids)) == len(ids) and 0 not in ids
            assert caps["device"]["board"] == "esp32"
            assert 34 in caps["hardware"]["gpio"]["input_only"]
            assert "I2C" in caps["hardware"]["interfaces"]
            assert caps["resources"]["max_concurrent_tools"] == 4

            assert await d.call("lamp", value=True) is None      # by id (caps are cached)
            assert device.world.level(2) == 1
            assert await d.call("lamp", False) is None        # positional
            assert device.world.level(2) == 0
            assert await d.call("twice", 21) == 42             # a module on the flash
            assert await d.call("device_echo", value=[1, "two", {"3": b"\x04"}, None, 2.5]) \
                == [1, "two", {"3": b"\x04"}, None, 2.5]
            for call, status, text in (
                    (d.call("nope"), "NOT_FOUND", "no tool nope"),
                    (d.call("twice", x=2000), "INVALID_ARGUMENT", "maximum"),
                    (d.call("twice", x="3"), "INVALID_ARGUMENT", "expected int"),
                    (d.call("lamp"), "INVALID_ARGUMENT", "missing argument"),
                    (d.call("pin_write", pin=34, value=1), "INVALID_ARGUMENT", "pin_write")):
                with pytest.raises(CallError) as e:
                    await call
                assert e.value.status_name == status and text in e.value.message
            info = await d.call("device_info")
            assert info["id"] == "esp32-a4cf12b3c4d5" and info["sessions"] == 1
            if runtime == "micropython":
                assert 0 < info["free_memory"] < 2 * 112640
    run(scenario())


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_authentication(make_device, runtime):
    device, port = listening(make_device, runtime, {"auth.key": KEY})
    url = "tcp://127.0.0.1:%d" % port

    # before authentication a peer learns the identity and nothing else
    raw = RawPeer(port)
    raw.hello()
    name, hello = raw.receive()
    assert name == "Hello" and hello["auth_required"] and hello["device_id"]
    name, challenge = raw.receive()
    assert name == "AuthChallenge" and challenge["algorithm"] == "HMAC-SHA256"
    assert len(challenge["nonce"]) >= 16
    raw.send("CapabilitiesRequest", {"request_id": 7})
    raw.send("ToolCall", {"request_id": 8, "tool_name": "device_info"})
    for request_id in (7, 8):
        name, error = raw.receive()
        assert name == "Error" and error["status"] == 16 and error["request_id"] == request_id
    raw.send("AuthResponse", {"mac": bytes(32), "client_nonce": bytes(16)})
    name, result = raw.receive()
    assert name == "AuthResult" and result["status"] == 7 and not result["mac"]
    assert raw.closed()

    async def scenario():
        with pytest.raises(ConnectError, match="refused the key"):
            await connect(url, key="ff" * 32, reconnect=False)
        with pytest.raises(ConnectError, match="requires a key"):
            await connect(url, reconnect=False)
        d = await connect(url, key=KEY, reconnect=False)
        assert await d.call("device_echo", value="in") == "in"
        values = await d.settings("auth.key", "agent.mode")
        assert values == {"auth.key": "***", "agent.mode": "listen"}
        await d.close()
    run(scenario())


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_bad_frames_get_errors_and_the_device_keeps_serving(make_device, runtime):
    device, port = listening(make_device, runtime)
    raw = RawPeer(port)
    raw.send("CapabilitiesRequest", {"request_id": 1})  # not Hello first
    name, fields = raw.receive("Error")
    assert fields["status"] == 9 and "Hello" in fields["message"]
    assert raw.closed()

    raw = RawPeer(port)
    raw.hello(version_min=2, version_max=3)
    name, fields = raw.receive("Error")
    assert fields["status"] == 9 and fields["message_type"] == 1
    assert raw.closed()

    raw = RawPeer(port)
    raw.hello()
    assert raw.receive()[0] == "Hello"
    raw.send_raw(protocol_frame(16, b"\x0a\x05ab"))         # a ToolCall that does not decode
    name, fields = raw.receive("Error")
    assert fields["status"] == 3 and fields["message_type"] == 16
    raw.send_raw(protocol_frame(99, b"\x08\x05"))           # a type nobody knows
    name, fields = raw.receive("Error")
    assert fields["status"] == 12 and fields["message_type"] == 99
    raw.send("OtaStatusRequest", {"request_id": 5})        # known, not served here
    name, fields = raw.receive("Error")
    assert (fields["status"], fields["request_id"]) == (12, 5)
    raw.send("Ping", {"seq": 3, "time_ms": 77})            # the connection still works
    assert raw.receive("Pong")[1] == {"seq": 3, "time_ms": 77}
    raw.send_raw(b"\x00\x01\x02")                           # broken framing: closed
    assert raw.closed()

    raw = RawPeer(port)                                     # and the device serves on
    raw.hello()
    assert raw.receive()[0] == "Hello"
    raw.send("ToolCall", {"request_id": 9, "tool_name": "device_echo", "args": {"value": 5}})
    assert raw.receive("ToolResult")[1]["value"] == 5
    raw.close()


def protocol_frame(type_id, payload):
    import protocol
    return protocol.frame(type_id, payload)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_silent_controller_is_dropped_after_pings(make_device, runtime):
    device, port = listening(make_device, runtime, {"agent.heartbeat_s": 0.5})
    raw = RawPeer(port)
    raw.hello()
    assert raw.receive()[0] == "Hello"
    assert raw.receive("Ping")[1]["seq"] == 1             # the device checks on us ...
    assert raw.closed()                                   # ... and gives up (1.5 s)
    console_lines(device, r"session ended: the controller was silent for 1500 ms")


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_reconnect_backoff_follows_the_schedule_in_virtual_time(make_device, runtime):
    device = make_device(runtime)
    install(device, {"agent.controller": "127.0.0.1:%d" % free_port(),
                     "agent.reconnect_min_s": 1, "agent.reconnect_max_s": 30,
                     "agent.reconnect_factor": 2, "agent.reconnect_jitter": 0.25})
    device.start()
    attempts = console_lines(device, r"\[(\d+)\] info: reconnecting in (\d+) ms \(attempt (\d+)\)",
                             count=10)
    times = [int(t) for t, _, _ in attempts]
    for i, (at, delay, attempt) in enumerate(attempts):
        base = min(2 ** i, 30) * 1000
        assert int(attempt) == i + 1
        assert 0.75 * base <= int(delay) <= base
        if i:  # the next attempt came after the delay (virtual ms; a refused connect is quick)
            waited = int(attempts[i - 1][1])
            assert waited <= times[i] - times[i - 1] < waited + 200
    assert times[-1] > 100000  # minutes of device time, run in moments


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_tools_file_errors_hot_reload_and_last_good(make_device, runtime):
    bad = {"tools": [{"name": "lamp", "bind": {"op": "pin_wrte"}}]}
    async def scenario():
        async with Hub() as hub:
            device = make_device(runtime)
            install(device, {"agent.controller": "127.0.0.1:%d" % hub.port},
                    files={"/tools.json": json.dumps(bad)})  # deploy would refuse it
            device.start()
            await console_lines_async(
                device, r"tools\.json: tools\[0\]\.bind\.op: unknown operation 'pin_wrte'")
            d = await hub.device()
            caps = await d.capabilities()
            assert "lamp" not in [t["name"] for t in caps["tools"]]  # builtins only

            device.world.write_file("tools.json", json.dumps(LAMP_TOOLS))
            name, changed = await d.next_event("CapabilityChanged", timeout=20)
            assert changed["revision"] > caps["revision"] and "tools" in changed["reason"]
            assert d.cached_capabilities() is None                   # the cache is dropped
            caps = await d.capabilities()
            lamp = [t for t in caps["tools"] if t["name"] == "lamp"][0]
            assert await d.call("lamp", value=True) is None and device.world.level(2) == 1

            device.world.write_file("tools.json", '{"tools": [')      # not JSON: rejected
            name, record = await d.next_event("LogRecord", timeout=20)
            assert record["level"] == 4 and "not valid JSON" in record["message"]
            assert await d.call("lamp", value=False) is None             # still in force
            assert [t for t in (await d.capabilities())["tools"] if t["name"] == "lamp"][0][
                "id"] == lamp["id"]
    run(scenario())


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_settings_get_set_validate_persist_and_reload(make_device, runtime):
    async def scenario():
        async with Hub() as hub:
            device = make_device(runtime)
            install(device, {"agent.controller": "127.0.0.1:%d" % hub.port,
                             "wifi.password": "hunter2"})
            device.start()
            d = await hub.device()
            everything = await d.settings()
            assert everything["wifi.password"] == "***" and everything["auth.key"] == ""
            assert everything["calls.concurrency"] == 4
            with pytest.raises(CallError) as e:
                await d.settings("agent.nope")
            assert e.value.status_name == "NOT_FOUND"
            with pytest.raises(CallError) as e:
                await d.set_settings(**{"agent.heartbeat_s": -1})
            assert e.value.status_name == "INVALID_ARGUMENT" and "agent.heartbeat_s" in str(e.value)
            with pytest.raises(CallError):
                await d.set_settings(**{"calls.concurrency": 2, "calls.queue": "many"})
            assert (await d.settings("calls.concurrency"))["calls.concurrency"] == 4  # none applied
            assert await d.set_settings(**{"calls.concurrency": 2, "device.name": "Shed"}) == {
                "calls.concurrency": 2, "device.name": "Shed"}
            await d.next_event("CapabilityChanged")
            caps = await d.capabilities()
            assert caps["device"]["name"] == "Shed"
            assert caps["resources"]["max_concurrent_tools"] == 2

            text = json.dumps(dict(everything, **{"log.level": "debug", "calls.queue": 3,
                                                  "wifi.password": "hunter2"}))
            device.world.write_file("settings.json", text)            # edited on the device
            await console_lines_async(device, r"settings\.json reloaded")
            assert (await d.settings("calls.queue"))["calls.queue"] == 3
            device.world.write_file("settings.json", text.replace('"debug"', '"loud"'))
            await console_lines_async(device, r"log\.level.*the settings in force stay")
            assert (await d.settings("log.level"))["log.level"] == "debug"
        device.power_cut()
        saved = json.loads(device.read_file("/settings.json"))
        assert saved["log.level"] == "loud"        # the file is the user's; ...
        assert json.loads(device.read_file("/settings.json.good"))["calls.queue"] == 3
    run(scenario())


def test_a_request_short_of_memory_is_refused_and_the_session_stays(make_device):
    """MicroPython only: a CPython device has no heap limit to run into."""
    async def scenario():
        loop = asyncio.get_running_loop()
        async with Hub() as hub:
            device = make_device("micropython")
            install(device, {"agent.controller": "127.0.0.1:%d" % hub.port})
            device.start()
            d = await hub.device()
            session = d.session
            name = (await d.settings("device.name"))["device.name"]
            free = await loop.run_in_executor(None, lambda: device.world.hold_heap(3000,
                                                                                ms=3000))
            assert free <= 3000 + 4096
            with pytest.raises(CallError) as e:  # its checks alone need more than that
                await d.set_settings(**{"device.name": "Shed"})
            assert e.value.status_name == "RESOURCE_EXHAUSTED"
            assert "out of memory answering SettingsSet" in str(e.value)
            await console_lines_async(device, "heap released")
            assert (await d.settings("device.name"))["device.name"] == name  # unchanged
            assert await d.set_settings(**{"device.name": "Shed"}) == {"device.name": "Shed"}
            assert d.session is session and device.console.text().count("session ended") == 0
    run(scenario())


def test_the_session_names_every_request_it_serves_itself():
    # Session._dispatch calls getattr(self, "_on_" + name) only for names in _OWN: on
    # MicroPython getattr with a string interns it as a qstr, RAM that is never given
    # back, so a name with no method (an add-on's request) must not reach it.
    from jotunheim import session
    served = {name[4:] for name in dir(session.Session)
              if name.startswith("_on_") and name != "_on_hello"}
    assert served == set(session._OWN)
