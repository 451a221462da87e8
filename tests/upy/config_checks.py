# The device configuration layer (jotunheim.settings, jotunheim.toolconf,
# jotunheim.configfile) checked the same way on MicroPython and CPython.
#
# usage: config_checks.py LIB BOARDS_DIR SCRATCH_DIR
# LIB is the directory holding the jotunheim package (firmware/lib, or a compiled copy);
# SCRATCH_DIR an empty directory for the file checks. Prints one JSON object per case,
# {"case name": outcome}; EXPECTED below holds what each outcome must be, and
# tests/test_firmware_config.py compares the two for both interpreters. Outcomes are plain
# JSON values with no dict order and no float repr that could differ between interpreters.
import json
import os
import sys

if __name__ == "__main__":
    sys.path.insert(0, sys.argv[1])

from jotunheim import configfile, settings, toolconf  # noqa: E402 - after the path is set

ConfigError = configfile.ConfigError
BOARDS = {}


def load_boards(directory):
    for name in ("esp32", "esp8266", "pico_w", "linux_sbc"):
        with open(directory + "/" + name + ".json") as f:
            BOARDS[name] = json.load(f)


def error_of(fn, *args):
    """The message fn(*args) raised (ConfigError or ArgumentError), or "no error"."""
    try:
        fn(*args)
    except (ConfigError, toolconf.ArgumentError) as e:
        return str(e)
    return "no error"


# ------------------------------------------------------------------ settings

