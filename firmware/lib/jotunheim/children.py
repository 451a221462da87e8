"""ctx, a script's only door to the device, and Loki's three children behind it: Fenrir
(hardware), Jormungandr (network) and Hel (data)."""
# How this works: one Children object per agent holds the three children's counters (work
# running, errors, the last error), which ChildrenStatus reports. Each script call gets a
# Ctx with the call's parameters, the shared Fenrir and Jormungandr, and the script's own
# Hel store: its keys are files /data/NAME/KEY.json, each written through a temporary file
# renamed into place (a power cut leaves the old value or the new one), and the bytes of
# those files count against the script's storage quota. What is used now and then lives in
# modules loaded by its first use: jotunheim.fenrir (SPI, UART, sensors, actuators,
# /wiring.json), jotunheim.http and jotunheim.mqtt (Jormungandr's HTTP and its one MQTT
# connection, shared by the scripts), jotunheim.hel (files, time series, cache).
import json
import os

from jotunheim import loki_scripts, ops, port

IDLE, BUSY, ERROR, DISABLED = 1, 2, 3, 4   # ChildState
LEVELS = ("debug", "info", "warning", "error")
DEFAULT_QUOTA = 8192
MAX_KEY = 48
# what a key may hold (checks.chars_ok's test: importing that into this module, which
# stays in RAM, would keep a copy of jotunheim.checks there after it is dropped)
_KEY_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-."


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
            self._failed(e)
            raise
        finally:
            self.running -= 1
        self.failing = False
        return value

    async def work(self, coroutine):
        """Await coroutine, counted."""
        self.running += 1
        try:
            value = await coroutine
        except Exception as e:
            self._failed(e)
            raise
        finally:
            self.running -= 1
        self.failing = False
        return value

    def _failed(self, e):
        self.errors += 1
        self.failing = True
        self.last_error = "%s: %s" % (type(e).__name__, e)

    def status(self, state=None, storage_bytes=0, memory_bytes=0):
        if state is None:
            state = BUSY if self.running else ERROR if self.failing else IDLE
        return {"name": self.name, "state": state, "running": self.running,
                "errors": self.errors, "last_error": self.last_error,
                "storage_bytes": storage_bytes, "memory_bytes": memory_bytes}


