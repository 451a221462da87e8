# In-process simulated devices (CPython, host only): many devices in one process, each
# with its own World, running firmware-style code as asyncio tasks on one event loop on
# virtual time.
#
#     with Fleet("esp32", 1000, main=blink) as fleet:   # or Fleet(), then fleet.add(...)
#         fleet.run_for(60)                             # one virtual minute for all
#         fleet.devices[0].world                        # pins, peripherals, network, log
#
# Time: a Fleet has one Clock, and its event loop (host_sim.vasyncio.VirtualEventLoop)
# runs on it. Each device's World has a DeviceClock: the fleet's time, read and moved
# through the device, with the device's own boot time, wall time (its RTC) and listeners.
# So every device sees the same instant, and virtual time runs as in a device process: it
# jumps to the next timer when every task sleeps. A device's clock listeners (its
# machine.Timers and watchdog, host_sim.pins.Scheduler) say when they are next due
# (Clock.due): the fleet keeps those deadlines in a heap, calls only the devices that are
# due when its clock moves, and puts a timer on the loop at each deadline so that the loop
# stops there instead of jumping past it. A thousand idle devices cost nothing per step.
#
# Which device: host_sim.world.current() is per asyncio task (contextvars). A device's
# main task starts with its World current, and the tasks and callbacks it creates inherit
# it; IRQ handlers and timer callbacks run with their World current whoever triggered
# them. The loop wraps every task a device creates, so that a reset (machine.reset(), the
# watchdog, deepsleep(), sys.exit()) ends that device's tasks only and boots it again
# (after the sleep, for a timed deep sleep), and an error is kept in `device.errors`.
#
# What differs from a device process (host_sim.runner.Device):
# - one CPU for all: a blocking sleep (time.sleep_ms, machine.idle) moves the fleet's
#   clock, so every device's timers are late by it, not only that device's;
# - one sys.modules for all (host_sim.firmware_modules): firmware source gets the whole
#   time shim, but a coroutine function or a module imported from the host gets CPython's
#   time, whose sleep(), time() and monotonic() are real; only the ticks_*/sleep_ms/us
#   names are added and virtual;
# - no flash, no REPL, no heap limit, no separate interpreter state: a device that
#   corrupts a module corrupts it for all;
# - across a reset the World stays (pins released, timers stopped, Wi-Fi disassociated)
#   and its clock keeps counting from power-on; main runs again from the start;
# - Timer callbacks due during one device's blocking sleep run device after device (each
#   at its due time), not interleaved across devices.
import asyncio
import contextvars
import heapq
import io
import itertools

from host_sim import boards, firmware_modules, parts, pins, vasyncio
from host_sim import world as _world
from host_sim.clock import Clock
from host_sim.shims.network import NetworkState
from host_sim.world import World


class DeviceClock(Clock):
    """A device's view of its fleet's clock: the fleet's time, its own boot time, wall time
    and listeners. The listeners run only when due: they say when through due(), as
    host_sim.pins.Scheduler (the one listener a World has) does."""

    def __init__(self, device):
        self.device = device
        self.fleet = device.fleet
        self.boot_us = self.fleet.clock.now_us
        self.wall_start = self.fleet.clock.time()
        self.listeners = []
        self.wake_us = None     # when the listeners next have work
        self._marker = None     # a loop timer at wake_us: the loop stops there
        self._marker_us = None

    @property
    def now_us(self):
        return self.fleet.clock.now_us

    @now_us.setter
    def now_us(self, value):  # the Scheduler holds the clock at a timer's due time
        self.fleet.clock.now_us = value

    def advance(self, us):
        self.fleet.clock.advance(us)

    def due(self, us):
        if us == self.wake_us:
            return
        self.wake_us = us
        if us is None:
            return
        self.fleet._wake(self, us)
        if self._marker_us is None or us < self._marker_us:
            if self._marker is not None:
                self._marker.cancel()
            self._set_marker(us)

    def _set_marker(self, us):
        self._marker_us = us
        self._marker = self.fleet.loop.call_at(us / 1000000, self._marker_passed)

    def _marker_passed(self):
        self._marker = self._marker_us = None
        if self.wake_us is not None and self.wake_us > self.now_us:
            self._set_marker(self.wake_us)  # the deadline moved on (a watchdog fed)

    def fire(self):
        for listener in self.listeners:
            listener(self.now_us)


class FleetLoop(vasyncio.VirtualEventLoop):
    """The fleet's event loop: tasks created with a device's World current are that
    device's."""

    def create_task(self, coro, *, name=None, context=None):
        world = _world.peek() if context is None else context.run(_world.peek)
        device = getattr(world, "device", None)
        options = {} if context is None else {"context": context}
        if device is None:
            return super().create_task(coro, name=name, **options)
        task = super().create_task(device._guard(coro), name=name, **options)
        device._tasks.add(task)
        task.add_done_callback(lambda done: device._task_done(done, coro))
        return task


