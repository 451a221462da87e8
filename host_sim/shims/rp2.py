# rp2 for a simulated RP2040 board: the BOOTSEL button, the wireless country code and
# Flash, the block device over the filesystem's region of the flash. Valid on MicroPython
# and CPython; device_boot loads it only on boards of the rp2 port.
#
# The BOOTSEL button is world.machine["bootsel"] (true while pressed), set by a scenario
# or a test as a button is. Flash is a file in the device's state directory, beside its
# filesystem image and not in it: device_boot calls power_on() while host paths are still
# visible and the file stays open (on MicroPython the host filesystem is gone once the
# flash is mounted at "/"). Past the end of the file the flash reads erased (0xFF).
# Without power_on() (an in-process device) it lives in RAM.
from host_sim.flashfile import BLOCK as _BLOCK, ERASED as _ERASED, read, write
from host_sim.world import current as _current



def power_on(world, state_dir, soft_reset=False):
    """Open the device's flash file in state_dir (created if missing)."""
    if state_dir is None:
        import io
        world.rp2_flash = io.BytesIO()
        return
    path = state_dir + "/rp2-flash.bin"
    open(path, "ab").close()
    world.rp2_flash = open(path, "r+b", buffering=0)  # unbuffered on CPython too


def bootsel_button():
    """1 while the BOOTSEL button is pressed, else 0."""
    return 1 if _current().machine.get("bootsel") else 0


def country(code=None):
    """The two-letter country the radio obeys ("XX": worldwide); set it with code."""
    machine = _current().machine
    if code is None:
        return machine.get("country", "XX")
    if not isinstance(code, str) or len(code) != 2:
        raise ValueError()
    machine["country"] = code


class Flash:
    """The filesystem's region of the flash as a block device (4096-byte blocks)."""

    def __init__(self):
        world = _current()
        if getattr(world, "rp2_flash", None) is None:
            power_on(world, None)
        self._file = world.rp2_flash
        self._blocks = world.board["fs_bytes"] // _BLOCK

    def _check(self, offset, length):
        if offset < 0 or offset + length > self._blocks * _BLOCK:
            raise ValueError("block out of range")

    def readblocks(self, block_num, buf, offset=0):
        offset += block_num * _BLOCK
        self._check(offset, len(buf))
        read(self._file, offset, buf)

    def writeblocks(self, block_num, buf, offset=None):
        """Without offset the blocks are erased first, as the simple interface wants."""
        if offset is None:
            for i in range((len(buf) + _BLOCK - 1) // _BLOCK):
                self.ioctl(6, block_num + i)
            offset = 0
        offset += block_num * _BLOCK
        self._check(offset, len(buf))
        write(self._file, offset, buf)

    def ioctl(self, op, arg):
        if op in (1, 2, 3):  # init, deinit, sync
            return 0
        if op == 4:
            return self._blocks
        if op == 5:
            return _BLOCK
        if op == 6:
            self.writeblocks(arg, _ERASED, 0)
            return 0
        return None
