"""The provision verb: give a device its identity, key, Wi-Fi and controller; or make the
token a phone carries to a device (QR text, NFC NDEF record).

Secrets never go on a command line (other users can read it), nor to the output: the Wi-Fi
password comes from --wifi-password-file, JOTUNHEIM_WIFI_PASSWORD or a prompt; a key from
--key-file, or --new-key makes one and keeps it in the key store
(~/.config/jotunheim/keys.json, or JOTUNHEIM_KEYS), which `jotunheim hub --keys` reads.
"""
# How this works. A board (anything mpremote reaches: /dev/ttyUSB0, socket://...) is read in
# one mpremote run: /board.json (the profile deploy wrote) and /settings.json. The new
# values are merged over the file and checked by the firmware's own jotunheim.settings
# against that profile, so the host refuses exactly what the device would. A second run
# (`resume`: no second soft reset) writes settings.json.tmp, renames it over settings.json
# (atomic on LittleFS, as the firmware's own saves) and hashes the result, which must match.
# The values travel in a script file only the user can read, never in mpremote's argv. A
# running agent (tcp://, serial://) is changed with SettingsSet instead, which the device
# checks and saves the same way.
#
import base64
import contextlib
import getpass
import hashlib
import json
import os
import sys
import tempfile

from jotunheim_host import bundle, frames
from jotunheim_host.provtoken import (NDEF_TYPE, TOKEN_PREFIX, _settings,  # noqa: F401
                                      decode_token, encode_token, ndef_message, parse_ndef,
                                      parse_token_bytes, token_bytes)
from jotunheim_host.deploy import MAX_SETTINGS, SETTINGS
from jotunheim_host.device_verbs import read_key, run_device
from jotunheim_host.errors import (EXIT_MISSING, EXIT_RUNTIME, EXIT_USAGE, EXIT_VALIDATION,
                                   CommandError)

MPREMOTE_TIMEOUT = 60
WIFI_ENV = "JOTUNHEIM_WIFI_PASSWORD"
KEYS_ENV = "JOTUNHEIM_KEYS"


# ------------------------------------------------------------------ the key store

def key_store_path():
    """JOTUNHEIM_KEYS, else keys.json in the user's configuration directory."""
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.environ.get(KEYS_ENV) or os.path.join(base, "jotunheim", "keys.json")


def load_keys(path):
    """{device id: hex key}; {} when the file does not exist."""
    try:
        with open(path) as f:
            keys = json.load(f)
    except FileNotFoundError:
        return {}
    except OSError as e:
        raise CommandError("cannot read the key store %s: %s" % (path, e.strerror), EXIT_MISSING)
    except ValueError as e:
        raise CommandError("the key store %s is not JSON: %s" % (path, e), EXIT_VALIDATION)
    if not isinstance(keys, dict):
        raise CommandError("the key store %s is not an object {device id: hex key}" % path,
                           EXIT_VALIDATION)
    return keys


def save_keys(path, keys):
    """Replace the key store atomically with a file only its owner can read (mkstemp: 0600)."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, mode=0o700, exist_ok=True)
    handle, scratch = tempfile.mkstemp(dir=directory, prefix=".keys-")
    try:
        with os.fdopen(handle, "w") as f:
            f.write(json.dumps(keys, indent=2, sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(scratch, path)
    except BaseException:
        os.unlink(scratch)
        raise


# ------------------------------------------------------------------ a board, by mpremote

_READ = """\
import os, binascii
for p in ('/board.json', %r):
    try:
        if os.stat(p)[6] > %d:
            print('@L', p)
        else:
            with open(p, 'rb') as f:
                print('@C', p, binascii.hexlify(f.read()).decode())
    except OSError:
        print('@N', p)
""" % (SETTINGS, MAX_SETTINGS)
_WRITE = """\
import os, binascii, hashlib
with open(%(tmp)r, 'wb') as f:
    f.write(binascii.a2b_base64(%(data)r))
os.rename(%(tmp)r, %(path)r)
with open(%(path)r, 'rb') as f:
    print('@H', binascii.hexlify(hashlib.sha256(f.read()).digest()).decode())
