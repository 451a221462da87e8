# A session's answers over a TCP socket that takes little at a time, as a board's does
# (lwIP keeps a few KB per connection): run by tests/test_agent_link.py under MicroPython
# and CPython, with the repository and firmware/lib on the path. Real sockets on loopback:
# the device side's send buffer and the controller side's receive buffer are made small,
# so the frames the session writes while the controller reads nothing cannot all fit.
# Prints one JSON object.
#
#     link_checks.py PORT FRAMES SIZE
import asyncio
import json
import socket
import sys

import protocol
from jotunheim.link import TcpLink
from jotunheim.session import Session

SO_SNDBUF, SO_RCVBUF = 7, 8  # Linux's numbers: MicroPython's socket module names neither
PORT, FRAMES, SIZE = (int(a) for a in sys.argv[1:4])
MICROPYTHON = sys.implementation.name == "micropython"


class Owner:
    """What a Session asks of its agent on the way out: a key and a log."""
    key = b""

    def __init__(self):
        self.logged = []

    def log(self, message, level="info"):
        self.logged.append(message)


def payload(i):
    return protocol.encode("ToolResult", {"request_id": i, "status": 0,
                                          "value": ("%05d" % i) * (SIZE // 5)})


async def main():
    out = {}
    accepted = asyncio.Event()
    links = []

    async def serve(reader, writer):
        sock = writer.s if MICROPYTHON else writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, SO_SNDBUF, 4096)
        links.append(TcpLink(reader, writer, 65536))
        accepted.set()

    server = await asyncio.start_server(serve, "127.0.0.1", PORT)
    controller = socket.socket()
    controller.setsockopt(socket.SOL_SOCKET, SO_RCVBUF, 2048)  # before connect: the window
    controller.connect(socket.getaddrinfo("127.0.0.1", PORT)[0][-1])
    await accepted.wait()
    owner = Owner()
    session = Session(owner, links[0])
    most_queued = most_held = 0
    for i in range(1, FRAMES + 1):  # the controller reads nothing meanwhile
        session.send_payload(17, payload(i))
        most_queued = max(most_queued, session.queued())
        most_held = max(most_held, links[0].backlog())
    out["most_queued"] = most_queued
    out["most_held"] = most_held
    transmit = asyncio.create_task(session._transmit())
    controller.setblocking(False)
    decoder = protocol.FrameDecoder(65536)

    async def read(count, frames):
        for _ in range(1000):  # 5 s at most
            if len(frames) >= count:
                return
            try:
                data = controller.recv(4096)
            except OSError:  # nothing yet
                data = None
            if data:
                frames += decoder.feed(data)
            else:
                await asyncio.sleep(0.005)

    frames = []
    await read(FRAMES, frames)
    await session.drained()
    out["in_order"] = [t for t, p in frames] == [17] * FRAMES and \
        [p for t, p in frames] == [payload(i) for i in range(1, FRAMES + 1)]
    out["queued_after"] = session.queued()
    # Then one frame larger than both buffers, with nothing before or after it: the
    # socket takes the start, and the rest must still go out.
    last = protocol.encode("ToolResult", {"request_id": 0, "value": "x" * (16 * SIZE)})
    session.send_payload(17, last)
    out["last_held"] = links[0].backlog() + session.queued()
    frames = []
    await read(1, frames)
    out["last_whole"] = frames == [(17, last)]
    out["logged"] = owner.logged
    transmit.cancel()
    controller.close()
    server.close()
    print(json.dumps(out))


asyncio.run(main())
