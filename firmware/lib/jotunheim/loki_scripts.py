"""Loki's scripts: their tools, their files and their runs (jotunheim.loki loads this)."""
# How this works: a script NAME is two files under /scripts: its source (NAME.py or
# NAME.lua) and its registration (NAME.json: language, description, parameters, returns,
# limits and the source's SHA-256). A registration writes the source first and the JSON
# last, each to a temporary file renamed into place, and a script is loaded at boot only
# when its JSON names the digest of the source beside it; so a power cut during a
# registration leaves no half-registered script (during a replacement it can leave none:
# the controller had no Ack and registers again).
#
# Registering, listing and removing live in jotunheim.loki_admin, loaded for one request
# and dropped after it; ctx and the children Fenrir, Jormungandr and Hel live in
# jotunheim.children, loaded by the first run; Lua in jotunheim.luascript (CPython only).
#
# A Python script's code is compiled and run (its top level) at its first call after a
# boot, and its namespace is kept: module-level names persist between calls. Limits: a
# call waits for one of the script's `concurrency` slots (1 unless declared), then runs for
# at most `timeout_ms` of wall clock (and within the call's deadline); `memory_bytes` is
# the free heap a call needs to start; `storage_bytes` is Hel's quota. A Python script runs
# on the agent's event loop: the timeout stops it at an `await`, never inside a loop that
# does not await (on a board the watchdog then resets the device).
import asyncio
import gc
import hashlib
import json
import os

from jotunheim import caps, port

SCRIPT = 3              # ToolKind TOOL_SCRIPT
STREAM_SCRIPT = 4       # ToolKind TOOL_STREAM_SCRIPT (jotunheim.streams runs them)
RESOURCE_EXHAUSTED = 8
INTERNAL = 13
UNAVAILABLE = 14
SOURCE_SUFFIX = {"python": ".py", "lua": ".lua"}
_ANSWERS = {"ScriptRegister": ("Ack", "register"), "ScriptUnregister": ("Ack", "unregister"),
            "ScriptList": ("ScriptListResult", "listing")}


class LimitError(MemoryError):
    """A script went past one of its limits (storage quota, Lua instructions, heap): the
    call fails RESOURCE_EXHAUSTED, as for a MemoryError, and the reason is logged."""


class Script:
    """One registered script: its registration (the JSON) and what runs keep."""

    def __init__(self, meta):
        self.meta = meta
        self.name = meta["name"]
        self.language = meta["language"]
        self.limits = meta["limits"]
        self.namespace = None   # a Python script's globals, once loaded
        self.store = None       # its Hel store, once used
        self.running = 0
        self._freed = None      # an Event while calls wait for a slot

    async def slot(self):
        """Wait until fewer than `concurrency` calls of this script run; take a slot."""
        most = self.limits.get("concurrency") or 1
        while self.running >= most:
            if self._freed is None:
                self._freed = asyncio.Event()
            await self._freed.wait()
        self.running += 1

    def release(self):
        self.running -= 1
        if self._freed is not None:
            self._freed.set()
            self._freed = None


