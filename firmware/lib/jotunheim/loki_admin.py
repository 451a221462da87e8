"""Registering, listing and removing scripts: Loki's requests, loaded for one and dropped."""
# How this works: register() checks everything before it writes anything (the name, the
# language, the size; then that the source loads and defines run, first of the costly
# checks, while no module loaded for the others splits the free heap; the parameters as
# jotunheim.toolconf checks those of tools.json, the limits), then writes the source and,
# last, the registration (jotunheim.loki_scripts says why that order). Each answer is an Ack (a
# ScriptListResult for the list) with the status SPEC 1.13 gives.
import hashlib
import os

from jotunheim import loki_scripts, port
from jotunheim.args import TYPES
from jotunheim.checks import chars_ok, dumps
from jotunheim.configfile import ConfigError

OK = 0
INVALID_ARGUMENT = 3
NOT_FOUND = 5
ALREADY_EXISTS = 6
RESOURCE_EXHAUSTED = 8
UNIMPLEMENTED = 12
MAX_NAME = 32
MAX_DESCRIPTION = 256
MAX_PARAMETERS = 16
MAX_TIMEOUT_MS = 3600000
MAX_CONCURRENCY = 8
FLASH_MARGIN = 4096    # left free on the flash after a registration
_LIMITS = ("timeout_ms", "memory_bytes", "storage_bytes", "concurrency", "instructions")


