# Checking scenarios (host only): what host_sim.scenario.load() and check() do.
#
# Every error names its place in the file ("devices[1].faults[0].at_ms: ...") and what
# belongs there. Defaults are filled in, I2C addresses become numbers, association
# failures become the network shim's status numbers and files named by "from" are read,
# so the runner and the device read one shape. Checking a checked scenario again changes
# nothing.
import json
import os

from host_sim import boards
from host_sim.scenario import FAULTS, KEYS, PARTS, SENSORS, SHAPES, ScenarioError
from host_sim.shims.network import STATUS_NAMES

RUNTIMES = ("micropython", "cpython")
FAULT_KEYS = {"power_cut": ("off_s",), "latency": ("ms",), "wifi_fail": ("status", "count"),
              "link_down": (), "link_up": (), "drop": ()}
ANALOG_KEYS = ("pin", "volts", "points", "shape", "period_ms", "amplitude", "offset", "phase_ms")


def _fail(where, message):
    raise ScenarioError("%s: %s" % (where, message))


def _number(value, where, low=None, above=None):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        _fail(where, "a number, not %r" % (value,))
    if (low is not None and value < low) or (above is not None and value <= above):
        _fail(where, "%r is out of range (%s)" % (
            value, ">= %g" % low if low is not None else "> %g" % above))
    return value


def _whole(value, where, low):
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        _fail(where, "a whole number >= %d, not %r" % (low, value))
    return value


def _known(spec, allowed, where):
    for key in sorted(spec):
        if key not in allowed:
            _fail(where + key, "unknown key (known here: %s)" % ", ".join(sorted(allowed)))


def _pin(profile, pin, where):
    if isinstance(pin, bool) or not isinstance(pin, (int, str)):
        _fail(where, "a pin number or name, not %r" % (pin,))
    if str(pin) not in profile["pins"] and pin not in profile.get("pin_names", {}):
        _fail(where, "the %s has no pin %r" % (profile.get("name", "board"), pin))
    return pin


def _board(board, where):
    if isinstance(board, dict):
        return board
    if not isinstance(board, str):
        _fail(where + "board", "missing: name a board (%s)" % ", ".join(boards.NAMES))
    try:
        return boards.load(board)
    except ValueError as e:
        _fail(where + "board", str(e))


def check(spec, board=None, base=None, where=""):
    """One device's scenario, checked, with its defaults (see host_sim.scenario.check)."""
    if not isinstance(spec, dict):
        _fail(where.rstrip(".") or "scenario", "a device scenario is a JSON object")
    _known(spec, KEYS, where)
    out = dict(spec)
    profile = _board(board if board is not None else spec.get("board"), where)
    if spec.get("runtime") not in (None,) + RUNTIMES:
        _fail(where + "runtime", "one of %s" % ", ".join(RUNTIMES))
    if spec.get("pace") is not None:
        _number(spec["pace"], where + "pace", above=0)
    out["files"] = _files(spec.get("files") or {}, base, where + "files")
    out["peripherals"] = [_peripheral(p, profile, "%speripherals[%d]." % (where, i))
                          for i, p in enumerate(_list(spec, "peripherals", where))]
    names = [p["name"] for p in out["peripherals"] if p.get("name")]
    for name in names:
        if names.count(name) > 1:
            _fail(where + "peripherals", "two peripherals are named %r" % name)
    out["analog"] = [_analog(a, profile, "%sanalog[%d]." % (where, i))
                     for i, a in enumerate(_list(spec, "analog", where))]
    out["faults"] = [check_fault(f, "%sfaults[%d]." % (where, i), timed=True)
                     for i, f in enumerate(_list(spec, "faults", where))]
    network = spec.get("network") or {}
    if not isinstance(network, dict):
        _fail(where + "network", "an object (access_points, associate_ms, failures, link)")
    for status in network.get("failures", ()):
        if status not in STATUS_NAMES:
            _fail(where + "network.failures", "unknown status %r" % (status,))
    unique_id = spec.get("unique_id")
    if unique_id is not None:
        try:
            bytes.fromhex(unique_id)
        except (TypeError, ValueError):
            _fail(where + "unique_id", "hex digits, not %r" % (unique_id,))
    return out