KEY = "0123456789abcdef" * 2
SETTINGS_ERRORS = (
    # (case, board, values, message)
    ("not an object", "esp32", ["agent.mode"],
     "settings: expected an object of settings, got an array"),
    ("unknown key, close", "esp32", {"agent.mdoe": "dial"},
     "settings: agent.mdoe: unknown setting (did you mean 'agent.mode'?)"),
    ("unknown key, no section", "esp32", {"heartbeat_s": 5},
     "settings: heartbeat_s: unknown setting (did you mean 'agent.heartbeat_s'?)"),
    ("unknown key, far", "esp32", {"colour": "red", "agent.mode": "dial"},
     "settings: colour: unknown setting"),
    ("bool for int", "esp32", {"calls.queue": True},
     "settings: calls.queue: expected an integer, got true"),
    ("bool for number", "esp32", {"agent.heartbeat_s": False},
     "settings: agent.heartbeat_s: expected a number, got false"),
    ("float for int", "esp32", {"calls.concurrency": 2.0},
     "settings: calls.concurrency: expected an integer, got 2.0"),
    ("text for number", "esp32", {"agent.heartbeat_s": "20"},
     "settings: agent.heartbeat_s: expected a number, got '20'"),
    ("nan", "esp32", {"agent.heartbeat_s": float("nan")},
     "settings: agent.heartbeat_s: expected a number, got nan"),
    ("null for text", "esp32", {"agent.controller": None},
     "settings: agent.controller: expected a string, got null"),
    ("int below", "esp32", {"agent.listen_port": 0},
     "settings: agent.listen_port: must be from 1 to 65535, got 0"),
    ("int above", "esp32", {"calls.concurrency": 33},
     "settings: calls.concurrency: must be from 1 to 32, got 33"),
    ("number below", "esp32", {"agent.heartbeat_s": 0.25},
     "settings: agent.heartbeat_s: must be from 0.5 to 3600, got 0.25"),
    ("number above", "esp32", {"agent.reconnect_jitter": 2},
     "settings: agent.reconnect_jitter: must be from 0 to 1, got 2"),
    ("off or range", "esp32", {"watchdog.timeout_s": 0.5},
     "settings: watchdog.timeout_s: must be 0 (off) or from 1 to 3600, got 0.5"),
    ("choice", "esp32", {"agent.mode": "dail"},
     "settings: agent.mode: expected one of 'dial', 'listen', got 'dail'"),
    ("choice, wrong type", "esp32", {"log.level": 3},
     "settings: log.level: expected one of 'debug', 'info', 'warning', 'error', got 3"),
    ("id empty", "esp32", {"device.id": ""}, "settings: device.id: must not be empty"),
    ("id too long", "esp32", {"device.id": "x" * 33},
     "settings: device.id: too long (33 characters, at most 32)"),
    ("id characters", "esp32", {"device.id": "green house"},
     "settings: device.id: may only contain letters, digits, '.', '_' and '-', got "
     "'green house'"),
    ("name too long", "esp32", {"device.name": "n" * 65},
     "settings: device.name: too long (65 characters, at most 64)"),
    ("controller without port", "esp32", {"agent.controller": "hub.local"},
     "settings: agent.controller: expected host:port with a port from 1 to 65535, like "
     "'hub.local:7480', got 'hub.local'"),
    ("controller port", "esp32", {"agent.controller": "hub.local:65536"},
     "settings: agent.controller: expected host:port with a port from 1 to 65535, like "
     "'hub.local:7480', got 'hub.local:65536'"),
    ("controller without host", "esp32", {"agent.controller": ":7480"},
     "settings: agent.controller: expected host:port with a port from 1 to 65535, like "
     "'hub.local:7480', got ':7480'"),
    ("controller with scheme", "esp32", {"agent.controller": "tcp://hub.local:7480"},
     "settings: agent.controller: expected host:port without a scheme, like "
     "'hub.local:7480', got 'tcp://hub.local:7480'"),
    ("controller host", "esp32", {"agent.controller": "hub local:7480"},
     "settings: agent.controller: not a host name or address: 'hub local'"),
    ("controller IPv6", "esp32", {"agent.controller": "[::1]:7480"},
     "settings: agent.controller: not a host name or address: '[::1]'"),
    ("key too short", "esp32", {"auth.key": "abcd"},
     "settings: auth.key: expected an even count of 32 to 128 hex digits, got 4"),
    ("key odd", "esp32", {"auth.key": KEY + "a"},
     "settings: auth.key: expected an even count of 32 to 128 hex digits, got 33"),
    ("key too long", "esp32", {"auth.key": KEY * 4 + "ab"},
     "settings: auth.key: expected an even count of 32 to 128 hex digits, got 130"),
    ("key not hex", "esp32", {"auth.key": "g" + KEY[1:]},
     "settings: auth.key: expected hex digits (0-9, a-f)"),
    ("password too long, not shown", "esp32", {"wifi.password": "p" * 65},
     "settings: wifi.password: too long (65 characters, at most 64)"),
    ("peer timeout vs heartbeat", "esp32", {"agent.heartbeat_s": 20, "agent.peer_timeout_s": 30},
     "settings: agent.peer_timeout_s: must be 0 (three heartbeats) or at least twice "
     "agent.heartbeat_s (40), got 30"),
    ("heartbeat against the peer timeout in force", "esp32", {"agent.peer_timeout_s": 40,
                                                             "agent.heartbeat_s": 30},
     "settings: agent.peer_timeout_s: must be 0 (three heartbeats) or at least twice "
     "agent.heartbeat_s (60), got 40"),
    ("reconnect max below min", "esp32", {"agent.reconnect_min_s": 5,
                                          "agent.reconnect_max_s": 2},
     "settings: agent.reconnect_max_s: must be at least agent.reconnect_min_s (5), got 2"),
    ("fixed watchdog", "esp8266", {"watchdog.timeout_s": 8},
     "settings: watchdog.timeout_s: this board's watchdog only does 5 s: use 0 (off) or 5"),
    ("watchdog maximum", "pico_w", {"watchdog.timeout_s": 9},
     "settings: watchdog.timeout_s: this board's watchdog allows at most 8.388 s, got 9"),
    ("uart without rx", "esp8266", {"agent.transport": "uart", "agent.uart_id": 1},
     "settings: agent.uart_id: this board has no UART 1 that can receive (usable: 0)"),
    ("uart missing", "linux_sbc", {"agent.transport": "uart", "agent.uart_id": 3},
     "settings: agent.uart_id: this board has no UART 3 that can receive (usable: 0)"),
)

GOOD = {"agent.controller": "hub.local:7480", "agent.heartbeat_s": 2.5,
        "agent.peer_timeout_s": 5, "calls.deadline_s": 1, "auth.key": KEY.upper(),
        "wifi.ssid": "greenhouse", "wifi.password": "hunter22", "device.id": "gh-1.a_b"}
SHOWN = ("device.id", "device.name", "calls.concurrency", "calls.queue", "calls.remember",
         "watchdog.timeout_s", "agent.uart_id", "agent.mode")


def pick(values, keys):
    return dict([(key, values[key]) for key in keys])


