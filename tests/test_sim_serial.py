"""A simulated board's UART on a host pty: the host opens it with pyserial as it opens a
board on a USB-serial adapter (host_sim.serialbridge; the UART model in host_sim.spi_uart).

Every device is a real process (the MicroPython unix port or CPython), every port a real
pseudo-terminal opened by pyserial; nothing is mocked.
"""
import os
import random

import pytest
import serial

from host_sim import boards
from host_sim.runner import SimError, word_factor
from host_sim.scenario import check
from sim_checks import printed

RUNTIMES = ["micropython", "cpython"]

# Polls any() between asyncio sleeps, as the device agent does. asyncio.sleep(0.002):
# CPython's asyncio has no sleep_ms.
ECHO_TEMPLATE = """\
import asyncio
import machine

uart = machine.UART(UART_ID, 115200)
buf = bytearray(64)


async def echo():
    uart.write(b'hello from the device\\n')
    print('ready')
    while True:
        if uart.any():
            n = uart.readinto(buf)
            uart.write(memoryview(buf)[:n])
        await asyncio.sleep(0.002)

asyncio.run(echo())
"""
ECHO_MAIN = ECHO_TEMPLATE.replace("UART_ID", "2")


def open_port(device, uart_id=2):
    """The device's UART as a host program sees it (opened before the device boots, as an
    adapter's port usually is). The timeout only bounds a failing test."""
    return serial.serial_for_url(device.serial_port(uart_id), baudrate=115200, timeout=20)


def read_exactly(port, count):
    data = port.read(count)
    assert len(data) == count, "%d of %d bytes came: %r" % (len(data), count, data[-40:])
    return data


def echo(port, data):
    port.write(data)
    return read_exactly(port, len(data))


def chunks(data, sizes):
    at = 0
    for size in sizes:
        if at >= len(data):
            return
        yield data[at:at + size]
        at += size
    if at < len(data):
        yield data[at:]


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_echo_of_every_byte_value_in_chunks(make_device, runtime):
    device = make_device(runtime, {"main.py": ECHO_MAIN}, serial=[2])
    port = open_port(device)
    device.start()
    printed(device, r"ready")
    assert port.readline() == b"hello from the device\n"
    every = bytes(range(256))
    echoed = b"".join(echo(port, part) for part in chunks(every, [1, 2, 3, 5, 8, 13, 21, 34]))
    assert echoed == every
    assert echo(port, every) == every  # whole: 0x03, 0x0d, 0x11, 0x13 ... pass untouched
    burst = bytes(random.Random(1).getrandbits(8) for _ in range(4096))  # beyond rxbuf
    assert echo(port, burst) == burst
    port.close()


READ_TIMEOUT_MAIN = """\
import machine

uart = machine.UART(2, 115200, timeout=1000)
uart.write(b'ask\\n')
print('ready')
got = b''
while len(got) < 6:
    part = uart.read(6 - len(got))  # waits up to 1 s for the host, then tries again
    if part:
        got += part
print('got', got.hex())
uart.write(b'thanks ' + got)
"""


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_both_directions_with_a_blocking_read(make_device, runtime):
    device = make_device(runtime, {"main.py": READ_TIMEOUT_MAIN}, serial=[2])
    port = open_port(device)
    device.start()
    assert port.readline() == b"ask\n"
    printed(device, r"ready")
    port.write(b"\x00\xff")
    port.write(b"\r\n\x03\x11")
    assert printed(device, r"got ([0-9a-f]+)") == ("00ff0d0a0311",)
    assert read_exactly(port, 13) == b"thanks \x00\xff\r\n\x03\x11"
    port.close()


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_the_port_outlives_resets_and_power_cuts(make_device, runtime):
    device = make_device(runtime, {"main.py": ECHO_MAIN}, serial=[2])
    path = device.serial_port(2)
    port = open_port(device)
    device.start()
    printed(device, r"ready")
    assert port.readline() == b"hello from the device\n"

    def power_cycle():
        device.power_cut()
        port.write(b"sent while the device is off")  # lost, as on a board's wire
        device.start()

    for n, reboot in enumerate([device.reset, power_cycle, lambda: device.fault(
            "power_cut", off_s=0.2)]):
        mark = device.console.mark()
        reboot()
        printed(device, r"ready", mark)
        assert device.serial_port(2) == path and os.path.exists(path)
        assert port.readline() == b"hello from the device\n"
        assert echo(port, b"ping %d" % n) == b"ping %d" % n
    assert device.boots == 4
    port.close()


