"""jotunheim flash: image checks, the esptool command lines, real esptool against a serial
port with no chip behind it, and the Pico W's UF2 copy onto a (fake) bootloader drive."""
# The verb is called in-process through its own argument parser (flash_arguments); esptool
# runs for real, as the child process the verb starts, against a pseudo-terminal: it opens
# the port, sends its SYNC packets, hears nothing and gives up. The pty's master side
# records what esptool sent, to show that no erase or write command ever left.
import argparse
import json
import os
import select
import struct
import threading

import pytest

from jotunheim_host import flash
from jotunheim_host.errors import (EXIT_MISSING, EXIT_RUNTIME, EXIT_USAGE, EXIT_VALIDATION,
                                   CommandError)

SYNC = 0x08  # esptool's first command; FLASH_BEGIN 0x02, FLASH_DATA 0x03, ERASE_FLASH 0xD0
ESP32_FLASH = 4 * 1024 * 1024


def run_flash(*argv, output="table"):
    """do_flash with argv parsed by the verb's own parser."""
    parser = argparse.ArgumentParser(prog="jotunheim flash")
    flash.flash_arguments(parser)
    args = parser.parse_args(list(argv))
    args.format = output
    flash.do_flash(args)


def flash_error(*argv, output="table"):
    with pytest.raises(CommandError) as raised:
        run_flash(*argv, output=output)
    return raised.value


def esp_image(tmp_path, size=64 * 1024, chip_id=0, name="firmware.bin"):
    """A well-formed-looking ESP image: the 0xE9 magic, an extended header naming the chip,
    padding."""
    header = bytes([0xE9, 3, 2, 0x20]) + bytes(8) + struct.pack("<H", chip_id)
    path = tmp_path / name
    path.write_bytes(header + b"\xff" * (size - len(header)))
    return str(path)


def uf2_block(number, count, payload=b"\x00" * 256, family=flash.RP2040_FAMILY):
    start = struct.pack("<8I", *flash.UF2_MAGIC[:2], flash.UF2_HAS_FAMILY,
                        0x10000000 + 256 * number, len(payload), number, count, family)
    return start + payload.ljust(476, b"\x00") + struct.pack("<I", flash.UF2_MAGIC[2])


def uf2_image(tmp_path, blocks=4, name="RPI_PICO_W.uf2", **options):
    path = tmp_path / name
    path.write_bytes(b"".join(uf2_block(n, blocks, **options) for n in range(blocks)))
    return str(path)


def bootloader_drive(path):
    path.mkdir(parents=True)
    (path / "INFO_UF2.TXT").write_text("UF2 Bootloader v3.0\nModel: Raspberry Pi RP2\n"
                                       "Board-ID: RPI-RP2\n")
    return str(path)


@pytest.fixture
def no_esptool_run(monkeypatch):
    """Fail the test if esptool would be started."""
    def refuse(argv, step, stdout=None):
        raise AssertionError("esptool was run: %s" % argv)
    monkeypatch.setattr(flash, "run_esptool", refuse)


# ------------------------------------------------------------------ esptool for real

class SilentPort:
    """A pseudo-terminal whose far end records what is written to the port and answers
    nothing, like a serial adapter with no chip behind it."""

    def __init__(self):
        self.master, self.slave = os.openpty()  # the slave stays open: no EIO in between
        self.path = os.ttyname(self.slave)
        self.received = bytearray()
        self.stop = threading.Event()
        self.reader = threading.Thread(target=self.read, daemon=True)
        self.reader.start()

    def read(self):
        while not self.stop.is_set():
            if select.select([self.master], [], [], 0.05)[0]:
                try:
                    self.received += os.read(self.master, 4096)
                except OSError:
                    return

    def close(self):
        self.stop.set()
        self.reader.join()
        os.close(self.master)
        os.close(self.slave)

    def commands(self):
        """The command byte of every esptool request (a SLIP packet: 0xC0, direction 0,
        command, ...) sent to the port."""
        found = []
        for packet in bytes(self.received).split(b"\xc0"):
            packet = packet.replace(b"\xdb\xdc", b"\xc0").replace(b"\xdb\xdd", b"\xdb")
            if len(packet) >= 8 and packet[0] == 0:
                found.append(packet[1])
        return found


@pytest.fixture
def silent_port():
    port = SilentPort()
    yield port
    port.close()


