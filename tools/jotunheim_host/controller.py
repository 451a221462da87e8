"""The controller library: talk to Jotunheim devices (host side, asyncio).

    device = await connect("tcp://192.168.1.40:7480", key=KEY)   # the controller dials
    print(await device.call("pin_write", pin=2, value=True))
    caps = await device.capabilities()                           # cached, see below
    await device.close()

    async with Hub(port=7480, keys={"esp32-a4cf12b3c4d5": KEY}) as hub:   # devices dial in
        device = await hub.device("esp32-a4cf12b3c4d5")

A `Device` outlives connections. Calls made while the link is down wait for it (until
their deadline); after a reconnect every unanswered call is sent again with its request
id, and the device answers it from memory instead of running it twice (SPEC 1.10,
firmware calls.py). A device that says Goodbye with `sleep_ms` is asleep: calls wait for
it to wake, and a dialing controller waits that long instead of backing off.

The capability document is cached per device and dropped on CapabilityChanged, on
reconnection (tool ids hold for one connection) and after `cache_ttl` seconds (1 hour).
"""

import asyncio
import os
import random
import time

import protocol

from jotunheim_host.transport import TransportError, open_transport

CACHE_TTL = 3600.0
HEARTBEAT = 20.0
CALL_TIMEOUT = 30.0
HANDSHAKE_TIMEOUT = 10.0
ROLE_CONTROLLER = 2
STATUS = {number: name for name, number in (
    ("OK", 0), ("CANCELLED", 1), ("UNKNOWN", 2), ("INVALID_ARGUMENT", 3),
    ("DEADLINE_EXCEEDED", 4), ("NOT_FOUND", 5), ("ALREADY_EXISTS", 6),
    ("PERMISSION_DENIED", 7), ("RESOURCE_EXHAUSTED", 8), ("FAILED_PRECONDITION", 9),
    ("ABORTED", 10), ("OUT_OF_RANGE", 11), ("UNIMPLEMENTED", 12), ("INTERNAL", 13),
    ("UNAVAILABLE", 14), ("DATA_LOSS", 15), ("UNAUTHENTICATED", 16))}
_ANSWERS = {"Capabilities", "ToolResult", "SettingsResult", "Ack", "ScriptListResult",
            "ChildrenStatus", "OtaStatus"}
_EVENTS = {"CapabilityChanged", "LogRecord", "StreamData", "StreamCredit", "StreamClose"}


class ControllerError(Exception):
    """Something between the controller and a device failed."""


class ConnectError(ControllerError):
    """No session could be set up (transport, version, authentication)."""


class CallError(ControllerError):
    """A request was answered with a status other than OK, or not answered at all."""

    def __init__(self, status, message):
        self.status = status
        self.status_name = STATUS.get(status, str(status))
        self.message = message
        super().__init__("%s: %s" % (self.status_name, message))


def _hmac(key, message):
    import hashlib
    import hmac
    return hmac.new(key, message, hashlib.sha256).digest()


def _key_bytes(key):
    if key is None or isinstance(key, bytes):
        return key or None
    return bytes.fromhex(key)


