"""The flash verb: put MicroPython itself on a board (esptool for the ESP chips, a UF2 copy
for the Pico W)."""
# How this works: the board profile's "port" picks the method. The image is checked (size,
# magic numbers, chip) before the board is touched. ESP boards: esptool runs as a child
# process, `python -m esptool ...` with this interpreter, rather than through
# esptool.main(): the command shown is the command run (a user can repeat it by hand),
# esptool's progress bars reach the terminal untouched, and esptool's process-wide state
# (its Rich logger, exception hooks, sys.exit on fatal errors, the open port) stays out of
# jotunheim. Its stderr is read as it passes, for the last fatal message. The Pico W's ROM
# bootloader shows a USB drive, RPI-RP2; a UF2 copied onto it is written to flash.
import argparse
import glob
import importlib.util
import os
import shlex
import struct
import subprocess
import sys

from jotunheim_host import frames
from jotunheim_host.errors import (EXIT_MISSING, EXIT_RUNTIME, EXIT_USAGE, EXIT_VALIDATION,
                                   CommandError)
from jotunheim_host.maker_verbs import progress_bar

DOWNLOAD = "https://micropython.org/download/%s/"
DEFAULT_BAUD = 460800  # what MicroPython's instructions use; cheap adapters may want 115200
ESP_IMAGE_MAGIC = 0xE9
# profile "port" -> how esptool puts MicroPython there: the chip, where the image starts (a
# classic ESP32 image begins with the second-stage bootloader, which lives at 0x1000),
# write-flash options, the chip id in an ESP32 image's extended header (None: the ESP8266's
# image format has none) and the name of the download on micropython.org
ESPTOOL_TARGETS = {
    "esp32": {"chip": "esp32", "offset": 0x1000, "write": [], "chip_id": 0,
              "download": "ESP32_GENERIC"},
    # dio works on most ESP8266 modules; detect writes the real flash size into the header
    "esp8266": {"chip": "esp8266", "offset": 0x0, "chip_id": None,
                "write": ["--flash-mode", "dio", "--flash-size", "detect"],
                "download": "ESP8266_GENERIC"},
}
ESP_CHIPS = {0: "ESP32", 2: "ESP32-S2", 5: "ESP32-C3", 9: "ESP32-S3", 12: "ESP32-C2",
             13: "ESP32-C6", 16: "ESP32-H2", 18: "ESP32-P4"}
CONNECT_HINT = ("is %s the board's port? Check that the cable carries data, hold the BOOT "
                "button (GPIO0 low) while esptool connects, or try --baud 115200")

UF2_MAGIC = (0x0A324655, 0x9E5D5157, 0x0AB16F30)  # start0, start1 and end of every block
UF2_BLOCK = 512
UF2_NOT_MAIN_FLASH, UF2_HAS_FAMILY = 0x1, 0x2000
RP2040_FAMILY = 0xE48BFF56
PICO_DOWNLOAD = "RPI_PICO_W"
UF2_DRIVES = ["/media/*/RPI-RP2", "/run/media/*/RPI-RP2", "/media/RPI-RP2",
              "/Volumes/RPI-RP2"]
PICO_STEPS = [
    "download MicroPython for the Pico W (a .uf2 file) from " + DOWNLOAD % PICO_DOWNLOAD,
    "hold the BOOTSEL button while plugging the Pico W into USB, then let go",
    ("a drive named RPI-RP2 appears: copy the .uf2 onto it (jotunheim flash --board pico_w "
     "--image FILE.uf2 does it when the drive is mounted; --drive PATH says where)"),
    "the board writes the image, reboots into MicroPython and the drive goes away",
]
BOOTSEL_HINT = ("hold BOOTSEL while plugging the Pico W in, then run this again, or give "
                "--drive PATH (on Windows the drive letter, E:\\)")


def load_profile(name):
    """The board profile `name`; CommandError for an unknown board."""
    try:
        from host_sim import boards
        return boards.load(name)
    except ValueError as e:
        raise CommandError(str(e), EXIT_USAGE) from None
    except (ImportError, OSError) as e:
        raise CommandError("cannot read the board profile %s: %s" % (name, e),
                           EXIT_MISSING) from None


def image_kind(head):
    """What a file's first bytes say it is (for error messages), or None."""
    if head[:1] == bytes([ESP_IMAGE_MAGIC]):
        return "an ESP firmware image (.bin)"
    if head[:4] == struct.pack("<I", UF2_MAGIC[0]):
        return "a UF2 image (for boards with a UF2 bootloader, like the Pico W)"
    if head[:4] == b"\x7fELF":
        return "an ELF file (flash the .bin built from it)"
    if head.lstrip()[:1] == b"<":
        return "an HTML page (download the file the page links to)"
    return None


