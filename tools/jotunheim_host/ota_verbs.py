"""The jotunheim ota verb: signing keys, signed updates, pushing them, status, rollback.

  jotunheim ota keygen [--key ota_key.pem]            a key pair: the private key (mode
                                                       0600) and ota_key.pub.json, which
                                                       goes onto devices with the firmware
  jotunheim ota build --key ota_key.pem --board esp32 --version 1.2.0 [-o update.ota]
  jotunheim ota push URL [URL ...] --update update.ota [--dry-run]
  jotunheim ota status URL [URL ...]
  jotunheim ota rollback URL

A push resumes by itself when the link drops, and waits until the device has rebooted
into the new image and validated it (or rolled it back, which fails the push).
"""
# The work is in jotunheim_host.ota; this module turns arguments into calls and failures
# into CommandErrors with the exit code of their class (errors.py).
import asyncio
import sys

from jotunheim_host import ota
from jotunheim_host.device_verbs import emit, read_key
from jotunheim_host.errors import (EXIT_MISSING, EXIT_RUNTIME, EXIT_USAGE, EXIT_VALIDATION,
                                   CommandError)
from jotunheim_host.maker_verbs import progress_bar

VALIDATION = ("INVALID_ARGUMENT", "PERMISSION_DENIED", "FAILED_PRECONDITION",
              "RESOURCE_EXHAUSTED", "DATA_LOSS", "ALREADY_EXISTS", "OUT_OF_RANGE")
KEY_HINT = "the device trusts the keys in its /ota_keys.json (deploy with the public key)"


def _failure(error, what):
    """A CommandError for an OtaError."""
    if error.status == "NOT_FOUND":
        code = EXIT_MISSING
    elif error.status in VALIDATION:
        code = EXIT_VALIDATION
    else:
        code = EXIT_RUNTIME
    hint = KEY_HINT if error.status == "PERMISSION_DENIED" else None
    return CommandError("%s: %s" % (what, error), code, hint=hint,
                        details={"status": error.status, "message": error.message})


def _describe(answer):
    return {"version": answer["version"], "state": ota.STATES.get(answer["state"], "?"),
            "pending_version": answer["pending_version"], "offset": answer["offset"],
            "failed_boots": answer["failed_boots"], "message": answer["message"]}


def _line(url, info):
    extra = [info["state"]]
    if info["pending_version"]:
        extra.append("pending %s" % info["pending_version"])
    if info["failed_boots"]:
        extra.append("%d failed boots" % info["failed_boots"])
    if info["message"]:
        extra.append(info["message"])
    return "%s: %s (%s)" % (url, info["version"], "; ".join(extra))


def _on_devices(args, work):
    """Run work(device) on each URL (connected, reconnecting): {url: result or error}."""
    from jotunheim_host.controller import connect
    key = read_key(args)

    async def one(url):
        try:
            device = await connect(url, key=key, reconnect=True)
        except Exception as e:  # noqa: BLE001 - reported per device
            return url, ota.OtaError("UNAVAILABLE", "cannot connect: %s" % e)
        try:
            return url, await work(device)
        except ota.OtaError as e:
            return url, e
        except Exception as e:  # noqa: BLE001 - the controller's failures
            return url, ota.OtaError(getattr(e, "status_name", "UNAVAILABLE"), str(e))
        finally:
            await device.close()

    async def main():
        return dict(await asyncio.gather(*(one(url) for url in args.targets)))
    return asyncio.run(main())


def _report(args, results, describe, verb):
    """Emit results; fail with the first error's class when any device failed."""
    tree, lines, failed = {}, [], []
    for url in args.targets:
        result = results[url]
        if isinstance(result, ota.OtaError):
            tree[url] = {"error": result.status, "message": result.message}
            lines.append("%s: %s failed: %s" % (url, verb, result))
            failed.append((url, result))
        else:
            tree[url] = describe(result)
            lines.append(_line(url, tree[url]) if "state" in tree[url] else
                         "%s: %s" % (url, tree[url]))
    if failed and len(args.targets) == 1:
        raise _failure(failed[0][1], "%s %s" % (verb, failed[0][0]))
    emit(args, tree, lines)
    if failed:
        error = _failure(failed[0][1], "%d of %d devices failed" % (len(failed),
                                                                     len(args.targets)))
        error.details = tree
        raise error


def do_ota(args):
    """Make signing keys, build signed updates, push them to devices, show their update
    status, roll them back."""
    try:
        ACTIONS[args.action](args)
    except ota.OtaError as e:
        raise _failure(e, "ota %s" % args.action) from None


def _keygen(args):
    path = args.key or "ota_key.pem"
    made = ota.keygen(path, args.public)
    emit(args, made, ["private key: %s (keep it secret; mode 0600)" % made["private"],
                      "public key:  %s (key id %s)" % (made["public"], made["key_id"]),
                      "deploy the public key with the firmware: it goes to /ota_keys.json"])


