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

Streams (SPEC 1.11) live on one connection: `await device.open_stream("sensor", source=
"adc:34")`, `await device.stream_script(NAME)`; a lost link ends them (StreamError
UNAVAILABLE). jotunheim_host.streams has the Stream object and file transfers.
"""

import asyncio
import os
import random
import time

from jotunheim_host.session import (CALL_TIMEOUT, CallError, ConnectError,  # noqa: F401
                                    ControllerError, Session, key_bytes)
from jotunheim_host.streams import StreamError, StreamTable  # noqa: F401
from jotunheim_host.transport import TransportError, open_transport

CACHE_TTL = 3600.0
HEARTBEAT = 20.0


VALUE_TYPES = ("any", "null", "bool", "int", "float", "string", "bytes", "list", "map")


def _value_type(kind):
    return kind if isinstance(kind, int) else VALUE_TYPES.index(kind)


def _parameter(declared):
    parameter = dict(declared)
    parameter["type"] = _value_type(parameter.get("type", "any"))
    parameter.setdefault("required", "default" not in parameter)
    if "default" in parameter:
        parameter["default_value"] = parameter.pop("default")
    return parameter


_TIMED_OUT = ("", None)  # what a call's future holds when its time ran out first


def _time_out(future):
    if not future.done():
        future.set_result(_TIMED_OUT)


class Call:
    """A tool call on its way: `await call.result()`; `await call.cancel()`."""

    def __init__(self, device, fields, future, timeout):
        self.device = device
        self.request_id = fields["request_id"]
        self.tool = fields["tool_name"]
        self._future = future
        self._timeout = timeout

    async def result(self):
        # The answer resolves self._future directly (Device._send_call): awaited as it is,
        # a call costs the event loop two turns once its answer is read. Nothing else
        # waits for it, so running out of time may resolve it too.
        device = self.device
        timer = None
        if not self._future.done():
            timer = asyncio.get_running_loop().call_later(self._timeout, _time_out,
                                                          self._future)
        try:
            name, answer = await self._future
            if answer is None:
                raise CallError(4 if device.connected else 14, "no answer to %s within %g s%s"
                                % (self.tool, self._timeout, "" if device.connected
                                   else " (the link to the device is down)"))
        finally:
            if timer is not None:
                timer.cancel()
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
        self.key = key_bytes(key)
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
        self.streams = StreamTable(self)   # streams on the current connection (SPEC 1.11)

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
        self.connections += 1
        self.asleep_until = None
        self._caps_session = None  # tool ids hold for one connection
        self._connected.set()
        self.events.put_nowait(("connected", session.hello))
        self._tasks.append(asyncio.ensure_future(self._watch(session)))
        session.listen(self._on_message)   # what came in since the handshake, then on
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
        self.streams.session_lost(session, session.close_reason)
        goodbye = session.goodbye or {}
        if goodbye.get("sleep_ms"):
            self.asleep_until = time.monotonic() + goodbye["sleep_ms"] / 1000
        self.events.put_nowait(("disconnected", session.close_reason))
        if self.reconnect and not self._closing and self.session is session:
            self._tasks.append(asyncio.ensure_future(self._redial()))
        elif self.url is not None and not self.reconnect and self.session is session:
            # a device we dialed and will not dial again (a hub's devices dial back in):
            # nothing will resend the calls in flight, so they fail now, not at timeout
            for fields, future in list(self._pending.values()):
                if not future.done():
                    future.set_exception(CallError(14, "the link to the device was lost "
                                                   "(%s) before %s answered; it may have run"
                                                   % (session.close_reason,
                                                      fields.get("tool_name") or "the call")))

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
        if name.startswith("Stream") and self.streams.on_message(self.session, name, fields):
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
        session.expect(call["request_id"], "ToolCall", future)  # a lost link leaves it
        self._sent.add(call["request_id"])                       # pending, for the next one

        if session.send_nowait("ToolCall", call):
            return

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

    async def set_settings(self, dry_run=False, **values):
        """Change settings (checked together on the device); dry_run: only check them."""
        answer = await self.request("SettingsSet", {"values": values, "dry_run": dry_run})
        if answer["status"] != 0:
            raise CallError(answer["status"], answer["message"])
        return answer["values"]

    # ------------------------------------------------------------ scripts (Loki)

    async def register_script(self, name, source, language="python", description="",
                              parameters=(), returns="any", limits=None, streams=False,
                              replace=False):
        """Register a script: it becomes tool Script_NAME. parameters: [{"name", "type"
        (a type name or ValueType number), "required", "description", ...}]."""
        fields = {"name": name, "language": language, "source": source,
                  "description": description, "streams": streams, "replace": replace,
                  "parameters": [_parameter(p) for p in parameters],
                  "returns": {"type": _value_type(returns)}, "limits": dict(limits or {})}
        return self._acked(await self.request("ScriptRegister", fields))

    async def unregister_script(self, name):
        return self._acked(await self.request("ScriptUnregister", {"name": name}))

    async def scripts(self):
        answer = await self.request("ScriptList", {})
        if answer["status"] != 0:
            raise CallError(answer["status"], "cannot list the scripts")
        return answer["scripts"]

    async def children(self):
        """Fenrir, Jormungandr and Hel: their state, work and errors."""
        return (await self.request("ChildrenStatusRequest", {}))["children"]

    @staticmethod
    def _acked(ack):
        if ack["status"] != 0:
            raise CallError(ack["status"], ack["message"])
        return ack

    # ------------------------------------------------------------ streams

    async def open_stream(self, kind, direction="out", source="", params=None, window=None,
                          content_type="", timeout=CALL_TIMEOUT):
        """Open a stream (kind "sensor", "log", "file", "raw", ... or a StreamKind number;
        direction "out" from the device or "in" to it); a jotunheim_host.streams.Stream.
        window: bytes buffered here at most (credit granted as they are read). CallError
        when the device refuses it."""
        return await self.streams.open(kind, direction, source, params, window,
                                       content_type, timeout)

    async def stream_script(self, name, *positional, **args):
        """Call StreamScript_NAME: the device opens a raw stream that the script feeds
        with ctx.emit(); that Stream."""
        stream_id = await self.call("StreamScript_" + name, *positional, **args)
        stream = self.streams.get(stream_id)
        if stream is None:
            raise StreamError(14, "stream %s of StreamScript_%s is gone" % (stream_id, name))
        return stream

    async def next_stream(self, timeout=None):
        """The next stream the device opened (StreamScript_ calls, ...)."""
        return await asyncio.wait_for(self.streams.incoming.get(), timeout)

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


from jotunheim_host.hub import Hub  # noqa: E402,F401 (one import for users)
