"""The jotunheim verbs for user scripts (Loki): script add, list, rm; children."""
import os

from jotunheim_host.device_verbs import emit, run_device, url_argument
from jotunheim_host.errors import EXIT_MISSING, EXIT_USAGE, EXIT_VALIDATION, CommandError

LANGUAGES = {".py": "python", ".lua": "lua"}
STATES = {1: "idle", 2: "busy", 3: "error", 4: "disabled"}


def parse_parameter(text):
    """NAME:TYPE, NAME:TYPE? (optional) or NAME:TYPE=DEFAULT (JSON) as a declaration."""
    import json
    name, sep, rest = text.partition(":")
    if not sep or not name.isidentifier():
        raise CommandError("--param wants NAME:TYPE, not %r" % text, EXIT_USAGE,
                           hint="e.g. --param pin:int --param on:bool? --param times:int=3")
    kind, eq, default = rest.partition("=")
    declared = {"name": name, "type": kind.rstrip("?"), "required": not kind.endswith("?")}
    if eq:
        try:
            declared["default"] = json.loads(default)
        except ValueError:
            declared["default"] = default
        declared["required"] = False
    return declared


def do_script(args):
    """Register, list or remove a device's scripts; each script NAME is tool Script_NAME."""
    if args.action == "list":
        scripts = run_device(args, lambda device: device.scripts())
        emit(args, scripts, ["%-20s %-7s %6d B  %s  %s" % (
            s["name"], s["language"], s["size"], ", ".join(s["tools"]), s["description"])
            for s in scripts] or ["no scripts"])
        return
    if args.action == "rm":
        if not args.target:
            raise CommandError("script rm needs the script's NAME", EXIT_USAGE)
        if args.dry_run:
            _registered(args, args.target)
            emit(args, {"would_remove": args.target, "dry_run": True},
                 ["would remove Script_%s (nothing was changed)" % args.target])
            return
        run_device(args, lambda device: device.unregister_script(args.target))
        emit(args, {"removed": args.target}, ["removed Script_%s" % args.target])
        return
    if not args.target:
        raise CommandError("script add needs a FILE", EXIT_USAGE)
    try:
        with open(args.target) as f:
            source = f.read()
    except OSError as e:
        raise CommandError("cannot read %s: %s" % (args.target, e.strerror), EXIT_MISSING)
    base, extension = os.path.splitext(os.path.basename(args.target))
    language = args.language or LANGUAGES.get(extension)
    if language is None:
        raise CommandError("cannot tell the language of %s" % args.target, EXIT_USAGE,
                           hint="name it .py or .lua, or give --language")
    name = args.name or base
    parameters = [parse_parameter(p) for p in args.param or ()]
    limits = {"timeout_ms": args.timeout_ms} if args.timeout_ms else {}
    if args.dry_run:
        old = _registered(args, name, must=False)
        if old is not None and not args.replace:
            raise CommandError("a script %s is registered already" % name, EXIT_VALIDATION,
                               hint="add --replace to replace it")
        verb = "would replace" if old is not None else "would register"
        emit(args, {"dry_run": True, "would_register": name, "replaces": old is not None,
                    "tool": "Script_" + name},
             ["%s %s (%s, %d bytes): tool Script_%s (nothing was changed)" % (
                 verb, name, language, len(source.encode()), name)])
        return
    run_device(args, lambda device: device.register_script(
        name, source, language, args.description or "", parameters,
        args.returns, limits, replace=args.replace))
    emit(args, {"registered": name, "tool": "Script_" + name},
         ["registered %s (%s): tool Script_%s" % (name, language, name)])


def _registered(args, name, must=True):
    """The device's listing of script `name`; None (or an error, if `must`) if it has none."""
    for script in run_device(args, lambda device: device.scripts()):
        if script["name"] == name:
            return script
    if must:
        raise CommandError("the device has no script %s" % name, EXIT_VALIDATION,
                           hint="jotunheim script list URL shows the registered ones")
    return None


def script_arguments(parser):
    parser.add_argument("action", choices=("add", "list", "rm"))
    url_argument(parser)
    parser.add_argument("target", nargs="?", help="add: the script FILE; rm: its NAME")
    parser.add_argument("--name", help="the script's name (default: the file's)")
    parser.add_argument("--language", choices=("python", "lua"))
    parser.add_argument("--description", default="")
    parser.add_argument("--param", action="append", metavar="NAME:TYPE",
                        help="a parameter of run(): NAME:TYPE, NAME:TYPE? or NAME:TYPE=DEFAULT")
    parser.add_argument("--returns", default="any", help="the type run() returns")
    parser.add_argument("--timeout-ms", type=int, default=0, help="a limit for each run")
    parser.add_argument("--replace", action="store_true", help="replace a script of that name")
    parser.add_argument("--dry-run", action="store_true",
                        help="say what add or rm would do, change nothing")


def do_children(args):
    """Show the state of Fenrir (hardware), Jormungandr (network) and Hel (data)."""
    children = run_device(args, lambda device: device.children())
    emit(args, children, ["%-12s %-8s running %d, queued %d, errors %d%s" % (
        c["name"], STATES.get(c["state"], "?"), c["running"], c["queued"], c["errors"],
        " (last: %s)" % c["last_error"] if c["last_error"] else "") for c in children])


def children_arguments(parser):
    url_argument(parser)


VERBS = {
    "script": (do_script, script_arguments, "register, list or remove a device's scripts",
               "jotunheim script add tcp://127.0.0.1:7480 scripts/temperature_monitor.py"),
    "children": (do_children, children_arguments, "show Fenrir, Jormungandr and Hel",
                 "jotunheim children tcp://127.0.0.1:7480"),
}
