# One connection with a controller: hello, authentication, requests, heartbeats.
#
# The order (protocol/SPEC.md 1.4): both sides send Hello; when the device has a key it
# sends AuthChallenge and serves nothing but Ping and Goodbye until the controller proves
# the key (HMAC-SHA256 over both nonces and the device id; the device proves it back).
# Then requests arrive in any order and are answered; tool calls go to jotunheim.calls.
#
# Sending: a frame goes to the socket at once when nothing waits before it (most answers:
# no task switch, no coroutine); otherwise it waits in the outbox, which _transmit writes
# out with drains, as it does with whatever the socket did not take of a frame.
#
# Liveness: the session sends Ping when it has sent nothing for a heartbeat interval, and
# ends when nothing at all has arrived for the peer timeout. A frame that does not decode
# is answered with Error and the connection stays; broken stream framing ends it (nothing
# after it can be trusted). A request that runs out of memory is answered with Error
# RESOURCE_EXHAUSTED after the agent sheds its caches; the connection stays.
import asyncio
import os

import protocol
from jotunheim import auth, port
from jotunheim.port import const

_HELLO = const(1)
_CAPABILITIES = const(6)

_OK = const(0)
_INVALID_ARGUMENT = const(3)
_PERMISSION_DENIED = const(7)
_RESOURCE_EXHAUSTED = const(8)
_FAILED_PRECONDITION = const(9)
_UNIMPLEMENTED = const(12)
_UNAUTHENTICATED = const(16)

_WAIT_HELLO = const(0)
_WAIT_AUTH = const(1)
_READY = const(2)
_CLOSED = const(3)
_BEFORE_AUTH = const(("AuthResponse", "Ping", "Goodbye", "Pong"))
# the requests a method _on_<name> below serves
_OWN = const(("AuthResponse", "Ping", "Pong", "Goodbye", "CapabilitiesRequest", "ToolCall",
              "CancelCall", "SettingsGet", "SettingsSet"))


