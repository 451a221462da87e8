"""The port modules esp32 and rp2: only on their port, OTA with rollback, NVS, rp2.Flash.

Subprocess devices on both runtimes: partitions and NVS live in files beside the flash,
so resets and power cuts are real process deaths."""
import re

import pytest

from host_sim import boards
from host_sim.clock import Clock
from host_sim.world import World, install
from sim_checks import printed

RUNTIMES = ["micropython", "cpython"]


IMPORT_MAIN = """\
for name in ('esp32', 'rp2'):
    try:
        __import__(name)
        print('has', name)
    except ImportError:
        print('lacks', name)
"""


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("board, has, lacks", [("esp32", "esp32", "rp2"),
                                                ("pico_w", "rp2", "esp32")])
def test_port_modules_exist_only_on_their_port(make_device, runtime, board, has, lacks):
    device = make_device(runtime, {"main.py": IMPORT_MAIN}, board=board)
    device.start()
    printed(device, r"has %s" % has)
    printed(device, r"lacks %s" % lacks)


# Each boot runs the next step of /plan: "update" writes an app image into the next OTA
# slot, sets it to boot and resets, "stage" does the same without the reset, "confirm"
# marks the running app valid and resets, "reset" resets, and "stay" (or no step left)
# leaves the device running.
OTA_MAIN = """\
import esp32, machine
running = esp32.Partition(esp32.Partition.RUNNING)
head = bytearray(4)
running.readblocks(0, head)
try:
    with open('/done') as f:
        done = int(f.read())
except OSError:
    done = 0
with open('/plan') as f:
    plan = f.read().split()
step = plan[done] if done < len(plan) else 'stay'
with open('/done', 'w') as f:
    f.write(str(done + 1))
print('boot %d %s %s %s' % (done, running.info()[4],
      esp32.Partition(esp32.Partition.BOOT).info()[4], bytes(head).hex()))
if step in ('update', 'stage'):
    target = running.get_next_update()
    image = bytearray(3 * 4096)
    for i in range(len(image)):
        image[i] = i % 251
    image[0] = 0xE9
    target.writeblocks(0, image)
    target.set_boot()
    print('set', target.info()[4])
elif step == 'confirm':
    esp32.Partition.mark_app_valid_cancel_rollback()
if step in ('update', 'confirm', 'reset'):
    machine.reset()
print('staying')
"""


def ota_boots(device, plan):
    """Run `plan` until the device stays; the (running, boot, image head) of each boot."""
    device.put_files({"main.py": OTA_MAIN, "plan": " ".join(plan)})
    device.start()
    printed(device, r"staying")
    return re.findall(r"boot \d+ (\w+) (\w+) (\w+)", device.console.text())


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_an_update_that_is_not_confirmed_rolls_back(make_device, runtime):
    device = make_device(runtime)
    boots = ota_boots(device, ["update", "reset", "reset"])
    assert boots == [("ota_0", "ota_0", "ffffffff"),
                     ("ota_1", "ota_1", "e9010203"),  # pending verify
                     ("ota_0", "ota_0", "ffffffff"),  # the bootloader rolled back
                     ("ota_0", "ota_0", "ffffffff")]


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_confirmed_update_stays(make_device, runtime):
    device = make_device(runtime)
    boots = ota_boots(device, ["update", "confirm", "reset", "update"])
    assert [b[:2] for b in boots] == [("ota_0", "ota_0"), ("ota_1", "ota_1"),
                                      ("ota_1", "ota_1"), ("ota_1", "ota_1"),
                                      ("ota_0", "ota_0")]  # the next update: the other slot
    assert boots[-1][2] == "e9010203"


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_power_cuts_keep_the_boot_state(make_device, runtime):
    device = make_device(runtime, {"main.py": OTA_MAIN, "plan": "stage stay stay"})
    device.start()
    printed(device, r"set ota_1")
    printed(device, r"staying")
    device.power_cut()  # set_boot() was the last thing done: it must hold
    mark = device.console.mark()
    device.start()
    assert printed(device, r"boot 1 (\w+) (\w+)", mark) == ("ota_1", "ota_1")
    printed(device, r"staying", mark)
    device.power_cut()  # still pending verify: the next boot rolls back
    mark = device.console.mark()
    device.start()
    assert printed(device, r"boot 2 (\w+) (\w+)", mark) == ("ota_0", "ota_0")


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_soft_reset_does_not_run_the_bootloader(make_device, runtime):
    device = make_device(runtime, {"main.py": OTA_MAIN + "import sys\nif done == 1:\n"
                                                         "    sys.exit()\n",
                                   "plan": "update stay stay"})
    device.start()
    printed(device, r"boot 2 ")
    mark = device.console.mark()
    device.reset()
    boots = re.findall(r"boot \d+ (\w+) (\w+)", device.console.text())
    # boot 1 ends in sys.exit(): a soft reset keeps the unconfirmed app; a hard one does not
    assert boots[:3] == [("ota_0", "ota_0"), ("ota_1", "ota_1"), ("ota_1", "ota_1")]
    assert printed(device, r"boot 3 (\w+) (\w+)", mark) == ("ota_0", "ota_0")