@pytest.mark.parametrize("board, options, step", [
    ("esp32", [], "erasing the flash"),
    ("esp32", ["--no-erase"], "writing the image"),
    ("esp8266", ["--no-erase"], "writing the image"),
])
def test_esptool_finds_no_chip_and_nothing_is_written(tmp_path, silent_port, capfd, board,
                                                      options, step):
    image = esp_image(tmp_path)
    error = flash_error(silent_port.path, "--board", board, "--image", image,
                        "--connect-attempts", "1", *options)
    out, err = capfd.readouterr()
    assert error.exit_code == EXIT_RUNTIME
    # esptool took the command line (a usage error would not get as far as connecting)
    assert "esptool failed while %s: Failed to connect to %s" % (step, board.upper()) \
        in str(error)
    assert "BOOT" in error.hint and "--baud 115200" in error.hint
    assert error.details["command"][-1] == ("erase-flash" if step.startswith("eras")
                                           else image)
    assert "$ " in out and "fatal error" in err  # the command shown, esptool's own words
    sent = silent_port.commands()
    assert sent and set(sent) == {SYNC}


FAKE_ESPTOOL = """\
import os, sys
with open(os.environ["FAKE_ESPTOOL_LOG"], "a") as log:
    log.write(" ".join(sys.argv[1:]) + "\\n")
if sys.argv[-1] != "erase-flash" and os.environ.get("FAKE_ESPTOOL_FAIL_WRITE"):
    sys.exit("A fatal error occurred: Failed to connect to ESP32: Wrong boot mode detected")
print("Hash of data verified.")
"""


@pytest.fixture
def fake_esptool(tmp_path, monkeypatch):
    """An `esptool` package ahead of the real one on the child's path: it logs its
    arguments to the returned file and succeeds (FAKE_ESPTOOL_FAIL_WRITE: the write fails)."""
    package = tmp_path / "fake" / "esptool"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "__main__.py").write_text(FAKE_ESPTOOL)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(package.parent)] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    monkeypatch.setenv("FAKE_ESPTOOL_LOG", str(tmp_path / "esptool.log"))
    return tmp_path / "esptool.log"


def test_erase_then_write_reports_in_json(tmp_path, silent_port, capfd, fake_esptool):
    image = esp_image(tmp_path)
    run_flash(silent_port.path, "--board", "esp32", "--image", image, output="json")
    out, err = capfd.readouterr()
    report = json.loads(out)  # esptool's chatter went to stderr
    assert report["erased"] and report["written"] and report["method"] == "esptool"
    assert "Hash of data verified." in err and "$ " in err
    assert fake_esptool.read_text().splitlines() == [
        "--chip esp32 --port %s --baud 460800 erase-flash" % silent_port.path,
        "--chip esp32 --port %s --baud 460800 write-flash 0x1000 %s" % (silent_port.path,
                                                                       image)]


def test_a_failed_write_after_the_erase_says_the_board_is_blank(tmp_path, silent_port,
                                                                  monkeypatch, fake_esptool):
    monkeypatch.setenv("FAKE_ESPTOOL_FAIL_WRITE", "1")
    error = flash_error(silent_port.path, "--board", "esp32", "--image", esp_image(tmp_path))
    assert error.exit_code == EXIT_RUNTIME
    assert str(error) == ("esptool failed while writing the image: Failed to connect to "
                          "ESP32: Wrong boot mode detected")
    assert "the flash is erased" in error.hint and "--no-erase" in error.hint


def test_a_port_that_is_not_there_is_missing(tmp_path):
    error = flash_error(str(tmp_path / "ttyUSB9"), "--board", "esp32",
                        "--image", esp_image(tmp_path))
    assert error.exit_code == EXIT_MISSING
    assert "no serial port" in str(error) and "serial ports here" in error.hint


def test_esptool_not_installed_is_missing(tmp_path, monkeypatch, no_esptool_run):
    monkeypatch.setattr(flash, "esptool_installed", lambda: False)
    error = flash_error("/dev/ttyUSB0", "--board", "esp32", "--image", esp_image(tmp_path))
    assert error.exit_code == EXIT_MISSING
    assert "esptool is not installed" in str(error) and "pip install esptool" in error.hint


# ------------------------------------------------------------------ the commands

def test_dry_run_esp32_erases_then_writes_at_0x1000(tmp_path, capsys, no_esptool_run):
    image = esp_image(tmp_path)
    run_flash("/dev/ttyUSB0", "--board", "esp32", "--image", image, "--dry-run",
              output="json")
    report = json.loads(capsys.readouterr().out)
    base = ["-m", "esptool", "--chip", "esp32", "--port", "/dev/ttyUSB0", "--baud", "460800"]
    assert [argv[1:] for argv in report["commands"]] == [
        base + ["erase-flash"], base + ["write-flash", "0x1000", image]]
    assert report["offset"] == 0x1000 and report["size"] == 64 * 1024
    assert not report["erased"] and not report["written"]


