"""The capability document (protocol/SPEC.md 1.9) of a tool registry, encoded. Loaded
only while a new revision's document is built (jotunheim.caps keeps the bytes)."""
import gc
import sys

import protocol
from jotunheim import args
from jotunheim.caps import device_type


def encode(registry):
    """The document of the registry's revision, without request id and live fields.

    Encoded a field (a tool) at a time, in field order: concatenated protobuf messages
    merge into one, the same as encoding the whole document at once, while only one
    part's dict is in RAM (the hardware section and a dozen tools would otherwise all be
    at the peak: a small board's heap ran out building it)."""
    agent = registry.agent
    parts = [_part(head(registry))]
    for i in sorted(registry.by_id):
        parts.append(_part({"tools": [declaration(registry.by_id[i])]}))
    parts.append(_part({"hardware": agent.profile()["hardware"]}))
    parts.append(_part(tail(registry)))
    data = b"".join(parts)
    parts = None
    gc.collect()
    return data


def _part(fields):
    data = protocol.encode("Capabilities", fields)
    gc.collect()
    return data


def head(registry):
    """Fields 2 and 3: revision and device."""
    agent = registry.agent
    board, settings = agent.board, agent.settings
    return {
        "revision": registry.revision,
        "device": {"id": settings["device.id"], "name": settings["device.name"],
                   "type": device_type(board["type"]), "firmware_version": agent.version,
                   "protocol_version": protocol.PROTOCOL_VERSION, "board": board["name"]},
    }


def tail(registry):
    """Fields 6 and 7: resources and features."""
    agent = registry.agent
    board, settings = agent.board, agent.settings
    limits = board.get("limits") or {}
    return {
        "resources": {"max_memory": board.get("heap_bytes", 0),
                      "cpu_mhz": board.get("cpu_mhz", 0),
                      "max_concurrent_tools": settings["calls.concurrency"],
                      "max_frame": limits.get("max_frame", 4096)},
        "features": dict({"streaming": False, "compression": _compression(),
                          "script_languages": _script_languages(agent), "encryption": []},
                         **agent.features),
    }


def declaration(tool):
    """A Tool's declaration in the document."""
    params = []
    for p in tool.params:
        d = {"name": p["name"], "type": args.type_number(p["type"]),
             "required": p["required"], "description": p.get("description", "")}
        for key, field in (("default", "default_value"), ("minimum", "minimum"),
                           ("maximum", "maximum"), ("choices", "choices")):
            if key in p:
                d[field] = p[key]
        params.append(d)
    return {"id": tool.id, "name": tool.name, "kind": tool.kind,
            "description": tool.description, "parameters": params,
            "returns": {"type": args.type_number(tool.returns["type"]),
                        "description": tool.returns.get("description", "")}}


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
