"""User tools: the tools.json format, its check against the device's operations, and the
check of each call's arguments."""
# How this works: check_tools() runs once per load of tools.json. It checks every tool, its
# parameters and what it binds to, and returns the tools in one normalized shape (absent
# optional keys stay absent), so that check_args(), which runs on every call, does no
# more than a few dict lookups per parameter. A float parameter's bounds, default and
# choices are stored as floats, and an int argument for it becomes a float.
from jotunheim.args import (TYPES, ArgumentError, check_args, fits as _fits, misfit as _misfit,  # noqa: F401,E501
                            type_number, value_type)
from jotunheim.checks import chars_ok, json_type, show, suggest
from jotunheim.configfile import ConfigError

MAX_TOOLS = 64
MAX_PARAMETERS = 16
MAX_CHOICES = 32
_SOURCE = "tools.json"
_TOOL_KEYS = ("name", "description", "parameters", "returns", "bind")
_PARAM_KEYS = ("name", "type", "required", "description", "default", "minimum", "maximum",
               "choices")
_RETURNS_KEYS = ("type", "description")
_BIND_KEYS = ("op", "args", "module", "function")
_SCRIPT_PREFIXES = ("Script_", "StreamScript_")


def _compatible(given, wanted):
    """Whether a value of type given is accepted where type wanted is."""
    return given == wanted or wanted == "any" or (given == "int" and wanted == "float")


# ------------------------------------------------------------------ tools.json


def check_tools(doc, ops, reserved=()):
    """The normalized tools of a parsed tools.json. ops: {name: {"params": [(name, type,
    required)], "returns": type}}; reserved: names taken by builtin tools."""
    _object(doc, "")
    _only(doc, ("tools",), "")
    if "tools" not in doc:
        _fail("tools", "missing: the file holds {\"tools\": [...]}")
    tools = doc["tools"]
    _list(tools, "tools", MAX_TOOLS)
    result = []
    for i in range(len(tools)):
        where = "tools[%d]" % i
        tool = _tool(tools[i], where, ops, reserved)
        for j in range(i):
            if result[j]["name"] == tool["name"]:
                _fail(where + ".name", "duplicate tool name %r (also tools[%d])"
                      % (tool["name"], j))
        result.append(tool)
    return result


def _fail(where, why):
    raise ConfigError(_SOURCE, where, why)


def _object(value, where):
    if type(value) is not dict:
        _fail(where, "expected an object, got " + show(value))


def _list(value, where, most):
    if type(value) is not list:
        _fail(where, "expected an array, got " + show(value))
    if len(value) > most:
        _fail(where, "too many (%d, at most %d)" % (len(value), most))


def _not_known(what, word, known):
    near = suggest(word, known)
    return "unknown %s (%sknown: %s)" % (what, "did you mean %r? " % near if near else "",
                                         ", ".join(known))


def _only(obj, known, where):
    unknown = [str(key) for key in obj if key not in known]
    if unknown:
        key = min(unknown)
        _fail(where + "." + key if where else key, _not_known("key", key, known))


def _text(obj, key, where, most):
    value = obj.get(key, "")
    if type(value) is not str:
        _fail(where + "." + key, "expected a string, got " + json_type(value))
    if len(value) > most:
        _fail(where + "." + key, "too long (%d characters, at most %d)" % (len(value), most))
    return value


def _name(obj, key, where, most):
    """An identifier: letters, digits and '_', not starting with a digit."""
    where = where + "." + key
    if key not in obj:
        _fail(where, "missing")
    value = obj[key]
    if type(value) is not str:
        _fail(where, "expected a string, got " + json_type(value))
    if not 1 <= len(value) <= most:
        _fail(where, "must be 1 to %d characters, got %d" % (most, len(value)))
    if not _identifier(value):
        _fail(where, "%s is not a name: use letters, digits and '_', not starting with a "
              "digit" % show(value))
    return value


def _type(obj, key, where, absent):
    if key not in obj and absent is None:
        _fail(where + "." + key, "missing (known: %s)" % ", ".join(TYPES))
    value = obj.get(key, absent)
    if type(value) is not str or value not in TYPES:
        _fail(where + "." + key, _not_known("type " + show(value), value, TYPES))
    return value


def _tool(tool, where, ops, reserved):
    _object(tool, where)
    _only(tool, _TOOL_KEYS, where)
    name = _name(tool, "name", where, 48)
    if name in reserved:
        _fail(where + ".name", "%r is the name of a builtin tool" % name)
    for prefix in _SCRIPT_PREFIXES:
        if name.startswith(prefix):
            _fail(where + ".name", "names starting with %r belong to scripts" % prefix)
    params = tool.get("parameters", [])
    _list(params, where + ".parameters", MAX_PARAMETERS)
    checked = []
    for j in range(len(params)):
        at = "%s.parameters[%d]" % (where, j)
        param = _param(params[j], at)
        for other in checked:
            if other["name"] == param["name"]:
                _fail(at + ".name", "duplicate parameter name %r" % param["name"])
        checked.append(param)
    if "bind" not in tool:
        _fail(where + ".bind", "missing: bind the tool to {\"op\": ...} or {\"module\": ..., "
              "\"function\": ...}")
    bind, op_returns = _bind(tool["bind"], where, checked, ops)
    returns = tool.get("returns", {})
    _object(returns, where + ".returns")
    _only(returns, _RETURNS_KEYS, where + ".returns")
    kind = _type(returns, "type", where + ".returns", op_returns or "any")
    if op_returns and not (op_returns == "any" or _compatible(op_returns, kind)):
        _fail(where + ".returns.type", "operation %r returns %s, not %s"
              % (bind["op"], op_returns, kind))
    return {"name": name, "description": _text(tool, "description", where, 256),
            "parameters": checked, "bind": bind,
            "returns": {"type": kind, "description": _text(returns, "description",
                                                           where + ".returns", 256)}}


