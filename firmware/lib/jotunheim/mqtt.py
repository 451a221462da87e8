"""A small MQTT 3.1.1 client on asyncio streams that keeps its connection: CONNECT with a
keep-alive, PUBLISH at QoS 0 and 1, SUBSCRIBE/UNSUBSCRIBE, PINGREQ, and automatic
reconnection with a capped back-off that subscribes again and re-sends unacknowledged
QoS 1 messages. Loaded by Jormungandr (jotunheim.children) on first use only."""
# How this works: Client.start() runs one task, _keep(), for the client's life. It connects
# (CONNECT, then CONNACK within timeout_ms), sends SUBSCRIBE for every subscription and
# re-sends every QoS 1 PUBLISH still waiting for its PUBACK (with the DUP flag), then reads
# packets. When nothing arrives for half the keep-alive it sends PINGREQ; when the ping
# gets no answer within the next half the connection counts as dead. Any failure (the
# broker closes, a read fails, a refused CONNACK) closes the connection and the task waits
# min(backoff_min_ms * 2^(n-1), backoff_max_ms), less a random quarter, before attempt n
# (a refused login waits the maximum at once), and tries again, for ever, until close().
#
# Messages that arrive are queued per subscription (at most MAX_QUEUED each; the oldest
# is dropped and counted when a queue is full) and taken with receive(). A QoS 1 publish
# waits for its PUBACK across reconnects, up to its timeout; at most MAX_OUTBOX wait.
import asyncio

try:
    import random
except ImportError:  # a port without random: no jitter
    random = None

from jotunheim import port

CONNECT, CONNACK, PUBLISH, PUBACK = 1, 2, 3, 4
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK = 8, 9, 10, 11
PINGREQ, PINGRESP, DISCONNECT = 12, 13, 14
MAX_PACKET = 16384      # a larger incoming packet ends the connection
MAX_QUEUED = 16         # messages kept per subscription
MAX_OUTBOX = 8          # QoS 1 messages waiting for their PUBACK
MAX_TOPIC = 256
_REFUSED = {1: "unacceptable protocol version", 2: "client id rejected",
            3: "server unavailable", 4: "bad user name or password", 5: "not authorized"}


class Full(MemoryError):
    """Too many QoS 1 messages wait for their acknowledgement."""


def _string(text):
    data = text.encode() if isinstance(text, str) else bytes(text)
    return bytes((len(data) >> 8, len(data) & 255)) + data


def _packet(kind, flags, body):
    """Fixed header (type, flags, remaining length) + body."""
    head = bytearray((kind << 4 | flags,))
    n = len(body)
    while True:
        byte = n & 127
        n >>= 7
        head.append(byte | 128 if n else byte)
        if not n:
            return bytes(head) + body


def _pid(number):
    return bytes((number >> 8, number & 255))


def check_topic(topic, wildcards):
    """ValueError unless topic is a topic name (or a filter, when wildcards)."""
    if type(topic) is not str or not 1 <= len(topic.encode()) <= MAX_TOPIC or "\x00" in topic:
        raise ValueError("a topic is 1 to %d bytes of text" % MAX_TOPIC)
    if not wildcards:
        if "+" in topic or "#" in topic:
            raise ValueError("topic %r: a message's topic cannot hold + or #" % topic)
        return
    levels = topic.split("/")
    for i in range(len(levels)):
        level = levels[i]
        if ("+" in level and level != "+") or ("#" in level and (
                level != "#" or i != len(levels) - 1)):
            raise ValueError("topic filter %r: + and # stand for whole levels, # last"
                             % topic)


def matches(pattern, topic):
    """Whether topic name `topic` falls under filter `pattern`."""
    want = pattern.split("/")
    have = topic.split("/")
    if topic[:1] == "$" and want[0] in ("+", "#"):
        return False  # $SYS and the like match only filters that name them
    for i in range(len(want)):
        if want[i] == "#":
            return True
        if i >= len(have) or (want[i] != "+" and want[i] != have[i]):
            return False
    return len(want) == len(have)


class _Subscription:
    def __init__(self, qos):
        self.qos = qos
        self.queue = []
        self.granted = None  # the QoS the broker granted, once it has


