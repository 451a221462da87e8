"""The jotunheim verbs that put things on a board: deploy (flash and provision to come)."""
import json
import subprocess
import sys

from jotunheim_host import frames
from jotunheim_host.errors import (EXIT_MISSING, EXIT_RUNTIME, EXIT_USAGE, EXIT_VALIDATION,
                                   CommandError)

KINDS = {"runtime": EXIT_RUNTIME, "validation": EXIT_VALIDATION, "missing": EXIT_MISSING}


def progress_bar(stream=sys.stderr, width=30):
    """A progress(done, total, path) callback drawing a bar on a terminal (nothing else)."""
    if not stream.isatty():
        return None

    def show(done, total, path):
        filled = width * done // max(total, 1)
        stream.write("\r[%s%s] %d/%d %-40s" % ("#" * filled, "." * (width - filled), done,
                                             total, path[-40:]))
        if done == total:
            stream.write("\n")
        stream.flush()
    return show


def read_json_file(path, what):
    try:
        with open(path) as f:
            return json.load(f)
    except OSError as e:
        raise CommandError("cannot read %s %s: %s" % (what, path, e.strerror),
                           EXIT_MISSING) from None
    except ValueError as e:
        raise CommandError("%s %s is not JSON: %s" % (what, path, e), EXIT_VALIDATION) from None


def do_deploy(args):
    """Compile the firmware for the board's MicroPython and copy it with mpremote, with
    the protocol package, the board profile and settings; remove stale .py files that
    would shadow the new .mpy; verify every file by SHA-256."""
    from jotunheim_host.deploy import DeployError, deploy
    settings = read_json_file(args.settings, "settings") if args.settings else None
    for item in args.set or ():
        key, sep, value = item.partition("=")
        if not sep:
            raise CommandError("--set wants KEY=VALUE, not %r" % item, EXIT_USAGE)
        try:
            value = json.loads(value)
        except ValueError:
            pass
        settings = dict(settings or {}, **{key: value})
    tools = read_json_file(args.tools, "tools") if args.tools else None
    try:
        report = deploy(args.url, args.board, settings=settings, tools=tools,
                        dry_run=args.dry_run, progress=progress_bar(), ota_key=args.ota_key)
    except DeployError as e:
        raise CommandError(e.message, KINDS.get(e.kind, EXIT_RUNTIME), hint=e.hint) from None
    if args.reset and not args.dry_run:
        done = subprocess.run(["mpremote", "connect", args.url, "reset"],
                              capture_output=True, text=True, timeout=60)
        report["reset"] = done.returncode == 0
    if args.format == "json":
        print(frames.to_json(report))
        return
    verb = "would write" if args.dry_run else "wrote"
    print("%s: MicroPython %s (mpy v%d), board %s" % (args.url, report["micropython"],
                                                      report["mpy"], report["board"]))
    for path, size in report["written"]:
        print("  %s %s (%d bytes)" % (verb, path, size))
    for path in report["removed"]:
        print("  %s %s" % ("would remove" if args.dry_run else "removed", path))
    for warning in report.get("warnings", ()):
        print("  warning: %s" % warning)
    print("%s %d files, %d bytes; %d unchanged%s" % (
        verb, len(report["written"]), report["bytes"], len(report.get("unchanged", ())),
        "" if args.dry_run else "; %d verified by SHA-256" % report["verified"]))
    if not args.dry_run and not args.reset:
        print("reset the board to start it: mpremote connect %s reset" % args.url)


def deploy_arguments(parser):
    parser.add_argument("url", help="the board as mpremote names it: /dev/ttyUSB0, COM3, "
                                    "socket://127.0.0.1:PORT (jotunheim sim prints it)")
    parser.add_argument("--board", required=True,
                        help="board profile: esp32, esp8266, pico_w (boards/NAME.json)")
    parser.add_argument("--settings", default=None,
                        help="JSON file of settings (firmware/FORMATS.md); the board's own "
                             "settings.json is kept otherwise")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE",
                        help="a setting (repeat for several), over --settings")
    parser.add_argument("--tools", default=None, help="tools.json to install")
    parser.add_argument("--ota-key", default=None, metavar="FILE",
                        help="the public update key (ota_key.pub.json from jotunheim ota "
                             "keygen): the board then takes updates signed with it")
    parser.add_argument("--dry-run", action="store_true",
                        help="show what would be written and removed; change nothing")
    parser.add_argument("--reset", action="store_true", help="reset the board afterwards")


VERBS = {
    "deploy": (do_deploy, deploy_arguments, "put the firmware on a board with mpremote",
               "jotunheim deploy /dev/ttyUSB0 --board esp32 --set agent.controller=hub:7480"),
}