"""


def read_board(url, mpremote="mpremote"):
    """(board profile, bytes of /settings.json or None) of the board at url."""
    found = {}
    for line in _mpremote(mpremote, url, ["exec", _READ]).splitlines():
        tag, _, rest = line.strip().partition(" ")
        path, _, data = rest.partition(" ")
        if tag in ("@C", "@N", "@L"):
            found[path] = (tag, bytes.fromhex(data) if tag == "@C" else None)
    board_tag, board = found.get("/board.json", ("@N", None))
    if board_tag != "@C":
        raise CommandError("the board at %s has no readable /board.json: is the firmware on it?"
                           % url, EXIT_MISSING, hint="jotunheim deploy %s --board NAME" % url)
    tag, existing = found.get(SETTINGS, ("@N", None))
    if tag == "@L":
        raise CommandError("the board's %s is larger than %d bytes" % (SETTINGS, MAX_SETTINGS),
                           EXIT_VALIDATION,
                           hint="remove it: mpremote connect %s fs rm :%s" % (url, SETTINGS))
    try:
        return json.loads(board.decode()), existing
    except (UnicodeError, ValueError) as e:
        raise CommandError("the board's /board.json is not JSON: %s" % e, EXIT_VALIDATION,
                           hint="deploy the firmware again") from None


def merge_settings(board, existing, changes, url):
    """(settings before, complete settings after): changes over the board's file, checked
    as the device will check them."""
    try:
        values = json.loads(existing.decode()) if existing is not None else {}
        if not isinstance(values, dict):
            raise ValueError("not an object")
    except (UnicodeError, ValueError) as e:
        raise CommandError("the board's %s cannot be read: %s" % (SETTINGS, e), EXIT_VALIDATION,
                           hint="fix it, or remove it (mpremote connect %s fs rm :%s)"
                                % (url, SETTINGS)) from None
    settings = _settings()
    before = dict(settings.defaults(board), **values)
    try:
        return before, settings.check(dict(values, **changes), board)
    except ValueError as e:
        if getattr(e, "where", None) in changes:
            raise CommandError(str(e), EXIT_VALIDATION) from None
        raise CommandError("the board's %s: %s" % (SETTINGS, e), EXIT_VALIDATION,
                           hint="provision that key too, or fix the file") from None


def write_settings(url, data, mpremote="mpremote"):
    """Write /settings.json on the board atomically and check its SHA-256 afterwards."""
    script = _WRITE % {"tmp": SETTINGS + ".tmp", "path": SETTINGS,
                       "data": base64.b64encode(data).decode()}
    with tempfile.TemporaryDirectory() as scratch:  # 0700: the script holds the secrets
        path = os.path.join(scratch, "provision.py")
        with open(path, "w") as f:
            f.write(script)
        out = _mpremote(mpremote, url, ["resume", "run", path])
    if ("@H " + hashlib.sha256(data).hexdigest()) not in out:
        raise CommandError("%s on the board does not hold what was written" % SETTINGS,
                           EXIT_RUNTIME, hint="provision it again")


def _mpremote(mpremote, url, args):
    """mpremote's stdout; its stderr in the error. stdout may hold secrets: never shown.
    (deploy.run_mpremote: a board that misses the raw REPL once is tried again.)"""
    from jotunheim_host.deploy import DeployError, run_mpremote
    try:
        returncode, out, err = run_mpremote(mpremote, url, args, MPREMOTE_TIMEOUT)
    except DeployError:  # it could not be started
        raise CommandError("%s not found" % mpremote, EXIT_MISSING,
                           hint="pip install -e '.[dev]' installs mpremote") from None
    if returncode and "(no answer within" in err:
        raise CommandError("the board at %s did not answer within %d s" % (
            url, MPREMOTE_TIMEOUT), EXIT_RUNTIME)
    if returncode:
        said = (err.strip() or "(nothing on stderr)").replace("\n", "\n  ")
        raise CommandError("the board at %s failed; mpremote said:\n  %s" % (url, said),
                           EXIT_RUNTIME, hint="check that the board is connected at %s and "
                           "that no other program has it open" % url)
    return out


# ------------------------------------------------------------------ the verb

def do_provision(args):
    """Write a device's identity, key, Wi-Fi and controller into its settings (a board by
    mpremote, or a running agent by tcp://); or, with --token, print a provisioning token."""
    if args.token:
        return _do_token(args)
    for flag in ("anchor_fingerprint", "qr", "ndef", "include_wifi_password"):
        if getattr(args, flag):
            raise CommandError("--%s only with --token" % flag.replace("_", "-"), EXIT_USAGE)
    if not args.url or not args.id:
        raise CommandError("name the board (URL) and the device (--id)", EXIT_USAGE)
    changes = {"device.id": args.id}
    for key, value in (("device.name", args.name), ("agent.controller", args.controller),
                       ("agent.mode", args.mode), ("wifi.ssid", args.wifi_ssid)):
        if value is not None:
            changes[key] = value
    if args.wifi_ssid is not None or args.wifi_password_file:
        changes["wifi.password"] = wifi_password(args)
    agent = args.url.startswith(("tcp://", "serial://"))
    if args.key_file and not agent:
        changes["auth.key"] = read_key(args).hex()
    if args.new_key:
        changes["auth.key"] = os.urandom(32).hex()
    if agent:
        report = _provision_agent(args, changes)
    else:
        report = _provision_board(args, changes)
    _show(args, report)


