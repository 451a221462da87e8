# Tool calls: concurrency limit, bounded queue, deadlines, and exactly-once answers.
#
# A call is known by its key, (controller id, request id): the controller names itself in
# its Hello, so a controller that reconnects after a link loss finds its calls again. A
# call runs once. Its result is kept (the last `calls.remember` results, within a byte
# budget) and sent to the controller's current session when it finishes; a session that
# starts for a controller is sent the results it has not received yet, and a ToolCall
# repeated with the same request id is answered from what is kept (or, while it still
# runs, when it finishes) instead of running again. A result too old to be kept still
# leaves its key behind, so a very late retry is answered ABORTED, never run twice.
#
# At most `calls.concurrency` calls run at once; up to `calls.queue` more wait, and past
# that a call is refused with RESOURCE_EXHAUSTED. The deadline counts from receipt,
# waiting included. Running out of memory fails the one call.
#
# System work comes first: user scripts (tools of kind SCRIPT) may hold all running slots
# but one (when there are two or more), so a built-in tool always finds a slot free of
# them, and a freed slot goes to the oldest waiting system call. User work is never
# starved: after FAIR system calls in a row were started while a user call waited, the
# oldest user call that fits goes next.
import asyncio

import protocol
from jotunheim import args as args_mod, port
from jotunheim.port import const

_OK = const(0)
_CANCELLED = const(1)
_INVALID_ARGUMENT = const(3)
_DEADLINE_EXCEEDED = const(4)
_NOT_FOUND = const(5)
_RESOURCE_EXHAUSTED = const(8)
_ABORTED = const(10)
_INTERNAL = const(13)
_UNAVAILABLE = const(14)
_TOOL_RESULT = const(17)
_SEEN_KEYS = const(32)        # keys of forgotten results, for late retries
_USER = const(3)              # ToolKind TOOL_SCRIPT: user work
_FAIR = const(2)              # system calls started in a row while user work waits


class _Call:
    def __init__(self, key, tool, args, deadline, session):
        self.key = key
        self.tool = tool
        self.args = args
        self.deadline = deadline  # ticks_ms
        self.session = session    # where the result goes; None while disconnected
        self.task = None


