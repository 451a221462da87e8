"""Loki on simulated devices: scripts registered at run time become tools; ctx and the
children Fenrir, Jormungandr and Hel; limits; persistence; Lua (CPython) and the examples
in scripts/. Python scripts run on both runtimes; Lua where lupa is (CPython)."""
import asyncio
import hashlib
import json
import os

import pytest

from agent_support import RUNTIMES, console_lines, console_lines_async, free_port, install, run
from jotunheim_host.controller import CallError, connect
from jotunheim_host.session import STATUS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TYPES = ("any", "null", "bool", "int", "float", "string", "bytes", "list", "map")
CODES = {name: number for number, name in STATUS.items()}

DOUBLE = "def run(ctx, x):\n    return 2 * x\n"
LAMP = """\
def run(ctx, on=True):
    ctx.fenrir.pin_write(2, on)
    ctx.log("lamp %s" % ("on" if on else "off"))
    return ctx.fenrir.pin_read(2)
"""
COUNTER = """\
def run(ctx):
    count = ctx.hel.get("count", 0) + 1
    ctx.hel.put("count", count)
    return count
"""


def param(name, kind, **options):
    """A Parameter message: param("x", "int", required=True)."""
    fields = {"name": name, "type": TYPES.index(kind)}
    if "default" in options:
        fields["default_value"] = options.pop("default")
    fields.update(options)
    return fields


async def register(d, name, source, language="python", parameters=(), **fields):
    """The Ack of a ScriptRegister."""
    return await d.request("ScriptRegister", dict({
        "name": name, "language": language, "source": source,
        "parameters": list(parameters)}, **fields))


async def registered(d, name, source, **options):
    ack = await register(d, name, source, **options)
    assert ack["status"] == 0, ack["message"]
    _, event = await d.next_event("CapabilityChanged")
    assert name in event["reason"]


async def refused(call):
    """(status name, message) of a call that must fail."""
    with pytest.raises(CallError) as e:
        await call
    return e.value.status_name, e.value.message


async def tool_names(d):
    return {t["name"] for t in (await d.capabilities(refresh=True))["tools"]}


def listening(make_device, runtime, board="esp32"):
    """A started device of `board` listening on a free loopback port: (device, port)."""
    port = free_port()
    device = install(make_device(runtime, board=board), {"agent.mode": "listen",
                                                         "agent.listen_port": port})
    device.start()
    console_lines(device, r"listening on port")
    return device, port


def device_url(port):
    return "tcp://127.0.0.1:%d" % port


def example(name):
    with open(os.path.join(ROOT, "scripts", name)) as f:
        return f.read()


