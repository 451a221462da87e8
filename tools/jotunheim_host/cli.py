"""The jotunheim command: run simulated devices, talk to devices, read their traffic.

Commands:
  demo      the firmware on a simulated ESP32, and a controller talking to it
  sim       run simulated devices (--agent: with the firmware, listening) until Ctrl-C
  discover  find devices on the local network (they answer on UDP 7481)
  devices   list the devices found before
  caps      show a device's capabilities
  call      call a tool with typed arguments
  settings  show or change a device's settings
  log       follow a device's log
  script    register, list or remove a device's scripts (each is tool Script_NAME)
  children  show Fenrir (hardware), Jormungandr (network) and Hel (data)
  follow    print a stream: sensor samples, log lines, a stream script's bytes
  save      save a device file or a stream to a local file
  send      send a local file to the device's storage
  ping      measure round trips to a device
  hub       accept devices that dial in and show them
  deploy    put the firmware on a board with mpremote (compile, copy, verify)
  flash     put MicroPython itself on a board (esptool; the Pico W's UF2 copy)
  provision give a board its id, key, Wi-Fi and controller; or a token for a phone (QR, NFC)
  ota       over-the-air updates: signing keys, signed builds, push, status, rollback
  dump      pretty-print the frames in a capture of stream or serial bytes

Devices are named by URL: tcp://HOST:PORT, serial:///dev/ttyUSB0?baud=115200. Output that
is data is a readable listing, or JSON with --format json (errors too: {code, error,
message, hint, details} on stdout).

Exit codes:
  0    success
  2    usage error: the command line is wrong
  10   runtime error: the device, the link or the peer failed
  20   validation error: input that does not check (a setting, a tool argument, a capture)
  30   missing dependency: a program, package, file or port the command needs
  130  interrupted
"""
# One handler per verb (do_<verb>), found through COMMANDS with the function that adds
# the verb's arguments. A handler prints its results and raises CommandError to fail;
# main() turns that into "jotunheim: message" on stderr and the error's exit code.
import argparse
import os
import shutil
import string
import sys
import tempfile
import time

from . import (device_verbs, discovery, flash, frames, maker_verbs, ota_verbs, provision,
               script_verbs, stream_verbs)
from .errors import (EXIT_INTERRUPTED, EXIT_MISSING, EXIT_OK, EXIT_RUNTIME, EXIT_USAGE,
                     EXIT_VALIDATION, CommandError)

WIRE_BYTES_SHOWN = 48  # the transcript shows the start of long frames
WIRE_LINE = 16


def emit_json(tree):
    print(frames.to_json(tree))


def field_lines(tree, indent="    "):
    return [indent + line for line in frames.text_lines(tree)]


def hex_bytes(data):
    """Bytes as spaced hex."""
    return " ".join("%02x" % b for b in data)


def count_bytes(n):
    return "1 byte" if n == 1 else "%d bytes" % n


def frame_title(info):
    if info["name"] is None:
        return "unknown type %d" % info["type"]
    return "%s (type %d)" % (info["name"], info["type"])


def content_lines(info, indent="    "):
    """The decoded fields of a describe() result, or its raw payload and error."""
    lines = []
    if "error" in info:
        lines.append(indent + "error: " + info["error"])
    if "raw" in info:
        lines.append(indent + "raw payload: " + (hex_bytes(info["raw"]) or "(empty)"))
    return lines + field_lines(info.get("fields", {}), indent)


# ------------------------------------------------------------------ dump

def read_capture(path, as_hex):
    """The bytes of a capture file ('-' is stdin), from hex text if as_hex."""
    try:
        if path == "-":
            data = sys.stdin.buffer.read()
        else:
            with open(path, "rb") as f:
                data = f.read()
    except OSError as e:
        raise CommandError("cannot read %s: %s" % (path, e.strerror), EXIT_MISSING)
    if not as_hex:
        return data
    digits = "".join(data.decode("latin-1").split())
    for i, char in enumerate(digits):
        if char not in string.hexdigits:
            raise CommandError("--hex input: %r at hex digit %d is not a hex digit" % (char, i),
                               EXIT_VALIDATION)
    if len(digits) % 2:
        raise CommandError("--hex input: odd number of hex digits (%d)" % len(digits),
                           EXIT_VALIDATION)
    return bytes.fromhex(digits)


