# The tools a device offers and its capability document (protocol/SPEC.md 1.9).
#
# Tools come from the builtin operations (jotunheim.ops) and the tool configuration
# (tools.json, checked by jotunheim.toolconf). Each gets a small id the first time its name
# is seen and keeps it while the device runs, so an id never changes meaning on a
# connection; a tool that disappears takes its id with it.
#
# The document is mostly static. An answer is the request id, the static part and a short
# tail with the live resources (free heap, storage): concatenated protobuf messages merge,
# so the three encode one message. jotunheim.capsdoc builds the static part, loaded for
# that only, each time it is asked for: a controller asks once a session (and caches the
# answer), and the ~1.2 KB it would take kept in RAM is worth more to a small board than
# the few milliseconds it takes to build again.
import protocol
from jotunheim import ops, port
from jotunheim.port import const

_BUILTIN = const(1)      # ToolKind numbers: the enum names would load protocol.enums
CONFIGURED = 2
_DEVICE_TYPES = const(("ESP32", "ESP8266", "PICO_W", "LINUX"))  # DeviceType 1, 2, 3, 4


def device_type(name):
    return _DEVICE_TYPES.index(name) + 1 if name in _DEVICE_TYPES else 0


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


def builtin_tools():
    tools = []
    made = {}  # one dict per distinct parameter or return type, shared by the tools
    for name, description, params, returns, function in ops.OPS:
        plist = []
        for p in params:
            if p not in made:
                made[p] = {"name": p[0], "type": p[1], "required": p[2], "description": p[3]}
            plist.append(made[p])
        if returns not in made:
            made[returns] = {"type": returns}
        tools.append(Tool(name, _BUILTIN, description, tuple(plist), made[returns], function))
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


class Registry:
    """The tools in force and the encoded capability document."""

    def __init__(self, agent):
        self.agent = agent
        self.revision = 0
        self.by_id = {}
        self.by_name = {}
        self._ids = {}
        self._next_id = 1

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

    def find(self, call):
        if "tool_name" in call:
            return self.by_name.get(call["tool_name"])
        return self.by_id.get(call.get("tool_id", 0))

    def document(self):
        """The encoded document of this revision, without request id and live fields."""
        try:
            return port.module("capsdoc").encode(self)
        finally:
            port.drop("capsdoc")

    def live(self):
        """The fields that change while the device runs, encoded to merge into document()."""
        resources = {}
        if port.mem_free is not None:
            resources["free_memory"] = port.mem_free()
        resources["storage_total"], resources["storage_free"] = port.storage()
        return protocol.encode("Capabilities", {"resources": resources})