def read_image(path, limit, where):
    """The bytes of image file `path`, which must hold at most `limit` bytes."""
    try:
        size = os.path.getsize(path)
        if size > limit:
            raise CommandError("%s is %d bytes: too big for the board, which has %d bytes "
                               "of flash %s" % (path, size, limit, where), EXIT_VALIDATION)
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except OSError as e:
        raise CommandError("cannot read the image %s: %s" % (path, e.strerror),
                           EXIT_MISSING) from None
    if not data:
        raise CommandError("%s is empty" % path, EXIT_VALIDATION)
    return data


def not_an_image(path, expected, data, download):
    kind = image_kind(data)
    return CommandError("%s is not %s" % (path, expected), EXIT_VALIDATION,
                        hint=("it looks like %s; " % kind if kind else "")
                        + "MicroPython for this board: " + DOWNLOAD % download)


def check_esp_image(path, profile, target):
    """The size of ESP image `path` after checking that it fits at the target's offset,
    starts with the 0xE9 magic and (ESP32) is built for the board's chip."""
    offset = target["offset"]
    data = read_image(path, profile["flash_bytes"] - offset, "from 0x%x" % offset)
    if data[0] != ESP_IMAGE_MAGIC:
        raise not_an_image(path, "an ESP firmware image (it does not start with the 0xE9 "
                           "magic)", data, target["download"])
    if target["chip_id"] is not None and len(data) >= 24:
        chip = struct.unpack_from("<H", data, 12)[0]
        if chip != target["chip_id"]:
            raise CommandError("%s is built for the %s, not the %s" % (
                path, ESP_CHIPS.get(chip, "chip with id %d" % chip),
                ESP_CHIPS[target["chip_id"]]), EXIT_VALIDATION,
                hint="MicroPython for this board: " + DOWNLOAD % target["download"])
    return len(data)