def dump_records(capture, skip_defaults):
    """Frames and errors of a capture, in offset order, as dicts."""
    records = []
    for frame in capture.frames:
        record = {"offset": frame.offset, "size": frame.size}
        record.update(frames.describe(frame.type_id, frame.payload, skip_defaults))
        records.append(record)
    records += [{"offset": offset, "reason": reason} for offset, reason in capture.errors]
    records.sort(key=lambda record: record["offset"])
    return records


def print_dump(records):
    for record in records:
        if "reason" in record:
            print("offset %d: error: %s" % (record["offset"], record["reason"]))
            continue
        print("offset %d: %s, payload %s, frame %s" % (
            record["offset"], frame_title(record), count_bytes(record["length"]),
            count_bytes(record["size"])))
        for line in content_lines(record):
            print(line)


def do_dump(args):
    """Pretty-print every frame of a capture; exit 1 when any part is malformed."""
    data = read_capture(args.file, args.hex)
    capture = frames.parse_capture(data, serial=args.serial, max_frame=args.max_frame)
    records = dump_records(capture, skip_defaults=args.format != "json")
    if args.format == "json":
        emit_json({"frames": [r for r in records if "reason" not in r],
                   "errors": [r for r in records if "reason" in r]})
    else:
        print_dump(records)
    problems = [(r["offset"], r.get("reason") or r["error"])
                for r in records if "reason" in r or "error" in r]
    if problems:
        more = " (and %d more problems)" % (len(problems) - 1) if len(problems) > 1 else ""
        raise CommandError("offset %d: %s%s" % (problems[0][0], problems[0][1], more),
                           EXIT_VALIDATION)


def dump_arguments(parser):
    parser.add_argument("file", nargs="?", default="-",
                        help="capture file, or - for stdin (the default)")
    parser.add_argument("--serial", action="store_true",
                        help="serial frames (0x00 | COBS(type | payload | CRC-32) | 0x00)")
    parser.add_argument("--hex", action="store_true",
                        help="the input is hex text (whitespace is ignored)")
    parser.add_argument("--max-frame", type=int, default=frames.MAX_FRAME,
                        help="largest payload accepted (default %(default)s)")


# ------------------------------------------------------------------ demo

def print_event(event):
    """One transcript line (a note) or block (a frame with its bytes and content)."""
    if event["event"] == "note":
        print("-- " + event["text"])
        return
    wire = event["wire"]
    frame = frames.parse_capture(wire).frames[0]
    info = frames.describe(frame.type_id, frame.payload, skip_defaults=True)
    print("%s -> %s  %s, %s" % (event["from"], event["to"], frame_title(info),
                                count_bytes(len(wire))))
    shown = wire[:WIRE_BYTES_SHOWN]
    for at in range(0, len(shown), WIRE_LINE):
        line = hex_bytes(shown[at:at + WIRE_LINE])
        if at + WIRE_LINE >= len(shown) and len(wire) > len(shown):
            line += " ... (%d more)" % (len(wire) - len(shown))
        print(("    wire: " if at == 0 else "          ") + line)
    for line in content_lines(info):
        print(line)


def json_event(event):
    if event["event"] == "note":
        return event
    frame = frames.parse_capture(event["wire"]).frames[0]
    out = {"event": "frame", "from": event["from"], "to": event["to"],
           "size": len(event["wire"]), "wire": event["wire"]}
    out.update(frames.describe(frame.type_id, frame.payload))
    return out


def do_demo(args):
    """Run the firmware on a simulated ESP32; print a session with it over loopback TCP."""
    from .demo import DemoError, DemoSetupError, run_demo
    events = []
    report = events.append if args.format == "json" else print_event
    try:
        run_demo(report, runtime=args.runtime, port=args.port, heap=args.heap)
    except DemoSetupError as e:
        raise CommandError(str(e), EXIT_MISSING)
    except DemoError as e:
        raise CommandError(str(e), EXIT_RUNTIME)
    finally:
        if events:
            emit_json([json_event(event) for event in events])


def demo_arguments(parser):
    parser.add_argument("--runtime", choices=("micropython", "cpython"),
                        default="micropython",
                        help="interpreter for the device (default %(default)s)")
    parser.add_argument("--port", type=int, default=0,
                        help="TCP port the device's agent listens on; 0 picks a free one")
    parser.add_argument("--heap", type=heap_bytes, default=None,
                        help="free heap of the simulated board, in bytes or with k or m "
                             "(MicroPython only; default the ESP32's, 110k)")


def heap_bytes(text):
    """A byte count: 112640, 110k or 1m."""
    scale = {"k": 1024, "m": 1024 * 1024}.get(text[-1:].lower(), 1)
    try:
        return int(text[:-1] if scale > 1 else text) * scale
    except ValueError:
        raise argparse.ArgumentTypeError("not a byte count: %r" % text) from None


