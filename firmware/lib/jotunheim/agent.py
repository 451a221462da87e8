# The device agent: joins the network, finds its controller, serves sessions, and stays
# up (protocol/SPEC.md section 1; settings in firmware/FORMATS.md).
#
# Connection modes: "dial" (the device connects out to agent.controller and reconnects
# with capped exponential backoff and jitter; works behind NAT; the default), "listen"
# (controllers connect to agent.listen_port) and, with agent.transport "uart", one serial
# line to a host. power.mode "duty" runs one short awake period per boot (connect, report,
# serve, then deep sleep), for battery devices.
#
# settings.json and tools.json are checked when loaded; a bad file is reported (console and
# LogRecord) and the last good one stays in force; both are re-read when they change, and
# a new tool set is announced with CapabilityChanged. The watchdog (watchdog.timeout_s) is
# fed only while the agent shows progress: the session heartbeat and the reconnect loop
# promise how long they will be busy, and a loop that stops keeping its promises (a call
# blocking the event loop, a wedged task) is reset by the hardware.
import asyncio
import gc
import json
import os
import random

from jotunheim import VERSION, auth, configfile, ops, port
from jotunheim.port import const

_RELOAD_MS = const(2000)
_CONNECT_TIMEOUT_MS = const(10000)
_ROLE_DEVICE = const(1)
_UNAVAILABLE = const(14)
LEVELS = ("debug", "info", "warning", "error")  # LogLevel 1, 2, 3, 4
# settings whose change needs the connection started again
_RECONNECT = const(("agent.mode", "agent.transport", "agent.controller",
                    "agent.listen_port", "agent.uart_id", "agent.uart_baud", "wifi.ssid",
                    "wifi.password", "auth.key"))

def _settings():
    return port.module("settings")


def _import_serving():
    """Import what serves sessions. The agent calls this once settings.json and tools.json
    are checked and their checks dropped again, so that the two never take the heap at the
    same time: the peak at boot is what a small board runs out of first."""
    global protocol, caps, Calls, SerialLink, TcpLink, Session
    import protocol
    from jotunheim import caps
    from jotunheim.calls import Calls
    from jotunheim.link import SerialLink, TcpLink
    from jotunheim.session import Session


_BOARD_KEYS = const(("name", "type", "limits", "heap_bytes", "cpu_mhz"))
# add-ons: each module's install(agent) runs at start, where the module is deployed
ADDONS = ("loki", "streams", "ota")


