"""Streams on simulated devices (protocol/SPEC.md 1.11), both runtimes: streams beside
calls, credit and a slow reader (device heap measured), a cut link, files both ways, the
sensor kind against the simulated waveform, StreamScript_, plugins, and bad requests."""
import asyncio
import hashlib
import io
import os

import pytest

from agent_support import RUNTIMES, RawPeer, console_lines, listening, run
from host_sim.linkproxy import LinkProxy
from jotunheim_host import streams as host_streams
from jotunheim_host.controller import CallError, connect
from jotunheim_host.streams import StreamError

MASK = (1 << 30) - 1
EMITTER = """\
async def run(ctx, count=10, size=100):
    block = bytes([65 + i % 26 for i in range(size)])
    for i in range(count):
        await ctx.emit(block)
    return count
"""
TONE_PLUGIN = """\
# a source plugin added without touching the agent: kind audio, source "tone"
from jotunheim import streams


class Tone:
    async def run(self, stream):
        for i in range(stream.params.get("blocks", 3)):
            await stream.send(bytes([i]) * 64)


def tone(stream, params):
    return Tone()


class Upper:
    def encode(self, data):
        return data.upper()


streams.register_plugin("tone", tone, kind=5)
streams.register_plugin("upper", lambda stream, params: Upper())
"""


def url(port):
    return "tcp://127.0.0.1:%d" % port


async def register_emitter(d, name="emitter"):
    await d.register_script(name, EMITTER, streams=True, parameters=[
        {"name": "count", "type": "int", "default": 10},
        {"name": "size", "type": "int", "default": 100}])


async def refused(coroutine):
    with pytest.raises(CallError) as e:
        await coroutine
    return e.value.status_name, e.value.message


