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


_current = None


def install(world):
    """Make `world` the one the shims act on; returns it."""
    global _current
    _current = world
    return world


def current():
    """The World the shims act on (RuntimeError before install)."""
    if _current is None:
        raise RuntimeError("no simulated world installed (host_sim.world.install)")
    return _current
