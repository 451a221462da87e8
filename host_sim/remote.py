# The host's end of a device process's control socket, and that device's World as a test
# sees it (host only).
#
# The runner listens; each boot of the device connects once (host_sim.control is the
# other end) and the newest connection is the one in use. Both ends write JSON lines. A
# request {"op": NAME, "id": n, ...} is answered {"id": n, "ok": result} or
# {"id": n, "error": text}; whatever else the device sends (booted, reset, halt, a fault's
# host half) goes to the runner's handler, on the channel's reader thread.
#
# The device answers while it waits (sleeps, asyncio, pacing), so a request made while
# its code runs without waiting, or sits at the REPL prompt, times out. What a test sets
# on the world (sensor values, voltages, buttons held) is remembered and applied again
# at the next boot: a sensor does not forget the weather because the board rebooted.
import itertools
import json
import socket
import threading

REQUEST_TIMEOUT = 10.0


class SimError(Exception):
    """A simulated device could not be started or did not answer."""


class RequestError(SimError):
    """The device refused a request: no such part, pin, sensor or setting."""


class ControlChannel:
    """The runner's end of one device's control socket."""

    def __init__(self, on_message):
        self.on_message = on_message  # on_message(connection, message), reader thread
        self.current = None           # the connection of the boot now running
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._waiting = {}            # request id -> [connection, Event, answer]
        self._ids = itertools.count(1)
        threading.Thread(target=self._accept, name="control", daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return  # closed
            with self._lock:
                old, self.current = self.current, conn
            if old is not None:
                self._close(old)
            threading.Thread(target=self._read, args=(conn,), daemon=True).start()

    def _read(self, conn):
        try:
            for line in conn.makefile("rb"):
                message = json.loads(line)
                if "id" in message and "op" not in message:
                    self._answered(message)
                else:
                    self.on_message(conn, message)
        except (OSError, ValueError):
            pass
        finally:
            self._lost(conn)

    def _answered(self, message):
        with self._lock:
            slot = self._waiting.get(message["id"])
        if slot is not None:
            slot[2] = message
            slot[1].set()

    def _lost(self, conn):
        with self._lock:
            if self.current is conn:
                self.current = None
            slots = [slot for slot in self._waiting.values() if slot[0] is conn]
        for slot in slots:
            slot[1].set()  # no answer: the device went away

    def send(self, message, conn=None):
        """Send to `conn` (default: the current connection); False if there is none."""
        conn = conn or self.current
        if conn is None:
            return False
        try:
            with self._send_lock:
                conn.sendall(json.dumps(message).encode() + b"\n")
        except OSError:
            return False
        return True

    def request(self, op, timeout=REQUEST_TIMEOUT, **args):
        """Ask the running device; its answer, or RequestError if it refused."""
        with self._lock:
            conn = self.current
            ident = next(self._ids)
            slot = self._waiting[ident] = [conn, threading.Event(), None]
        try:
            if conn is None or not self.send(dict(args, op=op, id=ident), conn):
                raise SimError("the device is not running")
            if not slot[1].wait(timeout):
                raise SimError("no answer to %r within %g s: the device serves requests "
                               "while it waits (sleeps, asyncio), not while its code runs "
                               "without waiting or sits at the REPL prompt" % (op, timeout))
        finally:
            with self._lock:
                self._waiting.pop(ident, None)
        answer = slot[2]
        if answer is None:
            raise SimError("the device stopped before it answered %r" % op)
        if "error" in answer:
            raise RequestError("%s: %s" % (op, answer["error"]))
        return answer.get("ok")

    def drop(self):
        """Close the current connection (its process is gone)."""
        with self._lock:
            conn, self.current = self.current, None
        if conn is not None:
            self._close(conn)

    def close(self):
        self._server.close()
        self.drop()

    @staticmethod
    def _close(conn):
        try:
            conn.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        conn.close()


def _where(where):
    if len(where) not in (1, 2, 3):
        raise TypeError("name a sensor, or give kind, bus and address")
    where = list(where)
    if len(where) == 3 and isinstance(where[2], (bytes, bytearray)):
        where[2] = bytes(where[2]).hex()  # a 1-Wire ROM code
    return where


class RemoteWorld:
    """The World of a running device process: device.world.

    Pins are numbers or names ("GP15"); a sensor is named as in the scenario
    ("air") or found by where it is attached: ("i2c", 0, 0x76), ("onewire", 4) (the only
    probe on pin 4, or give its ROM code), ("dht", 15). Times are microseconds since boot.
    """

    def __init__(self, device):
        self._device = device
        self._kept = {}  # what to set again at the next boot: key -> request

    def _ask(self, op, **args):
        return self._device.request(op, **args)

    def _keep(self, key, op, **args):
        self._ask(op, **args)
        self._kept[key] = dict(args, op=op)

    def kept(self):
        """The requests to apply again at boot, in the order they were first made."""
        return list(self._kept.values())

    def set(self, *where, **values):
        """Set a sensor's values: set("i2c", 0, 0x76, temperature=25.0), set("probe", ...)."""
        where = _where(where)
        for name, value in values.items():
            self._keep(("set", repr(where), name), "set", where=where, values={name: value})

    def press(self, pin):
        """Press (and hold) the button on `pin`."""
        self._keep(("button", pin), "press", pin=pin)

    def release(self, pin):
        self._keep(("button", pin), "release", pin=pin)

    def click(self, pin, ms=100):
        """Press the button on `pin` now and release it ms later in device time."""
        self._ask("click", pin=pin, ms=ms)
        self._kept[("button", pin)] = {"op": "release", "pin": pin}

    def voltage(self, pin, volts=None, points=None, **shape):
        """What an analog input sees: volts, points [[ms, volts], ...], or a shape
        (shape="sine", period_ms=..., amplitude=..., offset=..., phase_ms=...)."""
        if volts is not None:
            wave = {"volts": volts}
        elif points is not None:
            wave = {"points": [list(point) for point in points]}
        else:
            wave = shape
        self._keep(("voltage", pin), "voltage", pin=pin, wave=wave)

    def history(self, pin):
        """The LED's or relay's history on `pin`: [(us since boot, value), ...]."""
        return [tuple(entry) for entry in self._all("history", pin=pin)]

    def log(self):
        """The World's log: [(us since boot, source, event), ...]."""
        return [tuple(entry) for entry in self._all("log")]

    def _all(self, op, **args):
        entries = []
        while True:
            more = self._ask(op, start=len(entries), **args)
            entries += more
            if not more:
                return entries

    def level(self, pin):
        """The logic level on `pin` now (0 or 1)."""
        return self._ask("level", pin=pin)

    def clock(self):
        """{"uptime_us", "ticks_ms", "ticks_us", "time"} of the device's virtual clock."""
        return self._ask("clock")

    def write_file(self, path, text):
        """Write a text file on the running device's flash, as an editor over the air
        would (the device's firmware sees the change; nothing is kept for the next boot)."""
        self._ask("write_file", path=path, text=text)

    def hold_heap(self, leave, ms):
        """Memory pressure (MicroPython devices): the free heap is taken down to about
        `leave` bytes for `ms` of device time, then given back (the console says "heap
        released"). The free heap during the hold."""
        return self._ask("hold_heap", leave=leave, ms=ms)

    def uptime_us(self):
        return self.clock()["uptime_us"]