def expected_u16(volts):
    """read_u16 of the ESP32's ADC as the simulator converts it: 12 bits over 3.9 V."""
    raw = min(4095, max(0, int(volts * 4095 / 3.9 + 0.5)))
    return (raw << 4) | (raw >> 8)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_two_streams_beside_calls_then_the_capabilities(make_device, runtime):
    device, port = listening(make_device, runtime)

    async def scenario():
        d = await connect(url(port), reconnect=False)
        features = (await d.capabilities())["features"]
        assert features["streaming"] is True
        assert set(features["stream_kinds"]) == {"raw", "sensor", "log", "file"}
        assert features["plugins"] == ["delta"]
        log = await d.open_stream("log")
        sensor = await d.open_stream("sensor", source="adc:34",
                                     params={"rate_hz": 200, "count": 60, "batch": 5})
        reader = asyncio.ensure_future(sensor.read_all())
        echoed = [await d.call("device_echo", value=i) for i in range(5)]
        assert echoed == list(range(5))
        assert not log.closed                   # the log stream runs all along
        got = host_streams.SampleDecoder().feed(await reader)
        assert len(got) == 60 and sensor.status == 0
        await d.call("device_echo", value="marker")
        await d.request("ScriptList", {})      # anything the agent logs goes to the stream
        await d.register_script("noop", "def run(ctx):\n    ctx.log('hello from noop')\n")
        await d.call("Script_noop")
        found = []
        async for line in host_streams.lines(log):
            found.append(line)
            if "hello from noop" in line:
                break
        assert found[-1].split(" ", 2)[1:] == ["info", "script noop: hello from noop"]
        assert (await log.close()) == "closed by the controller"
        assert log.status == 0
        await d.close()
    run(scenario(), 60)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_slow_reader_slows_the_script_and_the_heap_stays_bounded(make_device, runtime):
    device, port = listening(make_device, runtime)
    window, size, count = 4096, 1024, 300

    async def heap(d):
        try:
            return await d.call("device_heap")
        except CallError as e:  # CPython does not report its heap: the host side checks
            assert e.status_name == "UNAVAILABLE"
            return None

    async def scenario():
        d = await connect(url(port), reconnect=False)
        await register_emitter(d)
        warm = await d.open_stream("raw", source="emitter", params={"count": 2})
        assert len(await warm.read_all()) == 200
        log = await d.open_stream("log", params={"level": "error"})  # keeps the code loaded
        before = await heap(d)
        stream = await d.open_stream("raw", source="emitter", window=window,
                                     params={"count": count, "size": size})
        taken = 0
        during = []
        for stall in range(4):
            await stream.read()                 # take one chunk, then read nothing a while
            taken += 1
            await asyncio.sleep(0.3)
            assert stream.buffered <= window    # never more than the credit given
            during.append(await heap(d))        # calls are served while the stream waits
            assert stream.received <= taken * size + window
        rest = await stream.read_all()
        assert taken * size + len(rest) == count * size and stream.status == 0
        after = await heap(d)
        await log.close()
        if before is not None:
            # held while stalled: a frame or two waiting in the outbox and the stream's
            # state, never the data the script would have produced without credit
            bound = window + 2 * size + 8192
            assert all(before - h <= bound for h in during), (before, during, bound)
            assert count * size > 10 * bound
            assert before - after <= 4096
        await d.close()
    run(scenario(), 90)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_cut_link_ends_the_streams_on_both_sides(make_device, runtime):
    device, port = listening(make_device, runtime)
    proxy = LinkProxy(port)

    async def scenario():
        d = await connect(url(proxy.port), reconnect=False)
        await register_emitter(d)
        endless = await d.open_stream("raw", source="emitter", window=2048,
                                      params={"count": 100000, "size": 500})
        sensor = await d.open_stream("sensor", source="pin:4", params={"rate_hz": 50})
        await endless.read()
        await sensor.read()
        proxy.cut()
        for stream in (endless, sensor):
            with pytest.raises(StreamError) as e:
                await asyncio.wait_for(stream.read_all(), 30)
            assert e.value.status_name == "UNAVAILABLE"
            assert "link to the device was lost" in e.value.message
        await asyncio.get_running_loop().run_in_executor(
            None, console_lines, device, r"stream \d+ \((emitter|pin:4)\) ended: the session "
                                         r"ended", 2)
        proxy.restore()
        again = await connect(url(proxy.port), reconnect=False)   # the next session works
        stream = await again.open_stream("raw", source="emitter", params={"count": 3})
        assert len(await stream.read_all()) == 300
        assert await again.call("device_echo", value=7) == 7
        await again.close()
    try:
        run(scenario(), 90)
    finally:
        proxy.close()


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_file_goes_to_the_device_and_back(make_device, runtime):
    device, port = listening(make_device, runtime)
    data = os.urandom(23456)

    async def scenario():
        d = await connect(url(port), reconnect=False)
        answer = await host_streams.upload(d, "/data/blob.bin", data)
        assert answer == "sha256:" + hashlib.sha256(data).hexdigest()
        sink = io.BytesIO()
        assert await host_streams.download(d, "/data/blob.bin", sink) == len(data)
        assert sink.getvalue() == data
        # a resumed download: the first part is there already
        part = io.BytesIO(data[:10000])
        assert await host_streams.download(d, "data/blob.bin", part, offset=10000) == 13456
        assert part.getvalue() == data
        # a wrong digest leaves the old file as it was
        stream = await d.open_stream("file", "in", "/data/blob.bin", {
            "size": 5, "sha256": hashlib.sha256(b"other").digest()})
        await stream.write(b"wrong")
        with pytest.raises(StreamError) as e:
            await stream.close()
        assert e.value.status_name == "DATA_LOSS" and "not changed" in e.value.message
        # so does a short one
        stream = await d.open_stream("file", "in", "/data/blob.bin", {"size": 10})
        await stream.write(b"short")
        with pytest.raises(StreamError) as e:
            await stream.close()
        assert e.value.status_name == "DATA_LOSS" and "5 bytes received" in e.value.message
        sink = io.BytesIO()
        await host_streams.download(d, "/data/blob.bin", sink)
        assert sink.getvalue() == data
        await d.close()
    run(scenario(), 60)
    device.stop()
    assert device.read_file("/data/blob.bin") == data


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_sensor_samples_follow_the_simulated_waveform(make_device, runtime):
    device, port = listening(make_device, runtime)
    device.world.voltage(34, points=[[0, 0.0], [600000, 3.0]])   # 5 mV a second

    async def scenario():
        d = await connect(url(port), reconnect=False)
        for codec in ("", "delta"):
            params = {"rate_hz": 100, "count": 40}
            if codec:
                params["codec"] = codec
            stream = await d.open_stream("sensor", source="adc:34", params=params)
            got = [sample async for sample in host_streams.samples(stream)]
            clock = device.world.clock()
            boot = (clock["ticks_us"] - clock["uptime_us"]) & MASK   # ticks_us at boot
            assert stream.status == 0 and len(got) == 40
            if codec:
                assert stream.received < 40 * 4      # delta: a third of the plain size
            else:
                assert stream.received == 40 * 8
            times = [t for t, _ in got]
            assert times == sorted(times) and times[-1] - times[0] >= 39 * 10000
            for t, value in got:
                uptime_us = (t - boot) & MASK
                assert 0 < uptime_us <= clock["uptime_us"]
                expected = expected_u16(3.0 * uptime_us / 600e6)
                assert abs(value - expected) <= 16, (uptime_us, value, expected)
        await d.close()
    run(scenario(), 60)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_stream_scripts_end_to_end(make_device, runtime):
    device, port = listening(make_device, runtime)

    async def scenario():
        d = await connect(url(port), reconnect=False)
        await register_emitter(d)
        await d.register_script("plain", "def run(ctx):\n    return ctx.emit(b'x')\n")
        tools = {t["name"]: t for t in (await d.capabilities(refresh=True))["tools"]}
        assert tools["StreamScript_emitter"]["kind"] == 4
        assert [p["name"] for p in tools["StreamScript_emitter"]["parameters"]] == [
            "count", "size"]
        assert "StreamScript_plain" not in tools
        listed = {s["name"]: s["tools"] for s in await d.scripts()}
        assert listed["emitter"] == ["Script_emitter", "StreamScript_emitter"]
        # the device opens the stream (an even id) and the call returns its id
        stream = await d.stream_script("emitter", count=5, size=30)
        assert stream.id % 2 == 0 and stream.source == "emitter"
        assert await stream.read_all() == bytes(65 + i % 26 for i in range(30)) * 5
        assert stream.status == 0
        assert (await d.next_stream(timeout=5)) is stream
        # the controller opens one with the script as the source
        opened = await d.open_stream("raw", source="emitter", params={"count": 2, "size": 3})
        assert await opened.read_all() == b"ABCABC"
        # ctx.emit outside a stream run, arguments that do not check, an unknown script
        assert (await refused(d.call("Script_plain")))[0] == "INVALID_ARGUMENT"
        assert (await refused(d.stream_script("emitter", count="many")))[0] == \
            "INVALID_ARGUMENT"
        status, message = await refused(d.open_stream("raw", source="plain"))
        assert status == "NOT_FOUND" and "no stream script 'plain'" in message
        # a failing script ends its stream with the reason
        await d.register_script("broken", "async def run(ctx):\n    await ctx.emit(b'a')\n"
                                "    raise RuntimeError('sensor fell off')\n", streams=True)
        broken = await d.stream_script("broken")
        with pytest.raises(StreamError) as e:
            await broken.read_all()
        assert e.value.status_name == "INTERNAL" and "sensor fell off" in e.value.message
        assert await d.call("Script_emitter", count=0) == 0   # Script_ has no stream
        # a script that consumes a stream the controller sends (and one that echoes it)
        await d.register_script("summer", CONSUMER, streams=True, parameters=[
            {"name": "echo", "type": "bool", "required": False, "default": False}])
        into = await d.open_stream("raw", direction="in", source="summer",
                                   params={"chunk": 100})
        data = bytes(range(256)) * 20
        await into.write(data)
        assert await into.close() == "%d %d" % (len(data), sum(data))
        both = await d.open_stream("raw", direction="both", source="summer",
                                   params={"echo": True})
        await both.write(b"ping pong")
        assert (await both.read()).data == b"PING PONG"
        assert await both.close() == "9 %d" % sum(b"ping pong")
        status, message = await refused(d.call("Script_summer"))   # nothing to receive
        assert status == "INVALID_ARGUMENT" and "ctx.receive" in message
        await d.close()
    run(scenario(), 60)


