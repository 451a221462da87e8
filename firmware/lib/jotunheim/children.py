"""ctx, a script's only door to the device, and Loki's three children behind it: Fenrir
(hardware), Jormungandr (network) and Hel (data)."""
# How this works: one Children object per agent holds the three children's counters (work
# running, errors, the last error), which ChildrenStatus reports. Each script call gets a
# Ctx with the call's parameters, the shared Fenrir and Jormungandr, and the script's own
# Hel store: its keys are files /data/NAME/KEY.json, each written through a temporary file
# renamed into place (a power cut leaves the old value or the new one), and the bytes of
# those files count against the script's storage quota.
import json
import os

from jotunheim import loki_scripts, ops, port
from jotunheim.configfile import chars_ok

IDLE, BUSY, ERROR, DISABLED = 1, 2, 3, 4   # ChildState
LEVELS = ("debug", "info", "warning", "error")
DEFAULT_QUOTA = 8192
MAX_KEY = 48


class Child:
    """What one child has done, for ChildrenStatus."""

    def __init__(self, name):
        self.name = name
        self.running = 0
        self.errors = 0
        self.last_error = ""
        self.failing = False    # the last operation failed

    def do(self, function, *args):
        """function(*args), counted."""
        self.running += 1
        try:
            value = function(*args)
        except Exception as e:
            self.errors += 1
            self.failing = True
            self.last_error = "%s: %s" % (type(e).__name__, e)
            raise
        finally:
            self.running -= 1
        self.failing = False
        return value

    def status(self, state=None, storage_bytes=0):
        if state is None:
            state = BUSY if self.running else ERROR if self.failing else IDLE
        return {"name": self.name, "state": state, "running": self.running,
                "errors": self.errors, "last_error": self.last_error,
                "storage_bytes": storage_bytes}


class Children:
    """The three children of one agent's Loki."""

    def __init__(self, loki):
        self.loki = loki
        self.fenrir = Fenrir(loki.agent, Child("Fenrir"))
        self.jormungandr = Jormungandr(Child("Jormungandr"))
        self.hel = Child("Hel")

    def store(self, script):
        if script.store is None:
            quota = script.limits.get("storage_bytes") or DEFAULT_QUOTA
            script.store = Hel(self.loki.agent.root, script.name, quota, self.hel)
        return script.store

    def context(self, script, params):
        return Ctx(self, script, params)

    def status(self):
        used = 0
        for name in self.loki.scripts:
            used += self.store(self.loki.scripts[name]).used
        network = None if _station() is not None else DISABLED
        return [self.fenrir.child.status(), self.jormungandr.child.status(network),
                self.hel.status(storage_bytes=used)]


class Ctx:
    """What a script is given: ctx.params, ctx.log(), ctx.sleep_ms() and the children
    ctx.fenrir, ctx.jormungandr and ctx.hel."""

    def __init__(self, children, script, params):
        self._agent = children.loki.agent
        self.name = script.name
        self.params = params
        self.fenrir = children.fenrir
        self.jormungandr = children.jormungandr
        self.hel = children.store(script)

    def log(self, message, level="info"):
        """Log a line as the agent does (console, and LogRecord to controllers)."""
        if level not in LEVELS:
            raise ValueError("level must be one of %s" % ", ".join(LEVELS))
        self._agent.log("script %s: %s" % (self.name, message), level)

    def sleep_ms(self, ms):
        """Wait without blocking the device: `await ctx.sleep_ms(100)`."""
        return port.sleep_ms(ms)


