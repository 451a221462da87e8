"""The jotunheim command: talk to Jotunheim devices and read their traffic.

Commands:
  dump   pretty-print the frames in a capture of stream or serial bytes
  demo   start a demo device and talk to it over loopback TCP

Output that is data is a readable listing, or JSON with --format json.

Exit codes:
  0    success
  1    the device, the peer or the data is at fault (a malformed capture, a wrong answer)
  2    usage error: the command line is wrong
  3    environment error: a file, program or port the command needs is missing or unusable
  130  interrupted
"""
# One handler per verb (do_<verb>), found through COMMANDS with the function that adds
# the verb's arguments. A handler prints its results and raises CommandError to fail;
# main() turns that into "jotunheim: message" on stderr and the error's exit code.
import argparse
import os
import string
import sys

from . import frames

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_ENVIRONMENT = 3
EXIT_INTERRUPTED = 130
WIRE_BYTES_SHOWN = 48  # the transcript shows the start of long frames
WIRE_LINE = 16


class CommandError(Exception):
    """A command failed; main() prints the message and exits with exit_code."""

    def __init__(self, message, exit_code=EXIT_ERROR):
        Exception.__init__(self, message)
        self.exit_code = exit_code


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
        raise CommandError("cannot read %s: %s" % (path, e.strerror), EXIT_ENVIRONMENT)
    if not as_hex:
        return data
    digits = "".join(data.decode("latin-1").split())
    for i, char in enumerate(digits):
        if char not in string.hexdigits:
            raise CommandError("--hex input: %r at hex digit %d is not a hex digit" % (char, i))
    if len(digits) % 2:
        raise CommandError("--hex input: odd number of hex digits (%d)" % len(digits))
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
        raise CommandError("offset %d: %s%s" % (problems[0][0], problems[0][1], more))


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
    """Start the demo device, talk to it over loopback TCP, print the transcript."""
    from .demo import DemoError, DemoSetupError, run_demo
    events = []
    report = events.append if args.format == "json" else print_event
    try:
        run_demo(report, runtime=args.runtime, port=args.port, heap=args.heap)
    except DemoSetupError as e:
        raise CommandError(str(e), EXIT_ENVIRONMENT)
    except DemoError as e:
        raise CommandError(str(e))
    finally:
        if events:
            emit_json([json_event(event) for event in events])


def demo_arguments(parser):
    parser.add_argument("--runtime", choices=("micropython", "cpython"),
                        default="micropython",
                        help="interpreter for the device (default %(default)s)")
    parser.add_argument("--port", type=int, default=0,
                        help="TCP port for the device; 0 picks a free one")
    parser.add_argument("--heap", default="96k",
                        help="MicroPython heap size for the device (default %(default)s)")


# ------------------------------------------------------------------ main

COMMANDS = {
    "dump": (do_dump, dump_arguments, "pretty-print the frames in a capture"),
    "demo": (do_demo, demo_arguments, "run a demo device and talk to it over loopback"),
}


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
    for name, (handler, add_arguments, summary) in COMMANDS.items():
        sub = verbs.add_parser(name, parents=[common], help=summary,
                               description=handler.__doc__, epilog=epilog,
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
        print("jotunheim: %s" % e, file=sys.stderr)
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