def with_lua(board="esp32"):
    """A board profile that lists lua among its script languages."""
    with open(os.path.join(ROOT, "boards", board + ".json")) as f:
        profile = json.load(f)
    profile["script_languages"] = ["python", "lua"]
    return profile


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_register_call_list_status_and_unregister(make_device, runtime):
    device, port = listening(make_device, runtime)

    async def scenario():
        d = await connect(device_url(port), reconnect=False)
        await registered(d, "double", DOUBLE, description="Twice x",
                         parameters=[param("x", "int", required=True, maximum=1000)],
                         returns={"type": TYPES.index("int"), "description": "2x"})
        tools = {t["name"]: t for t in (await d.capabilities())["tools"]}
        double = tools["Script_double"]
        assert double["kind"] == 3 and double["description"] == "Twice x"
        assert double["parameters"][0]["name"] == "x" and double["parameters"][0]["type"] == 3
        assert double["returns"]["type"] == 3 and "pin_write" in tools
        assert await d.call("Script_double", x=21) == 42
        assert await d.call("Script_double", 5) == 10                 # positional
        assert (await refused(d.call("Script_double", x=2000)))[0] == "INVALID_ARGUMENT"

        await registered(d, "lamp", LAMP, parameters=[param("on", "bool", default=True)])
        assert await d.call("Script_lamp") == 1 and device.world.level(2) == 1
        assert await d.call("Script_lamp", on=False) == 0 and device.world.level(2) == 0
        _, record = await d.next_event("LogRecord")
        assert record["message"] == "script lamp: lamp on"

        listed = await d.request("ScriptList", {})
        assert listed["status"] == 0
        scripts = {s["name"]: s for s in listed["scripts"]}
        assert sorted(scripts) == ["double", "lamp"]
        assert scripts["double"]["sha256"] == hashlib.sha256(DOUBLE.encode()).digest()
        assert scripts["double"]["size"] == len(DOUBLE) and scripts["double"]["language"] \
            == "python" and scripts["double"]["tools"] == ["Script_double"]

        await registered(d, "counter", COUNTER)
        assert [await d.call("Script_counter") for _ in range(3)] == [1, 2, 3]
        bad_pin = "def run(ctx):\n    ctx.fenrir.pin_write(34, 1)\n"   # input only
        await registered(d, "bad_pin", bad_pin)
        status, message = await refused(d.call("Script_bad_pin"))
        assert status == "INVALID_ARGUMENT" and message.startswith("Script_bad_pin: ")
        children = (await d.request("ChildrenStatusRequest", {}))["children"]
        by_name = {c["name"]: c for c in children}
        assert sorted(by_name) == ["Fenrir", "Hel", "Jormungandr"]
        assert by_name["Fenrir"]["errors"] == 1 and by_name["Fenrir"]["state"] == 3
        assert by_name["Fenrir"]["last_error"]
        assert by_name["Hel"]["errors"] == 0 and by_name["Hel"]["storage_bytes"] == 1  # "3"
        assert by_name["Jormungandr"]["state"] in (1, 4)

        assert (await d.request("ScriptUnregister", {"name": "double"}))["status"] == 0
        _, event = await d.next_event("CapabilityChanged")
        assert event["reason"] == "script double unregistered"
        assert "Script_double" not in await tool_names(d)
        assert (await refused(d.call("Script_double", x=1)))[0] == "NOT_FOUND"
        again = await d.request("ScriptUnregister", {"name": "double"})
        assert again["status"] == CODES["NOT_FOUND"] and "no script double" in again["message"]
        assert await d.call("Script_lamp", on=True) == 1              # the others stay
        await d.close()
    run(scenario())


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_bad_registrations_are_refused_with_their_reason(make_device, runtime):
    device, port = listening(make_device, runtime)

    async def scenario():
        d = await connect(device_url(port), reconnect=False)
        before = await tool_names(d)
        cases = [
            ({"name": "9lives"}, "INVALID_ARGUMENT", "not starting with a digit"),
            ({"name": "has-dash"}, "INVALID_ARGUMENT", "letters, digits and '_'"),
            ({"name": "x" * 33}, "INVALID_ARGUMENT", "1 to 32"),
            ({"name": ""}, "INVALID_ARGUMENT", "1 to 32"),
            ({"source": "def run(ctx:\n    pass\n"}, "INVALID_ARGUMENT", "does not compile"),
            ({"source": "x = 1\n"}, "INVALID_ARGUMENT", "defines no function run"),
            ({"source": "1 / 0\ndef run(ctx):\n    pass\n"}, "INVALID_ARGUMENT",
             "its top level failed: ZeroDivisionError"),
            ({"language": "ruby"}, "UNIMPLEMENTED", "runs scripts in python, not 'ruby'"),
            ({"language": "lua", "source": "function run() end"}, "UNIMPLEMENTED",
             "not 'lua'"),
            ({"source": "def run(ctx):\n    return 1\n" + "#" * 15000}, "RESOURCE_EXHAUSTED",
             "this device takes at most 14080"),
            ({"parameters": [{"name": "x", "type": 99}]}, "INVALID_ARGUMENT",
             "parameters[0].type: unknown value type 99"),
            ({"parameters": [param("x", "int", required=True, default=3)]}, "INVALID_ARGUMENT",
             "a required parameter cannot have a default"),
            ({"parameters": [param("x", "int", default="three")]}, "INVALID_ARGUMENT",
             "parameters[0].default: expected int, got string"),
            ({"parameters": [param("ctx", "int")]}, "INVALID_ARGUMENT", "'ctx'"),
            ({"parameters": [param("x", "int"), param("x", "int")]}, "INVALID_ARGUMENT",
             "duplicate parameter name"),
            ({"limits": {"instructions": 5}}, "INVALID_ARGUMENT", "lua scripts only"),
            ({"limits": {"memory_bytes": 10 ** 7}}, "RESOURCE_EXHAUSTED", "heap"),
        ]
        if runtime == "micropython":   # a heap to run out of, and what it was asked for
            cases.append(({"source": "big = bytearray(10 ** 7)\ndef run(ctx):\n    pass\n"},
                          "RESOURCE_EXHAUSTED", "not enough free heap to load it (memory "
                          "allocation failed, allocating 10000000 bytes)"))
        for changes, status, text in cases:
            fields = dict({"name": "probe", "source": "def run(ctx):\n    return 1\n"},
                          **changes)
            ack = await register(d, **fields)
            assert (ack["status"], text in ack["message"]) == (CODES[status], True), \
                (changes, ack)
        assert await tool_names(d) == before                          # nothing half added

        await registered(d, "probe", "def run(ctx):\n    return 1\n")
        again = await register(d, "probe", "def run(ctx):\n    return 2\n")
        assert again["status"] == CODES["ALREADY_EXISTS"] and "replace" in again["message"]
        assert await d.call("Script_probe") == 1
        ack = await register(d, "probe", "def run(ctx):\n    return 2\n", replace=True)
        assert ack["status"] == 0
        _, event = await d.next_event("CapabilityChanged")
        assert event["reason"] == "script probe replaced"
        assert await d.call("Script_probe") == 2
        ack = await register(d, "probe", "def run(ctx:\n", replace=True)  # the old one stays
        assert ack["status"] == CODES["INVALID_ARGUMENT"]
        assert await d.call("Script_probe") == 2
        await d.close()
    run(scenario())


