"""Hel, the scripts' data: files under the storage quota, time series with windows and
bounded retention, the RAM cache with its TTL, and atomic writes under a power cut after
every flash commit of a script's writes; on both runtimes."""
import json
import struct

import pytest

from agent_support import RUNTIMES, console_lines, run
from jotunheim_host.controller import connect
from test_loki import device_url, listening, param, refused, registered

DATA = """\
async def run(ctx, action):
    hel = ctx.hel
    if action == "files":
        hel.write("notes.txt", "first")
        hel.write("blob", b"\\x00\\x01\\x02")
        before = hel.read("notes.txt")
        hel.write("notes.txt", "second version")
        got = {"before": before.decode(), "after": hel.read("notes.txt").decode(),
               "blob": list(hel.read("blob")), "missing": hel.read("nope", "none"),
               "files": hel.files()}
        got["removed"] = [hel.remove("blob"), hel.remove("blob")]
        got["left"] = hel.files()
        return got
    if action == "too_big":
        hel.write("huge", "x" * 1000)
    if action == "series":
        for t in range(100, 160, 5):                   # 12 samples, one every 5 s
            hel.append("temp", t / 10, t=t)
        return {"all": hel.stats("temp"), "windows": hel.windows("temp", 20),
                "late": hel.stats("temp", since=150), "none": hel.stats("temp", since=999),
                "names": hel.series()}
    if action == "retention":
        held = [hel.append("short", n, t=1000 + n, keep=4) for n in range(10)]
        return {"held": held, "stats": hel.stats("short")}
    if action == "cache":
        hel.cache_put("a", {"v": 1}, ttl_ms=100)
        hel.cache_put("b", 2, ttl_ms=10000)
        fresh = [hel.cache_get("a"), hel.cache_get("b")]
        await ctx.sleep_ms(200)
        stale = [hel.cache_get("a", "gone"), hel.cache_get("b")]
        for i in range(20):
            hel.cache_put("k%d" % i, i, ttl_ms=60000 + i)
        kept = [hel.cache_get("k%d" % i) for i in range(20)]
        return {"fresh": fresh, "stale": stale, "kept": kept}
    if action == "bad":
        hel.append("temp", "warm")
    return hel.keys()
"""


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_files_series_and_cache(make_device, runtime):
    device, port = listening(make_device, runtime)

    async def scenario():
        d = await connect(device_url(port), reconnect=False)
        await registered(d, "data", DATA, parameters=[param("action", "string")],
                         limits={"storage_bytes": 600})

        def call(action):
            return d.call("Script_data", action=action)
        files = await call("files")
        assert files == {"before": "first", "after": "second version", "blob": [0, 1, 2],
                         "missing": "none", "files": ["blob", "notes.txt"],
                         "removed": [True, False], "left": ["notes.txt"]}
        status, message = await refused(call("too_big"))
        assert status == "RESOURCE_EXHAUSTED" and "storage quota of 600 bytes" in message

        got = await call("series")
        assert got["all"]["count"] == 12 and got["names"] == ["temp"]
        assert got["all"]["min"] == pytest.approx(10.0) and got["all"]["max"] == \
            pytest.approx(15.5) and got["all"]["avg"] == pytest.approx(12.75)
        assert [(w["start"], w["count"]) for w in got["windows"]] == [
            (100, 4), (120, 4), (140, 4)]
        assert got["windows"][1]["min"] == pytest.approx(12.0) and \
            got["windows"][1]["max"] == pytest.approx(13.5)
        assert got["late"]["count"] == 2 and got["late"]["avg"] == pytest.approx(15.25)
        assert got["none"]["count"] == 0 and got["none"]["avg"] is None

        got = await call("retention")
        assert got["held"] == [1, 2, 3, 4, 4, 4, 4, 4, 4, 4]    # the newest 4
        assert got["stats"]["count"] == 4 and got["stats"]["min"] == 6 and \
            got["stats"]["max"] == 9

        got = await call("cache")
        assert got["fresh"] == [{"v": 1}, 2] and got["stale"] == ["gone", 2]
        assert got["kept"][:4] == [None] * 4 and got["kept"][4:] == list(range(4, 20))
        assert (await refused(call("bad")))[0] == "INVALID_ARGUMENT"
        hel = {c["name"]: c for c in (await d.request("ChildrenStatusRequest", {}))[
            "children"]}["Hel"]
        assert hel["storage_bytes"] == len("second version") + 96 + 32

        await d.close()
    run(scenario())
    device.power_cut()
    assert device.read_file("/data/data/files/notes.txt") == b"second version"
    raw = device.read_file("/data/data/series/temp.ts")
    assert len(raw) == 96 and struct.unpack("<If", raw[:8]) == (100, pytest.approx(10.0))
    assert len(device.read_file("/data/data/series/short.ts")) == 32

    async def unregister():           # after the reboot: the quota counts what is there
        d = await connect(device_url(port), reconnect=False)
        hel = {c["name"]: c for c in (await d.request("ChildrenStatusRequest", {}))[
            "children"]}["Hel"]
        assert hel["storage_bytes"] == len("second version") + 96 + 32
        assert (await d.request("ScriptUnregister", {"name": "data"}))["status"] == 0
        await d.close()
    device.start()
    console_lines(device, r"listening on port", count=2)
    run(unregister())
    device.power_cut()
    for path in ("/data/data/series/temp.ts", "/data/data/files/notes.txt"):
        with pytest.raises(Exception):
            device.read_file(path)


