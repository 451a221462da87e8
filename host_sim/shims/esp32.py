# esp32 for a simulated ESP32: Partition (MicroPython's 4 MiB OTA partition table, with
# ESP-IDF's app rollback), NVS, the chip's temperature and the deep-sleep wake sources.
# Valid on MicroPython and CPython; device_boot loads it only on boards of the esp32 port.
#
# Each partition is a file in the device's state directory, beside its flash and not in
# it, so the device reaches partitions only through Partition. device_boot calls
# power_on() while host paths are visible and the files stay open: on MicroPython the host
# filesystem is gone once the flash is mounted at "/". A file grows as it is written; what
# lies past its end reads as erased flash (0xFF). The vfs partition is such a file too,
# not the device's filesystem (the flash). Without power_on() (an in-process device) the
# partitions live in RAM.
#
# The bootloader's state is otadata, kept as ESP-IDF keeps it: two copies, each with a
# sequence number and a CRC; the intact copy with the higher sequence counts, and a write
# goes to the other copy, so a power cut in the middle of one leaves the state before it.
# power_on() plays the bootloader with CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE: an app just
# set with set_boot() boots "pending verify"; if it still is at the next reset (nobody
# called mark_app_valid_cancel_rollback()), it is aborted and the previous app boots.
# NVS keeps every namespace in the nvs partition in the same two-copy way; set_* and
# erase_key() change RAM until commit() writes them.
import binascii
import json
import struct

from host_sim.flashfile import BLOCK as _BLOCK, ERASED as _ERASED, read as _read, write as _write
from host_sim.world import current as _current

TYPE_APP = 0
TYPE_DATA = 1
_ANY = 0xFF
_TABLE = (  # label, type, subtype, address, size: the port's partitions-4MiB-ota.csv
    ("nvs", TYPE_DATA, 0x02, 0x9000, 0x4000),
    ("otadata", TYPE_DATA, 0x00, 0xD000, 0x2000),
    ("phy_init", TYPE_DATA, 0x01, 0xF000, 0x1000),
    ("ota_0", TYPE_APP, 0x10, 0x10000, 0x180000),
    ("ota_1", TYPE_APP, 0x11, 0x190000, 0x180000),
    ("vfs", TYPE_DATA, 0x81, 0x310000, 0xF0000),
)
_APPS = ("ota_0", "ota_1")
# esp_ota_img_states_t
_NEW, _PENDING_VERIFY, _VALID, _INVALID, _ABORTED, _UNDEFINED = 0, 1, 2, 3, 4, 0xFF


def _esp_error(code, name):
    """OSError as the port's check_esp_err() raises it."""
    return OSError(-code, name)


class _Copies:
    """A record kept twice in a partition: each write replaces the older copy."""

    def __init__(self, file, size):
        self.file = file
        self.half = size // 2
        self.seq = 0
        self.payload = None
        head = bytearray(12)
        for copy in (0, 1):
            _read(file, copy * self.half, head)
            seq, length, crc = struct.unpack("<III", head)
            if seq == 0xFFFFFFFF or length > self.half - 12 or seq < self.seq:
                continue
            body = bytearray(length)
            _read(file, copy * self.half + 12, body)
            if binascii.crc32(bytes(head[:8]) + body) & 0xFFFFFFFF == crc:
                self.seq, self.payload = seq, bytes(body)

    def write(self, payload):
        if len(payload) > self.half - 12:
            raise _esp_error(0x1105, "ESP_ERR_NVS_NOT_ENOUGH_SPACE")
        seq = self.seq + 1
        head = struct.pack("<II", seq, len(payload))
        crc = binascii.crc32(head + payload) & 0xFFFFFFFF
        _write(self.file, (seq % 2) * self.half, head + struct.pack("<I", crc) + payload)
        self.seq, self.payload = seq, payload


