# Helpers for the device agent tests: simulated devices with the firmware installed, a
# controller loop, and a hand-written raw peer for what a well-behaved controller never
# sends.
import asyncio
import os
import re
import socket
import time

import protocol
from jotunheim_host import bundle, demo
from sim_checks import whole_lines

RUNTIMES = ("micropython", "cpython")
KEY = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"


def install(device, settings=None, tools=None, files=None):
    """Put the firmware, settings and tools (and extra files) on a device that is off."""
    # a listening test device takes loopback connections only
    settings = dict({"agent.listen_host": "127.0.0.1"}, **(settings or {}))
    image = bundle.firmware_files(device.runtime, device.board, settings=settings,
                                  tools=tools)
    image.update(files or {})
    device.put_files(image)
    return device


def listening(make_device, runtime, settings=None, **options):
    """A started device whose agent listens on a free loopback port: (device, port)."""
    port = free_port()
    device = make_device(runtime)
    install(device, dict({"agent.mode": "listen", "agent.listen_port": port},
                         **(settings or {})), **options)
    device.start()
    console_lines(device, r"listening on port")
    return device, port


# Ports for devices to listen on come from below the kernel's ephemeral range: a port the
# kernel handed out as free could be taken again as the local port of some outgoing
# connection before the device binds it. Each process walks its own stretch: a pytest-xdist
# worker the one its number gives (gw0, gw1, ...), any other process one by its pid.
_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
_STRETCH = range(20000, 32000)
_PORTS = {"next": 20000 + (int(_WORKER[2:]) % 12 * 1000 if _WORKER[2:].isdigit()
                            else os.getpid() % 100 * 120)}


def free_port():
    """A loopback TCP port nothing listens on, outside the ephemeral range."""
    port = demo.free_port(_STRETCH, _PORTS["next"] - _STRETCH[0])
    _PORTS["next"] = port + 1
    return port


def run(coro, timeout=120):
    """Run a coroutine on a fresh event loop, bounded in time."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


def console_lines(device, pattern, count=1, timeout=30):
    """Wait until the device printed `count` lines matching pattern; their match groups.
    Whole lines only: a line still being printed is not matched half."""
    deadline = time.monotonic() + timeout
    while True:
        found = re.findall(pattern, whole_lines(device.console.text()))
        if len(found) >= count:
            return found
        if time.monotonic() > deadline:
            raise AssertionError("%d of %d lines matching %r; console:\n%s" % (
                len(found), count, pattern, device.console.text()[-3000:]))
        time.sleep(0.05)


async def console_lines_async(device, pattern, count=1, timeout=30):
    """console_lines() for a coroutine: the event loop (a Hub, say) keeps running."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, console_lines, device, pattern, count, timeout)


class RawPeer:
    """A controller written by hand on a plain socket: sends any bytes, reads frames."""

    def __init__(self, port, timeout=15):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.decoder = protocol.FrameDecoder(1 << 20)
        self.frames = []

    def send(self, name, fields):
        self.sock.sendall(protocol.encode_frame(name, fields))

    def send_raw(self, data):
        self.sock.sendall(data)

    def hello(self, **fields):
        hello = {"version_min": 1, "version_max": 1, "role": 2, "device_id": "raw",
                 "max_frame": 65536}
        hello.update(fields)
        self.send("Hello", hello)

    def receive(self, name=None):
        """The next message (name, fields), or the next one named `name`; None at EOF."""
        while True:
            while self.frames:
                got = protocol.decode_payload(*self.frames.pop(0))
                if name is None or got[0] == name:
                    return got
            data = self.sock.recv(65536)
            if not data:
                return None
            self.frames += self.decoder.feed(data)

    def closed(self):
        """True once the device has closed the connection (reads until EOF)."""
        try:
            while self.sock.recv(65536):
                pass
        except ConnectionResetError:
            pass
        return True

    def close(self):
        self.sock.close()