PARTITION_MAIN = """\
import esp32, os
apps = [p.info()[4] for p in esp32.Partition.find(esp32.Partition.TYPE_APP)]
data = [p.info()[4] for p in esp32.Partition.find(esp32.Partition.TYPE_DATA)]
nvs = esp32.Partition.find(esp32.Partition.TYPE_DATA, label='nvs')[0]
print('tables', apps, data, nvs.ioctl(4, 0), nvs.ioctl(5, 0))
try:
    esp32.Partition('nonesuch')
except OSError as e:
    print('missing', e.args[0])
try:
    esp32.Partition('ota_1').set_boot()
except OSError as e:
    print('refused', e.args[0], e.args[1])
print('root', sorted(os.listdir('/')))
"""


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_partitions_are_reachable_only_through_the_api(make_device, runtime):
    device = make_device(runtime, {"main.py": PARTITION_MAIN})
    device.start()
    assert printed(device, r"tables (.*)") == (
        "['ota_0', 'ota_1'] ['nvs', 'otadata', 'phy_init', 'vfs'] 4 4096",)
    assert printed(device, r"missing (\S+)") == ("2",)
    assert printed(device, r"refused (\S+) (\S+)") == ("-5379", "ESP_ERR_OTA_VALIDATE_FAILED")
    assert printed(device, r"root (.*)") == ("['main.py']",)


NVS_MAIN = """\
import esp32
nvs = esp32.NVS('jotun')
try:
    n = nvs.get_i32('boots')
except OSError as e:
    n = 0
    print('missing', e.args[0])
name = bytearray(16)
try:
    name = bytes(name[:nvs.get_blob('name', name)]).decode()
except OSError:
    name = '-'
try:
    nvs.get_i32('uncommitted')
    print('uncommitted survived')
except OSError:
    pass
nvs.set_i32('boots', n + 1)
nvs.set_blob('name', ('fenrir%d' % n).encode())
nvs.set_i32('big', -123456789)
nvs.commit()
nvs.set_i32('uncommitted', 1)
print('nvs', n, name, nvs.get_i32('big'), nvs.get_i32('uncommitted'))
"""


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_nvs_survives_power_cuts_once_committed(make_device, runtime):
    device = make_device(runtime, {"main.py": NVS_MAIN})
    device.start()
    assert printed(device, r"missing (\S+)") == ("-4354",)  # ESP_ERR_NVS_NOT_FOUND
    assert printed(device, r"nvs (.*)") == ("0 - -123456789 1",)
    for boot in (1, 2):
        device.power_cut()
        mark = device.console.mark()
        device.start()
        assert printed(device, r"nvs (.*)", mark) == ("%d fenrir%d -123456789 1" % (
            boot, boot - 1),)
    assert "uncommitted survived" not in device.console.text()


RP2_MAIN = """\
import rp2
flash = rp2.Flash()
print('geometry', flash.ioctl(4, 0), flash.ioctl(5, 0), rp2.country())
buf = bytearray(8)
flash.readblocks(5, buf)
print('block5', bytes(buf).hex())
flash.writeblocks(5, b'jotunhei' * 512)
flash.writeblocks(7, b'ab', 100)
print('button', rp2.bootsel_button())
"""


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_rp2_flash_is_a_block_device_that_persists(make_device, runtime):
    device = make_device(runtime, {"main.py": RP2_MAIN}, board="pico_w")
    device.start()
    blocks = boards.load("pico_w")["fs_bytes"] // 4096
    assert printed(device, r"geometry (.*)") == ("%d 4096 XX" % blocks,)
    assert printed(device, r"block5 (\w+)") == ("ff" * 8,)
    assert printed(device, r"button (\d)") == ("0",)
    device.power_cut()
    mark = device.console.mark()
    device.start()
    assert printed(device, r"block5 (\w+)", mark) == (b"jotunhei".hex(),)


def in_process(board):
    return install(World(boards.load(board), Clock()))


def test_rp2_bootsel_and_country_follow_the_world():
    from host_sim.shims import rp2
    world = in_process("pico_w")
    assert rp2.bootsel_button() == 0
    world.machine["bootsel"] = True
    assert rp2.bootsel_button() == 1
    rp2.country("NO")
    assert rp2.country() == "NO"
    with pytest.raises(ValueError):
        rp2.country("NOR")
    flash = rp2.Flash()
    flash.writeblocks(2, b"x" * 10, 4090)  # across a block boundary
    buf = bytearray(12)
    flash.readblocks(2, buf, 4088)
    assert buf == b"\xff\xff" + b"x" * 10


def test_esp32_wake_sources_and_temperature():
    from host_sim.shims import esp32, machine
    world = in_process("esp32")
    esp32.wake_on_ext0(machine.Pin(4), esp32.WAKEUP_ANY_HIGH)
    with pytest.raises(ValueError):
        esp32.wake_on_ext0(machine.Pin(5), 1)  # not an RTC GPIO
    with pytest.raises(ValueError):
        esp32.wake_on_touch(True)  # ext0 holds the resource
    esp32.wake_on_ext1([machine.Pin(32), machine.Pin(33)], esp32.WAKEUP_ALL_LOW)
    assert world.machine["wake"] == {"ext0": (4, 1), "ext1": ([32, 33], False)}
    world.machine["mcu_temperature"] = 50
    assert esp32.raw_temperature() == 122
    assert not hasattr(esp32, "mcu_temperature")  # only the S2/S3/C3 chips have it