def test_dry_run_esp8266_writes_at_0_in_dio_mode(tmp_path, capsys, no_esptool_run):
    image = esp_image(tmp_path)
    run_flash("/dev/ttyUSB1", "--board", "esp8266", "--image", image, "--dry-run",
              "--baud", "115200")
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "would run:"
    assert out[1].endswith("-m esptool --chip esp8266 --port /dev/ttyUSB1 --baud 115200 "
                           "erase-flash")
    assert out[2].endswith("-m esptool --chip esp8266 --port /dev/ttyUSB1 --baud 115200 "
                           "write-flash --flash-mode dio --flash-size detect 0x0 " + image)


def test_no_erase_writes_only(tmp_path, capsys):
    run_flash("COM3", "--board", "esp32", "--image", esp_image(tmp_path), "--no-erase",
              "--dry-run", output="json")
    commands = json.loads(capsys.readouterr().out)["commands"]
    assert [argv[-3] for argv in commands] == ["write-flash"]


def test_no_image_says_where_to_download(tmp_path):
    error = flash_error("/dev/ttyUSB0", "--board", "esp8266")
    assert error.exit_code == EXIT_USAGE
    assert "https://micropython.org/download/ESP8266_GENERIC/" in error.hint


def test_an_esp_board_needs_a_port(tmp_path):
    error = flash_error("--board", "esp32", "--image", esp_image(tmp_path), "--dry-run")
    assert error.exit_code == EXIT_USAGE and "serial port" in str(error)


# ------------------------------------------------------------------ image checks

@pytest.mark.parametrize("make, says", [
    (lambda d: d.joinpath("zeros.bin").write_bytes(bytes(4096)), "0xE9 magic"),
    (lambda d: d.joinpath("page.bin").write_bytes(b"<!DOCTYPE html><html>"), "HTML page"),
    (lambda d: uf2_image(d, name="pico.bin"), "UF2 image"),
    (lambda d: esp_image(d, chip_id=9), "built for the ESP32-S3, not the ESP32"),
    (lambda d: d.joinpath("empty.bin").write_bytes(b""), "is empty"),
])
def test_a_bad_image_is_refused_before_esptool_runs(tmp_path, no_esptool_run, make, says):
    make(tmp_path)
    image = str(next(tmp_path.iterdir()))
    error = flash_error("/dev/ttyUSB0", "--board", "esp32", "--image", image)
    assert error.exit_code == EXIT_VALIDATION
    assert says in str(error) + " " + (error.hint or "")


def test_an_image_bigger_than_the_flash_is_refused(tmp_path, no_esptool_run):
    path = tmp_path / "huge.bin"
    with open(path, "wb") as f:  # sparse: only the size is looked at
        f.write(b"\xe9")
        f.truncate(ESP32_FLASH - 0x1000 + 1)
    error = flash_error("/dev/ttyUSB0", "--board", "esp32", "--image", str(path))
    assert error.exit_code == EXIT_VALIDATION
    assert "too big" in str(error) and "from 0x1000" in str(error)


def test_an_image_that_fits_exactly_is_accepted(tmp_path, capsys):
    path = tmp_path / "full.bin"
    with open(path, "wb") as f:
        f.write(b"\xe9")
        f.truncate(ESP32_FLASH - 0x1000)
    run_flash("/dev/ttyUSB0", "--board", "esp32", "--image", str(path), "--dry-run")
    assert "write-flash 0x1000" in capsys.readouterr().out


def test_a_missing_image_is_missing(tmp_path):
    error = flash_error("/dev/ttyUSB0", "--board", "esp32", "--image",
                        str(tmp_path / "nope.bin"))
    assert error.exit_code == EXIT_MISSING and "cannot read the image" in str(error)


# ------------------------------------------------------------------ Pico W

@pytest.fixture
def mount_points(tmp_path, monkeypatch):
    """Where RPI-RP2 drives are looked for: a directory of the test's."""
    media = tmp_path / "media"
    monkeypatch.setattr(flash, "UF2_DRIVES", [str(media / "*" / "RPI-RP2")])
    return media


def test_pico_uf2_is_copied_to_the_drive_given(tmp_path, capsys, mount_points):
    image = uf2_image(tmp_path)
    drive = bootloader_drive(tmp_path / "drive")
    run_flash("--board", "pico_w", "--image", image, "--drive", drive)
    copied = os.path.join(drive, "RPI_PICO_W.uf2")
    with open(copied, "rb") as f, open(image, "rb") as g:
        assert f.read() == g.read()
    out = capsys.readouterr().out
    assert "copied %s (2048 bytes) to %s" % (image, drive) in out


