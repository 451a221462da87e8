"""The stream verbs of the installed jotunheim command (follow, save, send), run as
processes against a simulated device with the firmware."""
import hashlib
import json
import os
import subprocess
import sys

from agent_support import listening, run
from jotunheim_host.controller import connect

EMITTER = """\
async def run(ctx, count=3, size=4):
    for i in range(count):
        await ctx.emit(bytes([65 + i]) * size)
"""


def jotunheim(*argv, timeout=60):
    command = os.path.join(os.path.dirname(sys.executable), "jotunheim")
    return subprocess.run([command, *argv], capture_output=True, timeout=timeout)


def test_follow_save_and_send_from_the_command_line(make_device, tmp_path):
    device, port = listening(make_device, "micropython")
    url = "tcp://127.0.0.1:%d" % port
    device.world.voltage(34, volts=1.95)
    local = tmp_path / "table.csv"
    data = b"".join(b"%d,%d\n" % (i, i * i) for i in range(3000))
    local.write_bytes(data)

    done = jotunheim("send", url, str(local), "/data/table.csv", "--dry-run")
    assert done.returncode == 0, done.stderr
    assert b"would send" in done.stdout and b"nothing was changed" in done.stdout
    done = jotunheim("save", url, "file", "/data/table.csv", "-o", str(tmp_path / "none"))
    assert done.returncode == 20 and b"NOT_FOUND: " in done.stderr     # not sent: dry run

    done = jotunheim("send", url, str(local), "/data/table.csv", "--resume", "--format",
                     "json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["bytes"] == len(data) and report["sha256"] == hashlib.sha256(data).hexdigest()

    copy = tmp_path / "copy.csv"
    done = jotunheim("save", url, "file", "/data/table.csv", "-o", str(copy), "--format", "json")
    assert done.returncode == 0, done.stderr
    assert copy.read_bytes() == data and json.loads(done.stdout)["bytes"] == len(data)

    done = jotunheim("follow", url, "sensor", "adc:34", "--rate", "50", "--count", "5",
                     "--format", "json")
    assert done.returncode == 0, done.stderr
    samples = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(samples) == 5 and {s["value"] for s in samples} == {32776}  # 1.95 V of 3.9
    assert [s["t_us"] for s in samples] == sorted(s["t_us"] for s in samples)
    done = jotunheim("follow", url, "sensor", "adc:34", "--count", "3", "--codec", "delta")
    assert done.returncode == 0, done.stderr
    assert [line.split()[1] for line in done.stdout.decode().splitlines()] == ["32776"] * 3

    saved = tmp_path / "samples.json"
    done = jotunheim("save", url, "sensor", "adc:34", "--rate", "100", "--count", "4", "-o",
                     str(saved), "--format", "json")
    assert done.returncode == 0, done.stderr
    assert [s["value"] for s in json.loads(saved.read_text())] == [32776] * 4

    async def register():
        d = await connect(url, reconnect=False)
        await d.register_script("letters", EMITTER, streams=True, parameters=[
            {"name": "count", "type": "int", "default": 3},
            {"name": "size", "type": "int", "default": 4}])
        await d.close()
    run(register(), 30)
    done = jotunheim("follow", url, "raw", "letters", "--param", "size=2")
    assert done.returncode == 0, done.stderr
    assert done.stdout == b"AABBCC"

    done = jotunheim("send", url, str(local), "../outside.csv", "--format", "json")
    assert done.returncode == 10
    error = json.loads(done.stdout)
    assert error["details"]["status"] == "PERMISSION_DENIED" and "outside" in error["message"]
    done = jotunheim("follow", url, "sensor", "adc:x")
    assert done.returncode == 20 and b"want adc:PIN or pin:PIN" in done.stderr
    done = jotunheim("send", url, str(tmp_path / "missing"), "/data/x")
    assert done.returncode == 30 and b"cannot read" in done.stderr


def test_every_stream_verb_has_help_with_an_example():
    for verb in ("follow", "save", "send"):
        done = jotunheim(verb, "--help")
        assert done.returncode == 0
        assert b"example:\n  jotunheim " + verb.encode() in done.stdout