def settings_cases():
    out = {}
    for case, board, values, _ in SETTINGS_ERRORS:
        out["settings error/" + case] = error_of(settings.check, values, BOARDS[board])
    for name, board in sorted(BOARDS.items()):
        values = settings.defaults(board)
        out["settings defaults/" + name] = pick(values, SHOWN)
        out["settings complete/" + name] = [
            sorted(values) == sorted([e[0] for e in settings.SCHEMA]),
            settings.check({}, board) == values,
            settings.problems(values)]
    esp32 = BOARDS["esp32"]
    checked = settings.check(GOOD, esp32)
    out["settings good"] = [pick(checked, GOOD) == GOOD, type(checked["calls.deadline_s"]) is int,
                            checked["log.level"], settings.problems(checked)]
    base = settings.check({"log.level": "debug", "agent.controller": "h:1"}, esp32)
    kept = dict(base)
    changed = settings.check({"agent.mode": "listen"}, esp32, base)
    out["settings over a base"] = [changed["log.level"], changed["agent.mode"], base == kept,
                                   error_of(settings.check, {"agent.heartbeat_s": 1000}, esp32,
                                            settings.check({"agent.peer_timeout_s": 100},
                                                           esp32))]
    out["settings accepted"] = [
        settings.check(values, BOARDS[board])[key] for board, values, key in (
            ("esp32", {"agent.controller": "localhost:7480"}, "agent.controller"),
            ("esp32", {"agent.controller": "192.168.4.1:1"}, "agent.controller"),
            ("esp32", {"auth.key": KEY * 4}, "auth.key"),
            ("esp32", {"agent.peer_timeout_s": 40}, "agent.peer_timeout_s"),
            ("esp32", {"agent.reconnect_max_s": 1}, "agent.reconnect_max_s"),
            ("esp8266", {"watchdog.timeout_s": 5}, "watchdog.timeout_s"),
            ("pico_w", {"watchdog.timeout_s": 8}, "watchdog.timeout_s"),
            ("esp8266", {"agent.transport": "uart"}, "agent.uart_id"),
            ("esp32", {"power.sleep_s": 604800}, "power.sleep_s"))]
    out["settings public"] = [pick(settings.public(checked), settings.SECRET),
                              pick(settings.public(base), settings.SECRET),
                              checked["auth.key"] == KEY.upper(), sorted(settings.SECRET)]
    out["settings problems"] = [settings.problems(settings.check(values, esp32)) for values in (
        {"agent.mode": "listen"},
        {"agent.mode": "listen", "auth.key": KEY, "power.mode": "duty"},
        {"agent.transport": "uart", "agent.uart_id": 2},
        {"agent.controller": "h:1", "wifi.password": "secret"})]
    return out


# ------------------------------------------------------------------ tools.json

OPS = {
    "pin_read": {"params": [("pin", "int", True)], "returns": "int"},
    "pin_write": {"params": [("pin", "int", True), ("value", "bool", True)], "returns": "null"},
    "adc_read": {"params": [("pin", "int", True)], "returns": "int"},
    "pwm_set": {"params": [("pin", "int", True), ("freq", "int", True),
                           ("duty", "float", False)], "returns": "null"},
    "device_echo": {"params": [("value", "any", False)], "returns": "any"},
}
BUILTIN = ("pin_read", "pin_write", "device_echo")
GOOD_TOOLS = {"tools": [
    {"name": "fan", "description": "Switch the fan",
     "parameters": [{"name": "value", "type": "bool", "description": "on or off"}],
     "bind": {"op": "pin_write", "args": {"pin": 5}}},
    {"name": "soil", "returns": {"description": "raw reading"},
     "bind": {"op": "adc_read", "args": {"pin": 34}}},
    {"name": "dimmer", "parameters": [
        {"name": "pin", "type": "int", "choices": [12, 13]},
        {"name": "freq", "type": "int", "minimum": 1, "maximum": 40000, "default": 1000},
        {"name": "duty", "type": "float", "minimum": 0, "maximum": 1}],
     "returns": {"type": "null"}, "bind": {"op": "pwm_set"}},
    {"name": "water", "description": "Run the pump",
     "parameters": [{"name": "seconds", "type": "float", "minimum": 0.5, "maximum": 60},
                    {"name": "mode", "type": "string", "choices": ["pulse", "steady"],
                     "default": "steady"},
                    {"name": "note", "type": "string", "required": False},
                    {"name": "tags", "type": "map", "required": False}],
     "returns": {"type": "float", "description": "litres"},
     "bind": {"module": "garden.pump", "function": "run"}},
]}


