"""The jotunheim verbs that talk to a device's agent: caps, call, settings, log, ping, hub.

A device is named by URL: tcp://HOST:PORT (a listening device, `jotunheim sim --agent`
prints one), serial:///dev/ttyUSB0?baud=115200. The key of a device that authenticates
comes from --key-file or the JOTUNHEIM_KEY environment variable (hex), never from the
command line, where other users could read it.
"""
# Each verb is a do_<verb>(args) and a <verb>_arguments(parser), as in cli.py; the work is
# a coroutine run by run_device(), which turns the controller's failures into
# CommandErrors with the exit code of their class.
import asyncio
import json
import os
import sys
import time

from jotunheim_host import frames
from jotunheim_host.errors import (EXIT_MISSING, EXIT_RUNTIME, EXIT_USAGE, EXIT_VALIDATION,
                                   CommandError)

VALUE_TYPES = ("any", "null", "bool", "int", "float", "string", "bytes", "list", "map")
KINDS = {1: "builtin", 2: "tools.json", 3: "script", 4: "stream script"}
LEVELS = {1: "debug", 2: "info", 3: "warning", 4: "error", 5: "critical"}
KEY_HINT = "give the device's key with --key-file FILE or JOTUNHEIM_KEY (hex)"


def read_key(args):
    """The key bytes from --key-file or JOTUNHEIM_KEY, or None."""
    text = os.environ.get("JOTUNHEIM_KEY")
    if getattr(args, "key_file", None):
        try:
            with open(args.key_file) as f:
                text = f.read()
        except OSError as e:
            raise CommandError("cannot read the key file %s: %s" % (args.key_file, e.strerror),
                               EXIT_MISSING) from None
    if not text:
        return None
    try:
        key = bytes.fromhex(text.strip())
    except ValueError:
        raise CommandError("the key is not hex digits", EXIT_VALIDATION,
                           hint="a key is 32 to 128 hex digits, as in the device's auth.key "
                                "setting") from None
    if not 16 <= len(key) <= 64:
        raise CommandError("the key has %d bytes; keys have 16 to 64" % len(key),
                           EXIT_VALIDATION)
    return key


def run_device(args, work):
    """Connect to args.url and run work(device); controller failures become CommandErrors."""
    from jotunheim_host.controller import CallError, ConnectError, connect
    from jotunheim_host.transport import TransportError

    async def main():
        try:
            device = await connect(args.url, key=read_key(args), reconnect=False)
        except (ConnectError, TransportError) as e:
            text = str(e)
            hint = KEY_HINT if "key" in text else (
                "is the device on, and listening there? (jotunheim sim --agent starts one)")
            kind = EXIT_MISSING if "cannot open" in text else EXIT_RUNTIME
            raise CommandError(text, kind, hint=hint) from None
        try:
            return await work(device)
        finally:
            await device.close()
    try:
        return asyncio.run(main())
    except CallError as e:
        code = EXIT_VALIDATION if e.status_name in ("INVALID_ARGUMENT", "NOT_FOUND",
                                                   "OUT_OF_RANGE", "ALREADY_EXISTS") \
            else EXIT_RUNTIME
        hint = ("jotunheim caps %s lists the tools and their parameters" % args.url
                if code == EXIT_VALIDATION else None)
        raise CommandError(str(e), code, hint=hint,
                           details={"status": e.status_name, "message": e.message}) from None


def emit(args, tree, lines):
    if args.format == "json":
        print(frames.to_json(tree))
    else:
        for line in lines:
            print(line)


def url_argument(parser):
    parser.add_argument("url", help="the device: tcp://HOST:PORT or serial:///dev/ttyUSB0")
    parser.add_argument("--key-file", default=None,
                        help="file holding the device's key in hex (or set JOTUNHEIM_KEY)")


# ------------------------------------------------------------------ caps

def describe_parameter(p):
    kind = VALUE_TYPES[p["type"]] if p["type"] < len(VALUE_TYPES) else str(p["type"])
    return "%s:%s%s" % (p["name"], kind, "" if p["required"] else "?")