def _provision_board(args, changes):
    board, existing = read_board(args.url)
    before, after = merge_settings(board, existing, changes, args.url)
    data = bundle._json(after)
    report = _report(args, changes, before, after)
    if args.dry_run or data == existing:
        return report
    with _new_key_kept(args, changes):
        write_settings(args.url, data)
    report["written"] = True
    if args.reset:
        _mpremote("mpremote", args.url, ["reset"])
    return report


def _provision_agent(args, changes):
    """Over a running agent: SettingsSet, which the device checks and saves. The key that
    opens the agent comes from --key-file or JOTUNHEIM_KEY, as for the other device verbs."""
    try:  # the device checks too: this only fails early, before the key store changes
        _settings().check(changes, {})
    except ValueError as e:
        raise CommandError(str(e), EXIT_VALIDATION) from None

    async def work(device):
        current = await device.settings(*changes)
        with _new_key_kept(args, changes):
            if not args.dry_run:
                await device.set_settings(**changes)
        return current
    current = run_device(args, work)
    report = _report(args, changes, current, dict(current, **changes))
    report["written"] = not args.dry_run
    return report


def _report(args, changes, before, after):
    settings = _settings()
    shown, was = settings.public(after), settings.public(before)
    changed = sorted(key for key in changes if before.get(key) != after[key])
    return {"url": args.url, "device_id": after["device.id"], "dry_run": args.dry_run,
            "written": False, "changed": {key: shown[key] for key in changed},
            "was": {key: was.get(key) for key in changed},
            "unchanged": sorted(set(changes) - set(changed)),
            "key_store": key_store_path() if args.new_key else None}


@contextlib.contextmanager
def _new_key_kept(args, changes):
    """Keep a new key in the store before the device gets it, and keep it there if the
    write fails: the device may then hold either key, and one only the device knows would
    lock it out (the old one is at hand: it opened the agent, or the board is in reach)."""
    if not args.new_key or args.dry_run:
        yield
        return
    path = key_store_path()
    save_keys(path, dict(load_keys(path), **{changes["device.id"]: changes["auth.key"]}))
    try:
        yield
    except Exception:
        print("jotunheim: the new key is kept in %s in case the device took it; if it did "
              "not, its old key still opens it" % path, file=sys.stderr)
        raise


def wifi_password(args):
    """From --wifi-password-file, JOTUNHEIM_WIFI_PASSWORD, or a prompt on a terminal."""
    if args.wifi_password_file:
        try:
            with open(args.wifi_password_file) as f:
                return f.read().rstrip("\r\n")
        except OSError as e:
            raise CommandError("cannot read %s: %s" % (args.wifi_password_file, e.strerror),
                               EXIT_MISSING) from None
    if os.environ.get(WIFI_ENV) is not None:
        return os.environ[WIFI_ENV]
    if sys.stdin.isatty():
        return getpass.getpass("Wi-Fi password for %s: " % (args.wifi_ssid or "the network"))
    raise CommandError("the Wi-Fi password is needed", EXIT_USAGE,
                       hint="give it with --wifi-password-file FILE (empty: an open network) "
                            "or %s; never on the command line" % WIFI_ENV)


def _show(args, report):
    if args.format == "json":
        print(frames.to_json(report))
        return
    verb = "would set" if args.dry_run else "set"
    print("%s: device %s" % (args.url, report["device_id"]))
    for key, value in report["changed"].items():
        print("  %s %s = %s (was %s)" % (verb, key, json.dumps(value),
                                         json.dumps(report["was"][key])))
    for key in report["unchanged"]:
        print("  unchanged %s" % key)
    if report["key_store"] and not args.dry_run:
        print("the key is kept in %s: jotunheim hub --keys %s" % ((report["key_store"],) * 2))
    if report["written"] and not args.url.startswith(("tcp://", "serial://")) \
            and not args.reset:
        print("reset the board to start it: mpremote connect %s reset" % args.url)