def _build(args):
    missing = [name for name in ("key", "board", "version") if not getattr(args, name)]
    if missing:
        raise CommandError("ota build needs %s" % ", ".join("--" + m for m in missing),
                           EXIT_USAGE)
    from jotunheim_host import bundle
    try:
        update = ota.build(args.key, args.board, args.version, args.counter, args.runtime)
    except bundle.BundleError as e:
        raise CommandError(str(e), EXIT_VALIDATION) from None
    output = args.output or "%s-%s.ota" % (args.board, args.version)
    update.save(output)
    info = dict(update.describe(), file=output)
    emit(args, info, ["%s: %s %s for %s, counter %d, %d bytes, sha256 %s..., key %s" % (
        output, info["kind"], info["version"], info["board"], info["counter"], info["size"],
        info["sha256"][:16], info["key_id"])])


def _targets(args):
    if not args.targets:
        raise CommandError("ota %s needs a device URL" % args.action, EXIT_USAGE,
                           hint="e.g. tcp://127.0.0.1:7480")


def _push(args):
    _targets(args)
    if not args.update:
        raise CommandError("ota push needs --update FILE (from jotunheim ota build)",
                           EXIT_USAGE)
    update = ota.Update.load(args.update)
    size = len(update.payload)
    if args.dry_run:
        async def plan(device):
            answer = await ota.status(device)
            caps = await device.capabilities()
            return dict(_describe(answer), board=caps["device"]["board"],
                        ota_method=caps["features"].get("ota_method", ""),
                        would_send=update.describe())
        results = _on_devices(args, plan)
        for url, result in results.items():
            if isinstance(result, dict) and result["board"] != update.fields["board"]:
                results[url] = ota.OtaError("FAILED_PRECONDITION", "the update is for %s, "
                                            "the device is %s" % (update.fields["board"],
                                                                  result["board"]))
            elif isinstance(result, dict) and not result["ota_method"]:
                results[url] = ota.OtaError("UNIMPLEMENTED", "the device does not take "
                                            "updates")
        _report(args, results, lambda r: r, "push --dry-run")
        return
    bar = progress_bar() if len(args.targets) == 1 and args.format != "json" else None
    show = None if bar is None else (lambda done, total: bar(done, total, args.targets[0]))

    async def push(device):
        return await ota.push(device, update, show, reboot=not args.no_reboot,
                              wait_valid=not args.no_wait, timeout=args.timeout)
    results = _on_devices(args, push)
    if bar is not None and not isinstance(results[args.targets[0]], dict):
        sys.stderr.write("\n")
    _report(args, results, _describe, "push of %s (%d bytes)" % (update.version, size))


def _status(args):
    _targets(args)
    _report(args, _on_devices(args, ota.status), _describe, "status")


def _rollback(args):
    _targets(args)

    async def back(device):
        await ota.rollback(device)
        return await ota.wait_reboot(device, timeout=args.timeout)
    _report(args, _on_devices(args, back), _describe, "rollback")


ACTIONS = {"keygen": _keygen, "build": _build, "push": _push, "status": _status,
           "rollback": _rollback}


def ota_arguments(parser):
    parser.add_argument("action", choices=tuple(ACTIONS))
    parser.add_argument("targets", nargs="*", metavar="URL",
                        help="push, status, rollback: the devices (tcp://HOST:PORT ...)")
    parser.add_argument("--key", help="keygen: where to write the private key (default "
                        "ota_key.pem); build: the private key to sign with")
    parser.add_argument("--public", help="keygen: where to write the public key (default: "
                        "beside the private one, .pub.json)")
    parser.add_argument("--board", help="build: the board (a name from boards/)")
    parser.add_argument("--version", help="build: the version the update installs")
    parser.add_argument("--counter", type=int, default=None,
                        help="build: the anti-downgrade counter (default: the time now in "
                        "seconds, which only grows)")
    parser.add_argument("--runtime", choices=("micropython", "cpython"), default=None,
                        help="build: the devices' runtime (default: the board's)")
    parser.add_argument("-o", "--output", help="build: the update file (default "
                        "BOARD-VERSION.ota)")
    parser.add_argument("--update", help="push: the update file")
    parser.add_argument("--dry-run", action="store_true",
                        help="push: check the devices and show what would be sent")
    parser.add_argument("--no-reboot", action="store_true",
                        help="push: activate, but let the new image start at the next boot")
    parser.add_argument("--no-wait", action="store_true",
                        help="push: do not wait for the new image to validate")
    parser.add_argument("--timeout", type=float, default=180.0,
                        help="seconds a device may take (default 180)")
    parser.add_argument("--key-file", default=None,
                        help="file holding the devices' auth key in hex (or JOTUNHEIM_KEY)")


VERBS = {
    "ota": (do_ota, ota_arguments, "over-the-air updates: keygen, build, push, status, "
            "rollback", "jotunheim ota push tcp://127.0.0.1:7480 --update esp32-1.2.0.ota"),
}