def caps_lines(caps):
    device, resources = caps["device"], caps["resources"]
    lines = ["%s (%s), board %s, firmware %s, protocol %d, revision %d" % (
        device["id"], device["name"], device["board"], device["firmware_version"],
        device["protocol_version"], caps["revision"])]
    width = max([len(t["name"]) for t in caps["tools"]] + [4])
    lines.append("  ID  %-*s  KIND        PARAMETERS" % (width, "TOOL"))
    for tool in caps["tools"]:
        params = ", ".join(describe_parameter(p) for p in tool["parameters"]) or "-"
        lines.append("%4d  %-*s  %-10s  %s -> %s" % (
            tool["id"], width, tool["name"], KINDS.get(tool["kind"], "?"), params,
            VALUE_TYPES[tool["returns"]["type"]] if tool.get("returns") else "any"))
        if tool["description"]:
            lines.append("      %-*s  %s" % (width, "", tool["description"]))
    hardware = caps.get("hardware") or {}
    lines.append("interfaces: %s" % (", ".join(hardware.get("interfaces", [])) or "-"))
    lines.append("memory %s bytes (%s free), %s calls at a time, frames up to %s bytes" % (
        resources["max_memory"], resources["free_memory"] or "?",
        resources["max_concurrent_tools"], resources["max_frame"]))
    return lines


def do_caps(args):
    """Show a device's capability document."""
    caps = run_device(args, lambda device: device.capabilities())
    emit(args, caps, caps_lines(caps))


def caps_arguments(parser):
    url_argument(parser)


# ------------------------------------------------------------------ call

def parse_value(text):
    """A command-line value: JSON when it parses (2, true, [1,2], "2"), else the text."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def split_arguments(items):
    named, positional = {}, []
    for item in items:
        name, sep, value = item.partition("=")
        if sep and name.isidentifier():
            if name in named:
                raise CommandError("argument %s given twice" % name, EXIT_USAGE)
            named[name] = parse_value(value)
        elif named:
            raise CommandError("positional argument %r after named ones" % item, EXIT_USAGE,
                               hint="give positional values first: call URL TOOL 2 value=1")
        else:
            positional.append(parse_value(item))
    return named, positional


def do_call(args):
    """Call a tool with typed arguments and print its value."""
    named, positional = split_arguments(args.arguments)

    async def work(device):
        start = time.monotonic()
        value = await device.call(args.tool, *positional, deadline_ms=args.deadline_ms,
                                  **named)
        return value, time.monotonic() - start
    value, took = run_device(args, work)
    emit(args, {"tool": args.tool, "value": value, "seconds": round(took, 6)},
         [value if isinstance(value, str) else "ok" if value is None
          else frames.to_json(value, indent=None)])


def call_arguments(parser):
    url_argument(parser)
    parser.add_argument("tool", help="the tool's name (jotunheim caps lists them)")
    parser.add_argument("arguments", nargs="*", metavar="ARG",
                        help="NAME=VALUE or a positional VALUE; values are JSON when they "
                             "parse (2, true, [1,2], '\"text\"'), else text")
    parser.add_argument("--deadline-ms", type=int, default=0,
                        help="the device fails the call after this long (default: its own)")


# ------------------------------------------------------------------ settings

def do_settings(args):
    """Show settings, or change them (--set KEY=VALUE, checked all together)."""
    changes = {}
    for item in args.set or ():
        key, sep, value = item.partition("=")
        if not sep:
            raise CommandError("--set wants KEY=VALUE, not %r" % item, EXIT_USAGE)
        changes[key] = parse_value(value)

    if args.dry_run and not changes:
        raise CommandError("--dry-run goes with --set", EXIT_USAGE,
                           hint="e.g. jotunheim settings URL --set log.level=debug --dry-run")

    async def work(device):
        if changes:
            return await device.set_settings(dry_run=args.dry_run, **changes)
        return await device.settings(*args.keys)
    values = run_device(args, work)
    width = max([len(key) for key in values] + [3])
    lines = ["%-*s  %s" % (width, key, frames.to_json(values[key], indent=None))
             for key in sorted(values)]
    if args.dry_run:
        values = {"dry_run": True, "would_set": values}
        lines = ["the device accepts these values (nothing was changed):"] + lines
    emit(args, values, lines)


def settings_arguments(parser):
    url_argument(parser)
    parser.add_argument("keys", nargs="*", metavar="KEY", help="settings to show (all if none)")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE",
                        help="change a setting (repeat for several; secrets are never shown)")
    parser.add_argument("--dry-run", action="store_true",
                        help="with --set: have the device check the values, change nothing")


# ------------------------------------------------------------------ log, ping

def log_line(name, fields):
    if name == "LogRecord":
        extra = " %s" % frames.to_json(fields["fields"], indent=None) if fields.get("fields") \
            else ""
        return "%10d %-7s %s: %s%s" % (fields["time_ms"], LEVELS.get(fields["level"], "?"),
                                       fields["source"], fields["message"], extra)
    return "-- %s %s" % (name, frames.to_json(fields, indent=None))


def do_log(args):
    """Follow a device's log records and events until Ctrl-C (or --count/--seconds)."""
    async def work(device):
        seen = 0
        deadline = time.monotonic() + args.seconds if args.seconds else None
        while args.count is None or seen < args.count:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return
            try:
                name, fields = await asyncio.wait_for(device.events.get(), left)
            except asyncio.TimeoutError:
                return
            if name in ("connected",):
                continue
            if name == "disconnected":
                raise CommandError("the device closed the connection: %s" % fields,
                                   EXIT_RUNTIME)
            seen += 1
            if args.format == "json":
                print(frames.to_json({"event": name, "fields": fields}, indent=None))
            else:
                print(log_line(name, fields))
            sys.stdout.flush()
    run_device(args, work)