# ------------------------------------------------------------------ sim

def sim_settings(args):
    """One scenario per device, from the boards named or the scenario file."""
    if args.scenario:
        from host_sim import scenario
        try:
            return scenario.load(args.scenario)
        except OSError as e:
            raise CommandError("cannot read %s: %s" % (args.scenario, e.strerror),
                               EXIT_MISSING)
        except ValueError as e:
            raise CommandError("%s: %s" % (args.scenario, e), EXIT_USAGE)
    if not args.boards:
        raise CommandError("name a board (esp32, esp8266, pico_w, linux_sbc) or give "
                           "--scenario", EXIT_USAGE)
    return [{"board": board} for board in args.boards for _ in range(args.count)]


def start_devices(args, settings, base, devices):
    """Start every device, adding each to `devices` first (so that it is stopped whatever
    happens); each gets base/NAME-N as its root when there are several."""
    from host_sim.runner import Device
    pace = {} if args.pace is None else {"pace": args.pace or None}
    names = [one.get("name") or "%s-%d" % (
        one["board"] if isinstance(one["board"], str) else one["board"].get("name", "device"),
        i + 1) for i, one in enumerate(settings)]
    if len(set(names)) < len(names):  # a name shared by the devices of a scenario
        names = ["%s-%d" % (name, i + 1) for i, name in enumerate(names)]
    for i, (one, name) in enumerate(zip(settings, names)):
        root = one.get("root") or (base if len(settings) == 1 else os.path.join(base, name))
        port = one.get("repl_port", args.repl_port + i if args.repl_port else 0)
        device = Device(None, root, runtime=args.runtime or one.get("runtime"),
                        repl_port=port, name=name, scenario=one, **pace)
        devices.append(device)
        if args.agent:
            install_agent(device)
        device.start(run_main=one.get("run_main", not args.repl))


def install_agent(device):
    """Put the firmware on a device's flash, its agent listening on a free loopback port;
    device.agent_url says where."""
    from . import bundle
    from .demo import free_port
    port = free_port()
    try:
        device.put_files(bundle.firmware_files(device.runtime, device.board, settings={
            "agent.mode": "listen", "agent.listen_host": "127.0.0.1",
            "agent.listen_port": port}))
    except bundle.BundleError as e:
        raise CommandError(str(e), EXIT_MISSING) from None
    device.agent_url = "tcp://127.0.0.1:%d" % port


def do_sim(args):
    """Start simulated devices, print where their REPLs are, and run until Ctrl-C."""
    try:
        from host_sim.runner import SimError
    except ImportError:
        raise CommandError("the simulator (host_sim) is not importable: run jotunheim from "
                           "a source checkout", EXIT_MISSING) from None
    settings = sim_settings(args)
    base = args.root or tempfile.mkdtemp(prefix="jotunheim-sim-")
    devices = []
    try:
        try:
            start_devices(args, settings, base, devices)
        except ValueError as e:  # an unknown board
            raise CommandError(str(e), EXIT_USAGE)
        except (SimError, OSError) as e:
            raise CommandError(str(e), EXIT_MISSING)
        rows = [device.describe() for device in devices]
        for row, device in zip(rows, devices):
            if getattr(device, "agent_url", None):
                row["agent"] = device.agent_url
        if args.format == "json":
            emit_json(rows)
        else:
            print_sim_table(rows)
        sys.stdout.flush()
        watch_devices(devices)
    except KeyboardInterrupt:
        print("stopped %d simulated device%s" % (len(devices), "" if len(devices) == 1 else "s"),
              file=sys.stderr)
    finally:
        for device in devices:
            device.stop()
        if args.root is None:  # nobody asked to keep the flash
            shutil.rmtree(base, ignore_errors=True)


def watch_devices(devices):
    """Say on stderr when a device stops by itself (a crash, a deep sleep); until Ctrl-C."""
    off = set()
    while True:
        time.sleep(0.5)
        for device in devices:
            if device.running:
                off.discard(device.name)
            elif device.name not in off:
                off.add(device.name)
                print("jotunheim: %s is off (exit status %s); its console said: %s" % (
                    device.name, device.exit_status,
                    device.console.text()[-300:].strip()), file=sys.stderr)