def _list(spec, key, where):
    found = spec.get(key) or []
    if not isinstance(found, list):
        _fail(where + key, "a list")
    return found


def _peripheral(spec, profile, where):
    if not isinstance(spec, dict):
        _fail(where.rstrip("."), "a peripheral is an object")
    part = spec.get("part")
    if part not in SENSORS and part not in PARTS:
        _fail(where + "part", "one of %s, not %r" % (", ".join(sorted(SENSORS) + list(PARTS)),
                                                   part))
    out = dict(spec)
    allowed = ["part", "name"]
    if part in PARTS:
        allowed += ["pin", "active_low"]
        _pin(profile, spec.get("pin"), where + "pin")
        if not isinstance(spec.get("active_low", False), bool):
            _fail(where + "active_low", "true or false")
        _known(spec, allowed, where)
        return out
    kind, settings = SENSORS[part]
    allowed += list(settings)
    for name in settings:
        if name in ("temperature", "pressure", "humidity") and name in spec:
            _number(spec[name], where + name)
        elif name in spec and not isinstance(spec[name], bool):
            _fail(where + name, "true or false")
    if kind == "i2c":
        allowed += ["bus", "address"]
        out["bus"] = _i2c_bus(spec.get("bus"), profile, where + "bus")
        out["address"] = _address(spec.get("address", 0x76), where + "address")
    else:
        allowed += ["pin"] + (["serial"] if part == "DS18B20" else [])
        _pin(profile, spec.get("pin"), where + "pin")
        if spec.get("serial") is not None:
            _whole(spec["serial"], where + "serial", 0)
    _known(spec, allowed, where)
    return out


def _i2c_bus(bus, profile, where):
    """A bus id the board has (default: its first), or [scl, sda] pins."""
    ids = [port["id"] for port in profile.get("buses", {}).get("i2c", {}).get("ports", ())]
    if bus is None and ids:
        return ids[0]
    if isinstance(bus, list) and len(bus) == 2:
        return [_pin(profile, pin, where) for pin in bus]
    if isinstance(bus, bool) or not isinstance(bus, int) or bus not in ids:
        _fail(where, "one of the board's I2C buses %s, or [scl, sda] pins, not %r" % (ids, bus))
    return bus


def _address(address, where):
    if isinstance(address, str):
        try:
            address = int(address, 0)
        except ValueError:
            _fail(where, "a number or \"0x76\", not %r" % (address,))
    if isinstance(address, bool) or not isinstance(address, int) or not 0 < address < 0x78:
        _fail(where, "a 7-bit I2C address, not %r" % (address,))
    return address


def _analog(spec, profile, where):
    if not isinstance(spec, dict):
        _fail(where.rstrip("."), "an analog input is an object")
    _known(spec, ANALOG_KEYS, where)
    pin = spec.get("pin")
    if isinstance(pin, int):
        _pin(profile, pin, where + "pin")
    elif not isinstance(pin, str):
        _fail(where + "pin", "a pin or a named source (\"VDD\"), not %r" % (pin,))
    given = [key for key in ("volts", "points", "shape") if key in spec]
    if len(given) != 1:
        _fail(where.rstrip("."), "give one of volts, points or shape")
    if "volts" in spec:
        _number(spec["volts"], where + "volts")
    elif "points" in spec:
        _points(spec["points"], where + "points")
    else:
        if spec["shape"] not in SHAPES:
            _fail(where + "shape", "one of %s" % ", ".join(SHAPES))
        _number(spec.get("period_ms"), where + "period_ms", above=0)
        for key in ("amplitude", "offset", "phase_ms"):
            if key in spec:
                _number(spec[key], where + key)
    return dict(spec)