def check_after_cut(device):
    """Every value on the flash is whole, old or new; the number the writer reached."""
    flash = device.read_files()
    value = json.loads(flash["/data/writer/value.json"])
    n = value["n"]
    assert value["pad"] == ("%06d" % n) * 40
    text = flash["/data/writer/files/file"].decode()
    assert len(text) == 360 and text == text[:6] * 60
    m = int(text[:6])
    raw = flash["/data/writer/series/count.ts"]
    assert raw and len(raw) % 8 == 0                            # whole samples only
    samples = [struct.unpack_from("<If", raw, i) for i in range(0, len(raw), 8)]
    assert all(t == v for t, v in samples)
    times = [t for t, _ in samples]
    assert times == sorted(set(times)) and len(times) <= 50     # retention: keep
    # the file is written after the value, the sample after the file
    assert n - 1 <= m <= n and m - 1 <= times[-1] <= m
    return n


STEP = """\
def run(ctx, n):
    pad = "%06d" % n
    ctx.hel.put("value", {"n": n, "pad": pad * 40})
    ctx.hel.write("file", pad * 60)
    ctx.hel.append("count", n, t=n, keep=50)
    return n
"""


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_hel_writes_survive_a_power_cut_after_every_flash_commit(make_device, runtime):
    """One step writes a value, a file and a sample; the power is cut right after the
    1st, 2nd, ... flash commit of a step (the simulator counts them), until a step
    completes uncut: after every cut each is whole, and old or new, never torn."""
    device, port = listening(make_device, runtime)

    async def step(n, register=False):
        d = await connect(device_url(port), reconnect=False)
        try:
            if register:
                await registered(d, "writer", STEP, parameters=[param("n", "int")],
                                 limits={"storage_bytes": 4096})
            return await d.call("Script_writer", n=n, timeout=10)
        except Exception:  # noqa: BLE001 - the power went in the middle
            return None
        finally:
            await d.close()

    n = 1
    assert run(step(n, register=True)) == n
    commits = 0
    while True:
        commits += 1
        assert commits < 40, "a step never completed"
        n += 1
        device.power_cut_after(commits)
        answer = run(step(n))
        if device.running:          # fewer commits than that: every point was cut
            assert answer == n
            break
        assert check_after_cut(device) in (n - 1, n)
        device.start()
        console_lines(device, r"listening on port", count=commits + 1)
        n += 1
        assert run(step(n)) == n    # the writer goes on from there
    device.power_cut()
    assert check_after_cut(device) == n
    assert commits > 3              # a step takes several commits: they were all cut
