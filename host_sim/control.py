# The device's end of the runner's control socket, and pacing (inside a device process,
# on MicroPython and CPython alike).
#
# Both ends write JSON lines on one loopback socket. The device reports that its flash is
# mounted ({"booted": true}), asks for resets ({"reset": cause, "reason": ...}) and hands
# the runner its half of a fault due now ({"fault": {...}, "seq": n}, answered
# {"done": n}). The runner asks {"op": NAME, "id": n, ...} (set a sensor, press a button,
# read a history: host_sim.scenario.Setup serves them) and gets {"id": n, "ok": result} or
# {"id": n, "error": text}; a message without an id gets no answer.
#
# There are no threads to rely on (the unix port may have none), so requests are served
# whenever the device waits: on every clock advance (a sleep, an asyncio timer jump, a bus
# transfer), at most once per POLL_US of real time; while asyncio waits on real sockets
# (host_sim.vasyncio waits on this socket too); and while pacing holds the clock back.
# Code that runs without waiting (a busy loop) or the REPL prompt leaves requests waiting.
#
# Pacing: a PacedClock runs at most `factor` times real time. Before it moves to a new
# time it waits until real time allows it, serving requests meanwhile; a request that
# arrives during the wait first moves the clock to the instant real time has reached, and
# so does every timer due in between, so a paced device lives at a steady rate.
import json
import select
import socket
import sys

from host_sim.clock import Clock

POLL_US = 2000  # real microseconds between looks at the socket while the clock moves
_MICROPYTHON = sys.implementation.name == "micropython"

if _MICROPYTHON:  # the port's own tick: `time` is the virtual clock's
    import utime

    def _ticks():
        return utime.ticks_us()

    _elapsed = utime.ticks_diff
else:
    import time  # imported before vclock.install(), or the shim, which lends monotonic

    _monotonic = time.monotonic

    def _ticks():
        return int(_monotonic() * 1000000)

    def _elapsed(now, then):
        return now - then


class RealTime:
    """Real microseconds since it was made, unwrapped."""

    def __init__(self):
        self._last = _ticks()
        self._us = 0

    def us(self):
        tick = _ticks()
        self._us += _elapsed(tick, self._last)
        self._last = tick
        return self._us