class Refused(Exception):
    """A request that cannot be served: its status and why."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


def _ack(fields, status=OK, message=""):
    return {"request_id": fields["request_id"], "status": status, "message": message}


def register(loki, fields):
    try:
        script, namespace = _checked(loki, fields)
    except Refused as e:
        return _ack(fields, e.status, "script %s: %s" % (fields["name"], e))
    name, language = script["name"], script["language"]
    old = loki.scripts.get(name)
    source = fields["source"].encode()
    script["sha256"] = hashlib.sha256(source).digest().hex()
    loki_scripts.make_dirs(loki.dir)
    loki_scripts.write_atomic(loki.path(name, loki_scripts.SOURCE_SUFFIX[language]), source)
    loki_scripts.write_atomic(loki.path(name, ".json"), (dumps(script) + "\n").encode())
    if old is not None and old.language != language:
        loki_scripts.remove(loki.path(name, loki_scripts.SOURCE_SUFFIX[old.language]))
    added = loki_scripts.Script(script)
    added.namespace = namespace
    loki.scripts[name] = added
    loki.install_tools()
    loki.agent.capabilities_changed("script %s %s" % (name, "replaced" if old else
                                                        "registered"))
    return _ack(fields)


def _checked(loki, fields):
    """The registration to save and, for Python, the loaded namespace; Refused if not."""
    name = fields["name"]
    if not 1 <= len(name) <= MAX_NAME or not chars_ok(name, "_") or "0" <= name[0] <= "9":
        raise Refused(INVALID_ARGUMENT, "the name must be 1 to %d letters, digits and '_', "
                      "not starting with a digit" % MAX_NAME)
    language = fields["language"]
    _language(loki, language)
    if fields["streams"] and (language != "python"
                              or not loki.agent.features.get("streaming")):
        raise Refused(UNIMPLEMENTED, "stream scripts (StreamScript_) need python and a "
                      "firmware with streams")
    size = len(fields["source"].encode())
    if size > loki.max_source:
        raise Refused(RESOURCE_EXHAUSTED, "the source has %d bytes; this device takes at "
                      "most %d" % (size, loki.max_source))
    old = loki.scripts.get(name)
    if old is not None and not fields["replace"]:
        raise Refused(ALREADY_EXISTS, "already registered (set replace to replace it)")
    if old is None and len(loki.scripts) >= loki.max_scripts:
        raise Refused(RESOURCE_EXHAUSTED, "this device holds at most %d scripts"
                      % loki.max_scripts)
    if len(fields["description"]) > MAX_DESCRIPTION:
        raise Refused(INVALID_ARGUMENT, "the description is longer than %d characters"
                      % MAX_DESCRIPTION)
    namespace = None
    if language == "python":   # first: the parser wants a piece of heap others may split
        namespace = _load_python(name, fields["source"], loki.agent)
    script = {"name": name, "language": language, "description": fields["description"],
              "parameters": _parameters(fields["parameters"]),
              "returns": _returns(fields.get("returns")),
              "limits": _limits(loki, fields.get("limits") or {}, language)}
    if fields["streams"]:
        script["streams"] = True
    total, free = port.storage()
    if total and free < size + FLASH_MARGIN:
        raise Refused(RESOURCE_EXHAUSTED, "the flash has %d bytes free" % free)
    if language == "lua":
        _load_lua(loki, name, fields["source"], script["limits"])
    return script, namespace


def _language(loki, language):
    offered = loki.agent.profile().get("script_languages") or []
    if language not in offered:
        raise Refused(UNIMPLEMENTED, "this device runs scripts in %s, not %r" % (
            " and ".join(offered) or "no language", language))
    if language not in loki_scripts.SOURCE_SUFFIX:
        raise Refused(UNIMPLEMENTED, "this firmware has no %r scripts" % language)
    if language == "lua":
        try:
            port.module("luascript")
        except ImportError:
            raise Refused(UNIMPLEMENTED, "lua scripts need the lupa module, which this "
                          "runtime lacks (lua runs on CPython: Linux boards, the simulator)")


def _parameters(given):
    """The parameters in the normalized form of toolconf (type names, not numbers)."""
    if len(given) > MAX_PARAMETERS:
        raise Refused(INVALID_ARGUMENT, "too many parameters (%d, at most %d)"
                      % (len(given), MAX_PARAMETERS))
    params = []
    if not given:
        return params
    toolconf = port.module("toolconf")
    for i in range(len(given)):
        where = "parameters[%d]" % i
        decl = _declared(given[i], where)
        try:
            param = toolconf._param(decl, where)
        except ConfigError as e:
            raise Refused(INVALID_ARGUMENT, "%s: %s" % (e.where, e.why))
        if param["name"] == "ctx":
            raise Refused(INVALID_ARGUMENT, where + ".name: 'ctx' is the script's first "
                          "argument, not a parameter")
        for other in params:
            if other["name"] == param["name"]:
                raise Refused(INVALID_ARGUMENT, "%s.name: duplicate parameter name %r"
                              % (where, param["name"]))
        params.append(param)
    return params


def _declared(p, where):
    """A Parameter message as a tools.json parameter declaration."""
    decl = {"name": p["name"], "type": _type_name(p["type"], where + ".type"),
            "description": p["description"], "required": p["required"]}
    for field, key in (("default_value", "default"), ("minimum", "minimum"),
                       ("maximum", "maximum")):
        if field in p:
            decl[key] = p[field]
    if p["choices"]:
        decl["choices"] = p["choices"]
    return decl


def _type_name(number, where):
    if not 0 <= number < len(TYPES):
        raise Refused(INVALID_ARGUMENT, "%s: unknown value type %d" % (where, number))
    return TYPES[number]


def _returns(returns):
    if not returns:
        return {"type": "any", "description": ""}
    if len(returns["description"]) > MAX_DESCRIPTION:
        raise Refused(INVALID_ARGUMENT, "returns.description is longer than %d characters"
                      % MAX_DESCRIPTION)
    return {"type": _type_name(returns["type"], "returns.type"),
            "description": returns["description"]}


def _limits(loki, given, language):
    limits = {}
    for key in _LIMITS:
        if given.get(key):
            limits[key] = given[key]
    if limits.get("instructions") and language != "lua":
        raise Refused(INVALID_ARGUMENT, "limits.instructions applies to lua scripts only")
    if limits.get("timeout_ms", 0) > MAX_TIMEOUT_MS:
        raise Refused(INVALID_ARGUMENT, "limits.timeout_ms is at most %d" % MAX_TIMEOUT_MS)
    if limits.get("concurrency", 0) > MAX_CONCURRENCY:
        raise Refused(INVALID_ARGUMENT, "limits.concurrency is at most %d" % MAX_CONCURRENCY)
    heap = loki.agent.board.get("heap_bytes", 0)
    if language == "python" and heap and limits.get("memory_bytes", 0) > heap:
        raise Refused(RESOURCE_EXHAUSTED, "limits.memory_bytes is more than this board's "
                      "heap (%d bytes)" % heap)
    return limits


def _load_python(name, source, agent):
    try:
        namespace = loki_scripts.load_python(name, source, agent)
    except SyntaxError as e:
        line = getattr(e, "lineno", None)
        raise Refused(INVALID_ARGUMENT, "does not compile: %s%s" % (
            "line %d: " % line if line else "", e.args[0] if e.args else e))
    except MemoryError as e:
        raise Refused(RESOURCE_EXHAUSTED, "not enough free heap to load it" + (
            " (%s)" % e if e.args else ""))
    except Exception as e:  # noqa: BLE001 - its top level failed: say how
        raise Refused(INVALID_ARGUMENT, "its top level failed: %s: %s" % (
            type(e).__name__, e))
    if not callable(namespace.get("run")):
        raise Refused(INVALID_ARGUMENT, "it defines no function run(ctx, **params)")
    return namespace


def _load_lua(loki, name, source, limits):
    try:
        port.module("luascript").check(name, source, limits)
    except MemoryError as e:
        raise Refused(RESOURCE_EXHAUSTED, str(e))
    except ValueError as e:
        raise Refused(INVALID_ARGUMENT, str(e))


def unregister(loki, fields):
    name = fields["name"]
    script = loki.scripts.get(name)
    if script is None:
        return _ack(fields, NOT_FOUND, "no script %s" % name)
    loki_scripts.remove(loki.path(name, ".json"))   # first: without it nothing loads
    loki_scripts.remove(loki.path(name, loki_scripts.SOURCE_SUFFIX[script.language]))
    loki.ensure_children().store(script).clear()
    del loki.scripts[name]
    loki.install_tools()
    loki.agent.capabilities_changed("script %s unregistered" % name)
    return _ack(fields)


def listing(loki, fields):
    scripts = []
    for name in sorted(loki.scripts):
        script = loki.scripts[name]
        meta = script.meta
        scripts.append({"name": name, "language": script.language,
                        "description": meta["description"], "size": _size(loki, script),
                        "sha256": bytes.fromhex(meta["sha256"]), "tools": ["Script_" + name] + (
                            ["StreamScript_" + name] if meta.get("streams") else []),
                        "limits": meta["limits"]})
    return {"request_id": fields["request_id"], "status": OK, "scripts": scripts}


def _size(loki, script):
    return os.stat(loki.path(script.name, loki_scripts.SOURCE_SUFFIX[script.language]))[6]