def tool(**fields):
    """A valid one-tool document with fields replaced (None: removed)."""
    base = {"name": "t", "parameters": [{"name": "pin", "type": "int"}],
            "bind": {"op": "adc_read"}}
    for key in fields:
        if fields[key] is None:
            del base[key]
        else:
            base[key] = fields[key]
    return {"tools": [base]}


def param(**fields):
    """A one-tool document bound to a module, with one parameter of these fields."""
    return {"tools": [{"name": "t", "parameters": [fields],
                       "bind": {"module": "m", "function": "f"}}]}


TOOL_ERRORS = (
    ("not an object", [], "tools.json: expected an object, got an array"),
    ("no tools", {}, "tools.json: tools: missing: the file holds {\"tools\": [...]}"),
    ("misspelt top key", {"tool": []},
     "tools.json: tool: unknown key (did you mean 'tools'? known: tools)"),
    ("tools not a list", {"tools": {}}, "tools.json: tools: expected an array, got an object"),
    ("too many tools", {"tools": [{}] * 65}, "tools.json: tools: too many (65, at most 64)"),
    ("tool not an object", {"tools": [3]}, "tools.json: tools[0]: expected an object, got 3"),
    ("no name", tool(name=None), "tools.json: tools[0].name: missing"),
    ("name not text", tool(name=7), "tools.json: tools[0].name: expected a string, got number"),
    ("name empty", tool(name=""), "tools.json: tools[0].name: must be 1 to 48 characters, got 0"),
    ("name too long", tool(name="n" * 49),
     "tools.json: tools[0].name: must be 1 to 48 characters, got 49"),
    ("name starts with a digit", tool(name="1st"),
     "tools.json: tools[0].name: '1st' is not a name: use letters, digits and '_', not "
     "starting with a digit"),
    ("name with a dash", tool(name="read-soil"),
     "tools.json: tools[0].name: 'read-soil' is not a name: use letters, digits and '_', not "
     "starting with a digit"),
    ("builtin name", tool(name="pin_read"),
     "tools.json: tools[0].name: 'pin_read' is the name of a builtin tool"),
    ("script name", tool(name="Script_x"),
     "tools.json: tools[0].name: names starting with 'Script_' belong to scripts"),
    ("duplicate", {"tools": tool()["tools"] + [{"name": "u", "bind": {"op": "device_echo"}}]
                   + tool()["tools"]},
     "tools.json: tools[2].name: duplicate tool name 't' (also tools[0])"),
    ("misspelt tool key", tool(parameter=[]),
     "tools.json: tools[0].parameter: unknown key (did you mean 'parameters'? known: name, "
     "description, parameters, returns, bind)"),
    ("description too long", tool(description="d" * 257),
     "tools.json: tools[0].description: too long (257 characters, at most 256)"),
    ("parameters not a list", tool(parameters={"pin": "int"}),
     "tools.json: tools[0].parameters: expected an array, got an object"),
    ("too many parameters", tool(parameters=[{"name": "p%d" % i, "type": "int"}
                                             for i in range(17)]),
     "tools.json: tools[0].parameters: too many (17, at most 16)"),
    ("no bind", tool(bind=None), "tools.json: tools[0].bind: missing: bind the tool to "
     "{\"op\": ...} or {\"module\": ..., \"function\": ...}"),
    ("empty bind", tool(bind={}), "tools.json: tools[0].bind: expected {\"op\": ...} or "
     "{\"module\": ..., \"function\": ...}"),
    ("op and module", tool(bind={"op": "adc_read", "module": "m"}),
     "tools.json: tools[0].bind: give either \"op\" or \"module\" and \"function\", not both"),
    ("misspelt bind key", tool(bind={"opp": "adc_read"}),
     "tools.json: tools[0].bind.opp: unknown key (did you mean 'op'? known: op, args, module, "
     "function)"),
    ("unknown op", tool(bind={"op": "pin_wrte"}),
     "tools.json: tools[0].bind.op: unknown operation 'pin_wrte' (did you mean 'pin_write'? "
     "known: adc_read, device_echo, pin_read, pin_write, pwm_set)"),
    ("op not text", tool(bind={"op": 3}),
     "tools.json: tools[0].bind.op: unknown operation 3 (known: adc_read, device_echo, "
     "pin_read, pin_write, pwm_set)"),
    ("args not an object", tool(parameters=None, bind={"op": "adc_read", "args": [34]}),
     "tools.json: tools[0].bind.args: expected an object, got an array"),
    ("fixed arg not an op parameter", tool(bind={"op": "adc_read", "args": {"chan": 1}}),
     "tools.json: tools[0].bind.args.chan: operation 'adc_read' has no parameter 'chan' "
     "(its parameters: pin)"),
    ("fixed arg type", tool(parameters=None, bind={"op": "adc_read", "args": {"pin": "34"}}),
     "tools.json: tools[0].bind.args.pin: expected int, got string"),
    ("fixed bool for int", tool(parameters=None, bind={"op": "adc_read", "args": {"pin": True}}),
     "tools.json: tools[0].bind.args.pin: expected int, got bool"),
    ("op parameter not covered", tool(parameters=None),
     "tools.json: tools[0].bind: operation 'adc_read' needs 'pin': declare it as a parameter "
     "or fix it in args"),
    ("parameter not of the op", tool(parameters=[{"name": "pin", "type": "int"},
                                                 {"name": "gain", "type": "int"}]),
     "tools.json: tools[0].parameters[1].name: operation 'adc_read' has no parameter 'gain' "
     "(its parameters: pin)"),
    ("parameter also fixed", tool(bind={"op": "adc_read", "args": {"pin": 3}}),
     "tools.json: tools[0].parameters[0].name: 'pin' is also fixed in bind.args"),
    ("parameter type vs op", tool(parameters=[{"name": "pin", "type": "string"}]),
     "tools.json: tools[0].parameters[0].type: operation 'adc_read' takes int for 'pin', not "
     "string"),
    ("float parameter for an int op parameter", tool(parameters=[{"name": "pin",
                                                                 "type": "float"}]),
     "tools.json: tools[0].parameters[0].type: operation 'adc_read' takes int for 'pin', not "
     "float"),
    ("optional parameter for a required op parameter",
     tool(parameters=[{"name": "pin", "type": "int", "required": False}]),
     "tools.json: tools[0].parameters[0].required: operation 'adc_read' needs 'pin': make it "
     "required or give it a default"),
    ("returns type vs op", tool(returns={"type": "string"}),
     "tools.json: tools[0].returns.type: operation 'adc_read' returns int, not string"),
    ("returns misspelt key", tool(returns={"typ": "int"}),
     "tools.json: tools[0].returns.typ: unknown key (did you mean 'type'? known: type, "
     "description)"),
    ("module name", tool(bind={"module": "garden..pump", "function": "run"}),
     "tools.json: tools[0].bind.module: expected a module name like 'sensors' or 'app.pump', "
     "got 'garden..pump'"),
    ("function missing", tool(bind={"module": "garden"}),
     "tools.json: tools[0].bind.function: missing"),
    ("module with args", tool(bind={"module": "m", "function": "f", "args": {}}),
     "tools.json: tools[0].bind.args: only an operation binding has fixed args"),
    ("parameter not an object",
     {"tools": [{"name": "t", "parameters": ["pin"], "bind": {"module": "m", "function": "f"}}]},
     "tools.json: tools[0].parameters[0]: expected an object, got 'pin'"),
    ("parameter without type", param(name="x"),
     "tools.json: tools[0].parameters[0].type: missing (known: any, null, bool, int, "
     "float, string, bytes, list, map)"),
    ("parameter type unknown", param(name="x", type="integer"),
     "tools.json: tools[0].parameters[0].type: unknown type 'integer' (did you mean 'int'? "
     "known: any, null, bool, int, float, string, bytes, list, map)"),
    ("parameter name", param(name="x y", type="int"),
     "tools.json: tools[0].parameters[0].name: 'x y' is not a name: use letters, digits and "
     "'_', not starting with a digit"),
    ("parameter misspelt key", param(name="x", type="int", requried=True),
     "tools.json: tools[0].parameters[0].requried: unknown key (did you mean 'required'? known: "
     "name, type, required, description, default, minimum, maximum, choices)"),
    ("duplicate parameter", {"tools": [{"name": "t", "parameters": [
        {"name": "x", "type": "int"}, {"name": "x", "type": "int"}],
        "bind": {"module": "m", "function": "f"}}]},
     "tools.json: tools[0].parameters[1].name: duplicate parameter name 'x'"),
    ("required not a bool", param(name="x", type="int", required="yes"),
     "tools.json: tools[0].parameters[0].required: expected true or false, got 'yes'"),
    ("required with a default", param(name="x", type="int", required=True, default=1),
     "tools.json: tools[0].parameters[0].required: a required parameter cannot have a default"),
    ("bounds on a string", param(name="x", type="string", minimum=1),
     "tools.json: tools[0].parameters[0].minimum: only int and float parameters have bounds"),
    ("float bound on an int", param(name="x", type="int", maximum=2.5),
     "tools.json: tools[0].parameters[0].maximum: expected int, got float"),
    ("maximum below minimum", param(name="x", type="float", minimum=5, maximum=1),
     "tools.json: tools[0].parameters[0].maximum: 1 is below its minimum 5.0"),
    ("default type", param(name="x", type="int", default="1"),
     "tools.json: tools[0].parameters[0].default: expected int, got string"),
    ("default above maximum", param(name="x", type="int", maximum=10, default=11),
     "tools.json: tools[0].parameters[0].default: 11 is above its maximum 10"),
    ("default not a choice", param(name="x", type="string", choices=["a", "b"], default="c"),
     "tools.json: tools[0].parameters[0].default: 'c' must be one of 'a', 'b'"),
    ("choices empty", param(name="x", type="int", choices=[]),
     "tools.json: tools[0].parameters[0].choices: must not be empty"),
    ("choice type", param(name="x", type="int", choices=[1, "2"]),
     "tools.json: tools[0].parameters[0].choices[1]: expected int, got string"),
    ("choice out of bounds", param(name="x", type="int", minimum=0, choices=[1, -1]),
     "tools.json: tools[0].parameters[0].choices[1]: -1 is below its minimum 0"),
    ("null default for int", param(name="x", type="int", default=None),
     "tools.json: tools[0].parameters[0].default: expected int, got null"),
)