class Control:
    """The device's end of the runner's control socket."""

    def __init__(self, port, world):
        self.json = json  # kept: after the swap a json.py on the flash would shadow it
        self.sock = socket.socket()
        self.sock.connect(socket.getaddrinfo("127.0.0.1", port)[0][-1])
        self.sock.setblocking(False)
        self.poller = select.poll()
        self.poller.register(self.sock, select.POLLIN)
        self.world = world
        self.setup = None    # what serves requests (host_sim.scenario.Setup)
        self.inbox = []      # messages read, not yet handled
        self.pending = b""   # the start of a line
        self.closed = False  # the runner went away
        self.serving = False
        self.real = RealTime()
        self.polled_us = 0
        self.seq = 0
        self.cut_after = None  # fault injection: flash commits left before a power cut

    def send(self, message):
        view = memoryview(self.json.dumps(message).encode() + b"\n")
        self.sock.setblocking(True)
        try:
            while len(view):
                view = view[self.sock.send(view):]
        finally:
            self.sock.setblocking(False)

    def wait(self, timeout_ms):
        """Read what arrives within timeout_ms (returns at the first data); True if any."""
        if not self.poller.poll(timeout_ms) or self.closed:
            return False
        try:
            data = self.sock.recv(1024)
        except OSError:  # woken, but nothing to read after all
            return False
        if not data:  # the runner is gone: from now on a wait only waits
            self.closed = True
            self.poller.unregister(self.sock)
            return False
        self.pending += data
        while b"\n" in self.pending:
            line, self.pending = self.pending.split(b"\n", 1)
            self.inbox.append(self.json.loads(line))
        return True

    def poll(self):
        """Serve the requests that have arrived (also called by the network shim)."""
        if self.serving:
            return  # a handler that waits (an IRQ handler that sleeps) lands here
        self.serving = True
        try:
            self.polled_us = self.real.us()
            self.wait(0)
            while self.inbox and self.setup is not None:
                self.handle(self.inbox.pop(0))
        finally:
            self.serving = False

    def on_clock(self, now_us):
        """A clock listener: serve requests once POLL_US of real time has passed."""
        if not self.serving and self.real.us() - self.polled_us >= POLL_US:
            self.poll()

    def handle(self, message):
        if "op" not in message:
            return  # an answer nobody waits for any more
        ident = message.get("id")
        if message["op"] == "power_cut_after":  # the flash's fault, not the World's
            self.cut_after = message["commits"]
            if ident is not None:
                self.send({"id": ident, "ok": None})
            return
        try:
            result = self.setup.serve(message)
        except Exception as e:  # the request's fault (or an IRQ handler's): tell the host
            if ident is None:
                raise
            text = "%s: %s" % (type(e).__name__, e)
            self.send({"id": ident, "error": text})
            return
        if ident is not None:
            self.send({"id": ident, "ok": result})

    def ask(self, message):
        """Send message (a fault's host half) and wait until the runner has done it."""
        self.seq += 1
        message["seq"] = self.seq
        self.send(message)
        while not self.closed:
            for i in range(len(self.inbox)):
                if self.inbox[i].get("done") == self.seq:
                    self.inbox.pop(i)
                    return
            self.wait(1000)

    def request_reset(self, cause, reason, sleep_us=None):
        """Ask the runner to boot the device again with `cause` (None: what `reason`
        leaves on this board); returns only if the runner is gone."""
        self.send({"reset": cause, "reason": reason, "sleep_us": sleep_us})
        self.wait_for_end()

    def committed(self):
        """The flash committed a change (fault injection): when a power cut is armed and
        this was the last commit before it, have the runner kill the process now."""
        if self.cut_after is None:
            return
        self.cut_after -= 1
        if self.cut_after <= 0:
            self.cut_after = None
            self.send({"halt": "power cut after a flash commit (fault injection)"})
            self.wait_for_end()

    def wait_for_end(self):
        """Block until the runner kills this process (or closes the socket: exit then)."""
        self.sock.setblocking(True)
        while self.sock.recv(64):
            pass
        raise SystemExit(0)


class PacedClock(Clock):
    """A Clock that runs at most `factor` times as fast as real time."""

    def __init__(self, start_us, factor, control=None):
        Clock.__init__(self, start_us)
        self.factor = factor
        self.control = control
        self.next_due = None  # a function: when the next timer is due (absolute us), or None
        self.real = RealTime()
        self._idle = select.poll()  # polled with nothing registered: a real sleep
        self._holding = False

    def advance(self, us):
        if us > 0 and not self._holding:
            target = self.now_us + us
            self._holding = True
            try:
                self._hold(target)
            finally:
                self._holding = False
            us = target - self.now_us
        Clock.advance(self, us)

    def allowed_us(self):
        """The latest time real time allows now."""
        return self.boot_us + int(self.real.us() * self.factor)

    def _hold(self, target):
        """Wait until real time allows target, moving the clock on to each timer due and
        to each request on the way."""
        while True:
            allowed = self._catch_up(target)
            if allowed >= target or self.now_us >= target:
                return
            step = target
            due = self.next_due() if self.next_due is not None else None
            if due is not None and self.now_us < due < step:
                step = due
            wait_ms = int((step - allowed) / self.factor / 1000) + 1
            control = self.control
            if control is None:
                self._idle.poll(wait_ms)
            elif control.wait(wait_ms):
                self._catch_up(target)  # the request acts at the time real time reached
                control.poll()

    def _catch_up(self, target):
        """Move the clock to what real time allows, up to target (the timers due by then
        run); returns what real time allows."""
        allowed = self.allowed_us()
        reached = min(allowed, target)
        if reached > self.now_us:
            Clock.advance(self, reached - self.now_us)
        return allowed
