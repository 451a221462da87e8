# Scenarios: what a simulated device is wired to and what happens to it (the schema is
# host_sim/SCENARIOS.md). Valid on MicroPython and CPython: both ends of a device use it.
#
# Host side (host_sim.runner, `jotunheim sim`): load() reads a scenario file; check()
# validates one device's scenario and fills in its defaults; device_config() picks what
# one boot of the device applies, timed_faults() what the runner times in real time.
# Device side (host_sim.device_boot, before the flash is mounted): apply() attaches the
# peripherals, puts the waveforms on the analog inputs, schedules the faults due at
# virtual times, and returns the Setup that serves the runner's requests (set a sensor,
# press a button, read a history: host_sim.control carries them).
#
# A fault fires at at_ms (virtual ms since boot number `boot`) or after_s (real seconds
# since that boot mounted its flash). It has up to two halves: the device's (the Wi-Fi
# link and association failures, in the network shim) and the host's (the power and the
# link proxies: cut, latency, drop). Whichever end fires it applies its half and hands the
# other half over the control socket; the device waits until the host's half is done, so
# a link cut or a power cut at at_ms lands exactly then.
import math

from host_sim import parts, pins, sensors

SENSORS = {  # part -> (bus kind, the model's attributes a scenario or a test may set)
    "BME280": ("i2c", ("temperature", "pressure", "humidity", "connected")),
    "BMP280": ("i2c", ("temperature", "pressure", "connected")),
    "DS18B20": ("onewire", ("temperature", "connected", "crc_error")),
    "DHT22": ("dht", ("temperature", "humidity", "connected", "checksum_error")),
    "DHT11": ("dht", ("temperature", "humidity", "connected", "checksum_error")),
}
PARTS = ("LED", "Relay", "Button")
SHAPES = ("sine", "square", "triangle", "sawtooth")
HOST_HALF = ("power_cut", "link_down", "link_up", "latency", "drop")
DEVICE_HALF = ("link_down", "link_up", "wifi_fail")
FAULTS = ("power_cut", "link_down", "link_up", "latency", "drop", "wifi_fail")
KEYS = ("name", "description", "board", "runtime", "pace", "files", "peripherals",
        "analog", "network", "faults", "unique_id", "root", "repl_port", "run_main",
        "serial")  # serial: checked against the board by the runner (host_sim.serialbridge)
HISTORY_LIMIT = 500  # entries per answer: the host asks again for more


class ScenarioError(ValueError):
    """A scenario is malformed; the message says where."""


# ---------------------------------------------------------------- the device side

def waveform(spec):
    """What pins.set_voltage() takes for {"volts"}, {"points": [[ms, V]...]} or a shape."""
    if "volts" in spec:
        return spec["volts"]
    if "points" in spec:
        return [(point[0] * 1000, point[1]) for point in spec["points"]]
    shape = spec["shape"]
    period = spec["period_ms"] * 1000
    phase = spec.get("phase_ms", 0) * 1000
    amplitude = spec.get("amplitude", 1.0)
    offset = spec.get("offset", 0.0)

    def wave(t_us):
        x = ((t_us + phase) % period) / period
        if shape == "sine":
            y = math.sin(2 * math.pi * x)
        elif shape == "square":
            y = 1.0 if x < 0.5 else -1.0
        elif shape == "triangle":
            y = 1.0 - 4.0 * abs(x - 0.5)
        else:
            y = 2.0 * x - 1.0
        return offset + amplitude * y
    return wave


def device_fault(world, fault):
    """The device's half of a fault: the Wi-Fi link, association failures."""
    kind = fault["fault"]
    world.record("fault", kind)
    if kind in ("link_down", "link_up"):
        world.network.set_link(kind == "link_up")
    elif kind == "wifi_fail":
        world.network.failures.extend([fault["status"]] * fault.get("count", 1))


class _At:
    """A world action due at a virtual time, run by the pins Scheduler like a Timer."""

    def __init__(self, scheduler, action):
        self.scheduler = scheduler
        self.action = action
        self.due_us = None

    def _fire(self):
        self.scheduler.disarm(self)
        self.action()


