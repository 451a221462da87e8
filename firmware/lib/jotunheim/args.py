"""The check of a call's arguments against a tool's parameters (runs on every call).

Kept apart from jotunheim.toolconf, which checks tools.json and is loaded only while it does."""

# The protocol's ValueType numbers are the indexes.
TYPES = ("any", "null", "bool", "int", "float", "string", "bytes", "list", "map")
_PYTHON_TYPES = ((bool, "bool"), (int, "int"), (float, "float"), (str, "string"),
                 (bytes, "bytes"), (bytearray, "bytes"), (list, "list"), (dict, "map"))


class ArgumentError(ValueError):
    """A call's arguments do not fit the tool's parameters."""


def type_number(name):
    """The protocol ValueType number of a type name ("int" -> 3); ValueError if unknown."""
    return TYPES.index(name)


def value_type(value):
    """The type name (of TYPES) of a value; a Python type's name when it has none."""
    if value is None:
        return "null"
    t = type(value)
    for python, name in _PYTHON_TYPES:
        if t is python:
            return name
    return t.__name__


def check_args(params, args, positional):
    """The complete arguments of a call (defaults filled in): args by name, positional in
    the order of params. Raises ArgumentError."""
    given = len(positional) if positional else 0
    if given > len(params):
        raise ArgumentError("too many positional arguments (%d given, %d parameters)"
                            % (given, len(params)))
    result = {}
    named = 0
    for i in range(len(params)):
        param = params[i]
        name = param["name"]
        if args and name in args:
            if i < given:
                raise ArgumentError("argument '%s' given by name and by position" % name)
            value = args[name]
            named += 1
        elif i < given:
            value = positional[i]
        elif "default" in param:
            result[name] = param["default"]
            continue
        elif param["required"]:
            _unknown(params, args)  # a misspelt name explains a missing argument best
            raise ArgumentError("missing argument '%s'" % name)
        else:
            continue
        why = misfit(param, value)
        if why:
            raise ArgumentError("argument '%s'%s" % (name, why))
        if param["type"] == "float" and type(value) is int:
            value = float(value)
        result[name] = value
    if args and named < len(args):
        _unknown(params, args)
    return result


def _unknown(params, args):
    """Raise ArgumentError for the first argument given by name that is no parameter."""
    if args:
        names = [p["name"] for p in params]
        unknown = [str(key) for key in args if key not in names]
        if unknown:
            name = min(unknown)
            from jotunheim.checks import suggest  # error paths only
            near = suggest(name, names)
            raise ArgumentError("unknown argument '%s'" % name + (
                " (did you mean '%s'?)" % near if near else ""))


def misfit(param, value):
    """Why value does not fit a normalized parameter (": ..." or " is ..."), or None."""
    kind = param["type"]
    if not fits(kind, value):
        if kind == "map" and type(value) is dict:
            return ": expected map with string keys"
        return ": expected %s, got %s" % (kind, value_type(value))
    low = param.get("minimum")
    if low is not None and not value >= low:
        return " is below its minimum %s" % low
    high = param.get("maximum")
    if high is not None and not value <= high:
        return " is above its maximum %s" % high
    choices = param.get("choices")
    if choices is not None:
        for choice in choices:
            if choice == value and (type(choice) is type(value) or kind == "float"):
                return None
        return " must be one of " + _listed(choices)
    return None


def _listed(choices):
    """The choices as an error message lists them. (Importing `show` in misfit would make
    the comprehension a closure over it, which would cost every call.)"""
    from jotunheim.checks import show
    return ", ".join([show(c) for c in choices])


def fits(kind, value):
    if kind == "any":
        return True
    got = value_type(value)
    if got == kind:
        if kind == "map":
            for key in value:
                if type(key) is not str:
                    return False
        return True
    return kind == "float" and got == "int"
