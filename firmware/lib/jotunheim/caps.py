# The tools a device offers and its capability document (protocol/SPEC.md 1.9).
#
# Tools come from the builtin operations (jotunheim.ops) and the tool configuration
# (tools.json, checked by jotunheim.toolconf). Each gets a small id the first time its name
# is seen and keeps it while the device runs, so an id never changes meaning on a
# connection; a tool that disappears takes its id with it.
#
# The document is mostly static: it is encoded once per revision and kept as bytes. An
# answer is the request id, those bytes and a short tail with the live resources (free
# heap, storage): concatenated protobuf messages merge, so the three encode one message.
import gc
import sys

import protocol
from jotunheim import args, ops, port

BUILTIN = 1      # ToolKind numbers: the enum names would load protocol.enums
CONFIGURED = 2
DEVICE_TYPES = ("ESP32", "ESP8266", "PICO_W", "LINUX")  # DeviceType 1, 2, 3, 4


def device_type(name):
    return DEVICE_TYPES.index(name) + 1 if name in DEVICE_TYPES else 0


class Tool:
    """One callable tool: its declaration and what runs it."""

    def __init__(self, name, kind, description, params, returns, run, fixed=None):
        self.id = 0
        self.name = name
        self.kind = kind
        self.description = description
        self.params = params        # toolconf's normalized parameter list
        self.returns = returns      # {"type", "description"}
        self.run = run              # function(agent, **args)
        self.fixed = fixed          # arguments the binding supplies

    def declaration(self):
        params = []
        for p in self.params:
            d = {"name": p["name"], "type": args.type_number(p["type"]),
                 "required": p["required"], "description": p.get("description", "")}
            for key, field in (("default", "default_value"), ("minimum", "minimum"),
                               ("maximum", "maximum"), ("choices", "choices")):
                if key in p:
                    d[field] = p[key]
            params.append(d)
        return {"id": self.id, "name": self.name, "kind": self.kind,
                "description": self.description, "parameters": params,
                "returns": {"type": args.type_number(self.returns["type"]),
                            "description": self.returns.get("description", "")}}


def builtin_tools():
    tools = []
    made = {}  # one dict per distinct parameter: several operations take the same pin
    for name, description, params, returns, function in ops.OPS:
        plist = []
        for p in params:
            if p not in made:
                made[p] = {"name": p[0], "type": p[1], "required": p[2], "description": p[3]}
            plist.append(made[p])
        tools.append(Tool(name, BUILTIN, description, plist, {"type": returns}, function))
    return tools


def _op_function(name):
    for row in ops.OPS:
        if row[0] == name:
            return row[4]
    raise ValueError("no operation %s" % name)


def _module_function(module, function):
    """Import the bound module when the tool is first called (RAM is spent on use)."""
    def run(agent, **args):
        mod = __import__(module)
        for part in module.split(".")[1:]:
            mod = getattr(mod, part)
        return getattr(mod, function)(**args)
    return run


def configured_tool(decl):
    bind = decl["bind"]
    if "op" in bind:
        run, fixed = _op_function(bind["op"]), bind.get("args") or None
    else:
        run, fixed = _module_function(bind["module"], bind["function"]), None
    return Tool(decl["name"], CONFIGURED, decl.get("description", ""), decl["parameters"],
                decl.get("returns") or {"type": "any"}, run, fixed)


def hardware(board):
    """The Hardware part of the document, from the board profile."""
    reserved = board.get("reserved") or {}
    available, digital, analog, pwm, input_only = [], [], [], [], []
    for key, caps in board.get("pins", {}).items():
        if not key.isdigit() or key in reserved:
            continue
        pin = int(key)
        available.append(pin)
        if "in" in caps or "out" in caps:
            digital.append(pin)
        if "adc" in caps:
            analog.append(pin)
        if "pwm" in caps:
            pwm.append(pin)
        if "in" in caps and "out" not in caps:
            input_only.append(pin)
    for group in (available, digital, analog, pwm, input_only):
        group.sort()
    interfaces = []
    buses = board.get("buses") or {}
    for bus, label in (("i2c", "I2C"), ("spi", "SPI"), ("uart", "UART")):
        if (buses.get(bus) or {}).get("ports"):
            interfaces.append(label)
    if board.get("adc"):
        interfaces.append("ADC")
    if pwm:
        interfaces.append("PWM")
    if board.get("onewire"):
        interfaces.append("1-Wire")
    if board.get("dht"):
        interfaces.append("DHT")
    return {"gpio": {"available": available, "digital": digital, "analog": analog,
                     "pwm": pwm, "input_only": input_only},
            "interfaces": interfaces}