class Session:
    """One connection's protocol: handshake, frames in and out, answers by request id."""

    def __init__(self, transport, controller_id, key=None, name="controller",
                 max_frame=1 << 20, on_message=None):
        self.transport = transport
        self.controller_id = controller_id
        self.key = key
        self.name = name
        self.max_frame = max_frame
        self.on_message = on_message    # function(name, fields) for what isn't an answer
        self.hello = None               # the device's Hello
        self.version = None
        self.closed = asyncio.Event()
        self.close_reason = None
        self.goodbye = None
        self._serial = transport.framing == "serial"
        self._decoder = (protocol.SerialDecoder if self._serial else protocol.FrameDecoder)(
            max_frame)
        self._inbox = asyncio.Queue()    # frames during the handshake
        self._waiting = {}               # request id -> future
        self._reader = None
        self._last_rx = time.monotonic()
        self.bytes_in = self.bytes_out = 0

    # ------------------------------------------------------------ frames

    def _frame(self, name, fields):
        if self._serial:
            return protocol.encode_serial_frame(name, fields)
        return protocol.encode_frame(name, fields)

    async def send(self, name, fields):
        data = self._frame(name, fields)
        self.bytes_out += len(data)
        try:
            await self.transport.write(data)
        except (OSError, RuntimeError) as e:
            self._end("send failed: %s" % e)
            raise ControllerError("send failed: %s" % e) from None

    async def _read_loop(self):
        try:
            while True:
                data = await self.transport.read()
                if not data:
                    return self._end("the device closed the connection")
                self.bytes_in += len(data)
                self._last_rx = time.monotonic()
                try:
                    frames = self._decoder.feed(data)
                except protocol.ProtocolError as e:
                    return self._end("broken framing from the device: %s" % e)
                for type_id, payload in frames:
                    self._receive(type_id, payload)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # the transport failed under us
            self._end("connection lost: %s" % e)

    def _receive(self, type_id, payload):
        try:
            name, fields = protocol.decode_payload(type_id, payload)
        except protocol.ProtocolError:
            return  # not ours to answer loudly; the device's errors are its own
        if self.version is None:
            return self._inbox.put_nowait((name, fields))
        self.dispatch(name, fields)

    def dispatch(self, name, fields):
        if name == "Ping":
            return asyncio.ensure_future(self._pong(fields))
        if name == "Goodbye":
            self.goodbye = fields
            self._end("the device said goodbye: %s" % (fields["reason"] or "no reason"))
        elif name in _ANSWERS or name == "Error":
            future = self._waiting.pop(fields.get("request_id", 0), None)
            if future is not None and not future.done():
                return future.set_result((name, fields))
            if name == "Error":
                self._fail_by_type(fields)
        if self.on_message is not None:
            self.on_message(name, fields)

    def _fail_by_type(self, error):
        """An Error without a request id that names a request type fails those requests."""
        for request_id, future in list(self._waiting.items()):
            if getattr(future, "message_type", None) == error["message_type"]:
                del self._waiting[request_id]
                future.set_result(("Error", error))

    async def _pong(self, fields):
        try:
            await self.send("Pong", fields)
        except ControllerError:
            pass

    def _end(self, reason):
        if self.close_reason is None:
            self.close_reason = reason
        self.closed.set()
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(ControllerError(reason))
        self._waiting.clear()

    # ------------------------------------------------------------ handshake

    async def start(self, timeout=HANDSHAKE_TIMEOUT):
        """Hello, version, authentication; ConnectError if the device cannot be used."""
        self._reader = asyncio.ensure_future(self._read_loop())
        try:
            await asyncio.wait_for(self._handshake(), timeout)
        except asyncio.TimeoutError:
            self.close()
            raise ConnectError("%s: no complete handshake within %g s" % (
                self.transport.label, timeout)) from None
        except ControllerError:
            self.close()
            raise

    async def _next(self):
        getter = asyncio.ensure_future(self._inbox.get())
        closed = asyncio.ensure_future(self.closed.wait())
        done, _ = await asyncio.wait({getter, closed}, return_when=asyncio.FIRST_COMPLETED)
        if getter in done:
            closed.cancel()
            return getter.result()
        getter.cancel()
        raise ConnectError("%s: %s" % (self.transport.label, self.close_reason))

    async def _handshake(self):
        mine = {"version_min": protocol.PROTOCOL_VERSION_MIN,
                "version_max": protocol.PROTOCOL_VERSION, "role": ROLE_CONTROLLER,
                "device_id": self.controller_id, "name": self.name,
                "max_frame": self.max_frame}
        await self.send("Hello", mine)
        name, fields = await self._next()
        while self._serial and name != "Hello":  # leftovers of an earlier session
            name, fields = await self._next()
        if name == "Error":
            raise ConnectError("device refused: %s" % fields["message"])
        if name != "Hello":
            raise ConnectError("the device's first message was %s, not Hello" % name)
        self.hello = fields
        try:
            version = protocol.negotiate_version(mine, fields)
        except protocol.ProtocolError as e:
            raise ConnectError(str(e)) from None
        if fields["auth_required"]:
            await self._authenticate()
        self.version = version
        while not self._inbox.empty():  # anything after the handshake is ordinary traffic
            self.dispatch(*self._inbox.get_nowait())

    async def _authenticate(self):
        name, challenge = await self._next()
        if name != "AuthChallenge":
            raise ConnectError("expected AuthChallenge, got %s" % name)
        if challenge["algorithm"] != "HMAC-SHA256":
            raise ConnectError("unknown authentication algorithm %r" % challenge["algorithm"])
        key = self.key(self.hello["device_id"]) if callable(self.key) else self.key
        if not key:
            raise ConnectError("device %s requires a key and none was given"
                               % self.hello["device_id"])
        nonce = os.urandom(16)
        mac = _hmac(key, challenge["nonce"] + nonce + self.hello["device_id"].encode())
        await self.send("AuthResponse", {"mac": mac, "client_nonce": nonce})
        name, result = await self._next()
        if name != "AuthResult" or result["status"] != 0:
            raise ConnectError("device %s refused the key: %s" % (
                self.hello["device_id"], result.get("message") or name))
        if result["mac"] != _hmac(key, nonce + challenge["nonce"]):
            raise ConnectError("device %s could not prove it holds the key"
                               % self.hello["device_id"])

    # ------------------------------------------------------------ requests

    async def request(self, name, fields, timeout=CALL_TIMEOUT):
        """Send a request and return (answer name, fields); ControllerError if the
        connection ends first, CallError if the answer is an Error."""
        future = self.expect(fields["request_id"], name)
        await self.send(name, fields)
        return await self.answer(future, timeout)

    def expect(self, request_id, name):
        future = asyncio.get_running_loop().create_future()
        future.message_type = protocol.message_type(name)
        if self.closed.is_set():
            future.set_exception(ControllerError(self.close_reason))
        else:
            self._waiting[request_id] = future
        return future

    async def answer(self, future, timeout):
        try:
            name, fields = await asyncio.wait_for(asyncio.shield(future), timeout)
        except asyncio.TimeoutError:
            raise CallError(4, "no answer within %g s" % timeout) from None
        if name == "Error":
            raise CallError(fields["status"], fields["message"])
        return name, fields

    def idle_for(self):
        return time.monotonic() - self._last_rx

    def close(self):
        self._end("closed by the controller")
        if self._reader is not None:
            self._reader.cancel()
        try:
            self.transport.close()
        except OSError:
            pass

    async def say_goodbye(self, reason="done"):
        try:
            await self.send("Goodbye", {"status": 0, "reason": reason})
        except ControllerError:
            pass
        self.close()


