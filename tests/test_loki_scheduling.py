"""Scheduling under load, on both runtimes: system work (built-in tools) goes before user
scripts, a slot is always left to it, user work is never starved, and what does not fit
waits in a bounded queue."""
import asyncio

import pytest

from agent_support import RUNTIMES, console_lines, free_port, install, run
from jotunheim_host.controller import connect
from test_loki import SLEEPY, device_url, param, refused, registered


def busy_device(make_device, runtime):
    port = free_port()
    device = install(make_device(runtime), {"agent.mode": "listen", "agent.listen_port": port,
                                            "calls.concurrency": 2, "calls.queue": 4})
    device.start()
    console_lines(device, r"listening on port")
    return device, port


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_system_work_first_user_work_never_starved_bounded_queue(make_device, runtime):
    device, port = busy_device(make_device, runtime)

    async def scenario():
        d = await connect(device_url(port), reconnect=False)
        await registered(d, "sleepy", SLEEPY, parameters=[param("ms", "int")],
                         limits={"concurrency": 4})
        done = []

        def go(name, tool, **args):
            task = asyncio.ensure_future(d.call(tool, **args))
            task.add_done_callback(lambda t: done.append(name))
            return task

        # scripts hold at most one of the two slots: a built-in tool still runs at once
        u1 = go("u1", "Script_sleepy", ms=1500)
        u2 = go("u2", "Script_sleepy", ms=10)         # waits for u1's slot
        await asyncio.sleep(0.3)
        assert await d.call("device_echo", value="first") == "first"
        assert done == []                             # the echo passed both scripts
        assert await u1 == 1500 and await u2 == 10 and done == ["u1", "u2"]

        # a freed slot goes to waiting system calls first, but after FAIR (2) of them the
        # user call that waited goes next
        done.clear()
        s1 = go("s1", "device_sleep", ms=600)
        s2 = go("s2", "device_sleep", ms=600)
        await asyncio.sleep(0.2)
        u = go("u", "Script_sleepy", ms=10)
        await asyncio.sleep(0.1)
        s3 = go("s3", "device_sleep", ms=600)
        s4 = go("s4", "device_sleep", ms=600)
        s5 = go("s5", "device_sleep", ms=600)
        await asyncio.gather(s1, s2, s3, s4, s5, u)
        assert done.index("u") > max(done.index("s3"), done.index("s4"))   # priority
        assert done.index("u") < done.index("s5")                          # not starved

        # past the queue's bound a call is refused at once, and the device goes on
        calls = [go("w%d" % i, "device_sleep", ms=800) for i in range(6)]  # 2 run, 4 wait
        await asyncio.sleep(0.2)
        status, message = await refused(d.call("Script_sleepy", ms=1))
        assert status == "RESOURCE_EXHAUSTED" and "4 waiting" in message
        assert await asyncio.gather(*calls) == [800] * 6
        assert await d.call("Script_sleepy", ms=1) == 1
        await d.close()
    run(scenario())