def test_pico_drive_is_found_where_the_desktop_mounts_it(tmp_path, capsys, mount_points):
    drive = bootloader_drive(mount_points / "maker" / "RPI-RP2")
    run_flash("--board", "pico_w", "--image", uf2_image(tmp_path), output="json")
    report = json.loads(capsys.readouterr().out)
    assert report["drive"] == drive and report["method"] == "uf2"
    assert os.path.getsize(report["copied_to"]) == 2048


def test_pico_without_a_drive_explains_bootsel(tmp_path, capsys, mount_points):
    error = flash_error("--board", "pico_w", "--image", uf2_image(tmp_path))
    out = capsys.readouterr().out
    assert error.exit_code == EXIT_MISSING
    assert "no RPI-RP2 drive" in str(error) and "BOOTSEL" in error.hint
    assert "hold the BOOTSEL button" in out and "RPI-RP2" in out
    assert "https://micropython.org/download/RPI_PICO_W/" in out


def test_pico_without_an_image_says_where_to_download(mount_points):
    error = flash_error("--board", "pico_w")
    assert error.exit_code == EXIT_USAGE
    assert "https://micropython.org/download/RPI_PICO_W/" in error.hint


def test_a_drive_without_info_uf2_is_not_a_bootloader(tmp_path, mount_points):
    (tmp_path / "usbstick").mkdir()
    error = flash_error("--board", "pico_w", "--image", uf2_image(tmp_path),
                        "--drive", str(tmp_path / "usbstick"))
    assert error.exit_code == EXIT_MISSING and "INFO_UF2.TXT" in str(error)


@pytest.mark.parametrize("make, says", [
    (lambda d: esp_image(d, size=4096, name="esp.uf2"), "ESP firmware image"),
    (lambda d: d.joinpath("odd.uf2").write_bytes(bytes(700)), "512-byte blocks"),
    (lambda d: uf2_image(d, family=0xE48BFF59), "family 0xe48bff59"),
])
def test_a_bad_uf2_is_refused_before_copying(tmp_path, mount_points, make, says):
    make(tmp_path)
    image = str(next(p for p in tmp_path.iterdir() if p.is_file()))
    drive = bootloader_drive(tmp_path / "drive")
    error = flash_error("--board", "pico_w", "--image", image, "--drive", drive)
    assert error.exit_code == EXIT_VALIDATION
    assert says in str(error) + " " + (error.hint or "")
    assert os.listdir(drive) == ["INFO_UF2.TXT"]


def test_a_uf2_with_a_bad_block_is_refused(tmp_path, mount_points):
    with open(uf2_image(tmp_path), "rb") as f:
        data = bytearray(f.read())
    data[512 * 2 + 508] ^= 0xFF  # the end magic of block 2
    (tmp_path / "bad.uf2").write_bytes(data)
    error = flash_error("--board", "pico_w", "--image", str(tmp_path / "bad.uf2"),
                        "--dry-run")
    assert error.exit_code == EXIT_VALIDATION and "block 2" in str(error)


# ------------------------------------------------------------------ Linux

def test_linux_sbc_has_nothing_to_flash(tmp_path):
    error = flash_error("/dev/ttyUSB0", "--board", "linux_sbc", "--image",
                        esp_image(tmp_path))
    assert error.exit_code == EXIT_USAGE
    assert "CPython" in str(error) and "python3" in error.hint


def test_an_unknown_board_is_a_usage_error(tmp_path):
    assert flash_error("/dev/ttyUSB0", "--board", "esp32s3").exit_code == EXIT_USAGE


def test_the_installed_command_against_a_port_without_a_chip(tmp_path, silent_port):
    """As a user runs it: the jotunheim console script, JSON out, exit code 10."""
    import json
    import subprocess

    from test_cli import jotunheim_command
    done = subprocess.run([jotunheim_command(), "--format", "json", "flash", silent_port.path,
                           "--board", "esp32", "--image", esp_image(tmp_path),
                           "--connect-attempts", "1"], capture_output=True, text=True,
                          timeout=120)
    error = json.loads(done.stdout)
    assert done.returncode == error["code"] == 10 and error["error"] == "runtime"
    assert "Failed to connect to ESP32" in error["message"] and "BOOT" in error["hint"]
    assert set(silent_port.commands()) == {SYNC}     # nothing but sync: nothing written