class Call:
    """A tool call on its way: `await call.result()`; `await call.cancel()`."""

    def __init__(self, device, fields, future, timeout):
        self.device = device
        self.request_id = fields["request_id"]
        self.tool = fields["tool_name"]
        self._future = future
        self._timeout = timeout

    async def result(self):
        device = self.device
        try:
            name, answer = await asyncio.wait_for(asyncio.shield(self._future), self._timeout)
        except asyncio.TimeoutError:
            raise CallError(4 if device.connected else 14, "no answer to %s within %g s%s" % (
                self.tool, self._timeout,
                "" if device.connected else " (the link to the device is down)")) from None
        finally:
            device._pending.pop(self.request_id, None)
            device._sent.discard(self.request_id)
        if name == "Error":
            raise CallError(answer["status"], answer["message"])
        if answer["status"] != 0:
            raise CallError(answer["status"], answer["error"])
        return answer.get("value")

    async def cancel(self):
        """Ask the device to cancel; result() then says CANCELLED (if it came in time)."""
        if self.device.connected:
            await self.device.session.send("CancelCall", {"request_id": self.request_id})


class Device:
    """A device across connections: calls, capabilities (cached), settings, events."""

    def __init__(self, key=None, name="controller", cache_ttl=CACHE_TTL,
                 heartbeat=HEARTBEAT, url=None, reconnect=True):
        self.key = _key_bytes(key)
        self.name = name
        self.cache_ttl = cache_ttl
        self.heartbeat = heartbeat
        self.url = url
        self.reconnect = reconnect and url is not None
        self.controller_id = "ctl-" + os.urandom(6).hex()
        self.session = None
        self.hello = None
        self.events = asyncio.Queue()
        self.asleep_until = None       # monotonic time a sleeping device wakes
        self.connections = 0
        self._request_id = random.randrange(1, 1 << 16)
        self._pending = {}             # request id -> (fields by name, future)
        self._sent = set()             # request ids sent to the device's current boot
        self._caps = None
        self._caps_time = 0.0
        self._caps_session = None
        self._connected = asyncio.Event()
        self._closing = False
        self._tasks = []

    @property
    def id(self):
        return self.hello["device_id"] if self.hello else None

    @property
    def connected(self):
        return self.session is not None and not self.session.closed.is_set()

    # ------------------------------------------------------------ connections

    def attach(self, session):
        """A new session with this device is up (the hub or the reconnect loop).

        Unanswered calls are sent again; the device answers those it has seen from memory.
        If it has rebooted meanwhile (a new boot id), calls it had been sent are failed
        ABORTED instead: it may have run them, and it cannot remember."""
        if self.hello is not None and session.hello["boot_id"] != self.hello["boot_id"]:
            for request_id in list(self._sent):
                fields, future = self._pending.get(request_id, (None, None))
                if future is not None and not future.done():
                    future.set_result(("ToolResult", {
                        "request_id": request_id, "status": 10,
                        "error": "the device restarted while the call was running; it may "
                                 "or may not have run"}))
            self._sent.clear()
        self.session = session
        self.hello = session.hello
        session.on_message = self._on_message
        self.connections += 1
        self.asleep_until = None
        self._caps_session = None  # tool ids hold for one connection
        self._connected.set()
        self.events.put_nowait(("connected", session.hello))
        self._tasks.append(asyncio.ensure_future(self._watch(session)))
        for request_id, (fields, future) in list(self._pending.items()):
            if not future.done():
                self._send_call(session, fields, future)

    async def _watch(self, session):
        """Heartbeat while the session lasts; then reconnect or wait for the device."""
        while not session.closed.is_set():
            try:
                await asyncio.wait_for(session.closed.wait(), self.heartbeat / 2)
            except asyncio.TimeoutError:
                pass
            if session.closed.is_set():
                break
            if session.idle_for() > 3 * self.heartbeat:
                session.close()
                session.close_reason = "the device was silent for %g s" % (3 * self.heartbeat)
                break
            if session.idle_for() > self.heartbeat:
                try:
                    await session.send("Ping", {"seq": 1, "time_ms": int(time.time() * 1000)})
                except ControllerError:
                    break
        if self.session is session:
            self._connected.clear()
        goodbye = session.goodbye or {}
        if goodbye.get("sleep_ms"):
            self.asleep_until = time.monotonic() + goodbye["sleep_ms"] / 1000
        self.events.put_nowait(("disconnected", session.close_reason))
        if self.reconnect and not self._closing and self.session is session:
            self._tasks.append(asyncio.ensure_future(self._redial()))

    async def _redial(self):
        attempt = 0
        while not self._closing:
            attempt += 1
            if self.asleep_until is not None:  # a sleeping device: wait until it wakes
                delay = max(0.0, self.asleep_until - time.monotonic()) + 0.5
            else:
                delay = min(0.2 * 1.8 ** (attempt - 1), 30.0) * (1 - 0.25 * random.random())
            await asyncio.sleep(delay)
            try:
                await self.open(self.url)
                return
            except (ConnectError, TransportError) as e:
                self.events.put_nowait(("reconnect_failed", str(e)))

    async def open(self, url):
        """Connect to `url` and attach the session."""
        transport = await open_transport(url)
        session = Session(transport, self.controller_id, self.key, self.name)
        await session.start()
        if self.hello is not None and session.hello["device_id"] != self.hello["device_id"]:
            session.close()
            raise ConnectError("%s is now device %s, not %s" % (
                url, session.hello["device_id"], self.hello["device_id"]))
        self.attach(session)

    async def wait_connected(self, timeout=None):
        await asyncio.wait_for(self._connected.wait(), timeout)

    async def close(self):
        self._closing = True
        for task in self._tasks:
            task.cancel()
        if self.session is not None:
            await self.session.say_goodbye()
        for fields, future in self._pending.values():
            if not future.done():
                future.set_exception(ControllerError("the controller closed the device"))
        self._pending.clear()

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.close()

    # ------------------------------------------------------------ events

    def _on_message(self, name, fields):
        if name == "Pong":
            return
        if name == "CapabilityChanged":
            self._caps = None
        self.events.put_nowait((name, fields))

    async def next_event(self, *names, timeout=10.0):
        """The next event (name, fields) whose name is one of `names` (any if none)."""
        while True:
            name, fields = await asyncio.wait_for(self.events.get(), timeout)
            if not names or name in names:
                return name, fields

    # ------------------------------------------------------------ requests

    def _next_request_id(self):
        self._request_id = self._request_id % 0xFFFFFFFF + 1
        return self._request_id

    async def _session(self, timeout):
        if not self.connected:
            try:
                await asyncio.wait_for(self._connected.wait(), timeout)
            except asyncio.TimeoutError:
                raise CallError(14, "device %s is not connected" % (self.id or self.url)) \
                    from None
        return self.session

    async def request(self, name, fields, timeout=CALL_TIMEOUT):
        """A request that is not a tool call, on the current connection."""
        fields = dict(fields, request_id=self._next_request_id())
        session = await self._session(timeout)
        try:
            return (await session.request(name, fields, timeout))[1]
        except CallError:
            raise
        except ControllerError as e:
            raise CallError(14, str(e)) from None

    async def capabilities(self, refresh=False):
        """The capability document (decoded), from the cache when it is fresh."""
        fresh = self._caps is not None and time.monotonic() - self._caps_time < self.cache_ttl
        if fresh and not refresh and self._caps_session is self.session:
            return self._caps
        caps = await self.request("CapabilitiesRequest", {})
        self._caps, self._caps_time, self._caps_session = caps, time.monotonic(), self.session
        return caps

    def cached_capabilities(self):
        return self._caps

    async def call(self, tool, *positional, deadline_ms=0, timeout=None, **args):
        """Call a tool by name; its value, or CallError with the device's status.

        timeout: seconds to wait in all, reconnections included (default: the deadline
        plus a margin, or CALL_TIMEOUT)."""
        return await self.submit(tool, *positional, deadline_ms=deadline_ms,
                                 timeout=timeout, **args).result()

    def submit(self, tool, *positional, deadline_ms=0, timeout=None, **args):
        """Start a call; a Call whose result() is awaited (and which can be cancelled)."""
        if timeout is None:
            timeout = deadline_ms / 1000 + 5.0 if deadline_ms else CALL_TIMEOUT
        fields = {"request_id": self._next_request_id(), "tool_name": tool,
                  "args": args, "positional": list(positional), "deadline_ms": deadline_ms}
        future = asyncio.get_running_loop().create_future()
        self._pending[fields["request_id"]] = (fields, future)
        if self.connected:
            self._send_call(self.session, fields, future)
        return Call(self, fields, future, timeout)

    def _send_call(self, session, fields, future):
        """Send (or send again) a call; its answer resolves `future`, and a lost link
        leaves it pending for the next connection."""
        call = dict(fields)
        tool = self._caps_tool(call["tool_name"])
        if tool is not None:  # the id is one or two bytes; the name is the whole name
            del call["tool_name"]
            call["tool_id"] = tool
        answer = session.expect(call["request_id"], "ToolCall")
        self._sent.add(call["request_id"])

        def resolved(done):
            if done.cancelled() or future.done():
                return
            if done.exception() is None:
                future.set_result(done.result())
            # a lost connection: the call stays pending and is sent again on reconnect

        answer.add_done_callback(resolved)

        async def send():
            try:
                await session.send("ToolCall", call)
            except ControllerError:
                pass
        asyncio.ensure_future(send())

    def _caps_tool(self, name):
        if self._caps is None or self._caps_session is not self.session:
            return None
        for tool in self._caps["tools"]:
            if tool["name"] == name:
                return tool["id"]
        return None

    async def settings(self, *keys):
        answer = await self.request("SettingsGet", {"keys": list(keys)})
        if answer["status"] != 0:
            raise CallError(answer["status"], answer["message"])
        return answer["values"]

    async def set_settings(self, **values):
        answer = await self.request("SettingsSet", {"values": values})
        if answer["status"] != 0:
            raise CallError(answer["status"], answer["message"])
        return answer["values"]

    async def ping(self, timeout=5.0):
        """Round trip in seconds."""
        session = await self._session(timeout)
        start = time.monotonic()
        seq = random.randrange(1, 1 << 31)
        pong = asyncio.get_running_loop().create_future()
        previous = session.on_message

        def watch(name, fields):
            if name == "Pong" and fields["seq"] == seq and not pong.done():
                pong.set_result(None)
            if previous is not None:
                previous(name, fields)
        session.on_message = watch
        try:
            await session.send("Ping", {"seq": seq, "time_ms": int(time.time() * 1000)})
            await asyncio.wait_for(pong, timeout)
        finally:
            session.on_message = previous
        return time.monotonic() - start