class Calls:
    def __init__(self, agent):
        self.agent = agent
        self.running = {}   # key -> _Call
        self._starting = None  # the _Call whose tool function runs right now
        self.queue = []     # _Call waiting for a slot
        self.results = {}   # key -> (payload, delivered)
        self.order = []     # keys of results, oldest first
        self.seen = []      # keys of forgotten results
        self.kept_bytes = 0
        # bytes of kept results: a share of the heap (1 KB on an ESP8266, 3.5 KB on an ESP32)
        self.budget = max(1024, agent.board.get("heap_bytes", 131072) // 32)
        self.executed = 0   # calls run (not answered from memory)
        self.streak = 0     # system calls started in a row while user work waited

    # ------------------------------------------------------------ arrival

    def submit(self, session, call):
        """Take a decoded ToolCall from a session; answers go back through it."""
        key = (session.peer_id, call["request_id"])
        if key in self.results:
            session.send_payload(_TOOL_RESULT, self.results[key][0])
            self._delivered(key)
            return
        known = self.running.get(key) or (self._queued(key) if self.queue else None)
        if known is not None:
            known.session = session  # a retry after reconnect: answer it there
            return
        if key in self.seen:
            return self._answer(session, key, _ABORTED, None,
                                "request %d ran already; its result is no longer kept"
                                % key[1])
        tool = self.agent.tools.find(call)
        if tool is None:
            return self._answer(session, key, _NOT_FOUND, None, "no tool %s" % call.get(
                "tool_name", call.get("tool_id")))
        try:
            args = args_mod.check_args(tool.params, call["args"], call["positional"])
        except args_mod.ArgumentError as e:
            return self._answer(session, key, _INVALID_ARGUMENT, None,
                                "%s: %s" % (tool.name, e))
        if tool.fixed:
            for name in tool.fixed:
                args[name] = tool.fixed[name]
        settings = self.agent.settings
        wait = call["deadline_ms"] or int(settings["calls.deadline_s"] * 1000)
        item = _Call(key, tool, args, port.ticks_add(port.ticks_ms(), wait), session)
        if self._fits(item):
            self._start(item)
        elif len(self.queue) < settings["calls.queue"]:
            self.queue.append(item)
        else:
            self._answer(session, key, _RESOURCE_EXHAUSTED, None,
                         "%d calls running and %d waiting: try again later" % (
                             len(self.running), len(self.queue)))

    def cancel(self, session, request_id):
        key = (session.peer_id, request_id)
        item = self._queued(key)
        if item is not None:
            self.queue.remove(item)
            self._finish(item, _CANCELLED, None, "cancelled while waiting")
        elif key in self.running:
            self.running[key].task.cancel()

    def attach(self, session):
        """A session is ready: it takes over its controller's calls and gets the results
        it missed."""
        for item in self.running.values():
            if item.key[0] == session.peer_id:
                item.session = session
        for item in self.queue:
            if item.key[0] == session.peer_id:
                item.session = session
        for key in self.order:
            if key[0] == session.peer_id and not self.results[key][1]:
                session.send_payload(_TOOL_RESULT, self.results[key][0])
                self._delivered(key)

    def detach(self, session):
        for item in list(self.running.values()) + self.queue:
            if item.session is session:
                item.session = None

    def in_flight(self):
        return len(self.running) + len(self.queue)

    def caller(self):
        """The session whose call is starting now: for a tool's function, which runs as
        its call starts (None outside one, or for a call without a session)."""
        return self._starting.session if self._starting is not None else None

    # ------------------------------------------------------------ running

    def _queued(self, key):
        for item in self.queue:
            if item.key == key:
                return item
        return None

    def _start(self, item):
        """Run a call. A tool that returns a value (most operations) is answered at once,
        with no task: it could not be interrupted anyway. One that returns a coroutine
        runs as a task under its deadline."""
        self.running[item.key] = item
        if port.ticks_diff(item.deadline, port.ticks_ms()) <= 0:
            return self._finish(item, *self._failure(item, asyncio.TimeoutError()))
        self.executed += 1
        self._starting = item
        try:
            result = item.tool.run(self.agent, **item.args)
        except Exception as e:  # noqa: BLE001 - the call fails, the device goes on
            self._starting = None
            return self._finish(item, *self._failure(item, e))
        self._starting = None
        if not hasattr(result, "send"):
            return self._finish(item, _OK, result, "")
        item.task = asyncio.create_task(self._run(item, result))

    async def _run(self, item, coroutine):
        try:
            left = port.ticks_diff(item.deadline, port.ticks_ms())
            value = await asyncio.wait_for(coroutine, max(left, 1) / 1000)
        except Exception as e:  # noqa: BLE001 - CancelledError included on CPython 3.7-
            self._finish(item, *self._failure(item, e))
        except asyncio.CancelledError as e:  # a BaseException on CPython 3.8+
            self._finish(item, *self._failure(item, e))
        else:
            self._finish(item, _OK, value, "")
        self._next()

    def _failure(self, item, e):
        """(status, value, error) of a call that raised e."""
        name = item.tool.name
        if isinstance(e, asyncio.TimeoutError):
            return _DEADLINE_EXCEEDED, None, "%s did not finish within its deadline" % name
        if isinstance(e, asyncio.CancelledError):
            return _CANCELLED, None, "cancelled"
        if isinstance(e, MemoryError):  # a limit of its own says which, with its reason
            return _RESOURCE_EXHAUSTED, None, "%s ran out of memory%s" % (
                name, ": %s" % e if e.args else "")
        if isinstance(e, (ValueError, TypeError)):
            return _INVALID_ARGUMENT, None, "%s: %s" % (name, e)
        if isinstance(e, OSError):
            return _UNAVAILABLE, None, "%s: %s" % (name, e)
        return _INTERNAL, None, "%s: %s: %s" % (name, type(e).__name__, e)

    def _fits(self, item):
        """Whether item may start now (user calls leave one slot to system work)."""
        most = self.agent.settings["calls.concurrency"]
        if len(self.running) >= most:
            return False
        if item.tool.kind != _USER:
            return True
        users = 0
        for other in self.running.values():
            if other.tool.kind == _USER:
                users += 1
        return users < max(1, most - 1)

    def _next(self):
        while self.queue:
            chosen = None
            user = None
            for item in self.queue:
                if item.tool.kind == _USER:
                    if user is None and self._fits(item):
                        user = item
                elif chosen is None and self._fits(item):
                    chosen = item
            waiting = False
            for item in self.queue:
                if item.tool.kind == _USER:
                    waiting = True
            if user is not None and (chosen is None or self.streak >= _FAIR):
                chosen = user
            if chosen is None:
                return
            self.streak = self.streak + 1 if waiting and chosen is not user else 0
            self.queue.remove(chosen)
            self._start(chosen)

    def _finish(self, item, status, value, error):
        self.running.pop(item.key, None)
        self._answer(item.session, item.key, status, value, error)

    # ------------------------------------------------------------ answers

    def _answer(self, session, key, status, value, error):
        fields = {"request_id": key[1], "status": status, "error": error}
        if status == _OK and value is not None:
            fields["value"] = value
        try:
            payload = protocol.encode("ToolResult", fields)
        except (protocol.ProtocolError, TypeError, ValueError) as e:
            payload = protocol.encode("ToolResult", {
                "request_id": key[1], "status": _INTERNAL,
                "error": "the result cannot be sent: %s" % e})
        if session is not None and len(payload) > session.peer_max_frame:
            payload = protocol.encode("ToolResult", {
                "request_id": key[1], "status": _RESOURCE_EXHAUSTED,
                "error": "result of %d bytes exceeds the peer's frame limit" % len(payload)})
        sent = False
        if session is not None:
            try:
                sent = session.send_payload(_TOOL_RESULT, payload)
            except MemoryError:  # no room to frame it: say so rather than never answer
                payload = protocol.encode("ToolResult", {
                    "request_id": key[1], "status": _RESOURCE_EXHAUSTED,
                    "error": "no memory to send a result of %d bytes" % len(payload)})
                sent = session.send_payload(_TOOL_RESULT, payload)
        self._keep(key, payload, sent)

    def _keep(self, key, payload, delivered):
        self.results[key] = (payload, delivered)
        self.order.append(key)
        self.kept_bytes += len(payload)
        limit = self.agent.settings["calls.remember"]
        while self.order and (len(self.order) > limit or self.kept_bytes > self.budget):
            old = self.order.pop(0)
            self.kept_bytes -= len(self.results.pop(old)[0])
            self.seen.append(old)
            if len(self.seen) > _SEEN_KEYS:
                self.seen.pop(0)

    def _delivered(self, key):
        if key in self.results:
            self.results[key] = (self.results[key][0], True)
