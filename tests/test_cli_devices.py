"""The jotunheim verbs that talk to devices (caps, call, settings, log, ping, hub, sim
--agent) against simulated devices: real output, JSON that parses, documented exit codes."""
import json
import os
import signal
import subprocess
import time

import pytest

from agent_support import KEY, free_port, install, listening
from jotunheim_host.cli import main
from test_cli import jotunheim_command


@pytest.fixture
def agent_url(make_device):
    """A started device whose agent listens: (device, url); settings as given."""
    def start(runtime="cpython", **settings):
        device, port = listening(make_device, runtime, settings)
        return device, "tcp://127.0.0.1:%d" % port
    return start


def json_out(capsys):
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("runtime", ("micropython", "cpython"))
def test_caps_call_settings_and_ping(agent_url, capsys, runtime):
    device, url = agent_url(runtime)
    assert main(["caps", url]) == 0
    out = capsys.readouterr().out
    assert "esp32-a4cf12b3c4d5" in out and "pin_write" in out and "pin:int, value:bool" in out
    assert main(["--format", "json", "caps", url]) == 0
    caps = json_out(capsys)
    assert caps["device"]["board"] == "esp32" and len(caps["tools"]) >= 10

    assert main(["call", url, "pin_write", "pin=2", "value=true"]) == 0
    assert device.world.level(2) == 1 and capsys.readouterr().out == "ok\n"
    assert main(["--format", "json", "call", url, "device_echo", 'value={"a": [1, 2.5]}']) == 0
    assert json_out(capsys)["value"] == {"a": [1, 2.5]}
    assert main(["call", url, "device_echo", "plain text"]) == 0       # positional, text
    assert capsys.readouterr().out == "plain text\n"

    assert main(["settings", url, "agent.mode"]) == 0
    assert "agent.mode" in capsys.readouterr().out
    assert main(["--format", "json", "settings", url, "--set", "agent.heartbeat_s=30"]) == 0
    assert json_out(capsys) == {"agent.heartbeat_s": 30}
    # a dry run: the device checks the values and changes nothing
    assert main(["--format", "json", "settings", url, "--set", "agent.heartbeat_s=45",
                 "--dry-run"]) == 0
    assert json_out(capsys) == {"dry_run": True, "would_set": {"agent.heartbeat_s": 45}}
    assert main(["settings", url, "--set", "agent.heartbeat_s=-1", "--dry-run"]) == 20
    assert "agent.heartbeat_s" in capsys.readouterr().err
    assert main(["--format", "json", "settings", url, "agent.heartbeat_s"]) == 0
    assert json_out(capsys) == {"agent.heartbeat_s": 30}
    assert main(["--format", "json", "ping", url, "--count", "2"]) == 0
    assert len(json_out(capsys)["round_trips_ms"]) == 2
    device.power_cut()
    assert json.loads(device.read_file("/settings.json"))["agent.heartbeat_s"] == 30


def test_exit_codes_and_json_errors(agent_url, capsys, tmp_path):
    device, url = agent_url(**{"auth.key": KEY})
    key_file = tmp_path / "key"
    key_file.write_text(KEY + "\n")
    os.environ.pop("JOTUNHEIM_KEY", None)
    cases = [
        (["call", url, "device_echo", "value=1"], 10, "requires a key"),
        (["call", "--key-file", str(key_file), url, "nope"], 20, "NOT_FOUND"),
        (["call", "--key-file", str(key_file), url, "pin_write", "pin=two", "value=1"], 20,
         "INVALID_ARGUMENT"),
        (["call", "--key-file", str(key_file), url, "pin_write", "pin=34", "value=true"], 20,
         "pin can only be input"),
        (["settings", "--key-file", str(key_file), url, "--set", "agent.heartbeat_s=-1"], 20,
         "agent.heartbeat_s"),
        (["caps", "--key-file", str(tmp_path / "none"), url], 30, "cannot read the key file"),
        (["caps", "tcp://127.0.0.1:%d" % free_port()], 10, "cannot connect"),
        (["caps", "serial:///dev/no-such-tty"], 30, "cannot open"),
        (["settings", url, "--set", "novalue"], 2, "KEY=VALUE"),
        (["call", url, "t", "a=1", "2"], 2, "positional argument"),
    ]
    for argv, code, text in cases:
        assert main(["--format", "json"] + argv) == code, argv
        error = json_out(capsys)
        assert error["code"] == code and text in error["message"] + str(error["details"]), \
            (argv, error)
        assert set(error) == {"code", "error", "message", "hint", "details"}
    assert main(["call", url, "nope"]) == 10     # table mode: message and hint on stderr
    err = capsys.readouterr().err
    assert err.startswith("jotunheim: ") and "--key-file" in err
    assert main(["call", "--key-file", str(key_file), url, "device_echo", "value=[1]"]) == 0
    assert capsys.readouterr().out == "[1]\n"