CONSUMER = """\
async def run(ctx, echo=False):
    count = total = 0
    while True:
        data = await ctx.receive()
        if data is None:
            return "%d %d" % (count, total)
        count += len(data)
        total += sum(data)
        if echo:
            await ctx.emit(bytes(data).upper())
"""


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_plugins_are_added_without_touching_the_agent(make_device, runtime):
    device, port = listening(make_device, runtime, files={
        "/lib/stream_plugins.py": TONE_PLUGIN.encode()})

    async def scenario():
        d = await connect(url(port), reconnect=False)
        features = (await d.capabilities())["features"]
        assert "audio" in features["stream_kinds"]
        assert sorted(features["plugins"]) == ["delta", "tone", "upper"]
        tone = await d.open_stream("audio", source="tone", params={"blocks": 3})
        assert await tone.read_all() == b"\x00" * 64 + b"\x01" * 64 + b"\x02" * 64
        await d.register_script("words", "async def run(ctx):\n    await ctx.emit('quiet ')\n"
                                "    await ctx.emit(b'words')\n", streams=True)
        loud = await d.open_stream("raw", source="words", params={"codec": "upper"})
        assert await loud.read_all() == b"QUIET WORDS"
        status, message = await refused(d.open_stream("raw", source="words",
                                                      params={"codec": "zstd"}))
        assert status == "NOT_FOUND" and "no codec plugin 'zstd'" in message
        status, message = await refused(d.open_stream("log", params={"codec": "delta"}))
        assert status == "INVALID_ARGUMENT" and "sensor streams only" in message
        await d.close()
    run(scenario(), 60)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_bad_stream_requests_get_clear_statuses(make_device, runtime):
    device, port = listening(make_device, runtime)

    async def scenario():
        d = await connect(url(port), reconnect=False)
        cases = [
            (("video",), "UNIMPLEMENTED", "no stream kind 6"),
            ((9,), "UNIMPLEMENTED", "no stream kind 9"),
            (("sensor", "out", "adc:x"), "INVALID_ARGUMENT", "want adc:PIN or pin:PIN"),
            (("sensor", "out", "adc:1"), "INVALID_ARGUMENT", "cannot be read"),
            (("sensor", "out", "adc:34", {"rate_hz": 5000}), "INVALID_ARGUMENT", "rate_hz"),
            (("sensor", "in", "adc:34"), "INVALID_ARGUMENT", "goes out, not in"),
            (("file", "out", "../../etc/passwd"), "PERMISSION_DENIED", "outside"),
            (("file", "in", "/data/../settings.json", {"size": 1}), "PERMISSION_DENIED",
             "outside"),
            (("file", "in", "/data/x"), "INVALID_ARGUMENT", "size must be"),
            (("file", "out", "/no/such/file"), "NOT_FOUND", "no file"),
            (("log", "out", "", {"level": "loud"}), "INVALID_ARGUMENT", "level must be"),
        ]
        for arguments, status, words in cases:
            got, message = await refused(d.open_stream(*arguments))
            assert got == status and words in message, (arguments, got, message)
        assert await d.call("device_echo", value="still here") == "still here"
        await d.close()

    run(scenario(), 60)
    peer = RawPeer(port)      # what the controller library never sends
    try:
        peer.hello()
        peer.receive("Hello")
        peer.send("StreamOpen", {"request_id": 1, "stream_id": 2, "kind": 3, "direction": 2})
        ack = peer.receive("Ack")[1]
        assert ack["status"] == 3 and "odd" in ack["message"]
        peer.send("StreamOpen", {"request_id": 2, "stream_id": 5, "kind": 4, "direction": 1,
                                 "source": "/data/y.bin", "params": {"size": 100000}})
        assert peer.receive("Ack")[1]["status"] == 0
        credit = peer.receive("StreamCredit")[1]
        assert credit["stream_id"] == 5 and 1024 <= credit["bytes"] < 100000
        peer.send("StreamOpen", {"request_id": 3, "stream_id": 5, "kind": 3, "direction": 2})
        assert peer.receive("Ack")[1]["status"] == 6            # ALREADY_EXISTS
        peer.send("StreamData", {"stream_id": 5, "data": b"z" * (credit["bytes"] + 1)})
        close = peer.receive("StreamClose")[1]
        assert close["stream_id"] == 5 and close["status"] == 8  # RESOURCE_EXHAUSTED
        assert "window overrun" in close["message"]
        peer.send("ToolCall", {"request_id": 4, "tool_name": "device_echo",
                               "args": {"value": 1}})
        result = peer.receive("ToolResult")[1]
        assert result["status"] == 0
    finally:
        peer.close()
    assert device.running


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_log_stream_without_credit_keeps_a_bounded_tail(make_device, runtime):
    device, port = listening(make_device, runtime)
    chatty = "def run(ctx, n=1):\n    for i in range(n):\n        ctx.log('line %d %s' % " \
             "(i, 'x' * 60))\n    return n\n"

    async def scenario():
        d = await connect(url(port), reconnect=False)
        await d.register_script("chatty", chatty, parameters=[
            {"name": "n", "type": "int", "default": 1}])
        log = await d.open_stream("log", window=1024)
        assert await d.call("Script_chatty", n=60) == 60   # ~5 KB of lines at once
        text = []
        async for line in host_streams.lines(log):
            text.append(line)
            if "line 59 " in line:
                break
        assert log.received <= 1024 + 2048 + 1024   # the window, the device's tail...
        assert text[0].endswith("log lines dropped")   # ...said to be cut...
        dropped = int(text[0].split()[2])
        numbers = [int(line.split()[5]) for line in text[1:]]   # T info script chatty: line N
        assert numbers == list(range(60 - len(numbers), 60))   # ...the newest kept
        assert dropped == 60 - len(numbers) and dropped > 10
        await log.close()
        await d.close()
    run(scenario(), 60)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_an_upload_cut_by_the_link_resumes_where_it_stopped(make_device, runtime):
    device, port = listening(make_device, runtime)
    proxy = LinkProxy(port)
    data = os.urandom(30000)
    digest = hashlib.sha256(data).digest()

    async def scenario():
        d = await connect(url(proxy.port), reconnect=False)
        stream = await d.open_stream("file", "in", "/data/big.bin", {
            "size": len(data), "sha256": digest, "resume": True})
        assert stream.opened == ""                 # nothing to resume yet
        await stream.write(data[:12000])
        await stream.drain()                        # the device took some of it
        proxy.cut()
        with pytest.raises(StreamError):
            await asyncio.wait_for(stream.close(), 30)
        await asyncio.get_running_loop().run_in_executor(
            None, console_lines, device, r"stream \d+ \(/data/big.bin\) ended: the session")
        proxy.restore()
        again = await connect(url(proxy.port), reconnect=False)
        done = []
        answer = await host_streams.upload(again, "/data/big.bin", data, chunk=1000,
                                           resume=True, progress=lambda n, total:
                                           done.append(n))
        assert answer == "sha256:" + digest.hex()
        assert 1000 < done[0] <= 13000               # it went on after what was there
        copy = io.BytesIO()
        await host_streams.download(again, "/data/big.bin", copy)
        assert copy.getvalue() == data
        await again.close()
    try:
        run(scenario(), 90)
    finally:
        proxy.close()
