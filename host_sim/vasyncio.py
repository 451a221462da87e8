# asyncio on the virtual clock, under MicroPython and CPython alike: when every task sleeps
# and nothing waits on I/O, the clock jumps to the next timer instead of waiting; when a
# socket is registered for I/O, the loop waits for real and the clock advances by the real
# time waited, so real loopback peers keep working (device time then runs at real speed).
#
#     install(world=None)    asyncio.run() and new_event_loop() use world's clock from now on
#     run(coro, world=None)  asyncio.run(coro) on world's clock, with world current
#     new_event_loop(clock)  (CPython) a VirtualEventLoop, for code that manages its loop
#
# MicroPython: the frozen asyncio is hooked where it waits (IOQueue.wait_io_event) and in
# the clock it schedules by (asyncio.core.ticks). That clock cannot simply be the device's
# ticks_ms. The C _asyncio module orders its task heap with the port's own tick period
# (2**62 on the 64-bit unix port, not a board's 2**30), stamps tasks made ready now
# (created, woken, cancelled) with the *real* tick, and asks the real tick whether a
# sleeping task it cancels is due. So asyncio runs on the virtual clock in the port's tick
# arithmetic, shifted to stay about 2**26 ms (18 h) ahead of the real tick: real stamps
# then always lie in the past and every pending timer in the future. Tasks made ready
# therefore run before timers due at the same instant, in the order they were made ready
# (the task heap is stable), and timers due together run in the order they were set:
# deterministic, though not always CPython's order. The lead shrinks with real compute time
# and grows with every jump; when it leaves [2**24, 2**27] ms the shift is re-chosen and
# every queued task re-keyed by the same amount, so schedules keep their relative times
# however long a simulation runs. Sleeps are whole milliseconds, as on a board. The device's
# own ticks (the time shim) keep a board's 2**30 wrap.
#
# CPython: VirtualEventLoop is asyncio's SelectorEventLoop whose time() is the virtual
# clock and whose selector, asked to wait while only the loop's own wake-up pipe is
# registered and no executor job runs, advances the clock by the timeout and returns at
# once. Timers due at the same instant fire in the order they were set, as on MicroPython
# (heapq alone is not stable). In a device process, import this after host_sim.vclock.install().
#
# A device process's World has a control socket (host_sim.control): a real wait on I/O
# waits on it too and serves the runner's requests when it wakes, on both interpreters; it
# never makes the loop wait for real when nothing else would.
#
# world.realtime lists the UARTs open on a line to a program on the host (a pty that the
# runner bridges, host_sim.serialbridge.HostLine). While it is not empty the loop waits for
# real as it does for a socket, even with no stream registered: firmware that polls
# uart.any() between asyncio sleeps would otherwise race its clock far ahead of the host
# it talks to.
import asyncio
import select
import sys

from host_sim import world as _world
from host_sim.shims import time as _time_shim

MICROPYTHON = sys.implementation.name == "micropython"
_LEAD = 1 << 26     # ms asyncio's clock runs ahead of the real tick
_LEAD_MIN = 1 << 24
_LEAD_MAX = 1 << 27
_LONG_WAIT_MS = 100000  # longer real waits are timed in ms: ticks_us wraps in 17 minutes


def install(world=None):
    """Run asyncio on `world`'s clock (default: the current World) from now on."""
    world = world or _world.current()
    control = getattr(world, "control", None)  # a device process's (host_sim.control)
    if MICROPYTHON:
        _hook_micropython(world.clock, control, world)
    else:
        asyncio.set_event_loop_policy(VirtualEventLoopPolicy(world.clock, control, world))


def run(coro, world=None):
    """Run coro to completion on `world`'s clock, with `world` current; returns its result."""
    world = world or _world.current()
    previous = _world._current
    _world.install(world)
    try:
        if MICROPYTHON:
            _hook_micropython(world.clock, getattr(world, "control", None), world)
            asyncio.new_event_loop()
            return asyncio.run(coro)
        return _run_cpython(coro, world.clock, world)
    finally:
        _world._current = previous


# ---------------------------------------------------------------- MicroPython

_scheduler = None
_new_event_loop = None  # asyncio's own, before the hook wraps it


def _realtime(world):
    """True while `world` has a UART open on a host line (see above)."""
    return bool(getattr(world, "realtime", None))


def _hook_micropython(clock, control=None, world=None):
    global _scheduler, _new_event_loop
    core = asyncio.core

    if _scheduler is None or _scheduler.clock is not clock:
        _scheduler = _Scheduler(clock, control, world)
    if _new_event_loop is None:
        _new_event_loop = core.new_event_loop
        asyncio.new_event_loop = core.new_event_loop = _hooked_new_event_loop
    _scheduler.attach(core)