# what the device keeps of its board profile (with the hardware worked out), the rest stays
# on the host: the whole profile would take more heap than an ESP8266 can spare at boot
DEVICE_KEYS = ("name", "title", "type", "limits", "heap_bytes", "cpu_mhz", "settings",
               "script_languages")


def device_profile(board):
    """The part of a board profile the device needs: deploy writes it as /board.json."""
    kept = {"hardware": hardware(board)}
    for key in DEVICE_KEYS:
        if key in board:
            kept[key] = board[key]
    machine = board.get("machine") or {}
    kept["machine"] = {"unique_id": machine.get("unique_id", ""), "wdt": machine.get("wdt", {})}
    uart = ((board.get("buses") or {}).get("uart") or {}).get("ports")
    kept["buses"] = {"uart": {"ports": uart}} if uart else {}
    return kept


def _script_languages(agent):
    """The languages Loki runs here (none without it)."""
    loki = sys.modules.get("jotunheim.loki")
    return loki.languages(agent) if loki is not None else []


def _compression():
    for name in ("deflate", "zlib"):
        try:
            __import__(name)
            return ["zlib"]
        except ImportError:
            pass
    return []


class Registry:
    """The tools in force and the encoded capability document."""

    def __init__(self, agent):
        self.agent = agent
        self.revision = 0
        self.by_id = {}
        self.by_name = {}
        self._ids = {}
        self._next_id = 1
        self._document = None

    def install(self, tools):
        """Put a new set of tools in force (a new revision)."""
        self.by_id = {}
        self.by_name = {}
        for tool in tools:
            tool.id = self._ids.get(tool.name, 0)
            if not tool.id:
                tool.id = self._ids[tool.name] = self._next_id
                self._next_id += 1
            self.by_id[tool.id] = tool
            self.by_name[tool.name] = tool
        for name in list(self._ids):  # a tool that is gone takes its id along
            if name not in self.by_name:
                del self._ids[name]
        self.revision += 1
        self._document = None

    def find(self, call):
        if "tool_name" in call:
            return self.by_name.get(call["tool_name"])
        return self.by_id.get(call.get("tool_id", 0))

    def document(self):
        """The encoded document of this revision, without request id and live fields."""
        if self._document is None:
            self._document = protocol.encode("Capabilities", self._fields())
            gc.collect()
        return self._document

    def live(self):
        """The fields that change while the device runs, encoded to merge into document()."""
        resources = {}
        if port.mem_free is not None:
            resources["free_memory"] = port.mem_free()
        resources["storage_total"], resources["storage_free"] = port.storage()
        return protocol.encode("Capabilities", {"resources": resources})

    def _fields(self):
        agent = self.agent
        board, settings = agent.board, agent.settings
        tools = [self.by_id[i].declaration() for i in sorted(self.by_id)]
        limits = board.get("limits") or {}
        return {
            "revision": self.revision,
            "device": {"id": settings["device.id"], "name": settings["device.name"],
                       "type": device_type(board["type"]), "firmware_version": agent.version,
                       "protocol_version": protocol.PROTOCOL_VERSION, "board": board["name"]},
            "tools": tools,
            "hardware": agent.profile()["hardware"],
            "resources": {"max_memory": board.get("heap_bytes", 0),
                          "cpu_mhz": board.get("cpu_mhz", 0),
                          "max_concurrent_tools": settings["calls.concurrency"],
                          "max_frame": limits.get("max_frame", 4096)},
            "features": dict({"streaming": False, "compression": _compression(),
                              "script_languages": _script_languages(agent), "encryption": []},
                             **agent.features),
        }