FAILING = """\
active = 0
most = 0


def run(ctx, how):
    if how == "value":
        raise ValueError("no such mode")
    if how == "runtime":
        raise RuntimeError("it broke")
    if how == "memory":
        return len([0] * 50000000)
    if how == "quota":
        ctx.hel.put("big", "x" * 100)
    if how == "small":
        ctx.hel.put("small", "x")
        return ctx.hel.keys()
    return forever(ctx) if how == "forever" else overlap(ctx)


async def forever(ctx):
    while True:  # awaits: the timeout stops it (a loop that never awaits cannot be stopped)
        await ctx.sleep_ms(10)


async def overlap(ctx):
    global active, most
    active += 1
    most = max(most, active)
    await ctx.sleep_ms(200)
    active -= 1
    return most
"""


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_failing_scripts_and_limits_leave_the_device_serving(make_device, runtime):
    device, port = listening(make_device, runtime)

    async def scenario():
        d = await connect(device_url(port), reconnect=False)
        await registered(d, "failing", FAILING, parameters=[param("how", "string")],
                         limits={"timeout_ms": 500, "storage_bytes": 64})
        status, message = await refused(d.call("Script_failing", how="value"))
        assert (status, message) == ("INVALID_ARGUMENT", "Script_failing: no such mode")
        status, message = await refused(d.call("Script_failing", how="runtime"))
        assert status == "INTERNAL" and "RuntimeError: it broke" in message
        status, message = await refused(d.call("Script_failing", how="forever"))
        assert status == "DEADLINE_EXCEEDED"
        await console_lines_async(device, r"script failing: stopped after its timeout of 500 ms")
        assert await d.call("device_echo", value=7) == 7
        assert await d.call("Script_failing", how="small") == ["small"]
        status, message = await refused(d.call("Script_failing", how="quota"))
        assert status == "RESOURCE_EXHAUSTED"
        await console_lines_async(device, r"script failing: storage quota of 64 bytes exceeded")
        if runtime == "micropython":                 # the board's heap: 50 M items do not fit
            status, message = await refused(d.call("Script_failing", how="memory"))
            assert status == "RESOURCE_EXHAUSTED" and "out of memory" in message
        assert await d.call("Script_failing", how="small") == ["small"]
        if runtime == "micropython":                 # a call starts only with its heap free
            await registered(d, "hungry", "def run(ctx):\n    return 1\n",
                             limits={"memory_bytes": 112640})
            assert (await refused(d.call("Script_hungry")))[0] == "RESOURCE_EXHAUSTED"
            await console_lines_async(device, r"script hungry: it needs 112640 bytes of free "
                                              r"heap, \d+ are free")

        # one run at a time unless the script says otherwise; the others wait their turn
        results = await asyncio.gather(*(d.call("Script_failing", how="overlap")
                                         for _ in range(3)))
        assert results == [1, 1, 1]
        ack = await register(d, "failing", FAILING, parameters=[param("how", "string")],
                             limits={"concurrency": 3}, replace=True)
        assert ack["status"] == 0
        results = await asyncio.gather(*(d.call("Script_failing", how="overlap")
                                         for _ in range(3)))
        assert max(results) == 3
        await d.close()
    run(scenario())


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_scripts_and_their_data_survive_a_power_cut(make_device, runtime):
    device, port = listening(make_device, runtime)

    async def scenario(first):
        d = await connect(device_url(port), reconnect=False)
        if first:
            await registered(d, "counter", COUNTER)
            await registered(d, "double", DOUBLE, parameters=[param("x", "int")])
            assert (await d.request("ScriptUnregister", {"name": "double"}))["status"] == 0
            assert [await d.call("Script_counter") for _ in range(2)] == [1, 2]
        else:
            names = await tool_names(d)
            assert "Script_counter" in names and "Script_double" not in names
            assert "Script_ghost" not in names and "Script_orphan" not in names
            assert await d.call("Script_counter") == 3
            listed = (await d.request("ScriptList", {}))["scripts"]
            assert [s["name"] for s in listed] == ["counter"]
        await d.close()
    run(scenario(True))
    device.power_cut()
    assert json.loads(device.read_file("/data/counter/count.json")) == 2
    registration = json.loads(device.read_file("/scripts/counter.json"))
    assert registration["sha256"] == hashlib.sha256(COUNTER.encode()).hexdigest()
    # what a power cut between the two writes of a registration leaves: never loaded
    device.put_files({"/scripts/ghost.json": json.dumps(dict(registration, name="ghost")),
                      "/scripts/ghost.py": "def run(ctx):\n    return 'half'\n",
                      "/scripts/orphan.py": "def run(ctx):\n    return 'no json'\n"})
    device.start()
    console_lines(device, r"script ghost not loaded: its source is not the one registered")
    console_lines(device, r"listening on port", count=2)
    run(scenario(False))