def read_json(stream, deadline=30):
    """The next JSON document on a text stream (it may span lines)."""
    text, end = "", time.monotonic() + deadline
    while time.monotonic() < end:
        line = stream.readline()
        if not line:
            break
        text += line
        try:
            return json.loads(text)
        except ValueError:
            continue
    raise AssertionError("no JSON in %r" % text)


def test_sim_agent_log_and_hub_as_a_user_runs_them(tmp_path, make_device):
    env = dict(os.environ, TMPDIR=str(tmp_path))
    sim = subprocess.Popen([jotunheim_command(), "--format", "json", "sim", "esp32", "--agent",
                            "--runtime", "cpython"], stdout=subprocess.PIPE, text=True,
                           env=env)
    try:
        rows = read_json(sim.stdout)
        url = rows[0]["agent"]
        assert url.startswith("tcp://127.0.0.1:")
        done = subprocess.run([jotunheim_command(), "call", url, "device_echo", "value=7"],
                              capture_output=True, text=True, timeout=60)
        assert (done.returncode, done.stdout) == (0, "7\n"), done.stderr
        log = subprocess.Popen([jotunheim_command(), "--format", "json", "log", url,
                                "--count", "1", "--seconds", "30"], stdout=subprocess.PIPE,
                               text=True)
        time.sleep(1.0)
        subprocess.run([jotunheim_command(), "ping", url, "--count", "1"],
                       capture_output=True, timeout=60, check=True)   # another session
        record = read_json(log.stdout)
        assert record["event"] == "LogRecord" and record["fields"]["level"] == 2  # info
        assert "session ended" in record["fields"]["message"]
        assert log.wait(timeout=30) == 0
    finally:
        sim.send_signal(signal.SIGINT)
        assert sim.wait(timeout=30) == 0

    port = free_port()
    hub = subprocess.Popen([jotunheim_command(), "--format", "json", "hub", "--host",
                            "127.0.0.1", "--port", str(port), "--seconds", "60"],
                           stdout=subprocess.PIPE, text=True)
    try:
        assert read_json(hub.stdout)["listening"] == "127.0.0.1:%d" % port
        device = make_device("cpython")
        install(device, {"agent.controller": "127.0.0.1:%d" % port})
        device.start()
        event = read_json(hub.stdout)
        assert (event["device"], event["event"]) == ("esp32-a4cf12b3c4d5", "connected")
    finally:
        hub.send_signal(signal.SIGINT)
        assert hub.wait(timeout=30) == 130


def test_deploy_to_a_simulated_board_then_it_dials_and_answers(make_device, tmp_path):
    import asyncio

    from agent_support import run
    from jotunheim_host.controller import Hub
    board = make_device("micropython")
    board.start()                                     # a blank board: MicroPython only
    tools = tmp_path / "tools.json"
    tools.write_text(json.dumps({"tools": [{"name": "lamp", "bind": {
        "op": "pin_write", "args": {"pin": 2}}, "parameters": [
            {"name": "value", "type": "bool"}]}]}))

    def jotunheim(*argv):
        return subprocess.run([jotunheim_command(), *argv], capture_output=True, text=True,
                              timeout=180)

    async def scenario():
        async with Hub() as hub:
            loop = asyncio.get_running_loop()
            plan = await loop.run_in_executor(None, lambda: jotunheim(
                "--format", "json", "deploy", board.url, "--board", "esp32", "--dry-run"))
            assert plan.returncode == 0, plan.stderr
            assert any(path == "/lib/jotunheim/agent.mpy"
                       for path, size in json.loads(plan.stdout)["written"])
            done = await loop.run_in_executor(None, lambda: jotunheim(
                "deploy", board.url, "--board", "esp32", "--tools", str(tools),
                "--set", "agent.controller=127.0.0.1:%d" % hub.port, "--reset"))
            assert done.returncode == 0, done.stderr
            assert "verified by SHA-256" in done.stdout
            device = await hub.device("esp32-a4cf12b3c4d5", timeout=60)
            assert await device.call("lamp", value=True) is None
            assert board.world.level(2) == 1
            bad = await loop.run_in_executor(None, lambda: jotunheim(
                "--format", "json", "deploy", board.url, "--board", "esp32",
                "--set", "agent.mode=sideways"))
            assert bad.returncode == 20 and "agent.mode" in json.loads(bad.stdout)["message"]
    run(scenario(), timeout=300)