class Setup:
    """What a scenario attached to a World; serves the runner's requests on it."""

    def __init__(self, world, control=None):
        self.world = world
        self.control = control
        self.parts = {}  # pin id -> LED, Relay or Button
        self.names = {}  # name -> ("part", pin id) or (kind, bus, address)

    def at(self, due_us, action):
        scheduler = pins.scheduler(self.world)
        scheduler.arm(_At(scheduler, action), due_us)

    def attach(self, spec):
        part = spec["part"]
        world = self.world
        if part in PARTS:
            made = getattr(parts, part)(spec["pin"], spec.get("active_low", part == "Button"),
                                        world=world)
            self.parts[made.pin.id] = made
            key = ("part", made.pin.id)
        else:
            kind, names = SENSORS[part]
            if part in ("BME280", "BMP280"):
                model = sensors.Bme280() if part == "BME280" else sensors.Bmp280()
                key = (kind, _bus(world, spec["bus"]), spec["address"])
            elif part == "DS18B20":
                model = sensors.Ds18b20(serial=spec.get("serial"))
                key = (kind, pins.resolve(world, spec["pin"]), model.rom)
            else:
                model = sensors.Dht22() if part == "DHT22" else sensors.Dht11()
                key = (kind, pins.resolve(world, spec["pin"]), None)
            for name in names:
                if name in spec:
                    setattr(model, name, spec[name])
            world.attach(key[0], key[1], key[2], model)
        if spec.get("name"):
            self.names[spec["name"]] = key

    def schedule(self, fault):
        """Fire `fault` when the clock reaches its at_ms (at once if that has passed)."""
        due = self.world.clock.boot_us + fault["at_ms"] * 1000
        if due <= self.world.clock.now_us:
            self.fire(fault)
        else:
            self.at(due, lambda: self.fire(fault))

    def fire(self, fault):
        kind = fault["fault"]
        if kind in DEVICE_HALF:
            device_fault(self.world, fault)
        if kind not in HOST_HALF or self.control is None:
            return
        if kind == "power_cut":
            self.world.record("fault", kind)
            self.control.send({"fault": fault})
            self.control.wait_for_end()
        self.control.ask({"fault": fault})

    # ------------------------------------------------------------ requests

    def serve(self, message):
        """Carry out one request from the runner; returns what it answers."""
        handler = getattr(self, "op_" + str(message["op"]), None)
        if handler is None:
            raise ValueError("unknown request %r" % message["op"])
        return handler(message)

    def model(self, where):
        """The peripheral model at [name] or [kind, bus, address] (address None: the only
        one on that bus)."""
        if len(where) == 1:
            key = self.names.get(where[0])
            if key is None or key[0] == "part":
                raise ValueError("no sensor named %r" % (where[0],))
            return self.world.peripherals[key]
        kind, bus, address = (list(where) + [None])[:3]
        bus = _bus(self.world, bus) if kind == "i2c" else pins.resolve(self.world, bus)
        if isinstance(address, str):
            address = bytes.fromhex(address)
        if address is None:
            found = self.world.on(kind, bus)
            if len(found) == 1:
                for model in found.values():
                    return model
            raise ValueError("%d devices on %s %r: name the address" % (len(found), kind, bus))
        model = self.world.peripherals.get((kind, bus, address))
        if model is None:
            raise ValueError("nothing attached at %s %r address %r" % (kind, bus, address))
        return model

    def part(self, pin, kinds):
        found = self.parts.get(pins.resolve(self.world, pin))
        if not isinstance(found, kinds):
            raise ValueError("no %s on pin %r: declare it in the scenario's peripherals" % (
                " or ".join(kind.__name__ for kind in kinds), pin))
        return found

    def op_set(self, message):
        model = self.model(message["where"])
        for name, value in message["values"].items():
            if name.startswith("_") or not hasattr(model, name) \
                    or callable(getattr(model, name)):
                raise ValueError("a %s has no setting %r" % (type(model).__name__, name))
            setattr(model, name, value)
            self.world.record("world", "set %s %s=%r" % (type(model).__name__, name, value))

    def op_press(self, message):
        self.part(message["pin"], (parts.Button,)).press()

    def op_release(self, message):
        self.part(message["pin"], (parts.Button,)).release()

    def op_click(self, message):
        """Press now; release ms later in device time."""
        button = self.part(message["pin"], (parts.Button,))
        button.press()
        self.at(self.world.clock.now_us + message.get("ms", 100) * 1000, button.release)

    def op_voltage(self, message):
        pins.set_voltage(self.world, message["pin"], waveform(message["wave"]))

    def op_history(self, message):
        start = message.get("start", 0)
        history = self.part(message["pin"], (parts.LED, parts.Relay)).history
        return [list(entry) for entry in history[start:start + HISTORY_LIMIT]]

    def op_level(self, message):
        return pins.state(self.world, message["pin"]).level()

    def op_log(self, message):
        start = message.get("start", 0)
        boot = self.world.clock.boot_us
        return [[entry[0] - boot, entry[1], entry[2]]
                for entry in self.world.log[start:start + HISTORY_LIMIT]]

    def op_clock(self, message):
        clock = self.world.clock
        return {"uptime_us": clock.uptime_us(), "ticks_ms": clock.ticks_ms(),
                "ticks_us": clock.ticks_us(), "time": clock.time()}

    def op_fault(self, message):
        device_fault(self.world, message["fault"])

    def op_hold_heap(self, message):
        """Take the device's free heap down to about message["leave"] bytes for message["ms"]
        of the device's time (memory pressure, as a leaking or greedy neighbour leaves
        it); the free heap after the hold. It ends by itself, since a device this short of
        heap may not even read the next request; the console then says "heap released"."""
        import gc
        if not hasattr(gc, "mem_free"):
            raise ValueError("a CPython device has no heap limit to squeeze")
        clock = self.world.clock
        held, size = None, 4096  # a chain of pairs: a growing list would need ever more room
        gc.collect()
        while size >= 16:
            if gc.mem_free() - size < message["leave"]:
                size //= 2
                continue
            try:
                held = (bytearray(size), held)
            except MemoryError:
                size //= 2
        due = clock.uptime_us() + message["ms"] * 1000
        hold = [held]  # the listener stays (a list being iterated is not changed), empty
        del held

        def release(now_us):
            if hold[0] is not None and clock.uptime_us() >= due:
                hold[0] = None
                print("heap released")
        clock.listeners.append(release)
        gc.collect()
        return gc.mem_free()

    def op_write_file(self, message):
        """Write a text file on the running device's flash (an edit over the air)."""
        with open(message["path"], "w") as f:
            f.write(message["text"])
        self.world.record("world", "wrote %s" % message["path"])


