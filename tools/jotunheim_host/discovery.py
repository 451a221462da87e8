"""Find Jotunheim devices on the local network, and remember them.

`jotunheim discover` asks on UDP (port 7481 by default) and lists who answers; every
device found is remembered in the known-devices file (JOTUNHEIM_HOME/devices.json,
~/.local/share/jotunheim by default) that `jotunheim devices` lists. The question goes to
the broadcast address and to loopback (where simulated devices live); devices answer with
their identity and how to reach them (firmware/lib/jotunheim/announce.py).
"""
import json
import os
import socket
import time

import protocol

from jotunheim_host import frames
from jotunheim_host.errors import EXIT_RUNTIME, CommandError

QUERY = b"JOTUNHEIM?"
ANSWER = b"JOTUNHEIM!"
PORT = 7481
DEVICE_TYPES = {1: "ESP32", 2: "ESP8266", 3: "PICO_W", 4: "LINUX"}


def parse_answer(data, address):
    """A device found: dict, or None for a datagram that is not an answer."""
    if data[:len(ANSWER)] != ANSWER or len(data) < len(ANSWER) + 3:
        return None
    mode = data[len(ANSWER):len(ANSWER) + 1]
    tcp = int.from_bytes(data[len(ANSWER) + 1:len(ANSWER) + 3], "big")
    try:
        hello = protocol.decode("Hello", data[len(ANSWER) + 3:])
    except protocol.ProtocolError:
        return None
    return {"id": hello["device_id"], "name": hello["name"],
            "type": DEVICE_TYPES.get(hello["device_type"], "?"),
            "firmware": hello["firmware_version"], "address": address[0],
            "mode": "listen" if mode == b"L" else "dial",
            "url": "tcp://%s:%d" % (address[0], tcp) if mode == b"L" else None,
            "auth_required": hello["auth_required"], "seen": int(time.time())}


def discover(timeout=2.0, port=PORT, addresses=("255.255.255.255", "127.0.0.1"),
             device_id=None):
    """The devices that answer within `timeout` seconds, by id."""
    found = {}
    query = QUERY + (device_id.encode() if device_id else b"")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        sock.bind(("0.0.0.0", 0))
        for address in addresses:
            try:
                sock.sendto(query, (address, port))
            except OSError:
                pass  # no route for broadcast here: the other addresses still count
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return found
            sock.settimeout(left)
            try:
                data, address = sock.recvfrom(2048)
            except (socket.timeout, OSError):
                return found
            device = parse_answer(data, address)
            if device is not None:
                found[device["id"]] = device


def known_path():
    home = os.environ.get("JOTUNHEIM_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "share", "jotunheim")
    return os.path.join(home, "devices.json")


def known():
    try:
        with open(known_path()) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def remember(devices):
    everything = known()
    everything.update(devices)
    path = known_path()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    temporary = path + ".tmp"
    with open(temporary, "w") as f:
        json.dump(everything, f, indent=1, sort_keys=True)
    os.replace(temporary, path)
    return everything


def print_devices(args, devices):
    rows = sorted(devices.values(), key=lambda d: d["id"])
    if args.format == "json":
        print(frames.to_json(rows))
        return
    if not rows:
        print("no devices")
        return
    columns = ("id", "name", "type", "firmware", "mode", "url", "address")
    table = [[str(row.get(c) if row.get(c) is not None else "-") for c in columns]
             for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in table)) for i, c in enumerate(columns)]
    for line in [[c.upper() for c in columns]] + table:
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip())


def do_discover(args):
    """Ask the local network for Jotunheim devices and list those that answer."""
    try:
        found = discover(args.timeout, args.port, tuple(args.address) if args.address
                         else ("255.255.255.255", "127.0.0.1"))
    except OSError as e:
        raise CommandError("cannot send the discovery query: %s" % e, EXIT_RUNTIME) from None
    remember(found)
    print_devices(args, found)


def discover_arguments(parser):
    parser.add_argument("--timeout", type=float, default=2.0,
                        help="seconds to wait for answers (default 2)")
    parser.add_argument("--port", type=int, default=PORT, help="UDP port (default 7481)")
    parser.add_argument("--address", action="append",
                        help="ask this address (repeat; default: broadcast and loopback)")


def do_devices(args):
    """List the devices found before (by discover), with where they were."""
    print_devices(args, known())


def devices_arguments(parser):
    pass


VERBS = {
    "discover": (do_discover, discover_arguments, "find devices on the local network",
                 "jotunheim discover --timeout 3"),
    "devices": (do_devices, devices_arguments, "list the devices found before",
                "jotunheim devices --format json"),
}