def check_uf2(path, profile):
    """The bytes of UF2 image `path` after checking every block's magic numbers, its family
    (the RP2040's when it names one) and that its payload fits the board's flash."""
    data = read_image(path, 2 * profile["flash_bytes"], "(a UF2 file is twice its payload)")
    if len(data) % UF2_BLOCK:
        raise not_an_image(path, "a UF2 image (it is not made of 512-byte blocks)", data,
                           PICO_DOWNLOAD)
    payload = 0
    for at in range(0, len(data), UF2_BLOCK):
        start0, start1, flags, _, size, _, _, family = struct.unpack_from("<8I", data, at)
        if (start0, start1, struct.unpack_from("<I", data, at + 508)[0]) != UF2_MAGIC:
            raise not_an_image(path, "a UF2 image (block %d lacks the UF2 magic numbers)"
                               % (at // UF2_BLOCK), data, PICO_DOWNLOAD)
        if flags & UF2_HAS_FAMILY and family != RP2040_FAMILY:
            raise CommandError("%s is for UF2 family 0x%08x, not the Pico W's RP2040 "
                               "(0x%08x)" % (path, family, RP2040_FAMILY), EXIT_VALIDATION,
                               hint="an image for a Pico 2? MicroPython for the Pico W: "
                                    + DOWNLOAD % PICO_DOWNLOAD)
        if not flags & UF2_NOT_MAIN_FLASH:
            payload += size
    if payload > profile["flash_bytes"]:
        raise CommandError("%s carries %d bytes: more than the board's %d bytes of flash"
                           % (path, payload, profile["flash_bytes"]), EXIT_VALIDATION)
    return data


def uf2_board_id(drive):
    """The Board-ID line of a UF2 drive's INFO_UF2.TXT, or None."""
    try:
        with open(os.path.join(drive, "INFO_UF2.TXT"), errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip().lower() == "board-id":
                    return value.strip()
    except OSError:
        pass
    return None


def find_uf2_drive(drive=None):
    """The Pico's bootloader drive: `drive` when given (it must hold INFO_UF2.TXT), else the
    one mounted at a usual place (UF2_DRIVES); None when there is none."""
    if drive is None:
        found = sorted({path for pattern in UF2_DRIVES for path in glob.glob(pattern)
                        if os.path.isfile(os.path.join(path, "INFO_UF2.TXT"))})
        if len(found) > 1:
            raise CommandError("%d RPI-RP2 drives are mounted: %s" % (
                len(found), ", ".join(found)), EXIT_USAGE, hint="pick one with --drive PATH")
        return found[0] if found else None
    if not os.path.isfile(os.path.join(drive, "INFO_UF2.TXT")):
        raise CommandError("%s is not a UF2 bootloader drive: it has no INFO_UF2.TXT" % drive,
                           EXIT_MISSING, hint=BOOTSEL_HINT)
    board_id = uf2_board_id(drive)
    if board_id not in (None, "RPI-RP2"):
        raise CommandError("%s is the drive of a %s bootloader, not the Pico W's (RPI-RP2)"
                           % (drive, board_id), EXIT_VALIDATION)
    return drive


def copy_uf2(data, name, drive, progress=None):
    """Write UF2 bytes to file `name` on the bootloader drive; return the file's path."""
    target = os.path.join(drive, name)
    done = 0
    try:
        with open(target, "wb") as f:
            for at in range(0, len(data), 64 * 1024):
                f.write(data[at:at + 64 * 1024])
                f.flush()
                done = min(at + 64 * 1024, len(data))
                if progress:
                    progress(done, len(data), target)
            os.fsync(f.fileno())
    except OSError as e:
        # the Pico reboots as soon as it has the last block, and the drive goes with it
        if done < len(data):
            raise CommandError("copying to %s failed: %s" % (target, e.strerror or e),
                               EXIT_RUNTIME, hint=BOOTSEL_HINT) from None
    return target


def esptool_commands(target, port, image, erase=True, baud=DEFAULT_BAUD,
                     connect_attempts=None):
    """The esptool command lines (argv lists) that put `image` on the board at `port`:
    erase-flash when `erase`, then write-flash, which checks what it wrote by MD5."""
    base = [sys.executable, "-m", "esptool", "--chip", target["chip"], "--port", port,
            "--baud", str(baud)]
    if connect_attempts is not None:
        base += ["--connect-attempts", str(connect_attempts)]
    commands = [base + ["erase-flash"]] if erase else []
    return commands + [base + ["write-flash"] + target["write"]
                       + ["0x%x" % target["offset"], image]]


def command_line(argv):
    """argv as text a shell takes back."""
    return subprocess.list2cmdline(argv) if os.name == "nt" else shlex.join(argv)


def esptool_installed():
    return importlib.util.find_spec("esptool") is not None


def check_port(port):
    """CommandError (missing) unless the serial port exists; URLs are left to esptool."""
    if "://" in port:
        return
    from serial.tools import list_ports
    ports = sorted(p.device for p in list_ports.comports())
    if port in ports or (os.name != "nt" and os.path.exists(port)):
        return
    raise CommandError("no serial port %s" % port, EXIT_MISSING,
                       hint="serial ports here: %s" % (", ".join(ports) or "none; is the "
                                                       "board plugged in?"))


def run_esptool(argv, step, stdout=None):
    """Run one esptool command. Its stdout goes to `stdout` (None: ours), its stderr is
    copied to ours; a failure becomes a CommandError with esptool's fatal message."""
    tail = []
    with subprocess.Popen(argv, stdout=stdout, stderr=subprocess.PIPE, text=True,
                          errors="replace") as child:
        for line in child.stderr:
            sys.stderr.write(line)
            if line.strip():
                tail = (tail + [line.strip()])[-20:]
    if child.returncode == 0:
        return
    fatal = [line.split("fatal error occurred:", 1)[1].strip() for line in tail
             if "fatal error occurred:" in line]
    message = fatal[-1] if fatal else (tail[-1] if tail else
                                       "exit status %d" % child.returncode)
    text = "\n".join(tail)
    if "No such file or directory" in text:
        code, hint = EXIT_MISSING, "is the board plugged in? Check the port's name"
    elif "Could not open" in text:
        code, hint = EXIT_RUNTIME, "is another program (a serial monitor, mpremote) using it?"
    else:
        code, hint = EXIT_RUNTIME, CONNECT_HINT % argv[argv.index("--port") + 1]
    raise CommandError("esptool failed while %s: %s" % (step, message), code, hint=hint,
                       details={"command": argv, "status": child.returncode,
                                "stderr": tail})


def flash_esp(args, profile, target, report):
    """Check the image, then erase and write with esptool (or only show the commands)."""
    if not args.port:
        raise CommandError("name the board's serial port: jotunheim flash PORT --board %s "
                           "--image FILE" % profile["name"], EXIT_USAGE)
    report["size"] = check_esp_image(args.image, profile, target)
    commands = esptool_commands(target, args.port, args.image, args.erase, args.baud,
                                args.connect_attempts)
    report.update(method="esptool", port=args.port, offset=target["offset"],
                  commands=commands, erased=False, written=False)
    if args.dry_run:
        return ["would run:"] + ["  " + command_line(argv) for argv in commands]
    if not esptool_installed():
        raise CommandError("esptool is not installed", EXIT_MISSING,
                           hint="%s -m pip install esptool" % command_line([sys.executable]))
    check_port(args.port)
    # esptool's own output is the progress report; with --format json it goes to fd 2,
    # since stdout is for the JSON
    stdout = 2 if args.format == "json" else None
    for argv in commands:
        erasing = argv[-1] == "erase-flash"
        print("$ " + command_line(argv), file=sys.stderr if stdout else sys.stdout)
        sys.stdout.flush()
        try:
            run_esptool(argv, "erasing the flash" if erasing else "writing the image", stdout)
        except CommandError as e:
            if report["erased"]:
                e.hint += ("; the flash is erased, so the board has no MicroPython until "
                           "this is run again (--no-erase will do)")
            raise
        report["erased" if erasing else "written"] = True
    return ["wrote %s (%d bytes) at 0x%x on %s; esptool verified it" % (
        args.image, report["size"], target["offset"], args.port),
        "next: jotunheim deploy %s --board %s" % (args.port, profile["name"])]


def flash_pico(args, profile, report):
    """Check the UF2 image and copy it onto the bootloader drive, or say how."""
    report.update(method="uf2", steps=PICO_STEPS, drive=None, copied_to=None)
    steps = ["To put MicroPython on a Pico W:"] + [
        "  %d. %s" % (i, step) for i, step in enumerate(PICO_STEPS, 1)]
    if not args.image:
        raise CommandError("give the image: --image FILE.uf2", EXIT_USAGE,
                           hint="MicroPython for the Pico W: " + DOWNLOAD % PICO_DOWNLOAD,
                           details=report)
    data = check_uf2(args.image, profile)
    report["size"] = len(data)
    drive = report["drive"] = find_uf2_drive(args.drive)
    if args.dry_run:
        return ([] if drive else steps) + ["would copy %s (%d bytes) to %s" % (
            args.image, len(data), drive or "the RPI-RP2 drive once it appears")]
    if drive is None:
        if args.format != "json":
            print("\n".join(steps))
        raise CommandError("no RPI-RP2 drive is mounted (looked at %s)"
                           % ", ".join(UF2_DRIVES), EXIT_MISSING, hint=BOOTSEL_HINT,
                           details=report)
    report["copied_to"] = copy_uf2(data, os.path.basename(args.image), drive,
                                   progress_bar() if args.format != "json" else None)
    return ["copied %s (%d bytes) to %s: the Pico W reboots into MicroPython" % (
        args.image, len(data), drive),
        "next: jotunheim deploy PORT --board %s (PORT: its USB serial port)" % profile["name"]]


def do_flash(args):
    """Put MicroPython itself on a board: esptool erases and writes an ESP32 or ESP8266
    over serial (checking the image first); a Pico W image is copied onto the drive its
    bootloader shows (hold BOOTSEL while plugging it in)."""
    profile = load_profile(args.board)
    report = {"board": profile["name"], "image": args.image, "dry_run": args.dry_run}
    if profile["runtime"] != "micropython":
        raise CommandError("%s runs Linux and CPython, not MicroPython: there is nothing to "
                           "flash" % profile["name"], EXIT_USAGE,
                           hint="install its OS image (Raspberry Pi Imager) and run the "
                                "firmware with python3; jotunheim sim %s simulates one"
                                % profile["name"])
    if profile["port"] == "rp2":
        lines = flash_pico(args, profile, report)
    else:
        target = ESPTOOL_TARGETS[profile["port"]]
        if not args.image:
            raise CommandError("give the image: --image FILE.bin", EXIT_USAGE,
                               hint="MicroPython for this board: "
                                    + DOWNLOAD % target["download"])
        lines = flash_esp(args, profile, target, report)
    if args.format == "json":
        print(frames.to_json(report))
    else:
        print("\n".join(lines))


def flash_arguments(parser):
    parser.add_argument("port", nargs="?", default=None, metavar="PORT",
                        help="the board's serial port: /dev/ttyUSB0, COM3 (not for pico_w)")
    parser.add_argument("--board", required=True,
                        help="board profile: esp32, esp8266, pico_w (boards/NAME.json)")
    parser.add_argument("--image", default=None, metavar="FILE",
                        help="the MicroPython image: .bin for ESP boards, .uf2 for pico_w "
                             "(from https://micropython.org/download/)")
    parser.add_argument("--erase", action=argparse.BooleanOptionalAction, default=True,
                        help="erase the whole flash first, as MicroPython's instructions do "
                             "(default; --no-erase keeps it)")
    parser.add_argument("--baud", type=int, default=DEFAULT_BAUD, metavar="N",
                        help="esptool's baud rate (default %(default)s)")
    parser.add_argument("--connect-attempts", type=int, default=None, metavar="N",
                        help="how often esptool tries to connect (default esptool's, 7)")
    parser.add_argument("--drive", default=None, metavar="PATH",
                        help="pico_w: the mounted RPI-RP2 drive (default: looked for)")
    parser.add_argument("--dry-run", action="store_true",
                        help="check the image and show the commands; touch no board")


VERBS = {
    "flash": (do_flash, flash_arguments, "put MicroPython itself on a board (esptool, UF2)",
              "jotunheim flash /dev/ttyUSB0 --board esp32 --image ESP32_GENERIC.bin"),
}