@pytest.mark.parametrize("runtime", ("micropython", "cpython"))
def test_script_add_list_call_rm_and_children(agent_url, capsys, tmp_path, runtime):
    device, url = agent_url(runtime)
    script = tmp_path / "blink.py"
    script.write_text("def run(ctx, times=1):\n"
                      "    for _ in range(times):\n"
                      "        ctx.fenrir.pin_toggle(2)\n"
                      "    return ctx.fenrir.pin_read(2)\n")
    assert main(["script", "add", url, str(script), "--param", "times:int=1",
                 "--returns", "int", "--description", "toggle GPIO 2"]) == 0
    assert "tool Script_blink" in capsys.readouterr().out
    assert main(["call", url, "Script_blink", "times=3"]) == 0
    assert capsys.readouterr().out == "1\n" and device.world.level(2) == 1
    assert main(["--format", "json", "script", "list", url]) == 0
    listed = json_out(capsys)
    assert [(s["name"], s["tools"]) for s in listed] == [("blink", ["Script_blink"])]
    assert main(["script", "add", url, str(script)]) == 20          # taken, no --replace
    assert "ALREADY_EXISTS" in capsys.readouterr().err
    assert main(["script", "add", url, str(script), "--dry-run"]) == 20
    assert "--replace" in capsys.readouterr().err
    assert main(["script", "add", url, str(script), "--replace", "--dry-run"]) == 0
    assert "would replace blink" in capsys.readouterr().out
    assert main(["--format", "json", "script", "rm", url, "blink", "--dry-run"]) == 0
    assert json_out(capsys) == {"would_remove": "blink", "dry_run": True}
    assert main(["script", "rm", url, "nosuch", "--dry-run"]) == 20
    assert "no script nosuch" in capsys.readouterr().err
    assert main(["call", url, "Script_blink", "times=1"]) == 0      # still there
    assert capsys.readouterr().out == "0\n"
    assert main(["--format", "json", "caps", url]) == 0
    languages = json_out(capsys)["features"]["script_languages"]
    assert languages == ["python"]     # the ESP32's profile: Lua only on Linux boards
    assert main(["--format", "json", "children", url]) == 0
    assert {c["name"] for c in json_out(capsys)} == {"Fenrir", "Jormungandr", "Hel"}
    assert main(["script", "rm", url, "blink"]) == 0
    assert main(["call", url, "Script_blink"]) == 20                # gone
    capsys.readouterr()


def test_each_error_class_through_the_installed_command(agent_url):
    """As a user (or a script) meets them: exit code by class, JSON that parses."""
    device, url = agent_url()

    def jotunheim(*argv):
        return subprocess.run([jotunheim_command(), *argv], capture_output=True, text=True,
                              timeout=60)
    done = jotunheim("call", url, "--no-such-option")
    assert done.returncode == 2 and "usage:" in done.stderr
    for argv, code, error in (
            (["call", url, "pin_write", "pin=2", "value=maybe"], 20, "validation"),
            (["caps", "tcp://127.0.0.1:%d" % free_port()], 10, "runtime"),
            (["caps", "serial:///dev/no-such-tty"], 30, "missing")):
        done = jotunheim("--format", "json", *argv)
        answer = json.loads(done.stdout)
        assert (done.returncode, answer["code"], answer["error"]) == (code, code, error)
        assert answer["message"] and "hint" in answer and "details" in answer
    done = jotunheim("--format", "json", "call", url, "device_echo", "value=[1, 2]")
    assert done.returncode == 0 and json.loads(done.stdout)["value"] == [1, 2]