SLEEPY = "async def run(ctx, ms):\n    await ctx.sleep_ms(ms)\n    return ms\n"


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_lua_scripts_where_lupa_runs(make_device, runtime):
    device, port = listening(make_device, runtime, board=with_lua())

    async def scenario():
        d = await connect(device_url(port), reconnect=False)
        source = """
            function run(ctx, params)
              ctx.fenrir.pin_write(2, params.on)
              ctx.hel.put("seen", {n = params.n, list = {1, 2, 3}})
              print("lua says", params.n)
              return {level = ctx.fenrir.pin_read(2), back = ctx.hel.get("seen"),
                      keys = ctx.hel.keys(),
                      wifi = type(ctx.jormungandr.wifi().connected)}
            end
        """
        ack = await register(d, "lamp", source, language="lua",
                             parameters=[param("on", "bool"), param("n", "int")])
        if runtime == "micropython":
            assert ack["status"] == CODES["UNIMPLEMENTED"]
            assert "lua scripts need the lupa module" in ack["message"]
            return await d.close()
        assert ack["status"] == 0, ack
        await d.next_event("CapabilityChanged")
        assert await d.call("Script_lamp", on=True, n=7) == {
            "level": 1, "back": {"n": 7, "list": [1, 2, 3]}, "keys": ["seen"], "wifi": "boolean"}
        assert device.world.level(2) == 1
        await console_lines_async(device, r"script lamp: lua says 7")

        loops = {
            "spin": "function run() while true do end end",
            "swallow": "function run() while true do pcall(function() while true do end "
                       "end) end end",
            "nested": "function run() local co = coroutine.create(function() while true do "
                      "end end) coroutine.resume(co) error('escaped') end",
        }
        for name, source in loops.items():
            await registered(d, name, source, language="lua",
                             limits={"instructions": 200000})
            status, message = await refused(d.call("Script_" + name))
            assert status == "RESOURCE_EXHAUSTED", (name, message)
        await console_lines_async(device, r"script spin: spin:1: instruction limit of 200000 "
                                          r"reached")
        # a timeout stops a long computation too (its thread ends at the next hook)
        await registered(d, "slow", "function run() while true do end end", language="lua",
                         limits={"instructions": 10 ** 12, "timeout_ms": 300})
        assert (await refused(d.call("Script_slow")))[0] == "DEADLINE_EXCEEDED"
        assert await d.call("device_echo", value=1) == 1

        await registered(d, "greedy", "function run() local t = {} for i = 1, 1e8 do "
                         "t[i] = string.rep('x', 100) .. i end end", language="lua",
                         limits={"memory_bytes": 1 << 21, "instructions": 10 ** 10})
        assert (await refused(d.call("Script_greedy")))[0] == "RESOURCE_EXHAUSTED"
        await registered(d, "hoard", "function run(ctx) ctx.hel.put('k', string.rep('x', "
                         "100)) end", language="lua",
                         limits={"storage_bytes": 50})
        assert (await refused(d.call("Script_hoard")))[0] == "RESOURCE_EXHAUSTED"
        await console_lines_async(device, r"script hoard: storage quota of 50 bytes exceeded")
        await registered(d, "boom", "function run() error('boom') end", language="lua")
        status, message = await refused(d.call("Script_boom"))
        assert status == "INTERNAL" and message.endswith("LuaError: boom:1: boom")
        await registered(d, "sandbox", "function run() return io == nil and os == nil and "
                         "python == nil and require == nil and load == nil end",
                         language="lua")
        assert await d.call("Script_sandbox") is True
        await registered(d, "badpin", "function run(ctx) ctx.fenrir.pin_write(34, 1) end",
                         language="lua")
        assert (await refused(d.call("Script_badpin")))[0] == "INVALID_ARGUMENT"
        for source, text in (("function run( end", "does not load"),
                             ("x = 1", "defines no function run"),
                             ("while true do end", "instruction limit")):
            ack = await register(d, "broken", source, language="lua")
            assert ack["status"] == CODES["INVALID_ARGUMENT"] and text in ack["message"], ack
        await registered(d, "sleepy", SLEEPY, parameters=[param("ms", "int")])
        assert await d.call("Script_sleepy", ms=50) == 50            # python beside lua
        await d.close()
    run(scenario())