class Loki:
    """The scripts of one agent, their tools and their runs."""

    def __init__(self, agent):
        self.agent = agent
        self.dir = agent.root + "scripts/"
        self.scripts = {}       # name -> Script
        self.children = None    # jotunheim.children.Children, from the first use
        heap = agent.board.get("heap_bytes", 131072)
        self.max_source = min(16384, heap // 8)   # compiling takes several times the source
        self.max_scripts = max(4, min(32, heap // 8192))

    # ------------------------------------------------------------ files

    def path(self, name, suffix):
        return self.dir + name + suffix

    def load(self):
        """The scripts registered on the flash, as tools (a broken one is reported)."""
        try:
            names = [n[:-5] for n in os.listdir(self.dir) if n.endswith(".json")]
        except OSError:
            return  # no script was ever registered
        for name in names:
            try:
                meta = _read_json(self.path(name, ".json"))
                if meta["name"] != name:
                    raise ValueError("its registration names script %s" % meta["name"])
                source = self.path(name, SOURCE_SUFFIX[meta["language"]])
                if file_digest(source) != bytes.fromhex(meta["sha256"]):
                    raise ValueError("its source is not the one registered")
                self.scripts[name] = Script(meta)
            except (OSError, ValueError, KeyError, TypeError) as e:
                self.agent.log("script %s not loaded: %s" % (name, e), "error")
        if self.scripts:
            self.install_tools()
            self.agent.log("%d scripts loaded" % len(self.scripts))

    def source(self, script):
        with open(self.path(script.name, SOURCE_SUFFIX[script.language])) as f:
            return f.read()

    # ------------------------------------------------------------ tools

    def install_tools(self):
        """Put the agent's other tools and one tool per script in force (a new revision)."""
        registry = self.agent.tools
        kept = [registry.by_id[i] for i in sorted(registry.by_id)
                if registry.by_id[i].kind not in (SCRIPT, STREAM_SCRIPT)]
        tools = []
        for name in sorted(self.scripts):
            tools.append(self._tool(self.scripts[name]))
            if self.scripts[name].meta.get("streams"):
                tools.append(self._stream_tool(self.scripts[name]))
        registry.install(kept + tools)

    def _tool(self, script):
        meta = script.meta

        def run(agent, **args):
            return self.run(script, args)
        return caps.Tool("Script_" + script.name, SCRIPT, meta["description"],
                         meta["parameters"], meta["returns"], run)

    def _stream_tool(self, script):
        def run(agent, **args):
            return port.module("stream_script").tool_run(agent, script.name, args)
        return caps.Tool("StreamScript_" + script.name, STREAM_SCRIPT,
                         script.meta["description"], script.meta["parameters"],
                         {"type": "int", "description": "the id of the stream it sends on"},
                         run)

    # ------------------------------------------------------------ running

    async def run(self, script, args, sink=None):
        """One call of a script, within its limits; what its run() returns. sink: the
        stream ctx.emit() sends on (a StreamScript_ run)."""
        await script.slot()
        try:
            timeout = script.limits.get("timeout_ms")
            if timeout:
                return await asyncio.wait_for(self._execute(script, args, sink),
                                              timeout / 1000)
            return await self._execute(script, args, sink)
        except asyncio.TimeoutError:
            self.agent.log("script %s: stopped after its timeout of %d ms"
                           % (script.name, script.limits["timeout_ms"]), "warning")
            raise
        except LimitError as e:
            self.agent.log("script %s: %s" % (script.name, e), "warning")
            raise
        finally:
            script.release()

    async def _execute(self, script, args, sink=None):
        need = script.limits.get("memory_bytes")
        if need and port.mem_free is not None:
            gc.collect()
            if port.mem_free() < need:
                raise LimitError("it needs %d bytes of free heap, %d are free"
                                 % (need, port.mem_free()))
        ctx = self.ensure_children().context(script, args)
        ctx.sink = sink
        if script.language == "lua":
            return await port.module("luascript").run(self, script, ctx, args)
        if script.namespace is None:
            script.namespace = load_python(script.name, self.source(script), self.agent)
        result = script.namespace["run"](ctx, **args)
        if hasattr(result, "send"):  # async def run
            result = await result
        return result

    def ensure_children(self):
        if self.children is None:
            self.children = port.module("children").Children(self)
        return self.children

    # ------------------------------------------------------------ requests

    def serve(self, session, request, fields):
        """Answer one of Loki's requests (jotunheim.loki routes them here)."""
        if request == "ChildrenStatusRequest":
            children = self.ensure_children().status()
            return session.send("ChildrenStatus", {"request_id": fields["request_id"],
                                                   "children": children})
        answer, verb = _ANSWERS[request]
        try:
            reply = getattr(port.module("loki_admin"), verb)(self, fields)
        except MemoryError:
            reply = _failed(fields, RESOURCE_EXHAUSTED, "out of memory: try again later")
        except OSError as e:
            reply = _failed(fields, UNAVAILABLE, "the flash cannot be used: %s" % e)
        except Exception as e:  # noqa: BLE001 - the session must go on
            port.print_exception(e)
            reply = _failed(fields, INTERNAL, "%s: %s" % (type(e).__name__, e))
        finally:
            port.drop("loki_admin", "toolconf", "checks")
        session.send(answer, reply)


def _failed(fields, status, message):
    return {"request_id": fields["request_id"], "status": status, "message": message}


def load_python(name, source, agent=None):
    """The namespace of a Python script after its top level ran. Compiling takes heap in
    big pieces: when there is not enough, the agent lets go of its caches and it is tried
    once more (MemoryError if that is not enough either)."""
    try:
        code = compile(source, "Script_" + name, "exec")
    except MemoryError:
        if agent is None:
            raise
        agent.shed()
        code = compile(source, "Script_" + name, "exec")
    namespace = {"__name__": "Script_" + name}
    exec(code, namespace)
    return namespace


# ------------------------------------------------------------------ files


def _read_json(path):
    with open(path) as f:
        return json.load(f)


def file_digest(path):
    """SHA-256 of a file, read in small pieces."""
    digest = hashlib.sha256()
    buf = bytearray(256)
    with open(path, "rb") as f:
        while True:
            n = f.readinto(buf)
            if not n:
                return digest.digest()
            digest.update(buf if n == len(buf) else memoryview(buf)[:n])


def write_atomic(path, data):
    """configfile's atomic write (temp file renamed over the old one)."""
    from jotunheim.configfile import write_atomic as write
    write(path, data)


def make_dirs(path):
    """Create the directories of path ("a/b/"), those missing."""
    done = ""
    for part in path.split("/")[:-1]:
        done += part + "/"
        if part:
            try:
                os.mkdir(done[:-1])
            except OSError:
                pass  # there already


def remove(path):
    try:
        os.remove(path)
    except OSError:
        pass