class Client:
    """One broker connection that keeps itself up (see the header)."""

    def __init__(self, host, port=1883, client_id="jotunheim", keepalive_s=60, user="",
                 password="", tls=False, backoff_min_ms=250, backoff_max_ms=30000,
                 timeout_ms=5000):
        if not 1 <= port <= 65535:
            raise ValueError("port must be 1 to 65535")
        if not 0 <= keepalive_s <= 65535:
            raise ValueError("keepalive_s must be 0 to 65535")
        if not 1 <= len(client_id) <= 23:
            raise ValueError("the client id must be 1 to 23 characters (MQTT 3.1.1)")
        self.host = host
        self.port = port
        self.client_id = client_id
        self.keepalive_s = keepalive_s
        self.user = user
        self.password = password
        self.tls = tls
        self.backoff_min_ms = max(10, backoff_min_ms)
        self.backoff_max_ms = max(self.backoff_min_ms, backoff_max_ms)
        self.timeout_ms = timeout_ms
        self.connected = False
        self.connects = 0       # successful connections so far
        self.attempts = 0       # failed attempts since the last success
        self.dropped = 0        # messages dropped from full queues
        self.received = 0
        self.published = 0
        self.last_error = ""
        self._subs = {}         # filter -> _Subscription
        self._outbox = {}       # packet id -> [PUBLISH packet, Event, acked]
        self._waiting = {}      # packet id -> [Event, answer] for SUBACK / UNSUBACK
        self._next = 0
        self._writer = None
        self._lock = asyncio.Lock()
        self._up = asyncio.Event()       # set while connected
        self._arrived = asyncio.Event()  # set when a message is queued
        self._task = None
        self._closed = False

    # ------------------------------------------------------------ life

    def start(self):
        if self._task is None:
            self._task = asyncio.create_task(self._keep())

    async def close(self):
        """Say DISCONNECT (when connected) and stop for good."""
        self._closed = True
        if self.connected:
            try:
                await self._send(_packet(DISCONNECT, 0, b""))
            except Exception:  # noqa: BLE001 - going anyway
                pass
        self._drop()
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def wait_connected(self, timeout_ms):
        """True once connected, False if not within timeout_ms."""
        if self.connected:
            return True
        if timeout_ms <= 0:
            return False
        try:
            await asyncio.wait_for(_wait(self._up), timeout_ms / 1000)
        except asyncio.TimeoutError:
            return False
        return self.connected

    def status(self):
        queued = 0
        for sub in self._subs.values():
            queued += len(sub.queue)
        return {"connected": self.connected, "broker": "%s:%d" % (self.host, self.port),
                "connects": self.connects, "attempts": self.attempts,
                "subscriptions": sorted(self._subs), "queued": queued,
                "outbox": len(self._outbox), "published": self.published,
                "received": self.received, "dropped": self.dropped,
                "last_error": self.last_error}

    def queued_bytes(self):
        total = 0
        for sub in self._subs.values():
            for topic, payload in sub.queue:
                total += len(topic) + len(payload)
        for entry in self._outbox.values():
            total += len(entry[0])
        return total

    # ------------------------------------------------------------ what scripts use

    async def publish(self, topic, payload, qos=0, retain=False, timeout_ms=None):
        """Send a message; QoS 1 returns once the broker acknowledged it. OSError when the
        broker cannot be reached (QoS 0) or does not acknowledge (QoS 1) in time."""
        check_topic(topic, False)
        if qos not in (0, 1):
            raise ValueError("qos must be 0 or 1")
        data = payload.encode() if isinstance(payload, str) else bytes(payload)
        if len(data) > MAX_PACKET - len(topic) - 8:
            raise ValueError("a payload holds at most %d bytes here"
                             % (MAX_PACKET - len(topic) - 8))
        timeout = self.timeout_ms if timeout_ms is None else timeout_ms
        flags = (2 if qos else 0) | (1 if retain else 0)
        if qos == 0:
            if not await self.wait_connected(timeout):
                raise OSError("not connected to %s:%d (%s)" % (
                    self.host, self.port, self.last_error or "connecting"))
            await self._send(_packet(PUBLISH, flags, _string(topic) + data))
            self.published += 1
            return
        if len(self._outbox) >= MAX_OUTBOX:
            raise Full("%d QoS 1 messages already wait for the broker" % MAX_OUTBOX)
        pid = self._packet_id()
        entry = [_packet(PUBLISH, flags, _string(topic) + _pid(pid) + data),
                 asyncio.Event(), False]
        self._outbox[pid] = entry
        try:
            if self.connected:
                try:
                    await self._send(entry[0])
                except Exception:  # noqa: BLE001 - sent again after the reconnect
                    pass
            if not entry[2]:
                await asyncio.wait_for(_wait(entry[1]), timeout / 1000)
        except asyncio.TimeoutError:
            raise OSError("%s:%d did not acknowledge the message within %d ms" % (
                self.host, self.port, timeout))
        finally:
            self._outbox.pop(pid, None)
        self.published += 1

    async def subscribe(self, topic, qos=0, timeout_ms=None):
        """Subscribe (and again after every reconnect). The QoS the broker granted, or None
        while the broker cannot be reached (the subscription is made when it can)."""
        check_topic(topic, True)
        if qos not in (0, 1):
            raise ValueError("qos must be 0 or 1")
        sub = self._subs.get(topic)
        if sub is None:
            sub = self._subs[topic] = _Subscription(qos)
        sub.qos = qos
        if not self.connected:
            return None
        timeout = self.timeout_ms if timeout_ms is None else timeout_ms
        codes = await self._ask(SUBSCRIBE, _string(topic) + bytes((qos,)), timeout)
        if codes is None:
            return None  # the connection went: subscribed when it is back
        if codes[0] == 0x80:
            del self._subs[topic]
            raise ValueError("the broker refused the subscription to %r" % topic)
        sub.granted = codes[0]
        return codes[0]

    async def unsubscribe(self, topic, timeout_ms=None):
        if self._subs.pop(topic, None) is None:
            return False
        if self.connected:
            await self._ask(UNSUBSCRIBE, _string(topic),
                            self.timeout_ms if timeout_ms is None else timeout_ms)
        return True

    async def receive(self, topic=None, timeout_ms=0):
        """The oldest message queued for subscription `topic` (any, when None) as
        {"topic", "payload"}, waiting up to timeout_ms; None if there is none."""
        if topic is not None and topic not in self._subs:
            raise ValueError("not subscribed to %r" % topic)
        deadline = port.ticks_add(port.ticks_ms(), max(0, timeout_ms))
        while True:
            for name in ([topic] if topic is not None else sorted(self._subs)):
                sub = self._subs.get(name)
                if sub is not None and sub.queue:
                    got = sub.queue.pop(0)
                    return {"topic": got[0], "payload": got[1]}
            left = port.ticks_diff(deadline, port.ticks_ms())
            if left <= 0:
                return None
            self._arrived.clear()
            try:
                await asyncio.wait_for(_wait(self._arrived), left / 1000)
            except asyncio.TimeoutError:
                return None

    # ------------------------------------------------------------ the connection

    def _packet_id(self):
        while True:
            self._next = self._next % 65535 + 1
            if self._next not in self._outbox and self._next not in self._waiting:
                return self._next

    async def _send(self, packet):
        writer = self._writer
        if writer is None:
            raise OSError("not connected")
        async with self._lock:
            writer.write(packet)
            await writer.drain()

    async def _ask(self, kind, body, timeout):
        """Send SUBSCRIBE/UNSUBSCRIBE and wait for its answer's body (None if the
        connection goes first)."""
        pid = self._packet_id()
        waiter = [asyncio.Event(), None]
        self._waiting[pid] = waiter
        try:
            await self._send(_packet(kind, 2, _pid(pid) + body))
            await asyncio.wait_for(_wait(waiter[0]), timeout / 1000)
        except asyncio.TimeoutError:
            raise OSError("%s:%d did not answer within %d ms" % (self.host, self.port,
                                                                 timeout))
        except OSError:
            return None
        finally:
            self._waiting.pop(pid, None)
        return waiter[1]

    def _drop(self):
        self.connected = False
        self._up.clear()
        writer, self._writer = self._writer, None
        if writer is not None:
            try:
                writer.close()
            except Exception:  # noqa: BLE001 - it is gone either way
                pass
        for waiter in self._waiting.values():
            waiter[0].set()  # answer None: the connection went

    async def _keep(self):
        while not self._closed:
            refused = False
            try:
                await self._session()
            except _Refused as e:
                refused = True
                self.last_error = str(e)
            except Exception as e:  # noqa: BLE001 - any failure: reconnect
                self.last_error = _reason(e)
            self._drop()
            if self._closed:
                return
            self.attempts += 1
            delay = self.backoff_max_ms if refused else min(
                self.backoff_min_ms << min(self.attempts - 1, 20), self.backoff_max_ms)
            if random is not None:
                delay -= delay * random.getrandbits(8) // 1024   # up to a quarter less
            await port.sleep_ms(delay)

    async def _session(self):
        """One connection, from CONNECT until it fails."""
        timeout = self.timeout_ms / 1000
        if self.tls:
            import ssl
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            if hasattr(context, "load_default_certs"):
                context.load_default_certs()
            else:  # MicroPython: no CA store on the device
                context.verify_mode = ssl.CERT_NONE
            opening = asyncio.open_connection(self.host, self.port, ssl=context)
        else:
            opening = asyncio.open_connection(self.host, self.port)
        reader, self._writer = await asyncio.wait_for(opening, timeout)
        await self._send(self._connect_packet())
        kind, flags, body = await asyncio.wait_for(_read_packet(reader), timeout)
        if kind != CONNACK or len(body) < 2:
            raise OSError("the broker answered CONNECT with packet type %d" % kind)
        if body[1]:
            raise _Refused("the broker refused the connection: %s" % _REFUSED.get(
                body[1], "code %d" % body[1]))
        self.connected = True
        self.connects += 1
        self.attempts = 0
        self.last_error = ""
        self._up.set()
        for name in list(self._subs):  # subscribe again; the reader takes the SUBACKs
            await self._send(_packet(SUBSCRIBE, 2, _pid(self._packet_id()) + _string(name) +
                                     bytes((self._subs[name].qos,))))
        for pid in list(self._outbox):
            entry = self._outbox.get(pid)
            if entry is not None and not entry[2]:
                packet = entry[0]
                await self._send(bytes((packet[0] | 8,)) + packet[1:])  # DUP
        await self._read(reader)

    async def _read(self, reader):
        half = self.keepalive_s * 500 or 3600000
        pinged = False
        while True:
            try:
                first = await asyncio.wait_for(reader.readexactly(1), half / 1000)
            except asyncio.TimeoutError:
                if pinged:
                    raise OSError("no answer to PINGREQ within %d ms" % half)
                await self._send(_packet(PINGREQ, 0, b""))
                pinged = True
                continue
            pinged = False
            kind, flags, body = await _read_rest(reader, first[0])
            self._handle(kind, flags, body)
            if kind == PUBLISH and flags & 6:  # QoS 1 (QoS 2 is never subscribed to)
                await self._send(_packet(PUBACK, 0, _message_id(body)))

    def _handle(self, kind, flags, body):
        if kind == PUBLISH:
            n = (body[0] << 8) | body[1]
            topic = bytes(body[2:2 + n]).decode()
            start = 2 + n + (2 if flags & 6 else 0)
            payload = bytes(body[start:])
            self.received += 1
            for name in self._subs:
                if matches(name, topic):
                    queue = self._subs[name].queue
                    if len(queue) >= MAX_QUEUED:
                        queue.pop(0)
                        self.dropped += 1
                    queue.append((topic, payload))
            self._arrived.set()
        elif kind == PUBACK and len(body) >= 2:
            entry = self._outbox.get((body[0] << 8) | body[1])
            if entry is not None:
                entry[2] = True
                entry[1].set()
        elif kind in (SUBACK, UNSUBACK) and len(body) >= 2:
            waiter = self._waiting.get((body[0] << 8) | body[1])
            if waiter is not None:
                waiter[1] = bytes(body[2:]) or b"\x00"
                waiter[0].set()
            elif kind == SUBACK:  # a subscription renewed after a reconnect
                self._granted(bytes(body[2:]))

    def _granted(self, codes):
        if codes and codes[0] == 0x80:
            self.last_error = "the broker refused a subscription after reconnecting"

    def _connect_packet(self):
        flags = 2  # clean session: subscriptions are renewed by the client
        payload = _string(self.client_id)
        if self.user:
            flags |= 0x80
            payload += _string(self.user)
            if self.password:
                flags |= 0x40
                payload += _string(self.password)
        body = _string("MQTT") + bytes((4, flags, self.keepalive_s >> 8,
                                        self.keepalive_s & 255)) + payload
        return _packet(CONNECT, 0, body)


class _Refused(Exception):
    """CONNACK with a non-zero return code."""


def _message_id(body):
    n = (body[0] << 8) | body[1]
    return bytes(body[2 + n:4 + n])


async def _wait(event):
    await event.wait()


async def _read_packet(reader):
    first = await reader.readexactly(1)
    return await _read_rest(reader, first[0])


async def _read_rest(reader, first):
    length = 0
    shift = 0
    while True:
        byte = (await reader.readexactly(1))[0]
        length |= (byte & 127) << shift
        if not byte & 128:
            break
        shift += 7
        if shift > 21:
            raise OSError("malformed remaining length")
    if length > MAX_PACKET:
        raise OSError("a packet of %d bytes is over the limit of %d" % (length, MAX_PACKET))
    body = await reader.readexactly(length) if length else b""
    return first >> 4, first & 15, body


def _reason(e):
    if isinstance(e, asyncio.TimeoutError):
        return "timed out"
    if isinstance(e, EOFError):
        return "the broker closed the connection"
    text = str(e)
    return "%s: %s" % (type(e).__name__, text) if text else type(e).__name__
