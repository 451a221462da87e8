# Start a simulated device: the first program its process runs, under MicroPython's unix
# port or CPython (`device_boot.py CONFIG.json`; host_sim.runner writes CONFIG).
#
# As a board's start-up does, it builds the World from the board profile, loads the
# simulator's shims of the modules the board has (machine, time, network, esp32 on an
# ESP32, ...) while the host filesystem is still visible, attaches what the scenario
# wires to the board (host_sim.scenario) and the UARTs the runner bridges to host ptys
# (host_sim.serialbridge), makes the device's flash its whole filesystem, then runs
# boot.py and main.py from the flash in the one namespace the REPL shares.
#
# MicroPython: the flash is a LittleFS image file behind a block device written in Python,
# mounted at "/" in place of the host filesystem: nothing outside the image can be seen,
# and what was closed before a power cut is there at the next boot (LittleFS is
# power-safe). A ballast trims the heap so that the free heap left after start-up is the
# board's budget. A ROMFS image, when the device has one, is mounted at /rom ahead of /lib
# on sys.path, as on a board. After main.py the unix port's own REPL takes over (the
# runner passes -i).
# CPython: the flash is a directory; host_sim.cpython_device confines paths to it and
# provides the REPL (see there for how far the confinement goes).
#
# The runner listens on a control socket (host_sim.control has the device's end): the
# device reports there that its flash is mounted ({"booted": true}), asks for resets
# ({"reset": cause, "reason": ...}: the runner kills the process and boots it again with
# that cause, which machine.reset_cause() then reads from world.machine["reset_cause"]),
# and serves the runner's requests on its World while it waits. A reset is a SystemExit:
# sys.exit() (a soft reset, as on a board) or machine's DeviceReset (with its reason and
# cause). From boot.py or main.py it lands in run_file(); typed at the unix port's REPL it
# ends the process, and an atexit hook finds the reset in the World's log. A process that
# ends otherwise with status 0 (Ctrl-D at the REPL) is soft-reset by the runner.
import sys

BLOCK_SIZE = 4096
MICROPYTHON = sys.implementation.name == "micropython"
CPYTHON_ONLY = ("smbus",)  # shims of what a Linux board has and a MicroPython one lacks
# Shims of what only some boards have: the board's "port" must be the one named, or its
# profile's availability field true. `import esp32` on a Pico W fails as on the board.
ON_PORT = {"esp32": "esp32", "rp2": "rp2"}
IF_PROFILE = {"dht": "dht", "onewire": "onewire", "ds18x20": "onewire"}


def board_has(board, name):
    """True if the board has the module that shim `name` stands in for."""
    if name in ON_PORT:
        return board.get("port") == ON_PORT[name]
    if name in IF_PROFILE:
        return bool(board.get(IF_PROFILE[name]))
    return True


def print_exception(exc):
    if MICROPYTHON:
        sys.print_exception(exc)
    else:
        import traceback
        traceback.print_exception(type(exc), exc, exc.__traceback__)