ARGS = (
    # (case, tool name in GOOD_TOOLS, args, positional, outcome)
    ("named", "fan", {"value": True}, [], {"value": True}),
    ("positional", "fan", None, [False], {"value": False}),
    ("missing", "fan", {}, [], "missing argument 'value'"),
    ("int for bool", "fan", {"value": 1}, [], "argument 'value': expected bool, got int"),
    ("no parameters", "soil", None, None, {}),
    ("unknown", "soil", {"pin": 3}, [], "unknown argument 'pin'"),
    ("too many positional", "soil", {}, [1], "too many positional arguments (1 given, 0 "
     "parameters)"),
    ("defaults filled", "dimmer", {"pin": 12, "duty": 0.5}, [],
     {"pin": 12, "freq": 1000, "duty": 0.5}),
    ("positional and named", "dimmer", {"duty": 1}, [13, 20],
     {"pin": 13, "freq": 20, "duty": 1.0}),
    ("int becomes float", "dimmer", {}, [12, 5, 0], {"pin": 12, "freq": 5, "duty": 0.0}),
    ("both ways", "dimmer", {"pin": 12}, [12, 5, 0.5],
     "argument 'pin' given by name and by position"),
    ("too many", "dimmer", {}, [12, 5, 0.5, 1],
     "too many positional arguments (4 given, 3 parameters)"),
    ("bool for int", "dimmer", {"pin": True, "duty": 0}, [],
     "argument 'pin': expected int, got bool"),
    ("float for int", "dimmer", {"pin": 12.0, "duty": 0}, [],
     "argument 'pin': expected int, got float"),
    ("bool for float", "dimmer", {"pin": 12, "duty": False}, [],
     "argument 'duty': expected float, got bool"),
    ("not a choice", "dimmer", {"pin": 14, "duty": 0}, [],
     "argument 'pin' must be one of 12, 13"),
    ("above maximum", "dimmer", {"pin": 12, "freq": 40001, "duty": 0}, [],
     "argument 'freq' is above its maximum 40000"),
    ("below minimum", "dimmer", {"pin": 12, "freq": 0, "duty": 0}, [],
     "argument 'freq' is below its minimum 1"),
    ("misspelt name", "dimmer", {"pin": 12, "dutty": 0}, [],
     "unknown argument 'dutty' (did you mean 'duty'?)"),
    ("optional left out", "water", {"seconds": 2}, [], {"seconds": 2.0, "mode": "steady"}),
    ("string choice", "water", {"seconds": 2, "mode": "pulse", "note": "n"}, [],
     {"seconds": 2.0, "mode": "pulse", "note": "n"}),
    ("bad choice", "water", {"seconds": 2, "mode": "flood"}, [],
     "argument 'mode' must be one of 'pulse', 'steady'"),
    ("null for string", "water", {"seconds": 2, "note": None}, [],
     "argument 'note': expected string, got null"),
    ("map", "water", {"seconds": 2, "tags": {"a": [1, None]}}, [],
     {"seconds": 2.0, "mode": "steady", "tags": {"a": [1, None]}}),
    ("map with a non-text key", "water", {"seconds": 2, "tags": {1: 2}}, [],
     "argument 'tags': expected map with string keys"),
    ("list for map", "water", {"seconds": 2, "tags": [1]}, [],
     "argument 'tags': expected map, got list"),
    ("below a float minimum", "water", {"seconds": 0.25}, [],
     "argument 'seconds' is below its minimum 0.5"),
    ("nan", "water", {"seconds": float("nan")}, [],
     "argument 'seconds' is below its minimum 0.5"),
)


