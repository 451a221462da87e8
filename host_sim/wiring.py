# How the bus classes meet the board and the clock: which buses a board has, which pins
# they may use, what a misuse raises, and the time a transfer takes.
#
# A bus id the board lacks raises what the port raises ("I2C(3) doesn't exist"); a pin the
# board lacks raises the board's pin error (host_sim.pins.resolve). The RP2040 routes each
# bus signal to fixed pins only ("bad SCL pin"); the ESP32 routes any signal to any pin,
# and an output on an input-only pin fails silently there: the bus is dead (nothing
# answers) and the World's log says why. A profile may override any message through its
# "errors" table with the kinds no_i2c, no_spi, no_uart and bad_bus_pin.
import sys

from host_sim import pins

ENODEV = 19
ETIMEDOUT = 110
_MICROPYTHON = sys.implementation.name == "micropython"
ROLES = {"i2c": ("scl", "sda"), "spi": ("sck", "mosi", "miso"), "uart": ("tx", "rx")}
_OUTPUTS = ("scl", "sda", "sck", "mosi", "tx")
_DOES_NOT = {"esp32": "does not exist", "esp8266": "does not exist"}


def oserror(code, name):
    """OSError(code) that prints as the board prints it: "[Errno 19] ENODEV"."""
    if _MICROPYTHON:
        return OSError(code)  # MicroPython names the errno by itself
    return OSError(code, name)


def spend(world, bits, freq):
    """Let the virtual clock run for `bits` bus clock cycles."""
    world.clock.advance(bits * 1000000 // freq)


def _error(world, kind, arg, default):
    if kind in world.board.get("errors", {}):
        return pins.board_error(world, kind, arg)
    return default


def buses(world, kind):
    """The board's profile entry for one kind of bus: {soft, soft_only, ports}."""
    return world.board.get("buses", {}).get(kind) or {"ports": []}


def port(world, kind, bus_id):
    """The profile entry of hardware bus bus_id; the port's ValueError if there is none."""
    for entry in buses(world, kind)["ports"]:
        if entry["id"] == bus_id:
            return entry
    wording = "doesn't exist"
    if kind == "uart":
        wording = _DOES_NOT.get(world.board.get("port"), wording)
    message = "%s(%s) %s" % (kind.upper(), bus_id, wording)
    raise _error(world, "no_" + kind, bus_id, ValueError(message))


def require_soft(world, kind):
    if not buses(world, kind).get("soft"):
        raise ValueError("Soft%s is not available on this board" % kind.upper())


def _routed(kind, bus_id, role, pin):
    """Whether the RP2040 can route signal `role` of bus bus_id to GPIO `pin`."""
    if not isinstance(pin, int) or pin > 29:
        return False
    if kind == "i2c":
        return pin & 3 == (1 if role == "scl" else 0) + 2 * bus_id
    if kind == "spi":
        return (pin & 8) >> 3 == bus_id and pin & 3 == {"sck": 2, "mosi": 3, "miso": 0}[role]
    return pin & 3 == (0 if role == "tx" else 1) and ((pin + 4) & 8) >> 3 == bus_id


def resolve_pins(world, kind, bus_id, given):
    """Pin ids for each role of a bus; given: {role: pin or None}. A hardware bus fills
    what is not given from its defaults and checks routing; a soft bus needs them all."""
    entry = None if bus_id is None else port(world, kind, bus_id)
    ids = []
    for role in ROLES[kind]:
        pin = given.get(role)
        if pin is None and entry is not None:
            ids.append(entry.get(role))
            continue
        if pin is None:
            raise TypeError("'%s' argument required" % role)
        ident = pins.resolve(world, pin)
        if entry is not None and world.board.get("port") == "rp2" \
                and not _routed(kind, bus_id, role, ident):
            raise _error(world, "bad_bus_pin", role.upper(),
                         ValueError("bad %s pin" % role.upper()))
        ids.append(ident)
    return tuple(ids)


def is_dead(world, kind, ids):
    """True (and logged) if an output signal sits on an input-only pin; a reserved pin
    (flash, radio) is logged too."""
    dead = False
    for role, ident in zip(ROLES[kind], ids):
        if ident is None:
            continue
        reason = world.board.get("reserved", {}).get(str(ident))
        if reason:
            world.record("buses", "%s %s on reserved pin %s (%s)" % (kind, role, ident, reason))
        if role in _OUTPUTS and "out" not in world.board["pins"].get(str(ident), ()):
            world.record("buses", "%s %s on input-only pin %s: bus dead" % (kind, role, ident))
            dead = True
    return dead


def bus_keys(world, kind, bus_id, ids):
    """Every name the wires of one bus go by: its id, its pins, and any hardware bus whose
    default pins these are."""
    keys = [] if bus_id is None else [bus_id]
    keys.append(ids)
    for entry in buses(world, kind)["ports"]:
        if entry["id"] != bus_id and tuple(entry.get(r) for r in ROLES[kind]) == ids:
            keys.append(entry["id"])
    return keys