def print_sim_table(rows):
    columns = ("name", "board", "runtime", "repl") + (("agent",) if "agent" in rows[0] else ()) \
        + ("root",)
    table = [[str(row[c]) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in table)) for i, c in enumerate(columns)]
    for line in [[c.upper() for c in columns]] + table:
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip())
    print("mpremote connect <repl> resume ... talks to a device%s; Ctrl-C stops them all" % (
        ", jotunheim caps <agent> to its agent" if "agent" in rows[0] else ""))


def sim_arguments(parser):
    parser.add_argument("boards", nargs="*", metavar="BOARD",
                        help="board profile names (boards/NAME.json)")
    parser.add_argument("--runtime", choices=("micropython", "cpython"), default=None,
                        help="interpreter for the devices (default: the board's)")
    parser.add_argument("--root", default=None,
                        help="state directory (flash, config), kept for the next run; several "
                             "devices get a subdirectory each (default: a temporary one)")
    parser.add_argument("--repl-port", type=int, default=0,
                        help="TCP port of the first device's REPL, the next ones follow; "
                             "0 picks free ports (the default)")
    parser.add_argument("--count", type=int, default=1,
                        help="devices per board named (default %(default)s)")
    parser.add_argument("--repl", action="store_true",
                        help="boot to the REPL without running main.py")
    parser.add_argument("--agent", action="store_true",
                        help="put the Jotunheim firmware on each device, its agent listening "
                             "on loopback (the AGENT column: jotunheim caps/call URL)")
    parser.add_argument("--scenario", default=None,
                        help="JSON file naming the board, runtime, files, peripherals, analog "
                             "waveforms, Wi-Fi and a fault schedule of one device, or "
                             "{\"devices\": [...]} (host_sim/SCENARIOS.md)")
    parser.add_argument("--pace", type=float, default=None,
                        help="let virtual time run at most this many times real time (1: "
                             "real time; 0: as fast as it goes); default: the scenario's, "
                             "else as fast as it goes")


# ------------------------------------------------------------------ main

COMMANDS = {
    "demo": (do_demo, demo_arguments, "run the firmware on a simulated ESP32 and talk to it",
             "jotunheim demo --runtime cpython"),
    "sim": (do_sim, sim_arguments, "run simulated devices until Ctrl-C",
            "jotunheim sim esp32 --agent"),
}
COMMANDS.update(discovery.VERBS)
COMMANDS.update(device_verbs.VERBS)
COMMANDS.update(script_verbs.VERBS)
COMMANDS.update(maker_verbs.VERBS)
COMMANDS.update(flash.VERBS)
COMMANDS.update(provision.VERBS)
COMMANDS.update(stream_verbs.VERBS)
COMMANDS.update(ota_verbs.VERBS)
COMMANDS["dump"] = (do_dump, dump_arguments, "pretty-print the frames in a capture",
                    "jotunheim dump --serial capture.bin")


def build_parser():
    """The argument parser: global options, then one subparser per command.

    --format is accepted before and after the command; it defaults in main(), since a
    default here would let the subparser overwrite what was given before the command.
    """
    epilog = __doc__[__doc__.index("Exit codes:"):]
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--format", choices=("table", "json"), default=argparse.SUPPRESS,
                        help="output for data: a readable listing (default) or JSON")
    parser = argparse.ArgumentParser(
        prog="jotunheim", parents=[common], epilog=epilog,
        description="Talk to Jotunheim devices and read their traffic.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    verbs = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (handler, add_arguments, summary, example) in COMMANDS.items():
        sub = verbs.add_parser(name, parents=[common], help=summary,
                               description=handler.__doc__,
                               epilog="example:\n  %s\n\n%s" % (example, epilog),
                               formatter_class=argparse.RawDescriptionHelpFormatter)
        add_arguments(sub)
    return parser


def main(argv=None):
    """Run the jotunheim command with argv (default sys.argv[1:]); return the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse exits for --help (0) and for usage errors (2)
        return e.code if isinstance(e.code, int) else EXIT_USAGE
    if not hasattr(args, "format"):  # given neither before nor after the command
        args.format = "table"
    if args.command is None:
        parser.print_usage(sys.stderr)
        print("jotunheim: no command given (try jotunheim --help)", file=sys.stderr)
        return EXIT_USAGE
    try:
        COMMANDS[args.command][0](args)
    except CommandError as e:
        sys.stdout.flush()
        if args.format == "json":
            emit_json(e.as_json())
        else:
            print("jotunheim: %s" % e, file=sys.stderr)
            if e.hint:
                print("jotunheim: %s" % e.hint, file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("jotunheim: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # whoever read our output stopped (`jotunheim dump x | head`): not a failure
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