async def connect(url, key=None, name="controller", reconnect=True, **options):
    """A Device at `url` (tcp://, serial://), connected and negotiated."""
    device = Device(key=key, name=name, url=url, reconnect=reconnect, **options)
    try:
        await device.open(url)
    except TransportError as e:
        raise ConnectError(str(e)) from None
    return device


class Hub:
    """Accepts devices that dial in (agent.mode "dial"); one Device per device id.

    keys: {device id: key} for devices that authenticate (hex text or bytes)."""

    def __init__(self, host="127.0.0.1", port=0, keys=None, name="hub", **device_options):
        self.host = host
        self.port = port
        self.keys = {k: _key_bytes(v) for k, v in (keys or {}).items()}
        self.name = name
        self.devices = {}
        self.refused = []       # (device id or address, reason) of failed handshakes
        self._options = device_options
        self._arrived = asyncio.Condition()
        self._server = None
        self._sessions = set()

    async def start(self):
        self._server = await asyncio.start_server(self._accept, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aenter__(self):
        return await self.start()

    async def __aexit__(self, *exc):
        await self.close()

    async def close(self):
        for device in self.devices.values():
            await device.close()
        for session in list(self._sessions):
            session.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _accept(self, reader, writer):
        from jotunheim_host.transport import TcpTransport
        label = "tcp://%s:%d" % writer.get_extra_info("peername")[:2]
        transport = TcpTransport(reader, writer, label)
        # the key depends on who the device says it is: looked up after its Hello
        session = Session(transport, "hub-" + self.name, self.keys.get, name=self.name)
        self._sessions.add(session)
        try:
            await session.start()
        except ControllerError as e:
            self.refused.append((label, str(e)))
            self._sessions.discard(session)
            return
        device_id = session.hello["device_id"]
        device = self.devices.get(device_id)
        if device is None:
            device = self.devices[device_id] = Device(name=self.name, **self._options)
            device.key = self.keys.get(device_id)
        device.controller_id = session.controller_id
        device.attach(session)
        async with self._arrived:
            self._arrived.notify_all()
        await session.closed.wait()
        self._sessions.discard(session)

    async def device(self, device_id=None, timeout=30.0):
        """The Device with this id (any device if None), once it has connected."""
        async def present():
            async with self._arrived:
                while True:
                    for known_id, device in self.devices.items():
                        if device_id in (None, known_id) and device.connected:
                            return device
                    await self._arrived.wait()
        return await asyncio.wait_for(present(), timeout)
