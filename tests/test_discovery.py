"""Discovery: simulated devices answer on UDP; jotunheim discover lists and remembers them."""
import json
import socket

import pytest

from agent_support import RUNTIMES, console_lines, free_port, install, listening
from jotunheim_host import discovery
from jotunheim_host.cli import main


def free_udp_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_listening_device_answers_with_its_identity_and_address(make_device, runtime):
    udp = free_udp_port()
    device, port = listening(make_device, runtime, {"agent.discovery_port": udp})
    found = discovery.discover(timeout=3, port=udp, addresses=("127.0.0.1",))
    assert list(found) == ["esp32-a4cf12b3c4d5"]
    one = found["esp32-a4cf12b3c4d5"]
    assert (one["type"], one["mode"], one["url"]) == ("ESP32", "listen",
                                                     "tcp://127.0.0.1:%d" % port)
    assert one["firmware"] == "0.1.0" and not one["auth_required"]
    assert discovery.discover(timeout=1, port=udp, addresses=("127.0.0.1",),
                              device_id="someone-else") == {}


def test_discover_and_devices_verbs_remember_what_they_found(make_device, capsys, tmp_path,
                                                             monkeypatch):
    monkeypatch.setenv("JOTUNHEIM_HOME", str(tmp_path))
    udp = free_udp_port()
    device = make_device("cpython")
    install(device, {"agent.controller": "127.0.0.1:%d" % free_port(),
                     "agent.discovery_port": udp, "auth.key": "ab" * 16})
    device.start()
    console_lines(device, "reconnecting")                 # a dialing device, no controller
    assert main(["--format", "json", "discover", "--port", str(udp), "--address",
                 "127.0.0.1", "--timeout", "3"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["id"], r["mode"], r["url"], r["auth_required"]) for r in rows] == [
        ("esp32-a4cf12b3c4d5", "dial", None, True)]
    device.stop()
    assert main(["devices"]) == 0                         # remembered, even when off
    out = capsys.readouterr().out
    assert "esp32-a4cf12b3c4d5" in out and "dial" in out
    assert json.loads((tmp_path / "devices.json").read_text())["esp32-a4cf12b3c4d5"]
