# Duty cycle for battery devices (power.mode "duty"): each boot is one awake period.
#
# Wake, dial the controller (a few quick attempts: the battery pays for every one), report
# (a LogRecord with why the device woke and what it has left), serve the controller's
# calls until power.awake_s is over and no call is running, say Goodbye with the time it
# will sleep (the controller then queues calls for it instead of counting it lost), and go
# into deep sleep. The next boot starts over. In listen mode the device listens for the
# awake period instead of dialing; a controller that was told how long it sleeps dials it
# again when it is awake.
import asyncio
import gc

from jotunheim import network, port

ATTEMPTS = 3
OK = 0


async def run(agent):
    """One awake period; returns the milliseconds to sleep (the agent then sleeps)."""
    settings = agent.settings
    awake_ms = int(settings["power.awake_s"] * 1000)
    sleep_ms = int(settings["power.sleep_s"] * 1000)
    start = port.ticks_ms()
    if settings["agent.mode"] == "listen":
        server = await asyncio.start_server(agent._accepted, settings["agent.listen_host"],
                                            settings["agent.listen_port"])
        agent.log("listening on port %d while awake" % settings["agent.listen_port"])
        await _awake(agent, start, awake_ms, sleep_ms, listening=True)
        server.close()
        agent.log("sleeping for %d ms" % sleep_ms)
        return sleep_ms
    host, port_number = network.split_address(settings["agent.controller"])
    served = None
    for attempt in range(1, ATTEMPTS + 1):
        agent.alive(awake_ms)
        try:
            link = await agent.open_tcp(host, port_number)
        except (OSError, asyncio.TimeoutError) as e:
            agent.log("cannot reach %s:%d (%s)" % (host, port_number, network.why(e)))
            if port.ticks_diff(port.ticks_ms(), start) >= awake_ms:
                break
            await port.sleep_ms(min(agent.backoff_ms(attempt), awake_ms))
            continue
        served = asyncio.create_task(agent.serve(link))
        break
    if served is not None:
        await _awake(agent, start, awake_ms, sleep_ms)
        served.cancel()
    agent.log("sleeping for %d ms" % sleep_ms)
    return sleep_ms


async def _awake(agent, start, awake_ms, sleep_ms, listening=False):
    reported = seen = False
    while True:
        seen = seen or bool(agent.sessions)
        sessions = [s for s in agent.sessions if s.ready]
        if sessions and not reported:  # the first controller hears why the device woke
            reported = True
            fields = {"wake": _wake_reason(), "awake_ms": awake_ms, "sleep_ms": sleep_ms}
            if port.mem_free is not None:
                gc.collect()
                fields["free_memory"] = port.mem_free()
            for session in sessions:
                session.send("LogRecord", {"time_ms": port.ticks_ms(), "level": 2,
                                           "source": "power", "message": "awake",
                                           "fields": fields})
        over = port.ticks_diff(port.ticks_ms(), start) >= awake_ms
        gone = seen and not agent.sessions and not listening
        if (over and not agent.calls.in_flight()) or gone:
            break
        agent.alive()
        await port.sleep_ms(50)
    for session in agent.sessions:
        session.goodbye(OK, "sleeping", sleep_ms)
    await port.sleep_ms(20)  # the goodbye goes out


def _wake_reason():
    try:
        import machine
    except ImportError:
        return "power on"
    cause = machine.reset_cause()
    if cause == getattr(machine, "DEEPSLEEP_RESET", -1):
        return "timer"
    return "power on" if cause == getattr(machine, "PWRON_RESET", -1) else "reset"


def sleep(ms):
    """Deep sleep (the board boots again when it wakes)."""
    try:
        import machine
    except ImportError:  # a Linux board: no deep sleep, a long pause instead
        import time
        time.sleep(ms / 1000)
        return
    machine.deepsleep(ms)
