"""Streams: data both ways on a session, under credit (protocol/SPEC.md 1.11).

The agent calls install() at start. This module is all a device keeps in RAM while no
stream is open: the handlers, the plugin registry and the features it declares. The work
(jotunheim.stream_core and a module per kind) is loaded by the first stream and dropped
when the last ends."""
from jotunheim import port

# name -> a module under jotunheim whose `plugin` is the factory, or a factory
PLUGINS = {"delta": "stream_delta"}
PLUGIN_KINDS = {}   # plugin name -> StreamKind number, for source and sink plugins
KIND_NAMES = ("", "raw", "sensor", "log", "file", "audio", "video")   # StreamKind 0-6
_agent = None


def register_plugin(name, factory, kind=0):
    """Add a plugin without touching the agent; factory(stream, params) makes its object
    for a stream that uses it.

    kind 0: a codec, chosen by a stream's params["codec"] = name; its object has
    encode(bytes) -> bytes. kind N (a StreamKind number: 5 audio, 6 video): a source or a
    sink, chosen by StreamOpen{kind: N, source: name}; its object has `async run(stream)`,
    which sends with `await stream.send(data)` or reads with `await stream.receive()`."""
    PLUGINS[name] = factory
    if kind:
        PLUGIN_KINDS[name] = kind
    if _agent is not None:
        _declare(_agent.features)


def _declare(features):
    kinds = ["raw", "sensor", "log", "file"]
    for kind in PLUGIN_KINDS.values():
        if KIND_NAMES[kind] not in kinds:
            kinds.append(KIND_NAMES[kind])
    features["streaming"] = True
    features["stream_kinds"] = kinds
    features["plugins"] = sorted(PLUGINS)


def install(agent):
    """Serve stream requests; declare the kinds and plugins in the capability document."""
    global _agent
    _agent = agent
    agent.ack_handler = agent.handlers.get("Ack")   # another add-on's, for other Acks
    for request in ("StreamOpen", "StreamData", "StreamCredit", "StreamClose", "Ack"):
        agent.handlers[request] = _handle
    agent.on_end.append(_handle)
    try:  # the owner's plugins: /lib/stream_plugins.py calls register_plugin()
        __import__("stream_plugins")
    except ImportError:
        pass
    _declare(agent.features)


def _handle(session, fields=None):
    """A stream message (or an Ack) from a session, or (no fields) the session's end.
    One function for all: each costs RAM for as long as the device runs."""
    streams = getattr(_agent, "streams", None)
    if streams is None:
        if fields is None:
            return None
        if "kind" not in fields and "message" in fields and "total_bytes" not in fields:
            other = _agent.ack_handler   # an Ack while no stream is open: not ours
            return other(session, fields) if other is not None else None
        streams = port.module("stream_core").manager(_agent)
    streams.serve(session, fields)
