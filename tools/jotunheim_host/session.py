"""One connection's protocol on the controller side: handshake, frames, answers.

jotunheim_host.controller builds on it (a Device outlives its sessions); the errors of the
controller library are defined here.
"""

import asyncio
import os
import time

import protocol

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


EARLY_KEPT = 64   # messages kept for the listener that a session does not have yet


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


def key_bytes(key):
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
        self._early = []                # such messages before anyone listened (listen())
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

    def send_nowait(self, name, fields):
        """Send at once if the transport takes data without waiting (TCP with little
        queued): True; False when send() must be awaited instead. A send that fails
        ends the session, as send() does."""
        write = getattr(self.transport, "write_nowait", None)
        if write is None or self.closed.is_set():
            return False
        data = self._frame(name, fields)
        try:
            if not write(data):
                return False
        except (OSError, RuntimeError) as e:
            self._end("send failed: %s" % e)
            return True
        self.bytes_out += len(data)
        return True

    async def _read_loop(self):
        try:
            while not self.closed.is_set():
                self._received(await self.transport.read())
        except asyncio.CancelledError:
            raise
        except Exception as e:  # the transport failed under us
            self._end("connection lost: %s" % e)

    def _received(self, data):
        """Bytes from the transport (b"" at the end of the stream)."""
        if self.closed.is_set():
            return
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

    def _pushed(self, data):
        """_received for a transport that delivers as data arrives (subscribe)."""
        try:
            self._received(data)
        except Exception as e:  # a receiver's failure ends this session, not the loop
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
        elif len(self._early) < EARLY_KEPT:
            self._early.append((name, fields))

    def listen(self, on_message):
        """Deliver what is not an answer to on_message(name, fields), starting with what
        arrived after the handshake and before this call (events, log records, ...)."""
        self.on_message = on_message
        early, self._early = self._early, []
        for name, fields in early:
            on_message(name, fields)

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
            if not future.done() and not future.lasting:
                future.set_exception(ControllerError(reason))
        self._waiting.clear()

    # ------------------------------------------------------------ handshake

    async def start(self, timeout=HANDSHAKE_TIMEOUT):
        """Hello, version, authentication; ConnectError if the device cannot be used."""
        subscribe = getattr(self.transport, "subscribe", None)
        if subscribe is not None:  # frames are handled as they arrive, no task between
            subscribe(self._pushed)
        else:
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

    def expect(self, request_id, name, future=None):
        """A future the answer to request `name` resolves, as (answer name, fields).
        The session ending fails it with ControllerError, except one given here: that is
        left pending (a call waits for the next connection, Device._send_call)."""
        lasting = future is not None
        if future is None:
            future = asyncio.get_running_loop().create_future()
        future.message_type = protocol.message_type(name)
        future.lasting = lasting
        if not self.closed.is_set():
            self._waiting[request_id] = future
        elif not lasting:
            future.set_exception(ControllerError(self.close_reason))
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
