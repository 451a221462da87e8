"""Loki: user scripts registered at run time, each a tool Script_NAME (protocol/SPEC.md 1.13).

The agent calls install() at start. This module is all that a device without scripts
keeps in RAM: the registry (jotunheim.loki_scripts) is loaded at boot when scripts are
registered, else by the first script request."""
import os

from jotunheim import port
from jotunheim.port import const

_REQUESTS = const(("ScriptRegister", "ScriptUnregister", "ScriptList", "ChildrenStatusRequest"))


def install(agent):
    """Serve Loki's requests; put the scripts registered on the flash in force as tools."""
    for request in _REQUESTS:
        agent.handlers[request] = _handler(agent, request)
    try:
        registered = [n for n in os.listdir(agent.root + "scripts") if n.endswith(".json")]
    except OSError:
        registered = None  # no script was ever registered
    if registered:
        scripts(agent)


def scripts(agent):
    """The agent's script registry (a jotunheim.loki_scripts.Loki), loaded on first use."""
    loki = getattr(agent, "loki", None)
    if loki is None:
        loki = agent.loki = port.module("loki_scripts").Loki(agent)
        loki.load()
    return loki


def _handler(agent, request):
    return lambda session, fields: scripts(agent).serve(session, request, fields)


def languages(agent):
    """The script languages this device runs: its profile's, Lua only where lupa is."""
    runnable = []
    for language in agent.profile().get("script_languages") or []:
        if language == "lua":
            try:
                port.module("luascript")
            except ImportError:
                continue
        if language in ("python", "lua"):
            runnable.append(language)
    return runnable