def tools_cases():
    out = {}
    for case, doc, _ in TOOL_ERRORS:
        out["tools error/" + case] = error_of(toolconf.check_tools, doc, OPS, BUILTIN)
    tools = toolconf.check_tools(GOOD_TOOLS, OPS, BUILTIN)
    out["tools normalized"] = tools
    by_name = dict([(t["name"], t["parameters"]) for t in tools])
    for case, name, args, positional, _ in ARGS:
        try:
            got = toolconf.check_args(by_name[name], args, positional)
        except toolconf.ArgumentError as e:
            got = str(e)
        out["args/" + case] = got
        if type(got) is dict:  # ints and floats stay distinct: 1 is not 1.0
            out["args types/" + case] = sorted([[key, toolconf.value_type(got[key])]
                                                for key in got])
    try:
        unknown = toolconf.type_number("integer")
    except ValueError:
        unknown = "ValueError"
    out["types"] = [list(toolconf.TYPES), [toolconf.type_number(t) for t in toolconf.TYPES],
                    unknown]
    return out


# ------------------------------------------------------------------ files


def write(path, data):
    with open(path, "wb") as f:
        f.write(data)


def read(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode()
    except OSError:
        return None


def settings_file(scratch, name):
    os.mkdir(scratch + "/" + name)
    path = scratch + "/" + name + "/settings.json"
    board = BOARDS["esp32"]
    return path, configfile.ConfigFile(path, lambda values: settings.check(values, board))


def outcome(fn):
    """["ok", value] or ["error", message] of fn()."""
    try:
        return ["ok", fn()]
    except ConfigError as e:
        return ["error", str(e), e.where, e.why]


def parser_error(message):
    """The JSON parser's own words differ between interpreters: "<file>: not valid JSON: ...".
    MicroPython's parser is lenient (it skips a missing or extra comma), so the cases that
    use it are ones both parsers refuse."""
    prefix = "settings.json: not valid JSON: "
    if message.startswith(prefix) and "the file is" not in message:
        return prefix + "..."
    return message


def file_cases(scratch):
    out = {}
    path, config = settings_file(scratch, "missing")
    out["file missing"] = [config.changed(), outcome(config.load), config.changed(),
                           outcome(config.load_good), os.listdir(scratch + "/missing")]

    path, config = settings_file(scratch, "fallback")
    steps = []
    write(path, b'{"agent.controller": "hub:7480", "log.level": "debug"}')
    steps.append(config.changed())
    steps.append(config.load()["log.level"])
    steps.append([config.changed(), read(path + ".good") == read(path)])
    write(path, b'{"agent.controller": "hub:7480", "log.level": debug}')
    steps.append(config.changed())
    steps.append(parser_error(error_of(config.load)))
    steps.append([config.changed(), config.load_good()["log.level"]])
    write(path, b'{"agent.controller": "hub:7480", "log.level": "loud"}')
    steps.append([config.changed(), error_of(config.load), config.changed()])
    steps.append(config.load_good()["agent.controller"])
    write(path, b'{"log.level": "error"}')
    steps.append([config.changed(), config.load()["log.level"],
                  json.loads(read(path + ".good"))])
    os.remove(path)
    steps.append([config.changed(), error_of(config.load), config.changed(),
                  config.load_good()["log.level"]])
    out["file last good"] = steps

    path, config = settings_file(scratch, "changes")
    write(path, b'{"log.level": "debug"}')
    config.load()
    write(path, b'{"log.level": "debug"}')  # rewritten, same bytes
    same = config.changed()
    write(path, b'{"log.level": "error"}')  # same size, other bytes
    other = config.changed()
    write(path, b'\xef\xbb\xbf{"log.level": "error"}')  # what Notepad writes: a BOM
    bom = config.load()["log.level"]
    write(path, b'{"log.level": "error"}' + b" " * 300)  # longer than one chunk
    out["file changed"] = [same, other, bom, config.changed(), config.load()["log.level"],
                           config.changed()]

    path, config = settings_file(scratch, "bad")
    rows = []
    for data in (b"", b"  \n", b"\xff\xfe{}", b"[1, 2]", b'{"log.level": "info"',
                 b"{'log.level': 'info'}", b'{"log.level": "info"}}'):
        write(path, data)
        rows.append(parser_error(error_of(config.load)))
    write(path, b'{"log.level": "info"}' + b" " * 100)
    rows.append(error_of(configfile.ConfigFile(path, config.check, max_bytes=64).load))
    write(path + ".good", b'{"agent.mode": "dail"}')
    rows.append(error_of(config.load_good))
    out["file bad"] = rows

    tools_path = scratch + "/tools.json"
    tools = configfile.ConfigFile(tools_path, lambda doc: toolconf.check_tools(doc, OPS, BUILTIN))
    write(tools_path, b'{"tools": [{"name": "x", "bind": {"op": "pin_wrte"}}]}')
    out["file tools"] = [error_of(tools.load), outcome(tools.load_good)[:2]]

    out["file save"] = save_cases(scratch)
    return out


class FailingOs:
    """The os module, with rename failing: a power cut just before the rename."""

    def __init__(self, real):
        self.real = real
        self.renames = 0
        self.fail = False

    def __getattr__(self, name):
        return getattr(self.real, name)

    def rename(self, old, new):
        self.renames += 1
        if self.fail:
            raise OSError(28)
        self.real.rename(old, new)


class HalfFile:
    """A file open for writing that stops half way: the flash is full."""

    def __init__(self, path, mode):
        self.f = open(path, mode)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()

    def write(self, data):
        self.f.write(data[:len(data) // 2])
        raise OSError(28)


def storage_error(fn, *args):
    try:
        fn(*args)
    except OSError as e:
        return ["OSError", e.args[0]]
    return "no error"


def save_cases(scratch):
    path, config = settings_file(scratch, "save")
    value = {"log.level": "debug", "agent.controller": "hub:7480", "calls.queue": 3}
    config.save(value)
    steps = [read(path), read(path + ".good") == read(path), config.changed(),
             sorted(os.listdir(scratch + "/save")), config.load() == settings.check(
                 value, BOARDS["esp32"])]
    old = read(path)
    fake = configfile.os = FailingOs(os)
    try:
        fake.fail = False
        config.load()  # the good copy holds the same bytes: not written again
        steps.append(fake.renames)
        fake.fail = True
        steps.append(storage_error(config.save, {"log.level": "error"}))
        steps.append([read(path) == old, sorted(os.listdir(scratch + "/save"))])
        fake.fail = False
        configfile.open = HalfFile
        steps.append(storage_error(config.save, {"log.level": "error"}))
        del configfile.open
        steps.append([read(path) == old, sorted(os.listdir(scratch + "/save")),
                      config.changed()])
    finally:
        configfile.os = os
    write(path + ".tmp", b'{"log.lev')  # what a power cut in the middle of a save leaves
    steps.append([config.load()["calls.queue"], config.changed()])
    config.save({"log.level": "warning"})
    steps.append([sorted(os.listdir(scratch + "/save")), config.load()["log.level"]])
    config.save({"tools": [{"name": "a", "parameters": [{"name": "p", "choices": [1, 2]}]}]})
    steps.append(read(path))
    return steps


def main(lib, boards_dir, scratch):
    load_boards(boards_dir)
    for group in (settings_cases(), tools_cases(), file_cases(scratch)):
        for key in sorted(group):
            print(json.dumps({key: group[key]}))


if __name__ == "__main__":
    main(*sys.argv[1:4])