def _do_token(args):
    if args.url or args.key_file or args.new_key or args.dry_run or args.name or args.mode:
        raise CommandError("--token makes a token and touches no device: it takes "
                           "--controller, --anchor-fingerprint, --wifi-ssid, --id", EXIT_USAGE,
                           hint="a token carries no key: a device gets its key once it has "
                                "reached the controller it can check")
    if not args.controller or not args.anchor_fingerprint:
        raise CommandError("a token needs --controller and --anchor-fingerprint", EXIT_USAGE)
    try:
        anchor = bytes.fromhex(args.anchor_fingerprint.replace(":", "").replace(" ", ""))
    except ValueError:
        anchor = b""
    if len(anchor) != 32:
        raise CommandError("--anchor-fingerprint wants the 64 hex digits of a SHA-256",
                           EXIT_VALIDATION)
    fields = {"controller": args.controller, "anchor_sha256": anchor}
    for name, value in (("wifi_ssid", args.wifi_ssid), ("device_id", args.id)):
        if value:
            fields[name] = value
    if args.include_wifi_password:
        fields["wifi_password"] = wifi_password(args)
        print("jotunheim: WARNING: this token holds the Wi-Fi password in clear: anyone who "
              "sees, photographs or scans it can join the network", file=sys.stderr)
    try:
        token = encode_token(fields)
        message = ndef_message(fields)
    except ValueError as e:
        raise CommandError(str(e), EXIT_VALIDATION) from None
    if args.ndef:
        with open(args.ndef, "wb") as f:
            f.write(message)
    shown = dict(fields, anchor_sha256=anchor.hex())
    if "wifi_password" in shown:
        shown["wifi_password"] = "***"
    if args.format == "json":
        print(frames.to_json({"token": token, "fields": shown, "ndef": args.ndef}))
        return
    print(token)
    if args.qr:
        import segno  # only here: the rest of the command does without it
        segno.make_qr(token, error="m").terminal(out=sys.stdout, compact=True)


def provision_arguments(parser):
    parser.add_argument("url", nargs="?", default=None,
                        help="the board as mpremote names it (/dev/ttyUSB0, socket://...), or "
                             "a running agent (tcp://HOST:PORT)")
    parser.add_argument("--id", default=None, help="device.id: what the hub knows it by")
    parser.add_argument("--name", default=None, help="device.name: a name for people")
    parser.add_argument("--controller", default=None, metavar="HOST:PORT",
                        help="agent.controller: where the device dials")
    parser.add_argument("--mode", choices=("dial", "listen"), default=None, help="agent.mode")
    parser.add_argument("--wifi-ssid", default=None, help="wifi.ssid: the network to join")
    parser.add_argument("--wifi-password-file", default=None, metavar="FILE",
                        help="file holding the Wi-Fi password (or %s, or a prompt)" % WIFI_ENV)
    keys = parser.add_mutually_exclusive_group()
    keys.add_argument("--key-file", default=None, metavar="FILE",
                      help="the device's key in hex: written to a board; over tcp:// the key "
                           "the agent has now (or JOTUNHEIM_KEY, or the key store's)")
    keys.add_argument("--new-key", action="store_true",
                      help="a new random 256-bit key, kept in the key store (%s or "
                           "~/.config/jotunheim/keys.json)" % KEYS_ENV)
    parser.add_argument("--dry-run", action="store_true",
                        help="check and show what would change; change nothing")
    parser.add_argument("--reset", action="store_true", help="reset the board afterwards")
    token = parser.add_argument_group("token (a phone carries it to a device)")
    token.add_argument("--token", action="store_true",
                       help="print a provisioning token (QR text) instead; no device is touched")
    token.add_argument("--anchor-fingerprint", default=None, metavar="HEX",
                       help="SHA-256 of the trust anchor's public key (the hub's or signing key's)")
    token.add_argument("--qr", action="store_true", help="also draw it as a QR code")
    token.add_argument("--ndef", default=None, metavar="FILE",
                       help="also write it as an NFC NDEF message (one %s record)"
                            % NDEF_TYPE.decode())
    token.add_argument("--include-wifi-password", action="store_true",
                       help="put the Wi-Fi password in the token (it is no longer safe to show)")


VERBS = {
    "provision": (do_provision, provision_arguments,
                  "give a device its identity, key, Wi-Fi and controller; or make a token",
                  "jotunheim provision /dev/ttyUSB0 --id greenhouse-1 --controller hub:7480 "
                  "--wifi-ssid garden --new-key"),
}
