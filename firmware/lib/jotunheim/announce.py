# Discovery: a controller finds devices on the local network without typing addresses.
#
# The device listens on UDP agent.discovery_port (7481; 0 turns it off). A query is the
# datagram b"JOTUNHEIM?" (optionally followed by a device id: only that device answers);
# the answer, sent to the asker, says whether the device listens (and on which TCP port)
# or dials, followed by its encoded Hello: its identity, which any peer learns before
# authentication anyway. The device also announces itself once at boot to the broadcast
# address, so a controller that is listening then sees it arrive.
import socket

import protocol
from jotunheim import port
from jotunheim.port import const

QUERY = b"JOTUNHEIM?"
ANSWER = b"JOTUNHEIM!"
_POLL_MS = const(250)


def reply(agent):
    """The answer datagram: ANSWER, one byte of mode (b"L" listening, b"D" dialing) and the
    listening port (2 bytes, big-endian; 0 when dialing), then the encoded Hello."""
    settings = agent.settings
    listening = settings["agent.mode"] == "listen" and settings["agent.transport"] == "tcp"
    tcp = settings["agent.listen_port"] if listening else 0
    head = ANSWER + (b"L" if listening else b"D") + bytes((tcp >> 8, tcp & 0xFF))
    return head + protocol.encode("Hello", agent.hello())


async def serve(agent):
    """Answer discovery queries until cancelled."""
    number = agent.settings["agent.discovery_port"]
    if not number:
        return
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(socket.getaddrinfo("0.0.0.0", number)[0][-1])
        sock.setblocking(False)
    except OSError as e:
        agent.log("no discovery on UDP %d: %s" % (number, e), "warning")
        sock.close()
        return
    _announce(agent, sock, number)
    try:
        while True:
            try:
                data, sender = sock.recvfrom(64)
            except OSError:  # nothing waiting (EAGAIN)
                await port.sleep_ms(_POLL_MS)
                continue
            if data[:len(QUERY)] != QUERY:
                continue
            wanted = data[len(QUERY):]
            if wanted and wanted != agent.settings["device.id"].encode():
                continue
            try:
                sock.sendto(reply(agent), sender)
            except OSError:
                pass
    finally:
        sock.close()


def _announce(agent, sock, number):
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        sock.sendto(reply(agent), socket.getaddrinfo("255.255.255.255", number)[0][-1])
    except (OSError, AttributeError):
        pass  # no broadcast on this network (or port): queries still get answers