def log_arguments(parser):
    url_argument(parser)
    parser.add_argument("--count", type=int, default=None, help="stop after this many records")
    parser.add_argument("--seconds", type=float, default=None, help="stop after this long")


def do_ping(args):
    """Measure round trips to a device."""
    async def work(device):
        return [await device.ping() for _ in range(args.count)]
    times = run_device(args, work)
    ms = [t * 1000 for t in times]
    emit(args, {"round_trips_ms": ms}, ["%.2f ms" % t for t in ms] + [
        "min %.2f / avg %.2f / max %.2f ms" % (min(ms), sum(ms) / len(ms), max(ms))])


def ping_arguments(parser):
    url_argument(parser)
    parser.add_argument("--count", type=int, default=4)


# ------------------------------------------------------------------ hub

def do_hub(args):
    """Accept devices that dial in and print what they say, until Ctrl-C."""
    from jotunheim_host.hub import Hub
    keys = {}
    if args.keys:
        try:
            with open(args.keys) as f:
                keys = json.load(f)
        except OSError as e:
            raise CommandError("cannot read %s: %s" % (args.keys, e.strerror), EXIT_MISSING)
        except ValueError as e:
            raise CommandError("%s is not JSON: %s" % (args.keys, e), EXIT_VALIDATION,
                               hint='it maps device ids to hex keys: {"esp32-...": "ab12..."}')

    async def main():
        async with Hub(host=args.host, port=args.port, keys=keys) as hub:
            print("hub listening on %s:%d (agent.controller of the devices)" % (
                args.host, hub.port) if args.format != "json" else frames.to_json(
                {"listening": "%s:%d" % (args.host, hub.port)}))
            sys.stdout.flush()
            watched = set()
            deadline = time.monotonic() + args.seconds if args.seconds else None
            while deadline is None or time.monotonic() < deadline:
                for device_id, device in hub.devices.items():
                    if device_id not in watched:
                        watched.add(device_id)
                        asyncio.ensure_future(_report(args, device_id, device))
                await asyncio.sleep(0.2)
    try:
        asyncio.run(main())
    except OSError as e:
        raise CommandError("cannot listen on %s:%d: %s" % (args.host, args.port, e),
                           EXIT_RUNTIME, hint="choose another --port") from None


async def _report(args, device_id, device):
    while True:
        name, fields = await device.events.get()
        if args.format == "json":
            print(frames.to_json({"device": device_id, "event": name, "fields": fields},
                                 indent=None))
        elif name == "connected":
            print("%s connected (%s, firmware %s)" % (device_id, fields["name"],
                                                       fields["firmware_version"]))
        elif name == "disconnected":
            print("%s disconnected: %s" % (device_id, fields))
        else:
            print("%s %s" % (device_id, log_line(name, fields)))
        sys.stdout.flush()


def hub_arguments(parser):
    parser.add_argument("--host", default="0.0.0.0", help="address to listen on")
    parser.add_argument("--port", type=int, default=7480, help="TCP port (default 7480)")
    parser.add_argument("--keys", default=None,
                        help="JSON file {device id: hex key} for devices that authenticate")
    parser.add_argument("--seconds", type=float, default=None, help="stop after this long")


VERBS = {
    "caps": (do_caps, caps_arguments, "show a device's capabilities",
             "jotunheim caps tcp://127.0.0.1:7480"),
    "call": (do_call, call_arguments, "call a tool on a device",
             "jotunheim call tcp://127.0.0.1:7480 pin_write pin=2 value=true"),
    "settings": (do_settings, settings_arguments, "show or change a device's settings",
                 "jotunheim settings tcp://127.0.0.1:7480 --set agent.heartbeat_s=30"),
    "log": (do_log, log_arguments, "follow a device's log",
            "jotunheim log serial:///dev/ttyUSB0"),
    "ping": (do_ping, ping_arguments, "measure round trips to a device",
             "jotunheim ping tcp://127.0.0.1:7480 --count 10"),
    "hub": (do_hub, hub_arguments, "accept devices that dial in and show them",
            "jotunheim hub --port 7480 --keys keys.json"),
}