class FlashImage:
    """A block device over a flash image file, with littlefs's extended interface."""

    def __init__(self, path, on_sync=None):
        self.on_sync = on_sync  # called at each LittleFS sync: a change is committed
        self.file = open(path, "r+b")
        self.file.seek(0, 2)
        self.blocks = self.file.tell() // BLOCK_SIZE
        self.erased = b"\xff" * BLOCK_SIZE  # preallocated: erasing allocates nothing

    def readblocks(self, block, buf, offset=0):
        self.file.seek(block * BLOCK_SIZE + offset)
        self.file.readinto(buf)

    def writeblocks(self, block, buf, offset=None):
        if offset is None:  # the simple interface: erase, then program whole blocks
            for i in range(len(buf) // BLOCK_SIZE):
                self.ioctl(6, block + i)
            offset = 0
        self.file.seek(block * BLOCK_SIZE + offset)
        self.file.write(buf)  # unbuffered: once written it survives a power cut

    def ioctl(self, op, arg):
        if op == 4:
            return self.blocks
        if op == 5:
            return BLOCK_SIZE
        if op == 6:
            self.file.seek(arg * BLOCK_SIZE)
            self.file.write(self.erased)
        if op == 3 and self.on_sync is not None:
            self.on_sync()
        return 0

    def blank(self):
        """True if the image was never formatted (its two superblocks are erased)."""
        buf = bytearray(64)
        for block in (0, 1):
            self.readblocks(block, buf)
            if buf != self.erased[:64]:
                return False
        return True


def open_flash(path, on_sync=None):
    """The LittleFS on an image, formatted first if it never was."""
    import vfs
    device = FlashImage(path, on_sync)
    try:
        return vfs.VfsLfs2(device)
    except OSError:
        if not device.blank():
            raise OSError("flash image %s does not mount: it is corrupt" % path)
    vfs.VfsLfs2.mkfs(device)
    return vfs.VfsLfs2(device)


def copy_tree(src, dst):
    """Copy a directory tree, on MicroPython (os.ilistdir; no os.path)."""
    import os
    buf = bytearray(BLOCK_SIZE)
    for entry in os.ilistdir(src):
        name, kind = entry[0], entry[1]
        source, target = src + "/" + name, dst + "/" + name
        if kind == 0x4000:
            try:
                os.mkdir(target)
            except OSError:
                pass  # already there
            copy_tree(source, target)
            continue
        with open(source, "rb") as fin, open(target, "wb") as fout:
            n = fin.readinto(buf)
            while n:
                fout.write(buf[:n] if n < len(buf) else buf)
                n = fin.readinto(buf)


def build_world(config):
    from host_sim.clock import Clock
    from host_sim.control import Control, PacedClock
    from host_sim.world import World, install
    start_us = 0
    if MICROPYTHON:  # the C asyncio module stamps tasks with the real tick
        import utime
        start_us = utime.ticks_us()
    pace = config.get("pace")
    clock = PacedClock(start_us, pace) if pace else Clock(start_us)
    world = install(World(config["board"], clock))
    if config.get("reset_cause") is not None:
        world.machine["reset_cause"] = config["reset_cause"]
    world.control = None
    world.heap_ballast = None
    if config.get("control_port"):
        world.control = Control(config["control_port"], world)
        if pace:
            clock.control = world.control
    return world


def apply_scenario(config, world):
    """Attach the scenario's parts, schedule its faults, and serve the runner's requests
    whenever the clock moves (after the pins Scheduler has run the timers due)."""
    from host_sim import pins, scenario
    setup = scenario.apply(world, config.get("world") or {}, world.control)
    if hasattr(world.clock, "next_due"):  # paced: it stops at each timer on its way
        sched = pins.scheduler(world)
        world.clock.next_due = lambda: sched.next_due()[1]
    if world.control is not None:
        world.control.setup = setup
        world.clock.listeners.append(world.control.on_clock)


def wire_serial(config, world):
    """Connect the UARTs the runner wires to host ptys: a HostLine at the pins of each, as
    a USB-serial adapter's wires would be (host_sim.serialbridge, loaded only then)."""
    if not config.get("serial"):
        return
    from host_sim.serialbridge import HostLine
    for line in config["serial"]:
        world.attach("uart", tuple(line["pins"]), None, HostLine(line["port"]))


def shim_names(directory):
    """The modules and packages in host_sim/shims, the network shim first."""
    import os
    names = []
    for name in os.listdir(directory):
        if name.endswith(".py") and name != "__init__.py":
            names.append(name[:-3])
        elif "." not in name and not name.startswith("_"):
            names.append(name)  # a package (asyncio, say)
    names.sort()
    if "network" in names:  # first: the World's network state is its class
        names.remove("network")
        names.insert(0, "network")
    return names


def load_shims(config, world):
    """Import the board's shims while the host filesystem is visible, then hook asyncio.

    MicroPython finds the shims first on sys.path. CPython's built-in modules (time)
    cannot be shadowed from sys.path: there each shim is imported from the package and
    put into sys.modules (the time shim by host_sim.vclock.install()). A shim with
    power_on() keeps state beside the flash: it opens its files now, while it can.
    """
    shims = config["repo"] + "/host_sim/shims"
    state_dir = config["flash"].rsplit("/", 1)[0]
    soft_reset = config.get("reset_cause") is not None and \
        config["reset_cause"] == world.board["machine"]["reset_causes"].get("SOFT_RESET")
    sys.path.insert(0, shims)
    for name in shim_names(shims):
        if (MICROPYTHON and name in CPYTHON_ONLY) or not board_has(world.board, name):
            continue
        if MICROPYTHON and config.get("frozen_sim"):  # frozen in the binary: host_sim.flash
            __import__("host_sim.shims." + name)
            module = sys.modules[name] = sys.modules["host_sim.shims." + name]
        elif MICROPYTHON:
            module = __import__(name)
        elif name == "time":
            from host_sim import vclock
            vclock.install()
            module = sys.modules["time"]
        else:
            __import__("host_sim.shims." + name)
            module = sys.modules[name] = sys.modules["host_sim.shims." + name]
        if name == "network":
            world.network = module.NetworkState.from_dict(config.get("network") or {})
        if hasattr(module, "power_on"):
            module.power_on(world, state_dir, soft_reset)
    from host_sim import vasyncio
    vasyncio.install(world)


def enter_flash(config, world):
    """Make the flash the device's filesystem and sys.path a board's."""
    global _romfs
    import os
    committed = None  # fault injection: a power cut after the Nth flash commit
    if world.control is not None:
        world.control.cut_after = config.get("cut_after_commits")
        committed = world.control.committed
    if not MICROPYTHON:
        from host_sim import cpython_device
        cpython_device.confine(config["flash"], committed)
        return
    import vfs
    fs = open_flash(config["flash"], committed)  # opened while the image is reachable
    world.romfs, _romfs = _romfs, None  # read at the start (hold_budget)
    vfs.umount("/")
    vfs.mount(fs, "/")
    os.chdir("/")
    sys.path[:] = ["", ".frozen", "/lib"]
    if world.romfs is not None:
        vfs.mount(vfs.VfsRom(world.romfs[1]), "/rom")
        sys.path[:] = ["", ".frozen", "/rom", "/rom/lib", "/lib"]
    world.heap_ballast = trim_heap(config.get("heap_bytes"))


def read_romfs(path):
    """(buffer, the image in it) or None. A board maps its ROMFS from flash; here it is
    read before the heap is trimmed, into the simulator's share. Bytecode imported from
    /rom runs in place from these bytes and takes no heap of the device's."""
    if not path:
        return None
    import os
    size = os.stat(path)[6]
    # One byte more than the image. Seen on 1.29: a VfsRom over a buffer exactly the
    # image's size pins whatever the heap puts right after it (the heap trim's reserve,
    # which then never frees), as if it held a pointer to the image's end, which the
    # conservative GC takes for one to the next block. With the spare byte it is inside.
    buffer = bytearray(size + 1)
    with open(path, "rb") as f:
        f.readinto(buffer)
    return buffer, memoryview(buffer)[:size]


_reserve = None  # the board's budget, held from the start of the boot (hold_budget)
_ballast = None  # and the list that will hold the rest
_romfs = None    # and the ROMFS image, read before them


def hold_budget(config):
    """Take the board's heap budget as one block while the heap is still empty, before
    the simulator's modules load and scatter: trim_heap() frees it last, so that what the
    device gets is one contiguous region as on a freshly booted board. The ROMFS image
    (one large buffer too) is read first."""
    global _reserve, _ballast, _romfs
    budget = config.get("heap_bytes")
    if MICROPYTHON:
        _romfs = read_romfs(config.get("romfs"))
    if MICROPYTHON and budget:
        _ballast = [None] * 2048  # first: a list allocated late finds no room
        try:
            _reserve = bytearray(budget - 64)
        except MemoryError:
            _reserve = None


def trim_heap(budget):
    """Take up what the heap holds beyond `budget`, so that `budget` is what stays free.

    Allocated in pieces: the heap is fragmented after the imports."""
    global _reserve, _ballast
    import gc
    reserve, _reserve = _reserve, None
    ballast, _ballast = _ballast, None
    gc.collect()
    if not budget:
        return None
    if reserve is None and gc.mem_free() < budget:
        print("warning: the simulator's modules leave %d bytes of heap, %d short of the "
              "board's budget" % (gc.mem_free(), budget - gc.mem_free()))
        return None
    # The budget, held as one block since hold_budget(), stays so while the rest is
    # filled: what stays free is then one contiguous region as on a freshly booted board.
    used = 0
    piece = 16384
    while piece >= 16 and used < len(ballast):
        excess = gc.mem_free() - (0 if reserve is not None else budget)
        if excess < piece:
            piece //= 2
            continue
        try:  # down to single 16-byte blocks: small holes left free would count as budget
            ballast[used] = bytearray(piece - 16) if piece > 32 else (None,) * (piece // 16)
            used += 1
        except MemoryError:
            piece //= 2
    reserve = None
    gc.collect()
    return ballast


def run_file(name, namespace, world):
    """Run a file from the flash as a board does: errors are printed, not fatal."""
    try:
        with open(name) as f:
            source = f.read()
    except OSError:
        return
    try:
        exec(compile(source, name, "exec"), namespace)
    except SystemExit as e:
        reset_after(world, e)
    except BaseException as e:  # KeyboardInterrupt too: Ctrl-C stops main.py
        print_exception(e)


def reset_after(world, exc):
    """Have the runner reboot the device after SystemExit `exc`: machine's DeviceReset
    (it carries reason and cause), or sys.exit(), which a board takes as a soft reset."""
    if world.control is None:
        raise exc
    world.control.request_reset(getattr(exc, "cause", None),
                                getattr(exc, "reason", "soft_reset"),
                                getattr(exc, "sleep_us", None))


def reset_at_exit(world):
    """The unix port's REPL ended: if machine reset the device, tell the runner."""
    for entry in world.log[::-1]:
        if entry[1] == "machine" and entry[2].startswith("reset: "):
            world.control.request_reset(world.machine.get("reset_cause"), entry[2][7:])
            return


def flash_op(config):
    """Copy a host tree into the flash image ("put") or out of it ("get")."""
    import vfs
    vfs.mount(open_flash(config["flash"]), "/flash")
    if config["op"] == "put":
        copy_tree(config["host_dir"], "/flash")
    else:
        copy_tree("/flash", config["host_dir"])
    vfs.umount("/flash")


def start(namespace):
    """Boot the device described by the config file named in sys.argv[1].

    boot.py, main.py and the REPL share `namespace`, the __main__ module's.
    """
    import json
    with open(sys.argv[1]) as f:
        config = json.load(f)
    if config.get("op", "boot") != "boot":
        flash_op(config)
        return
    hold_budget(config)
    world = build_world(config)
    try:
        load_shims(config, world)
        apply_scenario(config, world)
        wire_serial(config, world)
        enter_flash(config, world)
    except BaseException as e:  # the runner kills the device: no REPL on the host's files
        print_exception(e)
        if world.control is not None:
            world.control.send({"halt": repr(e)})
            world.control.wait_for_end()
        raise
    if world.control is not None:
        world.control.send({"booted": True})
    for name in list(namespace):  # the REPL namespace starts empty, as on a board
        if name not in ("__name__", "__builtins__"):
            del namespace[name]
    run_file("boot.py", namespace, world)
    if config.get("run_main", True):
        run_file("main.py", namespace, world)
    if MICROPYTHON:  # the unix port's own REPL follows when this script ends
        if world.control is not None:
            sys.atexit(lambda: reset_at_exit(world))
    else:
        from host_sim import cpython_device
        cpython_device.repl(namespace, lambda exc: reset_after(world, exc))


if __name__ == "__main__":
    # Run as a script: import this file again as a module, so that its names stay out
    # of the namespace that boot.py, main.py and the REPL share.
    sys.path[0] = sys.path[0].rsplit("/", 1)[0]  # the repository, not host_sim/
    from host_sim import device_boot as _boot
    _boot.start(globals())