class _Chip:
    """The partitions, otadata and NVS of one device."""

    def __init__(self, world, state_dir, soft_reset):
        self.world = world
        self.files = {}
        for entry in _TABLE:
            self.files[entry[0]] = _open(state_dir, entry[0])
        self.otadata = _Copies(self.files["otadata"], 0x2000)
        self.boot, self.running, self.previous, self.state = (
            struct.unpack("4B", self.otadata.payload) if self.otadata.payload
            else (0, 0, 0, _UNDEFINED))
        if not soft_reset:
            self.bootloader()
        self.nvs_file = _Copies(self.files["nvs"], 0x4000)
        self.nvs = {}
        for namespace, entries in json.loads(self.nvs_file.payload or "{}").items():
            self.nvs[namespace] = {}
            for key, (kind, value) in entries.items():
                self.nvs[namespace][key] = value if kind == "i32" else binascii.unhexlify(value)

    def bootloader(self):
        if self.state == _PENDING_VERIFY:  # booted once and never confirmed
            self.world.record("esp32", "rollback: %s aborted, booting %s" % (
                _APPS[self.boot], _APPS[self.previous]))
            self.boot, self.state = self.previous, _VALID
        elif self.state == _NEW:
            self.state = _PENDING_VERIFY
        self.running = self.boot
        self.save_otadata()

    def save_otadata(self):
        record = struct.pack("4B", self.boot, self.running, self.previous, self.state)
        if record != self.otadata.payload:
            self.otadata.write(record)

    def save_nvs(self):
        data = {}
        for namespace, entries in self.nvs.items():
            data[namespace] = {}
            for key, value in entries.items():
                data[namespace][key] = (["i32", value] if isinstance(value, int)
                                        else ["blob", binascii.hexlify(value).decode()])
        self.nvs_file.write(json.dumps(data).encode())


def _open(state_dir, label):
    if state_dir is None:
        import io
        return io.BytesIO()
    path = state_dir + "/esp32-" + label + ".bin"
    open(path, "ab").close()  # create it if missing; "r+b" needs it
    return open(path, "r+b", buffering=0)  # unbuffered on CPython too


def power_on(world, state_dir, soft_reset=False):
    """Open the device's partitions in state_dir and run the bootloader (not after a
    soft reset, which restarts only the interpreter)."""
    world.esp32 = _Chip(world, state_dir, soft_reset)


def _chip():
    world = _current()
    chip = getattr(world, "esp32", None)
    if chip is None:
        power_on(world, None)
        chip = world.esp32
    return chip