class Fleet:
    """In-process devices on one virtual clock and one event loop."""

    def __init__(self, board=None, count=0, main=None, **options):
        firmware_modules.install()
        self.clock = Clock()
        self.loop = FleetLoop(self.clock)
        self.clock.listeners.append(self._advanced)
        self.devices = []
        self._alarms = []  # (due_us, order, DeviceClock): device listeners to run
        self._order = itertools.count()
        self._boards = {}
        self._code = {}
        self._environment = None
        for _ in range(count):
            self.add(board, main, **options)

    @property
    def now(self):
        """Virtual seconds since the fleet began."""
        return self.clock.now_us / 1000000

    def add(self, board, main=None, name=None, network=None, start=True):
        """A new device of `board` (a name or a profile dict) running `main`: a coroutine
        function, or firmware source (a main.py). Powered on unless start=False."""
        return InProcessDevice(board, main, fleet=self, name=name, network=network,
                               start=start)

    def run_for(self, seconds):
        """Let `seconds` of virtual time pass for every device; what falls due at the end
        runs too."""
        self.run_until(self.clock.now_us + round(seconds * 1000000))

    def run_until(self, when_us):
        """Run until the fleet's clock reads when_us and nothing due by then is left."""
        self.loop.run_until_complete(self._until(when_us))

    def run(self, awaitable):
        """Run a host-side coroutine on the fleet's loop (the devices run meanwhile)."""
        return self.loop.run_until_complete(awaitable)

    async def _until(self, when_us):
        if when_us > self.clock.now_us:
            future = self.loop.create_future()
            self.loop.call_at(when_us / 1000000, future.set_result, None)
            await future
        loop = self.loop  # drain what is due at when_us: woken tasks, timers they set
        while loop._ready or (loop._scheduled
                              and round(loop._scheduled[0].when() * 1000000) <= when_us):
            await asyncio.sleep(0)

    def close(self):
        """Stop every device and close the loop."""
        if self.loop.is_closed():
            return
        for device in self.devices:
            device.stop()
        pending = [task for task in asyncio.all_tasks(self.loop) if not task.done()]
        if pending:
            self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        self.loop.close()
        firmware_modules.uninstall()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _board(self, board):
        if isinstance(board, dict):
            return board
        if board not in self._boards:  # shared by the devices: nothing writes to it
            self._boards[board] = boards.load(board)
        return self._boards[board]

    def _compiled(self, source):
        if source not in self._code:
            self._code[source] = compile(source, "main.py", "exec")
        if self._environment is None:
            self._environment = firmware_modules.Environment()
        return self._code[source], self._environment

    def _wake(self, clock, us):
        heapq.heappush(self._alarms, (us, next(self._order), clock))

    def _advanced(self, now_us):
        """The fleet's clock moved: run the listeners of the devices that are due, each
        with its World current."""
        me = getattr(_world.peek(), "device", None)
        own_reset = None
        alarms = self._alarms
        target = self.clock.now_us
        while alarms and alarms[0][0] <= self.clock.now_us:
            due, _, clock = heapq.heappop(alarms)
            if clock.wake_us != due:
                continue  # superseded
            clock.wake_us = None
            device = clock.device
            try:
                _world.using(device.world, clock.fire)
            except SystemExit as reset:
                if device is me:
                    own_reset = reset  # its code is running: the reset stops it there
                else:
                    device._reset(reset)
            except Exception as e:  # noqa: BLE001 - a callback's error, as a board prints it
                device.errors.append(e)
            target = max(target, self.clock.now_us)
            self.clock.now_us = target  # an error leaves it at the failing timer's time
        if own_reset is not None:
            raise own_reset


