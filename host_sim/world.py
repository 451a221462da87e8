# The World of one simulated device: its board, its clock, and the state of everything
# attached to it. The shims in shims/ act on the current World; a scenario or a test sets
# it up and changes it (set a sensor, press a button, cut the link, advance the clock).
#
# The World keeps generic registries so that each part of the simulator owns its own
# state: host_sim.pins keeps pin states in `pins`, the bus models sit in `peripherals`
# keyed by where they are attached, the network shim keeps its state in `network`.
from host_sim.clock import Clock


class World:
    """One simulated device's board, clock and attached hardware."""

    def __init__(self, board, clock=None):
        self.board = board          # the board profile (a dict, see boards/README.md)
        self.clock = clock if clock is not None else Clock()
        self.pins = {}              # pin id -> pin state (host_sim.pins)
        self.peripherals = {}       # (bus kind, bus id, address) -> model
        self.network = None         # network state (shims/network.py)
        self.machine = {}           # reset cause, frequency, watchdog ... (shims/machine.py)
        self.log = []               # (time in us, source, event) for tests and scenarios

    def attach(self, kind, bus, address, model):
        """Attach a peripheral model, e.g. attach("i2c", 0, 0x76, Bme280())."""
        key = (kind, bus, address)
        if key in self.peripherals:
            raise ValueError("%s %r address %r is taken" % (kind, bus, address))
        self.peripherals[key] = model
        if hasattr(model, "attached"):
            model.attached(self, kind, bus, address)
        return model

    def on(self, kind, bus):
        """The models attached to one bus, as {address: model}."""
        return {key[2]: model for key, model in self.peripherals.items()
                if key[0] == kind and key[1] == bus}

    def record(self, source, event):
        self.log.append((self.clock.now_us, source, event))


_current = None  # the process's World: install() sets it
# On CPython one process may run many simulated devices, each as asyncio tasks: enter()
# makes a World current for one context (a task and the tasks it starts), and current()
# prefers it to the process's. MicroPython has no contextvars: there enter() swaps the
# process's World, which is all one device per process needs.
try:
    from contextvars import ContextVar
    _task_world = ContextVar("host_sim_world", default=None)
except ImportError:
    _task_world = None


def install(world):
    """Make `world` the one the shims act on; returns it."""
    global _current
    _current = world
    return world


def current():
    """The World the shims act on (RuntimeError before install)."""
    world = peek()
    if world is None:
        raise RuntimeError("no simulated world installed (host_sim.world.install)")
    return world


def peek():
    """The World the shims act on, or None."""
    if _task_world is not None:
        world = _task_world.get()
        if world is not None:
            return world
    return _current


def enter(world):
    """Make `world` current in this context (CPython: this task and the tasks it starts);
    returns a token for leave()."""
    global _current
    if _task_world is not None:
        return _task_world.set(world)
    previous = _current
    _current = world
    return previous


def leave(token):
    """Undo the enter() that returned `token`."""
    global _current
    if _task_world is not None:
        _task_world.reset(token)
    else:
        _current = token


def using(world, function, *args):
    """function(*args) with `world` current: how an IRQ handler or timer callback runs."""
    token = enter(world)
    try:
        return function(*args)
    finally:
        leave(token)
