# Wi-Fi: join the configured network, with retries, before the agent connects.
#
# A board without the `network` module (a Linux board, the unix port without the
# simulator) or without wifi.ssid set is taken to be on the network already.
import asyncio

from jotunheim import port
from jotunheim.port import const

_POLL_MS = const(100)
_ERRNO = {103: "connection aborted", 104: "connection reset", 110: "timed out",
          111: "connection refused", 113: "no route to host"}


def split_address(text):
    """("host", port) of "host:port" (settings have checked the form)."""
    host, _, number = text.rpartition(":")
    return host, int(number)


def why(exc):
    """A short reason for a failed connection attempt."""
    if isinstance(exc, asyncio.TimeoutError):
        return "timed out"
    number = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
    return _ERRNO.get(number) or str(exc) or type(exc).__name__


def _station():
    try:
        import network
    except ImportError:
        return None
    return network.WLAN(network.STA_IF)


async def join(agent):
    """Return once the station is connected (at once if there is nothing to join)."""
    settings = agent.settings
    if not settings["wifi.ssid"]:
        return
    wlan = _station()
    if wlan is None or wlan.isconnected():
        return
    wlan.active(True)
    attempt = 0
    while True:
        attempt += 1
        agent.alive(int(settings["wifi.timeout_s"] * 1000) + _POLL_MS)
        if await _try(wlan, settings):
            agent.log("joined %s as %s" % (settings["wifi.ssid"], wlan.ifconfig()[0]))
            return
        agent.log("cannot join %s (status %s, attempt %d)" % (
            settings["wifi.ssid"], wlan.status(), attempt), "warning")
        # after wifi.retries quick attempts, keep trying at the reconnect ceiling
        delay = agent.backoff_ms(attempt if attempt <= settings["wifi.retries"] else 99)
        agent.alive(delay + _POLL_MS)
        await port.sleep_ms(delay)


async def _try(wlan, settings):
    try:
        wlan.connect(settings["wifi.ssid"], settings["wifi.password"])
    except OSError:
        return False
    waited = 0
    while waited < settings["wifi.timeout_s"] * 1000:
        if wlan.isconnected():
            return True
        await port.sleep_ms(_POLL_MS)
        waited += _POLL_MS
    wlan.disconnect()
    return False
