# What `import machine`, `import time` and `import asyncio` give firmware that runs as an
# in-process device (host_sim.inprocess; CPython, host only).
#
# Two ways in, because a CPython process has one sys.modules for every device in it:
#
# - Firmware given as source (a main.py) runs with builtins of its own: its imports of the
#   shims' names (machine, network, dht, onewire, ds18x20, time, utime) get the shims;
#   `import asyncio` gets asyncio with run() replaced (see MainStarted); print() writes to
#   the device's console. `time` is then the whole shim: sleep(), time() and localtime()
#   are virtual, as in a device process.
# - Everything else (a coroutine function written in a test, modules firmware imports from
#   the host) imports through sys.modules. install() puts the shims there under their
#   firmware names where this CPython has no module of that name (machine, network, dht,
#   onewire, ds18x20; a shim named like an installed package stays out), and adds to
#   CPython's own `time` only the names it lacks (ticks_ms, ticks_us, ticks_cpu,
#   ticks_add, ticks_diff, sleep_ms, sleep_us), bound to the current task's World.
#   CPython's time.sleep(), time.time() and time.monotonic() stay real there: the stdlib
#   and pytest need them.
#
# The shims look the World up on every call (host_sim.world.current(), per asyncio task),
# so one module object serves every device.
import asyncio
import builtins
import importlib
import importlib.util
import os
import sys
import time
import types

from host_sim import world as _world
from host_sim.shims import time as _time_shim

_SHIMS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "shims")
TIME_NAMES = ("ticks_ms", "ticks_us", "ticks_cpu", "ticks_add", "ticks_diff", "sleep_ms",
              "sleep_us")


def shim_names():
    """The shims other than time, by their firmware names (machine, network, ...)."""
    return sorted(name[:-3] for name in os.listdir(_SHIMS_DIR)
                  if name.endswith(".py") and name not in ("__init__.py", "time.py"))


def shims():
    """{firmware name: shim module} for every shim other than time."""
    return {name: importlib.import_module("host_sim.shims." + name) for name in shim_names()}


class MainStarted(BaseException):
    """asyncio.run(main) in firmware source: the device runs `main` as its main task.

    A BaseException, so that firmware's `except Exception` around asyncio.run() lets it
    through; statements after asyncio.run() in main.py do not run."""

    def __init__(self, coro):
        super().__init__("asyncio.run() in firmware")
        self.coro = coro


def _run(main, debug=None):
    raise MainStarted(main)


def _running_loop():
    return asyncio.get_running_loop()


def firmware_asyncio():
    """asyncio as firmware source sees it: the fleet's loop is already running."""
    facade = types.ModuleType("asyncio")
    facade.__dict__.update(vars(asyncio))
    facade.run = _run
    facade.new_event_loop = _running_loop  # MicroPython's idiom after run(): keep the loop
    return facade


class Environment:
    """The imports and builtins that firmware source runs with."""

    def __init__(self):
        self.modules = shims()
        self.modules.update({"time": _time_shim, "utime": _time_shim,
                             "asyncio": firmware_asyncio()})
        self.builtins = dict(vars(builtins))
        self.builtins["__import__"] = self._import
        self.builtins["print"] = _print

    def _import(self, name, globals=None, locals=None, fromlist=(), level=0):
        if level == 0 and name in self.modules:
            return self.modules[name]
        return builtins.__import__(name, globals, locals, fromlist, level)

    def namespace(self):
        """A fresh main.py namespace."""
        return {"__name__": "__main__", "__builtins__": self.builtins}


def _print(*args, sep=" ", end="\n", file=None, flush=False):
    """print() for firmware source: to its device's console, unless a file is given."""
    device = getattr(_world.peek(), "device", None)
    if file is None and device is not None:
        file = device.console
    builtins.print(*args, sep=sep, end=end, file=file, flush=flush)


_installed = {"count": 0, "modules": [], "time": []}


def install():
    """Make the shims importable by their firmware names and add MicroPython's names to
    CPython's time; nested calls count, uninstall() undoes the last."""
    if _installed["count"] == 0:
        for name, module in shims().items():
            if name not in sys.modules and importlib.util.find_spec(name) is None:
                sys.modules[name] = module
                _installed["modules"].append(name)
        for name in TIME_NAMES:
            if not hasattr(time, name):
                setattr(time, name, getattr(_time_shim, name))
                _installed["time"].append(name)
    _installed["count"] += 1


def uninstall():
    """Undo one install(); the last one takes the names away again."""
    if _installed["count"] == 0:
        return
    _installed["count"] -= 1
    if _installed["count"]:
        return
    for name in _installed["modules"]:
        sys.modules.pop(name, None)
    for name in _installed["time"]:
        delattr(time, name)
    _installed["modules"] = []
    _installed["time"] = []
