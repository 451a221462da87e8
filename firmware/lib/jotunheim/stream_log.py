"""The log stream kind: the device's log lines as they are written."""
import asyncio

from jotunheim import port
from jotunheim.stream_core import INVALID_ARGUMENT, Refused, ticks_us

LOG_BUFFER = 2048       # bytes of log lines a log stream keeps while it waits for credit
LOG_CHUNK = 512         # bytes per message at most: small pieces fit a fragmented heap


class Log:
    """The device's log lines ("TICKS_MS LEVEL MESSAGE\\n", UTF-8) from the moment the
    stream opens, at params["level"] and above; lines beyond LOG_BUFFER waiting for
    credit are dropped, oldest first, and counted in a line of their own."""

    LEVELS = ("debug", "info", "warning", "error")

    def __init__(self, params):
        level = params.get("level", "info")
        if level not in self.LEVELS:
            raise Refused(INVALID_ARGUMENT, "level must be one of %s" % ", ".join(
                self.LEVELS))
        self.least = self.LEVELS.index(level)
        self.lines = []
        self.size = 0
        self.dropped = 0
        self.event = asyncio.Event()

    def add(self, message, level):
        if level in self.LEVELS and self.LEVELS.index(level) < self.least:
            return
        line = "%d %s %s\n" % (port.ticks_ms(), level, message)
        self.lines.append(line)
        self.size += len(line)
        while self.size > LOG_BUFFER and len(self.lines) > 1:
            self.size -= len(self.lines.pop(0))
            self.dropped += 1
        self.event.set()

    async def run(self, stream):
        while True:
            while not self.lines:
                self.event.clear()
                await self.event.wait()
            parts = []
            size = 0
            if self.dropped:
                parts.append("%d %s %d log lines dropped\n" % (port.ticks_ms(), "warning",
                                                               self.dropped))
                size = len(parts[0])
                self.dropped = 0
            most = min(stream.max_chunk, LOG_CHUNK)
            while self.lines and size + len(self.lines[0]) <= most:
                line = self.lines.pop(0)
                self.size -= len(line)
                size += len(line)
                parts.append(line)
            if not parts:  # one line longer than a chunk: cut it
                line = self.lines.pop(0)
                self.size -= len(line)
                parts.append(line[:most - 1] + "\n")
            await stream.send("".join(parts), ticks_us())
