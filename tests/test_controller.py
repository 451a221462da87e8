"""The controller library (jotunheim_host.controller) against simulated devices and, for
what a real device never does (fall silent mid-session), a device written by hand."""
import asyncio

import protocol
import pytest

from agent_support import KEY, console_lines_async, free_port, install, listening, run
from jotunheim_host.controller import ConnectError, Device, Hub, connect
from jotunheim_host.transport import TransportError, open_transport


def listening_device(make_device, runtime="micropython", **settings):
    device, port = listening(make_device, runtime, settings)
    return device, "tcp://127.0.0.1:%d" % port


def test_capability_cache_expires_and_is_dropped_by_events_and_reconnects(make_device):
    device, url = listening_device(make_device)

    async def scenario():
        d = await connect(url, cache_ttl=0.5)
        first = await d.capabilities()
        sent = d.session.bytes_out
        assert await d.capabilities() is first and d.session.bytes_out == sent  # cached
        await asyncio.sleep(0.6)
        assert await d.capabilities() is not first                             # expired
        assert d.session.bytes_out > sent
        second = await d.capabilities()
        await d.call("device_echo", value=1)             # by id: the document is fresh
        device.world.write_file("tools.json", '{"tools": [{"name": "lamp", "bind": '
                                              '{"op": "pin_write", "args": {"pin": 2}}, '
                                              '"parameters": [{"name": "value", '
                                              '"type": "bool"}]}]}')
        await d.next_event("CapabilityChanged", timeout=20)
        assert d.cached_capabilities() is None
        third = await d.capabilities()
        assert third["revision"] > second["revision"]
        assert "lamp" in [t["name"] for t in third["tools"]]
        d.session.close()                                # the link drops; we redial
        await d.next_event("disconnected")
        await d.wait_connected(timeout=20)
        assert d.connections == 2
        assert await d.capabilities() is not third       # ids hold for one connection
        assert await d.ping() < 5
        await d.close()
    run(scenario())


def test_hub_refuses_a_device_with_the_wrong_key_and_the_device_backs_off(make_device):
    async def scenario():
        async with Hub(keys={"esp32-a4cf12b3c4d5": "ab" * 32}) as hub:
            device = make_device("cpython")
            install(device, {"agent.controller": "127.0.0.1:%d" % hub.port,
                             "auth.key": KEY, "agent.reconnect_max_s": 40})
            device.start()
            delay = (await console_lines_async(
                device, r"reconnecting in (\d+) ms \(attempt 100\)"))[0]
            assert 30000 <= int(delay) <= 40000          # straight to the longest wait
            assert hub.refused and "refused the key" in hub.refused[0][1]
            with pytest.raises(asyncio.TimeoutError):
                await hub.device(timeout=0.5)
    run(scenario())


def test_hub_serves_a_device_with_its_key(make_device):
    async def scenario():
        async with Hub(keys={"esp32-a4cf12b3c4d5": KEY}) as hub:
            device = make_device("cpython")
            install(device, {"agent.controller": "127.0.0.1:%d" % hub.port, "auth.key": KEY})
            device.start()
            d = await hub.device("esp32-a4cf12b3c4d5")
            assert d.hello["auth_required"]
            assert await d.call("device_echo", value="ok") == "ok"
    run(scenario())


def test_a_silent_device_is_dropped_and_urls_are_checked():
    async def silent_device(reader, writer):
        writer.write(protocol.encode_frame("Hello", {
            "version_min": 1, "version_max": 1, "role": 1, "device_id": "mute",
            "boot_id": 1}))
        await writer.drain()
        await reader.read(1 << 16)   # takes the Hello, then never says a word
        await asyncio.sleep(30)

    async def scenario():
        server = await asyncio.start_server(silent_device, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        d = await connect("tcp://127.0.0.1:%d" % port, reconnect=False, heartbeat=0.3)
        name, reason = await d.next_event("disconnected", timeout=5)
        assert "silent" in reason
        server.close()
        for url, text in (("udp://x:1", "unknown transport"), ("tcp://nohost", "HOST:PORT"),
                          ("tcp://127.0.0.1:%d" % free_port(), "cannot connect"),
                          ("serial:///dev/nonexistent-tty", "cannot open")):
            with pytest.raises(TransportError, match=text):
                await open_transport(url)
        with pytest.raises(ConnectError):
            await connect("tcp://127.0.0.1:%d" % free_port())
        assert Device().id is None
    run(scenario())


def test_messages_right_after_the_handshake_reach_the_events():
    """A device may speak before the controller library has attached the session (a log
    record, a capability change after an update): nothing of it is lost."""
    async def eager_device(reader, writer):
        writer.write(protocol.encode_frame("Hello", {
            "version_min": 1, "version_max": 1, "role": 1, "device_id": "eager",
            "boot_id": 1}) + b"".join(protocol.encode_frame("LogRecord", {
                "level": 2, "source": "agent", "message": "line %d" % i}) for i in range(3))
            + protocol.encode_frame("CapabilityChanged", {"revision": 2, "reason": "new"}))
        await writer.drain()
        await reader.read(1 << 16)
        await asyncio.sleep(30)

    async def scenario():
        server = await asyncio.start_server(eager_device, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        d = await connect("tcp://127.0.0.1:%d" % port, reconnect=False)
        assert (await d.next_event())[0] == "connected"
        logs = [(await d.next_event("LogRecord", timeout=5))[1]["message"] for _ in range(3)]
        assert logs == ["line 0", "line 1", "line 2"]
        assert (await d.next_event("CapabilityChanged", timeout=5))[1]["reason"] == "new"
        await d.close()
        server.close()
    run(scenario())
