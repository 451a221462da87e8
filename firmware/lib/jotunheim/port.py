# What differs between the interpreters the agent runs on, in one place.
#
# MicroPython (a board, or the unix port under the simulator) has ticks_ms/sleep_ms and
# gc.mem_free; CPython has them only inside the simulator (host_sim.vclock). A Linux board
# runs the agent on plain CPython, where the monotonic clock stands in for the ticks.
import asyncio
import gc
import sys
import time

MICROPYTHON = sys.implementation.name == "micropython"

if MICROPYTHON:
    from micropython import const  # noqa: F401 - for the modules: `_NAME = const(1)`
else:  # CPython: a constant is its value
    def const(value):
        return value

if hasattr(time, "ticks_ms"):
    ticks_ms = time.ticks_ms
    ticks_diff = time.ticks_diff
    ticks_add = time.ticks_add
else:  # plain CPython: a Linux board without the simulator
    def ticks_ms():
        return int(time.monotonic() * 1000)

    def ticks_diff(a, b):
        return a - b

    def ticks_add(a, b):
        return a + b

if hasattr(asyncio, "sleep_ms"):
    sleep_ms = asyncio.sleep_ms
else:
    def sleep_ms(ms):
        return asyncio.sleep(ms / 1000)

# Free heap in bytes, or None where the interpreter does not report it.
mem_free = getattr(gc, "mem_free", None)


def print_exception(exc):
    if MICROPYTHON:
        sys.print_exception(exc)
    else:
        import traceback
        traceback.print_exception(type(exc), exc, exc.__traceback__)


def storage(path="/"):
    """(total, free) bytes of the filesystem holding path, or (0, 0) if unknown."""
    import os
    try:
        st = os.statvfs(path)
    except (AttributeError, OSError):
        return 0, 0
    return st[0] * st[2], st[0] * st[3]


def module(name):
    """jotunheim.<name>, imported if it is not: for code needed now and then (the checks
    of settings and tools.json), which drop() lets go of again."""
    full = "jotunheim." + name
    if full not in sys.modules:
        __import__(full)
    return sys.modules[full]


def drop(*names):
    """Forget modules that module() loaded; their RAM is freed at the next collection."""
    import jotunheim
    for name in names:
        sys.modules.pop("jotunheim." + name, None)
        try:
            delattr(jotunheim, name)
        except (AttributeError, KeyError):  # MicroPython raises KeyError
            pass
    gc.collect()
