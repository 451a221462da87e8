# The device's `time` module on CPython (host only). A CPython process cannot shadow the
# built-in `time` through sys.path as the MicroPython unix port can; install() puts
# host_sim/shims/time.py into sys.modules["time"] instead. A CPython device process starts:
#
#     world.install(World(board))  # first: the stdlib reads the clock at import (logging)
#     from host_sim import vclock
#     vclock.install()           # modules imported from now on get the shim as `time`
#     from host_sim import vasyncio
#     vasyncio.install()         # asyncio.run() and new_event_loop() run on the virtual clock
#
# The shim serves MicroPython's time API on the virtual clock and reads every other name
# (monotonic, perf_counter, struct_time: what the stdlib and asyncio need) from the real
# module, which install() stashes in the shim's `_host`. time.strftime also accepts the
# shim's 8-tuples, for logging.
import sys

from host_sim.shims import time as _shim


def install():
    """Make `import time` give the time shim; returns the module it replaced.

    The replaced module stays reachable as the shim's `_host`: the shim reads the names it
    lacks from it. Modules that imported `time` earlier keep the real one."""
    previous = sys.modules.get("time")
    if previous is _shim:
        return _shim._host
    _shim._host = previous
    _shim.strftime = _strftime
    # C functions do not bind as methods; the shim's Python functions would where the
    # stdlib keeps one as a class attribute (logging.Formatter.converter = time.localtime)
    for name in _functions():
        setattr(_shim, name, staticmethod(getattr(_shim, name)))
    sys.modules["time"] = _shim
    return previous


def uninstall(previous):
    """Undo install(): `previous` becomes the `time` module again."""
    sys.modules["time"] = previous
    for name in _functions():
        setattr(_shim, name, getattr(_shim, name).__func__)
    del _shim.strftime
    _shim._host = None


def _functions():
    return [name for name in vars(_shim) if not name.startswith("_")
            and callable(getattr(_shim, name))]


def _strftime(fmt, t=None):
    """The real strftime, also for the shim's 8-tuples (logging formats them)."""
    if t is None:
        t = _shim.localtime()
    if len(t) == 8:
        t = tuple(t) + (0,)
    return _shim._host.strftime(fmt, t)