def _bus(world, bus):
    """An I2C bus: its id, or its (scl, sda) pins."""
    if isinstance(bus, (list, tuple)):
        return tuple(pins.resolve(world, pin) for pin in bus)
    return bus


def apply(world, config, control=None):
    """Attach what config (device_config()) lists to world; the Setup that serves requests.

    The pins Scheduler is made first, so that timers run before a clock listener added
    later (the control socket's) sees the clock move."""
    pins.scheduler(world)
    setup = Setup(world, control)
    for spec in config.get("peripherals", ()):
        setup.attach(spec)
    for spec in config.get("analog", ()):
        pins.set_voltage(world, spec["pin"], waveform(spec))
    if config.get("unique_id"):
        world.machine["unique_id"] = bytes.fromhex(config["unique_id"])
    for message in config.get("changes", ()):  # what the host changed before this boot
        setup.serve(message)
    for fault in config.get("faults", ()):
        setup.schedule(fault)
    return setup


# ---------------------------------------------------------------- the host side

def device_config(spec, boot):
    """What boot number `boot` of the device described by (checked) spec applies."""
    return {"peripherals": spec.get("peripherals", []), "analog": spec.get("analog", []),
            "unique_id": spec.get("unique_id"),
            "faults": [f for f in spec.get("faults", ()) if "at_ms" in f and f["boot"] == boot]}


def timed_faults(spec, boot):
    """The faults the runner fires in real time during boot number `boot`."""
    return [f for f in spec.get("faults", ()) if "after_s" in f and f["boot"] == boot]


def load(path):
    """The device scenarios of a file, checked: a list with one dict per device."""
    from host_sim import scenario_check  # host only: the device never checks
    return scenario_check.load(path)


def check(spec, board=None, base=None):
    """One device's scenario, checked, with its defaults filled in (ScenarioError if it is
    malformed). board: the profile, when not the one spec names; base: the directory that
    "from" paths in files are relative to."""
    from host_sim import scenario_check
    return scenario_check.check(spec, board, base)


def check_fault(fault):
    """One fault to apply now, checked, with its defaults filled in."""
    from host_sim import scenario_check
    return scenario_check.check_fault(fault)