class Fenrir:
    """Hardware: GPIO, ADC, PWM and I2C of the board."""

    def __init__(self, agent, child):
        self._agent = agent
        self.child = child

    def pin_read(self, pin):
        return self.child.do(ops.pin_read, self._agent, pin)

    def pin_write(self, pin, value):
        self.child.do(ops.pin_write, self._agent, pin, value)

    def pin_toggle(self, pin):
        return self.child.do(ops.pin_toggle, self._agent, pin)

    def adc_read(self, pin):
        return self.child.do(ops.adc_read, self._agent, pin)

    def pwm(self, pin, freq, duty):
        """PWM at freq Hz with duty 0..65535."""
        self.child.do(ops.pwm_set, self._agent, pin, freq, duty)

    def i2c_scan(self, bus=0):
        """The addresses that answer on I2C bus `bus` (its default pins)."""
        return self.child.do(_i2c_scan, bus)

    def i2c_read(self, bus, address, register, count):
        return self.child.do(_i2c_read, bus, address, register, count)

    def i2c_write(self, bus, address, register, data):
        self.child.do(_i2c_write, bus, address, register, data)


def _i2c(bus):
    import machine
    return machine.I2C(bus)


def _i2c_scan(bus):
    return _i2c(bus).scan()


def _i2c_read(bus, address, register, count):
    return bytes(_i2c(bus).readfrom_mem(address, register, count))


def _i2c_write(bus, address, register, data):
    _i2c(bus).writeto_mem(address, register, bytes(data))


class Jormungandr:
    """Network: the Wi-Fi station's state (HTTP and MQTT are not here yet)."""

    def __init__(self, child):
        self.child = child

    def wifi(self):
        """{"connected", "ip"}; a board without Wi-Fi (a Linux board) counts as connected."""
        return self.child.do(_wifi)


def _station():
    try:
        import network
    except ImportError:
        return None
    return network.WLAN(network.STA_IF)


def _wifi():
    station = _station()
    if station is None:
        return {"connected": True, "ip": ""}
    connected = station.isconnected()
    return {"connected": connected, "ip": station.ifconfig()[0] if connected else ""}


class Hel:
    """Data: one script's key-value store (JSON values) under its storage quota."""

    def __init__(self, root, name, quota, child):
        self._dir = root + "data/" + name + "/"
        self._quota = quota
        self._child = child
        self.used = 0
        for key in self._files():
            self.used += os.stat(self._dir + key)[6]

    def _files(self):
        try:
            return [n for n in os.listdir(self._dir) if n.endswith(".json")]
        except OSError:
            return []

    def _path(self, key):
        if type(key) is not str or not 1 <= len(key) <= MAX_KEY or key[0] == "." or \
                not chars_ok(key, "_-."):
            raise ValueError("bad key %r: 1 to %d letters, digits, '_', '-' or '.', not "
                             "starting with '.'" % (key, MAX_KEY))
        return self._dir + key + ".json"

    def _size(self, path):
        try:
            return os.stat(path)[6]
        except OSError:
            return 0

    def get(self, key, default=None):
        """The value stored under key, or default."""
        return self._child.do(self._get, key, default)

    def _get(self, key, default):
        path = self._path(key)
        try:
            with open(path) as f:
                return json.load(f)
        except OSError:
            return default

    def put(self, key, value):
        """Store a JSON value under key, atomically, within the quota."""
        self._child.do(self._put, key, value)

    def _put(self, key, value):
        path = self._path(key)
        data = json.dumps(value).encode()
        old = self._size(path)
        if self.used - old + len(data) > self._quota:
            raise loki_scripts.LimitError(
                "storage quota of %d bytes exceeded (%d used, %s needs %d)"
                % (self._quota, self.used, key, len(data)))
        loki_scripts.make_dirs(self._dir)
        loki_scripts.write_atomic(path, data)
        self.used += len(data) - old

    def delete(self, key):
        """Forget key (nothing happens when it is not there)."""
        self._child.do(self._delete, key)

    def _delete(self, key):
        path = self._path(key)
        size = self._size(path)
        if size:
            os.remove(path)
            self.used -= size

    def keys(self):
        return self._child.do(self._keys)

    def _keys(self):
        return sorted([n[:-5] for n in self._files()])

    def clear(self):
        """Remove every key and the directory (the script is being unregistered)."""
        try:
            names = os.listdir(self._dir)
        except OSError:
            names = []
        for name in names:  # values and any temporary file a power cut left
            loki_scripts.remove(self._dir + name)
        try:
            os.rmdir(self._dir[:-1])
        except OSError:
            pass
        self.used = 0