class Agent:
    def __init__(self, root=""):
        self.root = root
        self.version = self._running_version()
        self.started_ms = port.ticks_ms()
        self.boot_id = int.from_bytes(os.urandom(4), "big") or 1
        self.sessions = []
        self.sessions_started = 0
        self.handlers = {}  # message name -> function(session, fields), for add-ons
        self.features = {}  # capability features add-ons declare (Features fields)
        self.on_ready = []  # functions(session) called as a session becomes ready
        self.on_end = []    # functions(session) called as a session ends
        self.healthy_until = port.ticks_add(port.ticks_ms(), 60000)
        self._restart = asyncio.Event()
        self._rebooting = False
        self._sleep_ms = None
        self.board = self._load_board()
        self.settings_file = configfile.ConfigFile(
            root + "settings.json", lambda values: _settings().check(values, self.profile()))
        self.settings = self._load_first(self.settings_file, "settings.json")
        if self.settings is None:
            self.settings = _settings().defaults(self.profile())
        for problem in _settings().problems(self.settings):
            self.log(problem, "warning")
        self.key = auth.key_from_hex(self.settings["auth.key"])
        self.tools_file = configfile.ConfigFile(root + "tools.json", self._check_tools)
        configured = []
        if self._exists(root + "tools.json"):
            configured = self._load_first(self.tools_file, "tools.json") or []
        else:
            self.tools_file.seen()  # none: changed() says when one appears
        port.drop("settings", "toolconf", "checks")
        _import_serving()
        self.limits = protocol.Limits(**self.board.get("limits", {}))
        self.calls = Calls(self)
        self.tools = caps.Registry(self)
        self.tools.install(caps.builtin_tools() + [caps.configured_tool(t) for t in configured])

    # ------------------------------------------------------------ files

    def _running_version(self):
        """The active image's version (jotunheim.ota), else the one this code was built as."""
        try:
            return port.module("ota").running_version(self.root, VERSION)
        except ImportError:  # a board deployed without updates
            return VERSION

    def profile(self):
        """The board profile from board.json (read when needed: it is not kept in RAM)."""
        try:
            with open(self.root + "board.json") as f:
                board = json.load(f)
        except (OSError, ValueError) as e:
            raise RuntimeError("board.json cannot be read (%s): deploy the firmware with its "
                               "board profile" % e)
        if "hardware" not in board:  # a whole profile, not what deploy writes
            board = port.module("profile").device_profile(board)
        return board

    def _load_board(self):
        """What the agent keeps of the profile: the few keys it uses all the time."""
        board = self.profile()
        kept = {}
        for key in _BOARD_KEYS:
            if key in board:
                kept[key] = board[key]
        return kept

    def _exists(self, path):
        try:
            os.stat(path)
            return True
        except OSError:
            return False

    def _load_first(self, config, name):
        """The checked file; else its last good copy; else None. Errors are reported."""
        try:
            return config.load()
        except configfile.ConfigError as e:
            self.log(str(e), "error")
        try:
            value = config.load_good()
            self.log("%s: using the last good copy" % name, "warning")
            return value
        except configfile.ConfigError:
            return None

    def _check_tools(self, doc):
        builtin = [row[0] for row in ops.OPS]
        return port.module("toolconf").check_tools(doc, ops.signatures(), builtin)

    # ------------------------------------------------------------ identity

    def hello(self):
        limits = self.board.get("limits") or {}
        return {"version_min": protocol.PROTOCOL_VERSION_MIN,
                "version_max": protocol.PROTOCOL_VERSION, "role": _ROLE_DEVICE,
                "device_id": self.settings["device.id"], "name": self.settings["device.name"],
                "device_type": caps.device_type(self.board["type"]),
                "firmware_version": self.version,
                "max_frame": limits.get("max_frame", 4096), "auth_required": bool(self.key),
                "boot_id": self.boot_id}

    # ------------------------------------------------------------ events

    def log(self, message, level="info"):
        print("[%d] %s: %s" % (port.ticks_diff(port.ticks_ms(), self.started_ms), level,
                               message))
        if getattr(self, "log_tap", None) is not None:  # a log stream (jotunheim.streams)
            self.log_tap(message, level)
        if LEVELS.index(level) < LEVELS.index(self.settings_level()):
            return
        record = {"time_ms": port.ticks_ms(), "level": LEVELS.index(level) + 1,
                  "source": "agent", "message": message}
        for session in self.sessions:
            if session.ready:
                session.send("LogRecord", record)

    def settings_level(self):
        settings = getattr(self, "settings", None)
        return settings["log.level"] if settings else "info"

    def alive(self, busy_ms=0):
        """Progress: the watchdog may be fed for busy_ms (at least its own period) more."""
        period = int(self.settings["watchdog.timeout_s"] * 1000) or 10000
        self.healthy_until = port.ticks_add(port.ticks_ms(), max(busy_ms, period))

    def session_ready(self, session):
        self.sessions_started += 1
        self.calls.attach(session)
        for hook in self.on_ready:
            hook(session)

    def session_ended(self, session):
        self.calls.detach(session)
        for hook in self.on_end:
            hook(session)

    def capabilities_changed(self, reason):
        for session in self.sessions:
            if session.ready:
                session.send("CapabilityChanged", {"revision": self.tools.revision,
                                                   "reason": reason})

    def shed(self):
        """Let go of what can be made again (the codec's caches), for work that needs the
        heap more; then collect."""
        protocol.forget_caches()
        gc.collect()

    def reboot_soon(self, delay_ms):
        """Reset the board after delay_ms (answers go out first), saying Goodbye."""
        self._rebooting = True
        self._restart_after(delay_ms)

    # ------------------------------------------------------------ settings requests

    def settings_request(self, name, request):
        """Answer SettingsGet or SettingsSet (jotunheim.remote_settings, loaded for it)."""
        try:
            return port.module("remote_settings").answer(self, name, request)
        finally:
            port.drop("remote_settings", "settings", "checks")

    def apply_settings(self, new):
        old, self.settings = self.settings, new
        self.key = auth.key_from_hex(new["auth.key"])
        if new["device.id"] != old["device.id"] or new["device.name"] != old["device.name"] \
                or new["calls.concurrency"] != old["calls.concurrency"]:
            self.tools.install(list(self.tools.by_id.values()))
            self.capabilities_changed("settings changed")
        if new["watchdog.timeout_s"] != old["watchdog.timeout_s"]:
            self.log("watchdog.timeout_s takes effect at the next boot", "warning")
        if new["memory.collect_kb"] != old["memory.collect_kb"]:
            self._collect_every()
        for key in _RECONNECT:
            if new[key] != old[key]:
                self.log("%s changed: connecting again" % key)
                self._restart_after(100)  # the answer goes out first
                return

    def _restart_after(self, delay_ms):
        async def later():
            await port.sleep_ms(delay_ms)
            self._restart.set()
        asyncio.create_task(later())

    async def _reload(self):
        while True:
            await port.sleep_ms(_RELOAD_MS)
            try:
                self._reload_changed()
            except Exception as e:  # noqa: BLE001 - out of memory, say: try again later
                port.drop("settings", "toolconf", "checks")
                self.log("checking the files failed: %s: %s" % (type(e).__name__, e),
                         "error")

    def _reload_changed(self):
        if self.settings_file.changed():
            try:
                self.apply_settings(self.settings_file.load())
                self.log("settings.json reloaded")
            except configfile.ConfigError as e:
                self.log("%s; the settings in force stay" % e, "error")
            port.drop("settings", "checks")
        if self.tools_file.changed():
            before = len(self.tools.by_id)
            configured = []  # no tools.json: the builtin tools only
            try:
                if self._exists(self.root + "tools.json"):
                    configured = self.tools_file.load()
            except configfile.ConfigError as e:
                self.log("%s; the tools in force stay" % e, "error")
                return
            finally:
                port.drop("settings", "toolconf", "checks")
            # builtin tools and Loki's script tools stay (issue 6); configured ones are new
            kept = [t for t in self.tools.by_id.values() if t.kind != caps.CONFIGURED]
            if not configured and before == len(kept):
                self.tools_file.seen()
                return  # still none
            self.tools.install(kept + [caps.configured_tool(t) for t in configured])
            self.log("tools.json reloaded: %d tools" % len(configured))
            self.capabilities_changed("tools.json reloaded")
            gc.collect()

    # ------------------------------------------------------------ running

    def _install_addons(self):
        # apart from main(): a local there would keep the last add-on's module for as long
        # as the device runs, though the add-on dropped it (jotunheim.ota does, where there
        # are no updates)
        for name in ADDONS:
            try:
                addon = port.module(name)
            except ImportError:
                continue
            addon.install(self)

    async def main(self):
        """Run until a reboot is due; then reset the board (or return off a board)."""
        asyncio.create_task(self._reload())
        self._install_addons()
        if self.settings["agent.discovery_port"]:
            from jotunheim import announce
            asyncio.create_task(self._guarded(announce.serve(self)))
        self._start_watchdog()
        self._collect_every()
        if port.mem_free is not None:
            gc.collect()
            self.log("started: %d bytes of heap free" % port.mem_free())
        while True:
            self._restart = asyncio.Event()
            work = asyncio.create_task(self._guarded(self._connect_and_serve()))
            await self._restart.wait()
            if self._sleep_ms is not None:
                from jotunheim import duty
                duty.sleep(self._sleep_ms)
                return
            for session in self.sessions:
                session.goodbye(_UNAVAILABLE, "rebooting" if self._rebooting
                                else "settings changed")
            await port.sleep_ms(50)  # goodbyes go out
            work.cancel()
            if self._rebooting:
                self._reset()
                return

    async def _guarded(self, coro):
        """Run one of the agent's loops; if it fails (out of memory, say), report it and
        start the connection over after a pause instead of going on half dead."""
        try:
            await coro
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - the device must stay up
            port.print_exception(e)
            gc.collect()
            self.log("%s: %s; starting over" % (type(e).__name__, e), "error")
            await port.sleep_ms(self.backoff_ms(3))
            self._restart.set()

    def _reset(self):
        try:
            import machine
        except ImportError:
            raise SystemExit(0)
        machine.reset()

    async def _connect_and_serve(self):
        from jotunheim import network
        settings = self.settings
        if settings["agent.transport"] == "uart":
            return await self._serve_serial()
        await network.join(self)
        if settings["agent.mode"] == "dial" and not settings["agent.controller"]:
            return await self._unprovisioned()
        if settings["power.mode"] == "duty":
            from jotunheim import duty
            self._sleep_ms = await duty.run(self)
            self._restart.set()
            return
        if settings["agent.mode"] == "listen":
            return await self._listen()
        return await self._dial()

    async def _unprovisioned(self):
        """A dialing device without a controller waits for its settings to name one (they
        are re-read when they change; discovery still answers meanwhile)."""
        self.log("agent.controller is empty: nowhere to dial (jotunheim provision sets it)",
                 "warning")
        while True:
            self.alive(_RELOAD_MS * 4)
            await port.sleep_ms(_RELOAD_MS)

    async def serve(self, link):
        session = Session(self, link)
        self.sessions.append(session)
        try:
            await session.run()
        finally:
            self.sessions.remove(session)
            gc.collect()
        return session

    def backoff_ms(self, attempt):
        """Delay before reconnection attempt `attempt` (1, 2, ...): capped exponential,
        less a random part (jitter) so that devices restarted together spread out."""
        s = self.settings
        base = min(s["agent.reconnect_min_s"] * s["agent.reconnect_factor"] ** (attempt - 1),
                   s["agent.reconnect_max_s"])
        return int(base * 1000 * (1 - s["agent.reconnect_jitter"] * random.random()))

    async def open_tcp(self, host, port_number):
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port_number), _CONNECT_TIMEOUT_MS / 1000)
        return TcpLink(reader, writer, self.limits.max_frame)

    async def _dial(self):
        from jotunheim import network
        host, port_number = network.split_address(self.settings["agent.controller"])
        attempt = 0
        while True:
            self.alive(_CONNECT_TIMEOUT_MS)
            try:
                link = await self.open_tcp(host, port_number)
            except (OSError, asyncio.TimeoutError) as e:
                self.log("cannot reach %s:%d (%s)" % (host, port_number, network.why(e)))
                session = None
            else:
                session = await self.serve(link)
            if session is not None and session.refused:
                attempt = 99  # the controller does not know our key: wait the longest
            elif session is not None and session.peer_id:
                attempt = 0   # it got as far as a Hello: start over from the shortest wait
            attempt += 1
            delay = self.backoff_ms(attempt)
            self.log("reconnecting in %d ms (attempt %d)" % (delay, attempt))
            self.alive(delay + _CONNECT_TIMEOUT_MS)
            await port.sleep_ms(delay)
            await network.join(self)

    async def _listen(self):
        port_number = self.settings["agent.listen_port"]
        server = await asyncio.start_server(self._accepted, self.settings["agent.listen_host"],
                                            port_number)
        self.log("listening on port %d" % port_number)
        try:
            while True:
                self.alive(_RELOAD_MS * 4)
                await port.sleep_ms(_RELOAD_MS)
        finally:
            server.close()

    async def _accepted(self, reader, writer):
        await self.serve(TcpLink(reader, writer, self.limits.max_frame))

    async def _serve_serial(self):
        import machine
        uart = machine.UART(self.settings["agent.uart_id"], self.settings["agent.uart_baud"])
        link = SerialLink(uart, self.limits.max_frame)
        self.log("serving on UART %d" % self.settings["agent.uart_id"])
        while True:
            self.alive()
            await self.serve(link)

    def _collect_every(self):
        # memory.collect_kb: MicroPython collects when an allocation fails, so garbage fills
        # the heap first and what lives on is left scattered across it, cutting the free
        # heap into small pieces; collecting every so often keeps it low and the free heap
        # in large pieces (for a big HTTP body, a script's compile), for CPU time
        if hasattr(gc, "threshold"):
            kb = self.settings["memory.collect_kb"]
            gc.threshold(kb * 1024 if kb else -1)

    def _start_watchdog(self):
        timeout_ms = int(self.settings["watchdog.timeout_s"] * 1000)
        if not timeout_ms:
            return
        try:
            import machine
            wdt = machine.WDT(timeout=timeout_ms)
        except (ImportError, ValueError, AttributeError) as e:
            self.log("no watchdog: %s" % e, "warning")
            return

        async def feed():
            while True:
                if port.ticks_diff(self.healthy_until, port.ticks_ms()) > 0:
                    wdt.feed()
                await port.sleep_ms(timeout_ms // 4)
        asyncio.create_task(feed())