class InProcessDevice:
    """One simulated device in a Fleet (its own Fleet unless one is given)."""

    def __init__(self, board, main=None, fleet=None, name=None, network=None, start=True):
        self._own_fleet = fleet is None
        self.fleet = fleet if fleet is not None else Fleet()
        self.index = len(self.fleet.devices)
        self.fleet.devices.append(self)
        profile = self.fleet._board(board)
        self.name = name or "%s-%d" % (profile.get("name", "device"), self.index)
        self.clock = DeviceClock(self)
        self.world = World(profile, self.clock)
        self.world.device = self
        uid = profile.get("machine", {}).get("unique_id")
        if uid:
            self.world.machine["unique_id"] = unique_id(bytes.fromhex(uid), self.index)
        if network is not None:
            self.world.network = NetworkState.from_dict(network)
        self.main = main
        self.namespace = None   # main.py's globals, for firmware given as source
        self.result = None      # what main returned
        self.errors = []        # exceptions that ended tasks or callbacks of this device
        self.resets = []        # the DeviceReset of every reset, in order
        self.boots = 0
        self._console = None
        self._tasks = set()
        self._boot_handle = None
        if start:
            self.start()

    # ------------------------------------------------------------ power

    def start(self):
        """Power on: run main as this device's main task."""
        self.stop()
        self.boots += 1
        context = contextvars.copy_context()
        context.run(_world.enter, self.world)
        context.run(self.fleet.loop.create_task, self._main())

    def stop(self):
        """Power off: cancel every task of this device (they end at their next await)."""
        if self._boot_handle is not None:
            self._boot_handle.cancel()
            self._boot_handle = None
        current = asyncio.current_task(self.fleet.loop)
        for task in list(self._tasks):
            if task is not current:
                task.cancel()

    @property
    def running(self):
        """True while any task of this device is alive."""
        return any(not task.done() for task in self._tasks)

    def close(self):
        """Stop; close the fleet too if the device made its own."""
        self.stop()
        if self._own_fleet:
            self.fleet.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    async def _main(self):
        try:
            if isinstance(self.main, str):
                code, environment = self.fleet._compiled(self.main)
                self.namespace = environment.namespace()
                try:
                    exec(code, self.namespace)
                except firmware_modules.MainStarted as started:
                    self.result = await started.coro
            elif self.main is not None:
                self.result = await self.main()
        except Exception as e:  # noqa: BLE001 - a board prints it and stays up
            self.errors.append(e)

    async def _guard(self, coro):
        """Every task of this device runs in this: a reset ends the device, not the loop."""
        try:
            return await coro
        except SystemExit as reset:
            self._reset(reset)
        except firmware_modules.MainStarted as started:
            started.coro.close()
            self.errors.append(RuntimeError("asyncio.run() called from a running task"))
        except Exception as e:
            self.errors.append(e)
            raise

    def _task_done(self, task, coro):
        self._tasks.discard(task)
        coro.close()  # cancelled before it started: it never will

    def _reset(self, reset):
        """The chip resets: every task ends; main runs again (after a timed deep sleep)."""
        if not isinstance(reset, pins.DeviceReset):  # sys.exit(): a soft reset on a board
            reset = pins.reset(self.world, "soft_reset")
        self.resets.append(reset)
        self.stop()
        if self.world.network is not None:
            self.world.network.interfaces.clear()
        if reset.reason == "deepsleep" and reset.sleep_us is None:
            return  # asleep until a pin or the power wakes it: off, here
        delay = (reset.sleep_us or 0) / 1000000
        self._boot_handle = self.fleet.loop.call_later(delay, self.start)

    # ------------------------------------------------------------ the world around it

    def run_for(self, seconds):
        """Let `seconds` of virtual time pass (for the whole fleet)."""
        self.fleet.run_for(seconds)

    def call(self, function, *args):
        """function(*args) as this device: with its World current."""
        return _world.using(self.world, function, *args)

    @property
    def console(self):
        """Where firmware source prints (a StringIO)."""
        if self._console is None:
            self._console = io.StringIO()
        return self._console

    @property
    def output(self):
        """What firmware source has printed."""
        return "" if self._console is None else self._console.getvalue()

    def led(self, pin, active_low=False):
        return parts.LED(pin, active_low, world=self.world)

    def relay(self, pin, active_low=False):
        return parts.Relay(pin, active_low, world=self.world)

    def button(self, pin, active_low=True):
        return parts.Button(pin, active_low, world=self.world)

    def drive(self, pin, value):
        """Drive a pin from outside: 0, 1, or None to let go."""
        pins.drive(self.world, pin, value)

    def set_voltage(self, source, volts):
        """What an analog input sees (volts, a function of uptime in us, or points)."""
        pins.set_voltage(self.world, source, volts)

    def attach(self, kind, bus, address, model):
        """Attach a peripheral model (see host_sim.world.World.attach)."""
        return self.world.attach(kind, bus, address, model)

    def set_link(self, up):
        """Wi-Fi link up or down from now on."""
        if self.world.network is None:
            self.world.network = NetworkState()
        self.call(self.world.network.set_link, up)


def unique_id(base, index):
    """The board's id with `index` added to its last four bytes: one per device."""
    head, tail = base[:-4], base[-4:]
    number = (int.from_bytes(tail, "big") + index) & 0xFFFFFFFF
    return head + number.to_bytes(len(tail), "big")