def _points(points, where):
    if not isinstance(points, list) or not points:
        _fail(where, "a list of [ms, volts] points")
    last = None
    for i, point in enumerate(points):
        here = "%s[%d]" % (where, i)
        if not isinstance(point, list) or len(point) != 2:
            _fail(here, "a point is [ms, volts]")
        _number(point[0], here, low=0 if last is None else last)
        _number(point[1], here)
        last = point[0]


def check_fault(fault, where="fault.", timed=False):
    """One fault, checked, with its defaults; timed: it must say when (at_ms or after_s)."""
    if not isinstance(fault, dict):
        _fail(where.rstrip("."), "a fault is an object")
    kind = fault.get("fault")
    if kind not in FAULTS:
        _fail(where + "fault", "one of %s, not %r" % (", ".join(FAULTS), kind))
    _known(fault, ("fault", "at_ms", "after_s", "boot") + FAULT_KEYS[kind], where)
    out = dict(fault)
    when = [key for key in ("at_ms", "after_s") if key in fault]
    if timed and len(when) != 1:
        _fail(where.rstrip("."), "give one of at_ms (virtual) or after_s (real)")
    for key in when:
        _number(fault[key], where + key, low=0)
    out["boot"] = _whole(fault.get("boot", 1), where + "boot", 1)
    if kind == "power_cut":
        out["off_s"] = fault.get("off_s", 0)
        if out["off_s"] is not None:
            _number(out["off_s"], where + "off_s", low=0)
    elif kind == "latency":
        _number(fault.get("ms"), where + "ms", low=0)
    elif kind == "wifi_fail":
        status = fault.get("status", "STAT_ASSOC_FAIL")
        if status not in STATUS_NAMES and status not in STATUS_NAMES.values():
            _fail(where + "status", "one of %s" % ", ".join(sorted(STATUS_NAMES)))
        out["status"] = STATUS_NAMES.get(status, status)
        out["count"] = _whole(fault.get("count", 1), where + "count", 1)
    return out


def _files(files, base, where):
    """{device path: bytes}; {"from": PATH} reads a host file or directory (relative to
    base, the scenario's directory)."""
    if not isinstance(files, dict):
        _fail(where, "an object: {device path: text, or {\"from\": host path}}")
    out = {}
    for path, content in files.items():
        if isinstance(content, (str, bytes)):
            out[path] = content
            continue
        if not isinstance(content, dict) or set(content) != {"from"}:
            _fail("%s[%r]" % (where, path), "text, or {\"from\": host path}")
        source = os.path.join(base or os.getcwd(), content["from"])
        if os.path.isdir(source):
            for directory, _, names in os.walk(source):
                for name in sorted(names):
                    host = os.path.join(directory, name)
                    inside = os.path.relpath(host, source).replace(os.sep, "/")
                    out[path.rstrip("/") + "/" + inside] = _read(host, where)
        else:
            out[path] = _read(source, where)
    return out


def _read(host, where):
    try:
        with open(host, "rb") as f:
            return f.read()
    except OSError as e:
        _fail(where, "cannot read %s: %s" % (host, e.strerror))


def load(path):
    """The device scenarios of a file: see host_sim.scenario.load()."""
    with open(path) as f:
        try:
            data = json.load(f)
        except ValueError as e:
            raise ScenarioError("%s is not JSON: %s" % (path, e)) from None
    if not isinstance(data, dict):
        raise ScenarioError("%s: a scenario is a JSON object" % path)
    base = os.path.dirname(os.path.abspath(path))
    if "devices" not in data:
        return [check(data, base=base)]
    devices = data["devices"]
    if not isinstance(devices, list) or not devices:
        raise ScenarioError("devices: a list of device scenarios")
    shared = {key: value for key, value in data.items() if key != "devices"}
    checked = []
    for i, device in enumerate(devices):
        if not isinstance(device, dict):
            _fail("devices[%d]" % i, "a device scenario is an object")
        checked.append(check(dict(shared, **device), base=base, where="devices[%d]." % i))
    return checked