TEMPERATURE_PARAMS = [param("pin", "int", default=34), param("full_scale_v", "float",
                                                              default=3.3),
                      param("alarm_c", "float", default=40.0)]
PATTERN_PARAMS = [param("pin", "int", default=2), param("pattern", "string", default="1010110"),
                  param("step_ms", "int", default=100), param("times", "int", default=1)]


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_example_scripts(make_device, runtime):
    device, port = listening(make_device, runtime, board=with_lua())

    async def scenario():
        d = await connect(device_url(port), reconnect=False)
        await registered(d, "temperature_monitor", example("temperature_monitor.py"),
                         parameters=TEMPERATURE_PARAMS, limits={"storage_bytes": 512})
        device.world.voltage(34, volts=0.75)                   # 25 C on a TMP36
        first = await d.call("Script_temperature_monitor", full_scale_v=3.9)
        assert abs(first["celsius"] - 25.0) <= 0.2 and first["count"] == 1
        assert not first["alarm"]
        device.world.voltage(34, volts=0.95)                   # 45 C
        second = await d.call("Script_temperature_monitor", full_scale_v=3.9)
        assert second["alarm"] and second["count"] == 2 and second["max"] == second["celsius"]
        assert abs(second["avg"] - 35.0) <= 0.2 and second["min"] == first["celsius"]
        await console_lines_async(device, r"script temperature_monitor: 4\d\.\d C on pin 34")

        ack = await register(d, "led_pattern", example("led_pattern.lua"), language="lua",
                             parameters=PATTERN_PARAMS)
        if runtime == "micropython":
            assert ack["status"] == CODES["UNIMPLEMENTED"]
            return await d.close()
        assert ack["status"] == 0, ack
        assert await d.call("Script_led_pattern", pattern="1101", step_ms=20, times=2) == 8
        assert device.world.level(2) == 1
        assert await d.call("Script_led_pattern", pattern="10", step_ms=10) == 2
        assert device.world.level(2) == 0
        status, message = await refused(d.call("Script_led_pattern", pattern="1x"))
        assert status == "INTERNAL" and "pattern may hold only 0 and 1, not x" in message
        await d.close()
    run(scenario())
