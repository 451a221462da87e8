"""The raw stream kind a script feeds or drains: StreamScript_NAME and ctx.emit(), or a
controller's StreamOpen{raw, in or both, source NAME} and ctx.receive()."""
from jotunheim import port
from jotunheim.stream_core import (DATA_LOSS, INVALID_ARGUMENT, NOT_FOUND, OK, OUT, RAW,
                                   UNAVAILABLE, UNIMPLEMENTED, Refused, Stream, idle, manager)


class Script:
    """A raw stream a script produces: StreamScript_NAME, or StreamOpen{kind: raw,
    source: NAME} with the script's arguments in params; ctx.emit(data) sends."""

    def __init__(self, agent, name, params):
        try:
            loki = port.module("loki").scripts(agent)
        except ImportError:
            raise Refused(UNIMPLEMENTED, "this firmware runs no scripts")
        script = loki.scripts.get(name)
        if script is None or not script.meta.get("streams"):
            raise Refused(NOT_FOUND, "no stream script %r (register one with streams set)"
                          % name)
        from jotunheim import args as args_mod
        params = dict(params)
        for key in ("chunk", "codec"):   # the stream's, not the script's
            params.pop(key, None)
        try:
            self.args = args_mod.check_args(script.meta["parameters"], params, None)
        except args_mod.ArgumentError as e:
            raise Refused(INVALID_ARGUMENT, "StreamScript_%s: %s" % (name, e))
        self.loki = loki
        self.script = script

    async def run(self, stream):
        result = await self.loki.run(self.script, self.args, stream)
        # a consumer's outcome goes back in its StreamClose message
        return "" if result is None else str(result)

    def input_done(self, stream, total_bytes):
        """The controller closed the stream it sends the script: ctx.receive() returns
        None after the last chunk; the stream ends when the script returns."""
        if total_bytes != stream.received:
            return stream.end(DATA_LOSS, "the controller sent %d bytes, %d arrived" % (
                total_bytes, stream.received))
        stream.eof = True
        stream._wake.set()


def tool_run(agent, name, args):
    """StreamScript_NAME: open a raw stream to the calling controller that runs the
    script; the call's value is the stream id once the controller accepted it."""
    session = agent.calls.caller()
    if session is None:
        raise OSError("no controller to stream to")
    return _open(agent, session, name, args)


async def _open(agent, session, name, args):
    """The device's StreamOpen to the controller; the stream runs once it is acked."""
    try:
        job = Script(agent, name, args)
    except Refused as e:   # the call fails INVALID_ARGUMENT, saying why
        streams = getattr(agent, "streams", None)
        if streams is None or not (streams.open or streams.opening):
            idle(agent)    # no stream runs: the stream code goes until the next one
        raise ValueError(str(e))
    streams = manager(agent)
    streams.next_id += 2
    stream = Stream(streams, session, streams.next_id, RAW, OUT, name, {})
    stream.job = job
    streams.request_id = streams.request_id % 0xFFFF + 1
    request_id = streams.request_id
    stream.ack = None
    streams.opening[request_id] = stream
    streams.open[(id(session), stream.id)] = stream   # credit may follow the Ack at once
    try:
        session.send("StreamOpen", {
            "request_id": request_id, "stream_id": stream.id, "kind": RAW,
            "direction": OUT, "content_type": "application/octet-stream",
            "params": args, "source": name, "credit": 0})
        while stream.ack is None and session.ready:
            stream._wake.clear()
            await stream._wake.wait()
    finally:
        streams.opening.pop(request_id, None)
    if stream.ack is None or stream.ack["status"] != OK:
        stream.end(UNAVAILABLE, "", tell=False)
        raise OSError("the controller refused stream %d: %s" % (
            stream.id, stream.ack["message"] if stream.ack else "the link was lost"))
    streams.start(stream)
    return stream.id