def _param(param, where):
    _object(param, where)
    _only(param, _PARAM_KEYS, where)
    kind = _type(param, "type", where, None)
    out = {"name": _name(param, "name", where, 48), "type": kind,
           "description": _text(param, "description", where, 256)}
    for key in ("minimum", "maximum"):
        if key in param:
            if kind != "int" and kind != "float":
                _fail(where + "." + key, "only int and float parameters have bounds")
            out[key] = _conform(out, param[key], where + "." + key)
    if "choices" in param:
        choices = param["choices"]
        _list(choices, where + ".choices", MAX_CHOICES)
        if not choices:
            _fail(where + ".choices", "must not be empty")
        out["choices"] = [_conform(out, choices[k], "%s.choices[%d]" % (where, k))
                          for k in range(len(choices))]
    if "default" in param:
        out["default"] = _conform(out, param["default"], where + ".default")
    required = param.get("required", "default" not in out)
    if type(required) is not bool:
        _fail(where + ".required", "expected true or false, got " + show(required))
    if required and "default" in out:
        _fail(where + ".required", "a required parameter cannot have a default")
    out["required"] = required
    return out


def _conform(param, value, where):
    """value checked against the parameter as declared so far; a float type's as a float."""
    why = _misfit(param, value)
    if why:
        _fail(where, why[2:] if why[0] == ":" else show(value) + why)
    return float(value) if param["type"] == "float" else value


def _bind(bind, tool_where, params, ops):
    """The normalized binding and, for an operation, its return type."""
    where = tool_where + ".bind"
    _object(bind, where)
    _only(bind, _BIND_KEYS, where)
    by_module = "module" in bind or "function" in bind
    if "op" in bind and by_module:
        _fail(where, "give either \"op\" or \"module\" and \"function\", not both")
    if "op" not in bind and not by_module:
        _fail(where, "expected {\"op\": ...} or {\"module\": ..., \"function\": ...}")
    if by_module:
        if "args" in bind:
            _fail(where + ".args", "only an operation binding has fixed args")
        module = bind.get("module")
        if type(module) is not str or len(module) > 64 or \
                [part for part in module.split(".") if not _identifier(part)]:
            _fail(where + ".module", "expected a module name like 'sensors' or 'app.pump', "
                  "got " + show(module))
        return {"module": module, "function": _name(bind, "function", where, 48)}, None
    op = bind["op"]
    if type(op) is not str or op not in ops:
        known = sorted(ops)
        _fail(where + ".op", _not_known("operation " + show(op), op, known))
    spec = ops[op]
    names = [p[0] for p in spec["params"]]
    args = bind.get("args", {})
    _object(args, where + ".args")
    fixed = {}
    for key in sorted([str(k) for k in args]):
        at = where + ".args." + key
        if key not in names:
            _fail(at, "operation %r has no parameter %r (its parameters: %s)"
                  % (op, key, ", ".join(names)))
        kind = spec["params"][names.index(key)][1]
        if not _fits(kind, args[key]):
            _fail(at, "expected %s, got %s" % (kind, value_type(args[key])))
        fixed[key] = float(args[key]) if kind == "float" else args[key]
    for j in range(len(params)):
        param, at = params[j], "%s.parameters[%d]" % (tool_where, j)
        if param["name"] not in names:
            _fail(at + ".name", "operation %r has no parameter %r (its parameters: %s)"
                  % (op, param["name"], ", ".join(names)))
        if param["name"] in fixed:
            _fail(at + ".name", "%r is also fixed in bind.args" % param["name"])
        op_param = spec["params"][names.index(param["name"])]
        if not _compatible(param["type"], op_param[1]):
            _fail(at + ".type", "operation %r takes %s for %r, not %s"
                  % (op, op_param[1], param["name"], param["type"]))
        if op_param[2] and not param["required"] and "default" not in param:
            _fail(at + ".required", "operation %r needs %r: make it required or give it a "
                  "default" % (op, param["name"]))
    declared = [p["name"] for p in params]
    for name, _, required in spec["params"]:
        if required and name not in fixed and name not in declared:
            _fail(where, "operation %r needs %r: declare it as a parameter or fix it in "
                  "args" % (op, name))
    return {"op": op, "args": fixed}, spec.get("returns", "any")


def _identifier(text):
    return bool(text) and chars_ok(text, "_") and not "0" <= text[0] <= "9"