class Session:
    """One connection: `await run()` returns when it ends (end_reason says why)."""

    def __init__(self, agent, link):
        self.agent = agent
        self.link = link
        self.state = _WAIT_HELLO
        self.peer_id = ""
        self.peer_max_frame = 4096
        self.end_reason = None
        self.refused = False      # the controller failed authentication
        self.nonce = b""
        self.key = agent.key
        self.last_rx = self.last_tx = port.ticks_ms()
        self.ping_seq = 0
        self._outbox = []
        self._writing = False  # _flush is writing (what comes now waits in the outbox)
        self._wake = asyncio.Event()
        self._drained = asyncio.Event()   # set whenever the outbox has been written out
        self._done = asyncio.Event()

    @property
    def ready(self):
        return self.state == _READY

    # ------------------------------------------------------------ life cycle

    async def run(self):
        if self.link.speaks_first:
            self.send("Hello", self.agent.hello())
        tasks = (asyncio.create_task(self._receive()), asyncio.create_task(self._transmit()),
                 asyncio.create_task(self._heartbeat()))
        try:
            await self._done.wait()
        finally:
            for task in tasks:
                task.cancel()
            self.agent.session_ended(self)
            await self._flush()
            self.state = _CLOSED
            await self.link.close()

    def end(self, reason):
        if self.end_reason is None:
            self.end_reason = reason
            self.agent.log("session ended: %s" % reason)
        self._done.set()
        self._drained.set()

    def goodbye(self, status, reason, sleep_ms=0):
        self.send("Goodbye", {"status": status, "reason": reason, "sleep_ms": sleep_ms})
        self.end(reason)

    # ------------------------------------------------------------ sending

    def send(self, name, fields):
        self._send(protocol.message_type(name), protocol.encode(name, fields))

    def send_payload(self, type_id, payload):
        """Queue an encoded message; False once the session has ended."""
        if self.end_reason is not None:
            return False
        self._send(type_id, payload)
        return True

    def _send(self, type_id, payload):
        # sent even as the session ends: its last words (Goodbye, the log line saying
        # why) go out at once, or when run() flushes the outbox
        self._put(self.link.frame(type_id, payload))

    def send_frame(self, data):
        """Send a frame already built for this link; False once the session has ended."""
        if self.end_reason is not None:
            return False
        self._put(data)
        return True

    def _put(self, data):
        """Write a frame at once when nothing is waiting or being written before it (an
        answer then costs no task switch and no coroutine); else queue it for _transmit."""
        if not self._outbox and not self._writing:
            try:
                written = self.link.write_now(data)
            except OSError as e:
                self._outbox = []
                return self.end("send failed: %s" % e)
            if written:
                self.last_tx = port.ticks_ms()
                if not self.link.backlog():
                    return
                data = b""  # what the socket did not take goes with the next drain
        self._outbox.append(data)
        self._wake.set()

    def queued(self):
        """Frames waiting to be written."""
        return len(self._outbox)

    async def drained(self):
        """Wait until every queued frame has been written (or the session has ended)."""
        while self._outbox and self.end_reason is None:
            self._drained.clear()
            await self._drained.wait()

    async def _transmit(self):
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                await self._flush()
        except MemoryError:
            self._outbox = []
            self.end("out of memory")

    async def _flush(self):
        self._writing = True
        try:
            while self._outbox:
                data = self._outbox.pop(0)
                await self.link.write(data)
                self.last_tx = port.ticks_ms()
            self._drained.set()
        except OSError as e:
            self._outbox = []
            self.end("send failed: %s" % e)
        finally:
            self._writing = False

    # ------------------------------------------------------------ receiving

    async def _receive(self):
        try:
            while True:
                frames = await self.link.read()
                self.last_rx = port.ticks_ms()
                for i in range(len(frames)):
                    self._dispatch(frames[i][0], frames[i][1])
                    if self.end_reason is not None:
                        self.link.pending = frames[i + 1:]  # the next session's, on a UART
                        return
        except EOFError:
            self.end("the controller closed the connection")
        except OSError as e:
            self.end("connection lost: %s" % e)
        except protocol.ProtocolError as e:
            self.end("broken framing: %s" % e)
        except MemoryError:  # a frame too big for what is left: this session, not the device
            self._outbox = []
            self.end("out of memory")

    async def _heartbeat(self):
        settings = self.agent.settings
        while True:
            beat = int(settings["agent.heartbeat_s"] * 1000)
            timeout = int(settings["agent.peer_timeout_s"] * 1000) or 3 * beat
            await port.sleep_ms(min(beat, timeout) // 4 or 1)
            now = port.ticks_ms()
            if port.ticks_diff(now, self.last_rx) >= timeout:
                self.end("the controller was silent for %d ms" % timeout)
                return
            if port.ticks_diff(now, self.last_tx) >= beat and self.state != _WAIT_HELLO:
                self.ping_seq += 1
                self.send("Ping", {"seq": self.ping_seq, "time_ms": now & 0xFFFFFFFF})
            self.agent.alive()

    def _dispatch(self, type_id, payload):
        try:
            name, fields = protocol.decode_payload(type_id, payload, self.agent.limits)
        except protocol.UnknownMessageType:
            return self._error(_UNIMPLEMENTED, type_id, 0, "unknown message type %d" % type_id)
        except protocol.ProtocolError as e:
            return self._error(_INVALID_ARGUMENT, type_id, 0, str(e))
        if self.state == _WAIT_HELLO:
            if name != "Hello":
                self._error(_FAILED_PRECONDITION, type_id, 0, "the first frame must be Hello")
                return self.end("the controller did not start with Hello")
            return self._on_hello(fields)
        if self.state == _WAIT_AUTH and name not in _BEFORE_AUTH:
            if name == "Hello" and not self.link.speaks_first:
                return self._on_hello(fields)  # a new host on a serial line
            return self._error(_UNAUTHENTICATED, type_id, fields.get("request_id", 0),
                               "authenticate first")
        try:
            if name == "ToolCall":  # the one that comes most: no method lookup
                return self.agent.calls.submit(self, fields)
            if name in _OWN:  # getattr with any other name would intern it for good
                return getattr(self, "_on_" + name)(fields)
            if name == "Hello" and not self.link.speaks_first:
                return self._on_hello(fields)
            handler = self.agent.handlers.get(name)
            if handler is not None:
                return handler(self, fields)
        except MemoryError:  # this request fails, not the session: say so and go on
            self.agent.shed()
            return self._error(_RESOURCE_EXHAUSTED, type_id, fields.get("request_id", 0),
                               "out of memory answering %s" % name)
        if "request_id" in fields:  # a request this device does not serve
            self._error(_UNIMPLEMENTED, type_id, fields["request_id"],
                        "%s is not supported by this device" % name)

    def _error(self, status, type_id, request_id, message):
        self.send("Error", {"status": status, "message_type": type_id,
                            "request_id": request_id, "message": message})

    # ------------------------------------------------------------ handshake

    def _on_hello(self, peer):
        agent = self.agent
        if not self.link.speaks_first:
            self.send("Hello", agent.hello())
        try:
            protocol.negotiate_version(agent.hello(), peer)
        except protocol.ProtocolError as e:
            self._error(_FAILED_PRECONDITION, _HELLO, 0, str(e))
            return self.end("no common protocol version")
        self.peer_id = peer["device_id"]
        self.peer_max_frame = peer["max_frame"] or 4096
        if self.key:
            self.nonce = os.urandom(16)
            self.state = _WAIT_AUTH
            self.send("AuthChallenge", {"nonce": self.nonce, "algorithm": "HMAC-SHA256"})
        else:
            self._become_ready()

    def _on_AuthResponse(self, fields):
        if self.state != _WAIT_AUTH:
            return self._error(_FAILED_PRECONDITION, 3, 0, "no authentication was asked for")
        device_id = self.agent.settings["device.id"].encode()
        expected = auth.hmac_sha256(self.key, self.nonce + fields["client_nonce"] + device_id)
        if len(fields["client_nonce"]) < 8 or not auth.equal(expected, fields["mac"]):
            self.refused = True
            self.send("AuthResult", {"status": _PERMISSION_DENIED,
                                     "message": "authentication failed"})
            return self.end("authentication refused")
        self.send("AuthResult", {"status": _OK, "mac": auth.hmac_sha256(
            self.key, fields["client_nonce"] + self.nonce)})
        self._become_ready()

    def _become_ready(self):
        self.state = _READY
        self.agent.session_ready(self)

    # ------------------------------------------------------------ requests

    def _on_Ping(self, fields):
        self.send("Pong", fields)

    def _on_Pong(self, fields):
        pass

    def _on_Goodbye(self, fields):
        self.end("the controller said goodbye: %s" % fields["reason"])

    def _on_CapabilitiesRequest(self, fields):
        tools = self.agent.tools
        self._send(_CAPABILITIES, b"".join((protocol.encode("Capabilities", {
            "request_id": fields["request_id"]}), tools.document(), tools.live())))

    def _on_ToolCall(self, fields):
        self.agent.calls.submit(self, fields)

    def _on_CancelCall(self, fields):
        self.agent.calls.cancel(self, fields["request_id"])

    def _on_SettingsGet(self, fields):
        self.send("SettingsResult", self.agent.settings_request("SettingsGet", fields))

    def _on_SettingsSet(self, fields):
        self.send("SettingsResult", self.agent.settings_request("SettingsSet", fields))