NOT_WIRED_MAIN = """\
import machine

try:
    machine.UART(3)
except ValueError as e:
    print('UART3:', e)
elsewhere = machine.UART(2, 115200, tx=4, rx=5)  # UART2 on pins the adapter is not on
print('elsewhere wrote', elsewhere.write(b'on pins 4 and 5\\n'), elsewhere.any())
rerouted = machine.UART(1, 115200, tx=17, rx=16)  # UART1 on the adapter's pins
rerouted.write(b'via UART1\\n')
print('done')
"""


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_uarts_the_board_lacks_or_that_are_not_wired(make_device, runtime):
    device = make_device(runtime, {"main.py": NOT_WIRED_MAIN}, serial=[2])
    port = open_port(device)
    device.start()
    printed(device, r"done")
    assert printed(device, r"UART3: (.*)\r?\n") == ("UART(3) does not exist",)
    assert printed(device, r"elsewhere wrote (\d+) (\d+)") == ("16", "0")  # as on a board
    assert port.readline() == b"via UART1\n"  # and nothing of what went to pins 4 and 5
    with pytest.raises(SimError, match="UART1 of esp32 is not wired"):
        device.serial_port(1)
    port.close()


ESP8266_MAIN = """\
import machine

uart = machine.UART(1, 115200)
uart.write(b'tx only\\n')
try:
    uart.read(1)
except OSError as e:
    print('read:', e)
print('any', uart.any())
"""


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_the_esp8266_uart1_only_transmits(make_device, runtime):
    device = make_device(runtime, {"main.py": ESP8266_MAIN}, board="esp8266", serial=[1])
    port = open_port(device, 1)
    device.start()
    assert port.readline() == b"tx only\n"
    assert printed(device, r"read: (.*)\r?\n") == ("UART(1) can't read",)
    assert printed(device, r"any (\d+)") == ("0",)
    port.close()


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_the_esp8266_repl_uart_is_wired_apart_from_the_repl(make_device, runtime):
    """UART0 carries the REPL on an ESP8266, and its UART1 cannot receive: an agent there
    talks on UART0. The pty gets the firmware's UART traffic, the console its prints."""
    device = make_device(runtime, {"main.py": ECHO_TEMPLATE.replace("UART_ID", "0")},
                         board="esp8266", serial=[0])
    port = open_port(device, 0)
    device.start()
    printed(device, r"ready")
    assert port.readline() == b"hello from the device\n"  # and not "ready"
    every = bytes(range(256))
    assert echo(port, every) == every
    port.close()


@pytest.mark.parametrize("board, uart_id, error", [
    ("esp32", 3, "the esp32 has no UART 3 \\(it has 0, 1, 2\\)"),
    ("esp32", 1, "UART1's TX pin 10 is the board's SPI flash"),
    ("pico_w", 2, "the pico_w has no UART 2"),
    ("esp32", "2", "the esp32 has no UART '2'"),
])
def test_wiring_a_uart_the_board_cannot_have_wired_fails(make_device, board, uart_id, error):
    with pytest.raises(SimError, match="serial: " + error):
        make_device("micropython", board=board, serial=[uart_id])


def test_every_uart_of_a_pico_w_can_be_wired(make_device):
    device = make_device("micropython", board="pico_w", serial=[0, 1])
    paths = device.describe()["serial"]
    assert sorted(paths) == [0, 1] and paths[0] != paths[1]
    assert all(os.path.exists(path) for path in paths.values())
    device.stop()
    assert not any(os.path.exists(path) for path in paths.values())  # unplugged


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_scenario_wires_the_serial_port(make_device, runtime):
    spec = check({"board": "esp32", "serial": [2], "files": {"main.py": ECHO_MAIN}})
    device = make_device(runtime, board=None, scenario=spec)
    port = open_port(device)
    device.start()
    printed(device, r"ready")
    assert port.readline() == b"hello from the device\n"
    assert echo(port, b"from a scenario") == b"from a scenario"
    port.close()
    with pytest.raises(SimError, match="serial: the esp32 has no UART 5"):
        make_device(runtime, scenario=dict(spec, serial=[5]))


STREAM_MAIN = """\
import asyncio
import machine
import select

uart = machine.UART(2, 115200)
poller = select.poll()
poller.register(uart, select.POLLIN)
print('polled', poller.poll(0))


async def shout():
    reader = asyncio.StreamReader(uart)
    writer = asyncio.StreamWriter(uart, {})
    print('ready')
    while True:
        line = await reader.readline()
        writer.write(line.upper())
        await writer.drain()

asyncio.run(shout())
"""


def test_select_poll_and_asyncio_streams_take_a_uart_on_micropython(make_device):
    """As a board's machine.UART does; CPython's asyncio has no StreamReader(stream)."""
    device = make_device("micropython", {"main.py": STREAM_MAIN}, serial=[2])
    port = open_port(device)
    device.start()
    printed(device, r"ready")
    assert printed(device, r"polled (\S+)") == ("[]",)
    for n in range(5):
        port.write(b"line %d\n" % n)
        assert port.readline() == b"LINE %d\n" % n
    port.close()


def test_a_wired_device_keeps_its_boards_heap_in_one_piece(make_device):
    """The bridge's device end sits in the simulator's share of the heap, not the board's."""
    budget = word_factor() * boards.load("esp32")["heap_bytes"]
    main = "import gc\ngc.collect()\nblock = bytearray(%d)\nprint('block ok')\n" % (budget // 2)
    device = make_device("micropython", {"main.py": main}, serial=[2])
    device.start()
    printed(device, r"block ok")