def _hooked_new_event_loop():
    loop = _new_event_loop()
    _scheduler.attach(asyncio.core)
    return loop


class _Scheduler:
    """asyncio's clock on MicroPython: the virtual clock, kept ahead of the real tick."""

    def __init__(self, clock, control=None, world=None):
        import utime

        self.clock = clock
        self.control = control
        self.world = world
        self.utime = utime
        self.mask = utime.ticks_add(0, -1)  # the port's tick period - 1: 2**62 - 1 on 64-bit unix
        self.real_tick = utime.ticks_ms()
        self.real_ms = self.real_tick  # the real tick, unwrapped
        self.offset = clock.now_us // 1000 - self.real_ms - _LEAD
        self.core = None
        self.io = None

    def ticks(self):
        return (self.clock.now_us // 1000 - self.offset) & self.mask

    def attach(self, core):
        """Hook the current loop of asyncio.core (after each new_event_loop())."""
        self.core = core
        self.io = core._io_queue
        self.io.wait_io_event = self.wait
        core.ticks = self.ticks
        core.ticks_add = self.utime.ticks_add  # the C task heap compares keys with the port's
        core.ticks_diff = self.utime.ticks_diff  # period, not the 2**30 of the device's ticks

    def wait(self, dt):
        """Stands in for IOQueue.wait_io_event: dt ms until the next timer, -1 for none."""
        if self.io.map or _realtime(self.world):
            self._wait_real(dt)
        elif dt > 0:  # every task sleeps: on to the first timer, to the millisecond
            self.clock.advance_to((self.clock.now_us // 1000 + dt) * 1000)
            if getattr(self.clock, "factor", None) is None:  # unpaced: see the time shim
                _time_shim.rest_now_and_then()
        self._keep_ahead()

    def _wait_real(self, dt):
        """Wait on the streams, and on the control socket, serving what comes on it. A
        wait without a timeout (dt -1) returns only once a task is ready: asyncio pops
        one then."""
        control = self.control
        if control is None or control.closed:
            self._wait_io(dt)
            return
        io, sock, ready = self.io, control.sock, self.core._task_queue
        while True:
            io.map[id(sock)] = [None, None, sock]  # a stream nobody waits on: the IOQueue
            io.poller.register(sock, select.POLLIN)  # drops it when it fires
            try:
                self._wait_io(dt)
            finally:
                if id(sock) in io.map:
                    del io.map[id(sock)]
                    io.poller.unregister(sock)
            control.poll()
            if dt >= 0 or ready.peek():
                return
            if control.closed:  # the runner is gone: wait as asyncio would
                self._wait_io(dt)
                return

    def _wait_io(self, dt):
        """IOQueue.wait_io_event(dt); the clock moves on by the real time it took."""
        utime = self.utime
        start_us, start_ms = utime.ticks_us(), utime.ticks_ms()
        type(self.io).wait_io_event(self.io, dt)
        if dt == 0:
            return
        waited_ms = utime.ticks_diff(utime.ticks_ms(), start_ms)
        if waited_ms < _LONG_WAIT_MS:
            self.clock.advance(utime.ticks_diff(utime.ticks_us(), start_us))
        else:
            self.clock.advance(waited_ms * 1000)

    def _keep_ahead(self):
        tick = self.utime.ticks_ms()
        self.real_ms += self.utime.ticks_diff(tick, self.real_tick)
        self.real_tick = tick
        lead = self.clock.now_us // 1000 - self.offset - self.real_ms
        if lead < _LEAD_MIN or lead > _LEAD_MAX:
            self._shift(lead - _LEAD)

    def _shift(self, delta):
        """Move asyncio's clock back by delta ms and every queued task with it."""
        queue = self.core._task_queue
        queued = []
        while queue.peek():
            task = queue.pop()
            queued.append((task, task.ph_key, task.data))
        self.offset += delta
        for task, key, data in queued:
            queue.push(task, self.utime.ticks_add(key, -delta))
            task.data = data  # push() clears it; a cancelled task carries its error there


# ---------------------------------------------------------------- CPython

if not MICROPYTHON:
    import heapq
    import itertools
    import selectors
    import time

    _monotonic = time.monotonic  # the real one: the time shim reads it from the real module
    _CONTROL = object()  # the selector key data that marks the control socket

    class _Timer(asyncio.TimerHandle):
        """A TimerHandle ordered by (when, scheduling order)."""

        __slots__ = ("_seq",)

        def __lt__(self, other):
            return (self._when, self._seq) < (other._when, other._seq)

        def __le__(self, other):
            return (self._when, self._seq) <= (other._when, other._seq)

        def __gt__(self, other):
            return (self._when, self._seq) > (other._when, other._seq)

        def __ge__(self, other):
            return (self._when, self._seq) >= (other._when, other._seq)


    class _Selector:
        """A selector that skips the clock ahead instead of waiting when nothing can wake it."""

        def __init__(self, clock, control=None, world=None):
            self._real = selectors.DefaultSelector()
            self._clock = clock
            self._world = world
            self.wakeup_fd = None  # the loop's self-pipe: not a reason to wait
            self.jobs = 0          # executor jobs in flight: they finish in real time
            self._control = control  # nor is the control socket, served here
            if control is not None:
                self._real.register(control.sock, selectors.EVENT_READ, _CONTROL)

        def __getattr__(self, name):
            return getattr(self._real, name)

        def _idle(self):
            waiting = [fd for fd, key in self._real.get_map().items()
                       if fd != self.wakeup_fd and key.data is not _CONTROL]
            return self.jobs == 0 and not waiting and not _realtime(self._world)

        def select(self, timeout=None):
            if timeout == 0:
                return self._served(self._real.select(0))
            if timeout is not None and self._idle():
                self._clock.advance(round(timeout * 1000000))
                return self._served(self._real.select(0))
            start = _monotonic()
            events = self._real.select(timeout)
            self._clock.advance(round((_monotonic() - start) * 1000000))
            return self._served(events)

        def _served(self, events):
            """The loop's events; the control socket's are served here."""
            mine = [event for event in events if event[0].data is _CONTROL]
            if not mine:
                return events
            self._control.poll()
            if self._control.closed:  # the runner is gone: nothing more will come
                self._real.unregister(self._control.sock)
            return [event for event in events if event[0].data is not _CONTROL]


    class VirtualEventLoop(asyncio.SelectorEventLoop):
        """A SelectorEventLoop whose time() is `clock` (a host_sim.clock.Clock)."""

        def __init__(self, clock, control=None, world=None):
            self._virtual_clock = clock
            self._timer_order = itertools.count()
            super().__init__(_Selector(clock, control, world))
            self._selector.wakeup_fd = self._ssock.fileno()
            self._clock_resolution = 1e-6

        def time(self):
            return self._virtual_clock.now_us / 1000000

        def call_at(self, when, callback, *args, context=None):
            if when is None:
                raise TypeError("when cannot be None")
            self._check_closed()
            if self._debug:
                self._check_thread()
                self._check_callback(callback, "call_at")
            timer = _Timer(when, callback, args, self, context)
            timer._seq = next(self._timer_order)
            if timer._source_traceback:
                del timer._source_traceback[-1]
            heapq.heappush(self._scheduled, timer)
            timer._scheduled = True
            return timer

        def run_in_executor(self, executor, func, *args):
            future = super().run_in_executor(executor, func, *args)
            self._selector.jobs += 1
            future.add_done_callback(self._job_done)
            return future

        def _job_done(self, future):
            self._selector.jobs -= 1

        async def shutdown_default_executor(self, *args):
            self._selector.jobs += 1  # joining the executor's threads takes real time
            try:
                await super().shutdown_default_executor(*args)
            finally:
                self._selector.jobs -= 1


    class VirtualEventLoopPolicy(asyncio.DefaultEventLoopPolicy):
        """Makes asyncio.run() and asyncio.new_event_loop() build VirtualEventLoops."""

        def __init__(self, clock, control=None, world=None):
            super().__init__()
            self.clock = clock
            self.control = control
            self.world = world

        def new_event_loop(self):
            return VirtualEventLoop(self.clock, self.control, self.world)


    def new_event_loop(clock):
        return VirtualEventLoop(clock)


    def _run_cpython(coro, clock, world=None):
        """asyncio.run(coro) on a VirtualEventLoop over `clock`."""
        loop = VirtualEventLoop(clock, world=world)
        try:
            return loop.run_until_complete(coro)
        finally:
            try:
                _cancel_all(loop)
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.run_until_complete(loop.shutdown_default_executor())
            finally:
                loop.close()


    def _cancel_all(loop):
        """Cancel the tasks still pending and let them finish, as asyncio.run() does."""
        pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
        for task in pending:
            task.cancel()
        if not pending:
            return
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        for task in pending:
            if not task.cancelled() and task.exception() is not None:
                loop.call_exception_handler({"message": "unhandled exception during run()",
                                             "exception": task.exception(), "task": task})