class Children:
    """The three children of one agent's Loki."""

    def __init__(self, loki):
        self.loki = loki
        self.fenrir = Fenrir(loki.agent, Child("Fenrir"))
        self.jormungandr = Jormungandr(loki.agent, Child("Jormungandr"))
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
        network = self.jormungandr
        return [self.fenrir.child.status(),
                network.child.status(memory_bytes=network.memory()),
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

    def emit(self, data):
        """Send bytes (or text) on the stream of a StreamScript_ run: `await ctx.emit(b)`
        returns once the receiver's credit covered them (jotunheim.streams)."""
        sink = getattr(self, "sink", None)
        if sink is None:
            raise ValueError("ctx.emit works in StreamScript_%s runs only" % self.name)
        if sink.direction == 1:
            raise ValueError("this stream carries data to the device only")
        return sink.send(data)

    def receive(self):
        """The next bytes of the stream a controller sends this run (StreamOpen{kind raw,
        direction in or both, source NAME}): `await ctx.receive()`, None once it closed it."""
        sink = getattr(self, "sink", None)
        if sink is None or sink.direction == 2:
            raise ValueError("ctx.receive works in runs fed by a stream only")
        return sink.receive()


class Fenrir:
    """Hardware: GPIO, ADC, PWM, I2C, SPI and UART of the board, its sensors and
    actuators."""

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

    # buses, sensors and actuators: jotunheim.fenrir, loaded by the first use

    def spi_transfer(self, bus, data, baudrate=1000000, cs=None):
        """The bytes read while `data` is clocked out (chip select `cs` held low)."""
        return self.child.do(port.module("fenrir").spi_transfer, bus, data, baudrate, cs)

    def uart_write(self, uart_id, data, baudrate=115200):
        return self.child.do(port.module("fenrir").uart_write, uart_id, data, baudrate)

    def uart_read(self, uart_id, count, timeout_ms=1000, baudrate=115200):
        """`await` it: up to count bytes within timeout_ms."""
        return self.child.work(port.module("fenrir").uart_read(uart_id, count, timeout_ms,
                                                               baudrate))

    def dht22(self, pin):
        """{"temperature", "humidity"} of a DHT22 on pin."""
        return self.child.do(port.module("fenrir").dht, pin, "DHT22")

    def ds18b20(self, pin):
        """`await` it: [{"rom", "temperature"}] of the DS18B20s on the 1-Wire pin."""
        return self.child.work(port.module("fenrir").ds18b20(pin))

    def bme280(self, bus=0, address=0x76):
        """`await` it: {"temperature", "pressure" (Pa), "humidity"} (no humidity: BMP280)."""
        return self.child.work(port.module("fenrir").bme280(bus, address))

    def led(self, pin, on, active_low=False):
        return self.child.do(port.module("fenrir").actuator, pin, on, active_low)

    def relay(self, pin, on, active_low=False):
        return self.child.do(port.module("fenrir").actuator, pin, on, active_low)

    def parts(self):
        """The parts named in /wiring.json."""
        return self.child.do(port.module("fenrir").wiring, self._agent.root)

    def read(self, name):
        """`await` it: the reading of the sensor called name in /wiring.json."""
        return self.child.work(_awaited(port.module("fenrir").read, self._agent.root, name))

    def switch(self, name, on):
        """Switch the LED or relay called name in /wiring.json."""
        return self.child.do(port.module("fenrir").switch, self._agent.root, name, on)


async def _awaited(function, *args):
    value = function(*args)
    if hasattr(value, "send"):
        value = await value
    return value


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
    """Network: the Wi-Fi station's state, HTTP(S) requests (jotunheim.http) and one MQTT
    broker connection shared by the device's scripts (jotunheim.mqtt), each module loaded
    by its first use."""

    def __init__(self, agent, child):
        self._agent = agent
        self.child = child
        self.mqtt = None    # the jotunheim.mqtt.Client, once a script connected

    def wifi(self):
        """{"connected", "ip"}; a board without Wi-Fi (a Linux board) counts as connected."""
        return self.child.do(_wifi)

    def http(self, method, url, body=None, headers=None, timeout_ms=10000, max_bytes=4096):
        """`await` it: {"status", "reason", "headers", "body"} (see jotunheim.http)."""
        return self.child.work(port.module("http").request(
            method, url, body, headers, timeout_ms, max_bytes))

    def http_get(self, url, headers=None, timeout_ms=10000, max_bytes=4096):
        return self.http("GET", url, None, headers, timeout_ms, max_bytes)

    def http_post(self, url, body=None, headers=None, timeout_ms=10000, max_bytes=4096):
        return self.http("POST", url, body, headers, timeout_ms, max_bytes)

    async def mqtt_connect(self, host, port=1883, client_id="", keepalive_s=60, user="",
                           password="", tls=False, backoff_max_ms=30000, timeout_ms=5000):
        """Connect to the broker (a connection to the same broker is shared; another broker
        replaces it); it reconnects by itself from then on. Its mqtt_status()."""
        return await self.child.work(self._mqtt_connect(
            host, port, client_id or ("jh-" + self._agent.settings["device.id"])[:23],
            keepalive_s, user, password, tls, backoff_max_ms, timeout_ms))

    async def _mqtt_connect(self, host, number, client_id, keepalive_s, user, password, tls,
                            backoff_max_ms, timeout_ms):
        old = self.mqtt
        same = old is not None and (old.host, old.port, old.client_id, old.user, old.tls) == (
            host, number, client_id, user, tls)
        if not same:
            client = port.module("mqtt").Client(
                host, number, client_id, keepalive_s, user, password, tls,
                backoff_max_ms=backoff_max_ms, timeout_ms=timeout_ms)
            if old is not None:
                await old.close()
            self.mqtt = client
            client.start()
        await self.mqtt.wait_connected(timeout_ms)
        return self.mqtt.status()

    def _client(self):
        if self.mqtt is None:
            raise OSError("no MQTT broker: call mqtt_connect first")
        return self.mqtt

    def mqtt_publish(self, topic, payload, qos=0, retain=False, timeout_ms=5000):
        """`await` it; QoS 1 returns once the broker has the message."""
        return self.child.work(self._client().publish(topic, payload, qos, retain,
                                                      timeout_ms))

    def mqtt_subscribe(self, topic, qos=0, timeout_ms=5000):
        """`await` it: the QoS granted, or None while the broker is away (subscribed when
        it is back, and again after every reconnect)."""
        return self.child.work(self._client().subscribe(topic, qos, timeout_ms))

    def mqtt_unsubscribe(self, topic):
        return self.child.work(self._client().unsubscribe(topic))

    def mqtt_receive(self, topic=None, timeout_ms=0):
        """`await` it: {"topic", "payload" (bytes)} or None after timeout_ms."""
        return self.child.work(self._client().receive(topic, timeout_ms))

    def mqtt_status(self):
        """{"connected", "broker", "connects", "subscriptions", ...}, or None before any
        mqtt_connect."""
        return None if self.mqtt is None else self.mqtt.status()

    async def mqtt_disconnect(self):
        client, self.mqtt = self.mqtt, None
        if client is not None:
            await client.close()

    def memory(self):
        return 0 if self.mqtt is None else self.mqtt.queued_bytes()


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
    """Data: one script's key-value store (JSON values), files and time series under its
    storage quota, and a small cache in RAM (the last three in jotunheim.hel)."""

    def __init__(self, root, name, quota, child):
        self.dir = self._dir = root + "data/" + name + "/"
        self._quota = quota
        self._child = child
        self._cache = {}
        self.used = 0
        for key in self._files():
            self.used += os.stat(self._dir + key)[6]
        for sub in ("files/", "series/"):
            try:
                names = os.listdir(self._dir + sub)
            except OSError:
                continue
            for n in names:
                if not n.endswith(".tmp"):
                    self.used += os.stat(self._dir + sub + n)[6]

    def _files(self):
        try:
            return [n for n in os.listdir(self._dir) if n.endswith(".json")]
        except OSError:
            return []

    def _path(self, key):
        return self.path("", key, ".json")

    def path(self, sub, key, suffix):
        """The path of key (checked) in subdirectory sub ("" or "files/")."""
        if type(key) is not str or not 1 <= len(key) <= MAX_KEY or key[0] == "." or \
                [c for c in key if c not in _KEY_CHARS]:
            raise ValueError("bad name %r: 1 to %d letters, digits, '_', '-' or '.', not "
                             "starting with '.'" % (key, MAX_KEY))
        return self._dir + sub + key + suffix

    def reserve(self, more, what):
        """LimitError unless `more` bytes fit in the quota."""
        if more > 0 and self.used + more > self._quota:
            raise loki_scripts.LimitError(
                "storage quota of %d bytes exceeded (%d used, %s needs %d more)"
                % (self._quota, self.used, what, more))

    # files, time series and the cache: jotunheim.hel

    def write(self, name, data):
        """Store a whole file (text or bytes), atomically, within the quota."""
        self._child.do(port.module("hel").write_file, self, name, data)

    def read(self, name, default=None):
        """A file's bytes, or default."""
        return self._child.do(port.module("hel").read_file, self, name, default)

    def files(self):
        return self._child.do(port.module("hel").listing, self._dir + "files")

    def remove(self, name):
        """Delete a file; whether it was there."""
        return self._child.do(port.module("hel").remove_file, self, name)

    def append(self, series, value, t=None, keep=128):
        """Add a sample (a number, at t seconds; now when None) to a series that keeps its
        newest `keep` samples; how many it holds."""
        return self._child.do(port.module("hel").append, self, series, value, t, keep)

    def windows(self, series, window_s=0, since=None, until=None):
        """[{"start", "count", "min", "max", "avg"}] per window of window_s seconds."""
        return self._child.do(port.module("hel").windows, self, series, window_s, since,
                              until)

    def stats(self, series, since=None, until=None):
        """{"count", "min", "max", "avg"} of a series (count 0 when empty)."""
        got = self.windows(series, 0, since, until)
        return got[0] if got else {"start": 0, "count": 0, "min": None, "max": None,
                                   "avg": None}

    def series(self):
        return self._child.do(port.module("hel").series_names, self)

    def drop_series(self, series):
        return self._child.do(port.module("hel").drop_series, self, series)

    def cache_put(self, key, value, ttl_ms=60000):
        """Keep value in RAM for ttl_ms (lost at a reboot; at most 16 entries)."""
        port.module("hel").cache_put(self._cache, key, value, ttl_ms)

    def cache_get(self, key, default=None):
        return port.module("hel").cache_get(self._cache, key, default)

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
        self.reserve(len(data) - old, key)
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
            if name in ("files", "series"):
                try:
                    inner = os.listdir(self._dir + name)
                except OSError:
                    inner = []
                for n in inner:
                    loki_scripts.remove(self._dir + name + "/" + n)
                try:
                    os.rmdir(self._dir + name)
                except OSError:
                    pass
            else:
                loki_scripts.remove(self._dir + name)
        try:
            os.rmdir(self._dir[:-1])
        except OSError:
            pass
        self.used = 0