class Partition:
    """A flash partition: a block device, and for apps the OTA slots."""

    BOOT = 0
    RUNNING = 1
    TYPE_APP = TYPE_APP
    TYPE_DATA = TYPE_DATA

    def __init__(self, id, block_size=_BLOCK):
        chip = _chip()
        if id == Partition.BOOT or id == Partition.RUNNING:
            id = _APPS[chip.boot if id == Partition.BOOT else chip.running]
        elif not isinstance(id, str):
            raise ValueError()
        entry = _entry(id)
        if entry is None:
            raise OSError(2)  # ENOENT: no such partition
        self._chip = chip
        self._entry = entry
        self._file = chip.files[id]
        self._block_size = block_size

    @staticmethod
    def find(type=TYPE_APP, subtype=_ANY, label=None, block_size=_BLOCK):
        """The partitions of `type` matching subtype and label, in table order."""
        return [Partition(e[0], block_size) for e in _TABLE
                if e[1] == type and subtype in (_ANY, e[2]) and label in (None, e[0])]

    def info(self):
        """(type, subtype, address, size, label, encrypted)"""
        label, type, subtype, address, size = self._entry
        return (type, subtype, address, size, label, False)

    def __repr__(self):
        return "<Partition type=%d, subtype=%d, address=%d, size=%d, label=%s, encrypted=0>" \
            % self.info()[:5]

    def _check(self, offset, length):
        if offset < 0 or offset + length > self._entry[4]:
            raise _esp_error(0x104, "ESP_ERR_INVALID_SIZE")

    def readblocks(self, block_num, buf, offset=0):
        offset += block_num * self._block_size
        self._check(offset, len(buf))
        _read(self._file, offset, buf)

    def writeblocks(self, block_num, buf, offset=None):
        """Without offset the blocks are erased first, as the simple interface wants."""
        if offset is None:
            for i in range((len(buf) + self._block_size - 1) // self._block_size):
                self.ioctl(6, block_num + i)
            offset = 0
        offset += block_num * self._block_size
        self._check(offset, len(buf))
        _write(self._file, offset, buf)

    def ioctl(self, op, arg):
        if op in (1, 2, 3):  # init, deinit, sync
            return 0
        if op == 4:
            return self._entry[4] // self._block_size
        if op == 5:
            return self._block_size
        if op == 6:
            offset = arg * self._block_size
            self._check(offset, self._block_size)
            for pos in range(offset, offset + self._block_size, _BLOCK):
                _write(self._file, pos, _ERASED)
            return 0
        return None

    def _slot(self):
        label = self._entry[0]
        return _APPS.index(label) if label in _APPS else None

    def get_next_update(self):
        """The OTA slot that follows this one: where an update goes."""
        slot = self._slot()
        if slot is None:
            raise OSError(2)
        return Partition(_APPS[1 - slot], self._block_size)

    def set_boot(self):
        """Boot this app at the next reset; it must hold an app image."""
        slot = self._slot()
        if slot is None:
            raise _esp_error(0x102, "ESP_ERR_INVALID_ARG")
        magic = bytearray(1)
        _read(self._file, 0, magic)
        if magic[0] != 0xE9:  # what esp_image_verify() looks for first
            raise _esp_error(0x1503, "ESP_ERR_OTA_VALIDATE_FAILED")
        chip = self._chip
        if chip.state != _PENDING_VERIFY:  # an unconfirmed app is no place to return to
            chip.previous = chip.running
        chip.boot, chip.state = slot, _NEW
        chip.save_otadata()

    @staticmethod
    def mark_app_valid_cancel_rollback():
        """Confirm the running app: no rollback at the next reset."""
        chip = _chip()
        if chip.state == _PENDING_VERIFY and chip.boot == chip.running:
            chip.state = _VALID
            chip.save_otadata()


def _entry(label):
    for entry in _TABLE:
        if entry[0] == label:
            return entry
    return None


class NVS:
    """A namespace of the non-volatile key-value store."""

    def __init__(self, namespace):
        self._chip = _chip()
        self._namespace = namespace

    def _entries(self):
        return self._chip.nvs.setdefault(self._namespace, {})

    def _get(self, key, kind):
        value = self._entries().get(key)
        if value is None or not isinstance(value, kind):
            raise _esp_error(0x1102, "ESP_ERR_NVS_NOT_FOUND")
        return value

    def set_i32(self, key, value):
        value &= 0xFFFFFFFF
        self._entries()[key] = value - (1 << 32) if value & 0x80000000 else value

    def get_i32(self, key):
        return self._get(key, int)

    def set_blob(self, key, value):
        self._entries()[key] = bytes(value)

    def get_blob(self, key, buffer):
        """Copy the blob into buffer; its length."""
        value = self._get(key, bytes)
        if len(value) > len(buffer):
            raise _esp_error(0x110C, "ESP_ERR_NVS_INVALID_LENGTH")
        buffer[:len(value)] = value
        return len(value)

    def erase_key(self, key):
        self._get(key, object)
        del self._entries()[key]

    def commit(self):
        """Write the namespaces to flash."""
        self._chip.save_nvs()


def raw_temperature():
    """The chip's temperature in °F, as the original ESP32's sensor reports it (from
    world.machine["mcu_temperature"] in °C, else 45). mcu_temperature() exists only on the
    S2/S3/C3 chips, so this board has no such function."""
    return int(int(_current().machine.get("mcu_temperature", 45)) * 9 / 5 + 32)


_RTC_PINS = (0, 2, 4, 12, 13, 14, 15, 25, 26, 27, 32, 33, 34, 35, 36, 37, 38, 39)


def _rtc_pin(pin):
    state = getattr(pin, "_state", None)
    if state is None:
        raise TypeError("expecting a Pin")
    if state.id not in _RTC_PINS:
        raise ValueError("invalid pin")
    return state.id


def wake_on_ext0(pin, level):
    """Wake from deep sleep when pin (an RTC GPIO; None: no pin) is at level."""
    wake = _current().machine.setdefault("wake", {})
    if pin is not None and wake.get("touch"):
        raise ValueError("no resources")
    wake["ext0"] = None if pin is None else (_rtc_pin(pin), 1 if level else 0)


def wake_on_ext1(pins, level):
    """Wake from deep sleep on pins (RTC GPIOs): any high (WAKEUP_ANY_HIGH) or all low."""
    if level not in (WAKEUP_ALL_LOW, WAKEUP_ANY_HIGH):
        raise ValueError("invalid level")
    ids = [] if pins is None else [_rtc_pin(pin) for pin in pins]
    _current().machine.setdefault("wake", {})["ext1"] = (ids, level)


def wake_on_touch(wake):
    """Wake from deep sleep on a touch pad (TouchPad.config sets the threshold)."""
    state = _current().machine.setdefault("wake", {})
    if wake and state.get("ext0"):
        raise ValueError("no resources")
    state["touch"] = bool(wake)


WAKEUP_ALL_LOW = False
WAKEUP_ANY_HIGH = True
