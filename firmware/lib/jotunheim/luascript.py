"""Lua scripts, through lupa: CPython only (Linux boards and the simulator)."""
# How this works: every call gets a fresh Lua state (nothing is kept between calls: keep
# state in ctx.hel) in a worker thread, so that a script that computes for long does not
# stop the agent. The state is sandboxed: no io, os, debug, package, require, load,
# dofile or the python module; only source code loads (no bytecode). A count hook, set on
# the main coroutine and on every coroutine the script creates, enforces the instruction
# limit and ends the run when the call is cancelled or times out; once it has fired it
# fires on every instruction, so a pcall cannot swallow it. lupa's max_memory bounds the
# state's memory.
#
# ctx reaches Lua as a table of functions, called with a dot: ctx.log("hi"),
# ctx.fenrir.pin_write(2, true), ctx.hel.put("k", {a = 1}), ctx.sleep_ms(100),
# ctx.jormungandr.wifi(); ctx.params is a table. Each function runs on the agent's event
# loop (the device is single threaded) and the worker waits for it; tables go in and come
# out as Python lists (keys 1..n) and dicts. print() logs like ctx.log.
import asyncio
import threading

try:  # a PUC Lua, whose allocator lupa can bound (LuaJIT's cannot, on 64-bit)
    from lupa import lua55 as lupa
except ImportError:
    from lupa import lua54 as lupa

from jotunheim.loki_scripts import LimitError

DEFAULT_INSTRUCTIONS = 10000000
DEFAULT_MEMORY = 1 << 20
HOOK_EVERY = 1000
MAX_DEPTH = 16
_REMOVED = ("io", "os", "debug", "package", "require", "load", "loadfile", "dofile",
            "python")
# run first in every Lua state, with (instruction limit, hook period, stopped function)
_GUARD = """
local limit, every, stopped = ...
local sethook, create, resume = debug.sethook, coroutine.create, coroutine.resume
local threads = setmetatable({[coroutine.running()] = true}, {__mode = "k"})
local count = 0
local function hook()
  count = count + every
  if count > limit or stopped() then
    for thread in pairs(threads) do sethook(thread, hook, "", 1) end
    if count > limit then
      error("instruction limit of " .. limit .. " reached", 2)
    end
    error("stopped: the call was cancelled or ran out of time", 2)
  end
end
sethook(hook, "", every)
coroutine.create = function(f)
  local co = create(f)
  threads[co] = true
  sethook(co, hook, "", every)
  return co
end
coroutine.wrap = function(f)
  local co = coroutine.create(f)
  return function(...)
    local result = table.pack(resume(co, ...))
    if not result[1] then error(result[2], 0) end
    return table.unpack(result, 2, result.n)
  end
end
"""


class LuaError(Exception):
    """A Lua script failed: its Lua error message."""


def _no_attributes(obj, name, setting):
    raise AttributeError("Lua scripts reach the device through ctx only")


def _state(limits, stopped):
    """A fresh sandboxed Lua state with the limits in force."""
    try:
        lua = lupa.LuaRuntime(register_eval=False, register_builtins=False,
                              unpack_returned_tuples=True, attribute_filter=_no_attributes,
                              max_memory=limits.get("memory_bytes") or DEFAULT_MEMORY)
        lua.execute(_GUARD, limits.get("instructions") or DEFAULT_INSTRUCTIONS, HOOK_EVERY,
                    stopped)
    except lupa.LuaMemoryError:
        raise MemoryError("limits.memory_bytes is too small for Lua itself")
    lua_globals = lua.globals()
    for removed in _REMOVED:
        lua_globals[removed] = None
    return lua


def _load(lua, name, source):
    """Run the script's top level; its run function."""
    try:
        lua.execute(source, name="=" + name, mode="t")
    except lupa.LuaMemoryError:
        raise MemoryError("it ran out of memory when loaded")
    except lupa.LuaError as e:
        message = _message(e)
        raise ValueError(message if "instruction limit of" in message else
                         "does not load: " + message)
    run = lua.globals().run
    if lupa.lua_type(run) != "function":
        raise ValueError("it defines no function run(ctx, params)")
    return run


def check(name, source, limits):
    """Load a script as a call would (ValueError, MemoryError if it does not)."""
    _load(_state(limits, lambda: False), name, source)


async def run(loki, script, ctx, params):
    """One call of a Lua script: what its run(ctx, params) returns, as Python values."""
    source = loki.source(script)
    loop = asyncio.get_running_loop()
    stop = threading.Event()
    try:
        return await asyncio.to_thread(_call, loop, script, source, ctx, params, stop)
    finally:
        stop.set()  # a cancelled call's Lua ends at its next hook


def _call(loop, script, source, ctx, params, stop):
    """In the worker thread."""
    name = script.name
    lua = _state(script.limits, stop.is_set)
    function = _load(lua, name, source)

    def on_loop(function):
        """function, called from Lua, run on the event loop; its result for Lua."""
        def call(*args):
            args = [_to_python(a, 0) for a in args]
            future = asyncio.run_coroutine_threadsafe(_await(function, args), loop)
            return _to_lua(lua, future.result())
        return call

    def table(obj, names):
        return lua.table_from(dict((n, on_loop(getattr(obj, n))) for n in names))
    lua_ctx = table(ctx, ("log", "sleep_ms"))
    lua_ctx["params"] = _to_lua(lua, params)
    lua_ctx["fenrir"] = table(ctx.fenrir, ("pin_read", "pin_write", "pin_toggle", "adc_read",
                                           "pwm", "i2c_scan", "i2c_read", "i2c_write"))
    lua_ctx["jormungandr"] = table(ctx.jormungandr, ("wifi",))
    lua_ctx["hel"] = table(ctx.hel, ("get", "put", "delete", "keys"))
    lua.globals().print = on_loop(lambda *words: ctx.log(" ".join([str(w) for w in words])))
    try:
        return _to_python(function(lua_ctx, _to_lua(lua, params)), 0)
    except lupa.LuaMemoryError:
        raise MemoryError("lua script %s ran out of memory" % name)
    except lupa.LuaError as e:
        message = _message(e)
        if "instruction limit of" in message:
            raise LimitError(message)
        raise LuaError(message)


async def _await(function, args):
    result = function(*args)
    if hasattr(result, "send"):
        result = await result
    return result


def _message(error):
    """The Lua message without the traceback lupa appends."""
    message = str(error).split("\nstack traceback:")[0]
    return message[20:] if message.startswith("error loading code: ") else message


def _to_lua(lua, value):
    if isinstance(value, (dict, list, tuple)):
        return lua.table_from(value, recursive=True)
    return value


def _to_python(value, depth):
    """A Lua value as the protocol's values: a table with keys 1..n is a list, any other
    table a dict with string keys."""
    if lupa.lua_type(value) != "table":
        if lupa.lua_type(value) is not None:
            raise ValueError("a Lua %s cannot leave the script" % lupa.lua_type(value))
        return value
    if depth >= MAX_DEPTH:
        raise ValueError("tables nest deeper than %d" % MAX_DEPTH)
    items = dict(value.items())
    if all(type(key) is int for key in items) and sorted(items) == list(
            range(1, len(items) + 1)):
        return [_to_python(items[i], depth + 1) for i in range(1, len(items) + 1)]
    return dict((str(key), _to_python(item, depth + 1)) for key, item in items.items())
