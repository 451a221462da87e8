"""Simulated devices as processes: flash, power cuts, the REPL under mpremote, Wi-Fi, links.

Every device is a real process (the MicroPython unix port or CPython) with its flash on
disk; mpremote is the real one, talking over a real loopback socket; the links are real
loopback TCP through host_sim.linkproxy.
"""
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time

import pytest

from host_sim.clock import Clock
from host_sim.linkproxy import LinkProxy
from host_sim.remote import RequestError
from host_sim.runner import SimError
from host_sim.shims import network
from host_sim.world import World, install
from sim_checks import check_flash_after_cut, printed

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUNTIMES = ["micropython", "cpython"]
WIFI = {"access_points": [{"ssid": "greenhouse", "password": "hunter2", "rssi": -48},
                          {"ssid": "neighbour", "password": "x", "rssi": -80}],
        "associate_ms": 1500}


def mpremote(device, *args, check=True):
    done = subprocess.run(["mpremote", "connect", device.url] + list(args),
                          capture_output=True, text=True, timeout=60)
    if check and done.returncode:
        raise AssertionError("mpremote %s failed: %s%s" % (" ".join(args), done.stdout,
                                                           done.stderr))
    return done


# ------------------------------------------------------------------ flash and power

@pytest.mark.parametrize("runtime", RUNTIMES)
def test_main_runs_from_the_flash_and_its_files_stay(make_device, runtime):
    device = make_device(runtime, {
        "boot.py": "print('boot ran')\n",
        "main.py": "with open('/log.txt', 'w') as f:\n    f.write('written by main')\n"
                   "print('main ran', open('/log.txt').read())\n"})
    device.start()
    printed(device, r"main ran written by main")
    assert device.console.text().index("boot ran") < device.console.text().index("main ran")
    device.power_cut()
    assert device.read_file("/log.txt") == b"written by main"


SQUEEZE_MAIN = """\
import gc, time
free = getattr(gc, 'mem_free', lambda: -1)  # CPython has none
while True:
    gc.collect()
    print('free', free())
    time.sleep_ms(500)
"""


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_memory_pressure_holds_the_heap_for_a_while(make_device, runtime):
    device = make_device(runtime, {"main.py": SQUEEZE_MAIN})
    device.start()
    printed(device, r"free -?\d+")
    if runtime == "cpython":
        with pytest.raises(RequestError, match="no heap limit"):
            device.world.hold_heap(3000, ms=1000)
        return
    before = int(re.findall(r"free (\d+)", device.console.text())[-1])
    assert before > 20000
    mark = len(device.console.text())
    assert device.world.hold_heap(3000, ms=1000) <= 3000 + 4096
    printed(device, r"heap released")
    held = [int(n) for n in re.findall(r"free (\d+)", device.console.text()[mark:].split(
        "heap released")[0])]
    assert held and min(held) <= 3000 + 4096  # main.py saw the squeeze ...
    time.sleep(0.6)
    after = int(re.findall(r"free (\d+)", device.console.text())[-1])
    assert after > before - 1024  # ... and then the heap back


POWER_CUT_MAIN = """\
try:
    with open('count') as f:
        n = int(f.read())
except OSError:
    n = 0
print('resumed', n)
while True:
    n += 1
    with open('data%d' % (n % 3), 'w') as f:
        for i in range(40):
            f.write('%d %d\\n' % (n, i))
    with open('count', 'w') as f:
        f.write(str(n))
    if n % 25 == 0:
        print('wrote', n)
"""


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_power_cut_mid_write_keeps_the_flash_consistent(make_device, runtime):
    device = make_device(runtime, {"main.py": POWER_CUT_MAIN})
    rng = random.Random(7)
    last = 0
    for cycle in range(4):
        mark = device.console.mark()
        device.start()
        resumed = int(printed(device, r"resumed (\d+)", mark)[0])
        assert resumed == last
        printed(device, r"wrote (\d+)", mark)
        time.sleep(rng.uniform(0.0, 0.2))
        device.power_cut()
        last = check_flash_after_cut(device)
        assert last > resumed
    assert device.boots == 4


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_power_cut_during_boot_leaves_a_flash_that_boots(make_device, runtime):
    device = make_device(runtime, {"main.py": "print('up')\n"})
    device.start(wait=False)
    device.power_cut()
    device.start()
    printed(device, r"up")


HOST_FILES_MAIN = """\
import os
for path in ('/etc/passwd', '../../etc/passwd', '/../etc/passwd'):
    try:
        open(path).read()
        print('read', path)
    except OSError as e:
        print('refused', path, e.args[0])
print('root', sorted(os.listdir('/')))
"""


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_the_device_cannot_read_host_files(make_device, runtime):
    device = make_device(runtime, {"main.py": HOST_FILES_MAIN})
    device.start()
    assert printed(device, r"refused /etc/passwd (\d+)") == ("2",)  # ENOENT
    assert printed(device, r"refused \.\./\.\./etc/passwd (\d+)")[0] in ("22", "2")
    assert printed(device, r"refused /\.\./etc/passwd (\d+)")[0] in ("22", "2")
    assert printed(device, r"root (.*)") == ("['main.py']",)
    assert "read " not in device.console.text()


RESET_MAIN = """\
import machine, sys
print('cause', machine.reset_cause())
try:
    open('/once').close()
except OSError:
    open('/once', 'w').close()
    sys.exit()
"""


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_resets_and_their_causes(make_device, runtime):
    device = make_device(runtime, {"main.py": RESET_MAIN})
    device.start()
    assert printed(device, r"cause (\d+)") == ("1",)           # PWRON_RESET
    mark = device.console.wait_for("MPY: soft reboot")          # sys.exit() in main.py
    assert printed(device, r"cause (\d+)", mark) == ("5",)     # SOFT_RESET
    mark = device.console.mark()
    device.reset()
    assert printed(device, r"cause (\d+)", mark) == ("2",)     # HARD_RESET
    device.console.wait_for(">>> ", since=mark)
    mark = device.console.mark()
    with socket.create_connection(("127.0.0.1", device.repl_port)) as console:
        console.sendall(b"import machine; machine.reset()\r")
        assert printed(device, r"cause (\d+)", mark) == ("2",)
    assert device.boots == 4


# ------------------------------------------------------------------ REPL and mpremote

@pytest.mark.parametrize("runtime", RUNTIMES)
def test_friendly_repl_paste_mode_and_ctrl_c(make_device, runtime):
    device = make_device(runtime)
    device.start(run_main=False)
    device.console.wait_for(">>> ")
    with socket.create_connection(("127.0.0.1", device.repl_port)) as console:
        def typed(data, expect):
            mark = device.console.mark()
            console.sendall(data)
            device.console.wait_for(expect, since=mark)
        typed(b"6 * 7\r", b"42")
        typed(b"for i in range(3): print(i * 10)\r\r", b"0\n10\n20\n")
        typed(b"\x05", b"=== ")
        typed(b"x = 5\ry = x * 3\r\x04", b">>> ")
        typed(b"print(y)\r", b"15")
        typed(b"while True: pass\r\r", b"... ")
        time.sleep(0.3)
        typed(b"\x03", b"KeyboardInterrupt")
        typed(b"print('still', 'here')\r", b"still here")
    assert device.boots == 1


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_ctrl_c_amid_garbage_collections_leaves_a_working_repl(make_device, runtime):
    # The unix port jumps out of whatever C code runs when SIGINT comes; in a collection
    # that would leave the heap locked. The console holds a Ctrl-C until the device sleeps.
    loop = b"while True: gc.collect(); time.sleep_ms(1)\r\r"
    device = make_device(runtime, {"main.py": "import gc, time\n"
                                              "junk = [bytearray(48) for i in range(600)]\n"
                                              "print('collecting')\n" + loop.decode()[:-2]
                                              .replace("\r", "\n") + "\n"})
    device.start()
    printed(device, r"collecting")
    interrupted_again_and_again(device, loop, b"... ")


def interrupted_again_and_again(device, restart, restarted):
    """Ctrl-C at random moments, each time typing `restart` (which prints `restarted`)
    at the prompt: the REPL works throughout and the heap is never left locked."""
    with socket.create_connection(("127.0.0.1", device.repl_port)) as console:
        def typed(data, expect):
            mark = device.console.mark()
            console.sendall(data)
            device.console.wait_for(expect, since=mark)
        for i in range(12):
            time.sleep(random.uniform(0.02, 0.1))
            typed(b"\x03", b"KeyboardInterrupt")
            typed(b"\r", b">>> ")
            typed(restart, restarted)
        typed(b"\x03", b"KeyboardInterrupt")
        typed(b"print('still', len(junk))\r", b"still 600")
    assert "heap is locked" not in device.console.text()
    assert device.boots == 1


def test_ctrl_c_amid_collections_between_asyncio_sleeps_leaves_a_working_repl(make_device):
    # The same with asyncio sleeps, which jump the virtual clock without a system call
    # (an agent retrying Wi-Fi does that): vasyncio rests now and then as the time shim does.
    # MicroPython's hazard only: CPython takes SIGINT between bytecodes (and its asyncio.run
    # turns Ctrl-C into a cancellation that prints no KeyboardInterrupt).
    runtime = "micropython"
    run = b"asyncio.run(spin())\r"
    device = make_device(runtime, {"main.py": "import asyncio, gc\n"
                                              "junk = [bytearray(48) for i in range(600)]\n"
                                              "async def spin():\n"
                                              "    print('collecting')\n"
                                              "    while True:\n"
                                              "        gc.collect()\n"
                                              "        await asyncio.sleep_ms(1)\n"
                                              "asyncio.run(spin())\n"})
    device.start()
    printed(device, r"collecting")
    interrupted_again_and_again(device, run, b"collecting")


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_mpremote_copies_runs_and_reads_back(make_device, runtime, tmp_path):
    device = make_device(runtime, {"main.py": "import time\nprint('main runs')\n"
                                              "while True:\n    time.sleep_ms(20)\n"})
    device.start()
    printed(device, r"main runs")
    local = tmp_path / "local.py"
    local.write_text("def answer():\n    return 6 * 7\nprint('imported', answer())\n")
    script = tmp_path / "script.py"
    script.write_text("import os\nprint('files', sorted(os.listdir('/')))\n")

    mpremote(device, "resume", "fs", "cp", str(local), ":remote.py")  # interrupts main.py
    assert "remote.py" in mpremote(device, "resume", "fs", "ls").stdout
    assert mpremote(device, "resume", "exec", "import remote").stdout.strip() == "imported 42"
    assert mpremote(device, "resume", "run", str(script)).stdout.strip() == \
        "files ['main.py', 'remote.py']"
    mpremote(device, "resume", "fs", "cp", ":remote.py", str(tmp_path / "back.py"))
    assert (tmp_path / "back.py").read_bytes() == local.read_bytes()
    refused = mpremote(device, "resume", "exec", "open('/etc/passwd')", check=False)
    assert refused.returncode != 0 and "ENOENT" in refused.stdout + refused.stderr


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_mpremote_soft_reset_reboots_without_resume(make_device, runtime):
    device = make_device(runtime, {"main.py": "print('main ran')\n"})
    device.start()
    printed(device, r"main ran")
    assert mpremote(device, "exec", "print('after', 1 + 1)").stdout.strip() == "after 2"
    assert device.boots == 2 and "MPY: soft reboot" in device.console.text()
    assert device.console.text().count("main ran") == 1  # a raw-REPL soft reset skips main.py
    assert "main.py" in mpremote(device, "fs", "ls").stdout
    assert device.boots == 3


def test_mpremote_mount_on_micropython(make_device, tmp_path):
    device = make_device("micropython")
    device.start(run_main=False)
    (tmp_path / "mounted.py").write_text("print('from the host', 2 ** 10)\n")
    done = mpremote(device, "resume", "mount", str(tmp_path), "exec", "import mounted")
    assert "from the host 1024" in done.stdout


def test_a_corrupt_flash_is_reported_not_reformatted(make_device):
    device = make_device("micropython")
    device.prepare_flash()
    with open(device.flash, "r+b") as f:
        f.write(random.Random(1).randbytes(8192))
    with pytest.raises(SimError, match="corrupt"):
        device.start()
    assert not device.running


# ------------------------------------------------------------------ network

WIFI_MAIN = """\
import network, time
wlan = network.WLAN(network.STA_IF)
wlan.active(True)
print('scan', sorted(ap[0].decode() for ap in wlan.scan()))
def join(key):
    start = time.ticks_ms()
    wlan.connect('greenhouse', key)
    while wlan.status() == network.STAT_CONNECTING:
        time.sleep_ms(100)
    return wlan.status(), time.ticks_diff(time.ticks_ms(), start)
status, took = join('hunter2')
print('forced', status == network.STAT_NO_AP_FOUND, took)
status, took = join('wrong')
print('wrong', status == network.STAT_WRONG_PASSWORD, wlan.isconnected())
status, took = join('hunter2')
print('joined', status == network.STAT_GOT_IP, wlan.isconnected(), wlan.ifconfig()[0])
"""


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_wifi_failures_then_success(make_device, runtime):
    device = make_device(runtime, {"main.py": WIFI_MAIN},
                         network=dict(WIFI, failures=["STAT_NO_AP_FOUND"]))
    device.start()
    assert printed(device, r"scan (.*)") == ("['greenhouse', 'neighbour']",)
    forced, took = printed(device, r"forced (\w+) (\d+)")
    assert forced == "True" and 1500 <= int(took) < 1700  # virtual milliseconds
    assert printed(device, r"wrong (\w+) (\w+)") == ("True", "False")
    assert printed(device, r"joined (\w+) (\w+) ([\d.]+)") == ("True", "True", "192.168.4.2")


LINK_MAIN = """\
import network, socket, time
wlan = network.WLAN(network.STA_IF)
wlan.active(True)
wlan.connect('greenhouse', 'hunter2')
n = 0
while True:
    while not wlan.isconnected():
        time.sleep_ms(50)
    n += 1
    s = socket.socket()
    try:
        s.connect(socket.getaddrinfo('127.0.0.1', %d)[0][-1])
        s.send(('hello %%d\\n' %% n).encode())
        while True:
            data = s.recv(64)
            if not data:
                break
            s.send(data)
    except OSError as e:
        print('link error', n)
    s.close()
    time.sleep_ms(200)
"""


def accept_hello(server, timeout=15):
    server.settimeout(timeout)
    conn, _ = server.accept()
    conn.settimeout(timeout)
    line = conn.makefile("rb").readline()
    assert line.startswith(b"hello "), line
    return conn, int(line.split()[1])


def echo_time(conn):
    start = time.monotonic()
    conn.sendall(b"ping\n")
    got = b""
    while not got.endswith(b"ping\n"):
        got += conn.recv(64)
    return time.monotonic() - start


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_link_cut_drops_the_connection_and_restore_reconnects(make_device, runtime):
    with socket.create_server(("127.0.0.1", 0)) as server:
        device = make_device(runtime, network=WIFI)
        link = device.proxy(server.getsockname()[1])
        device.put_files({"main.py": LINK_MAIN % link.port})
        device.start()
        conn, first = accept_hello(server)
        fast = echo_time(conn)

        device.set_link(False)
        conn.settimeout(5)
        try:
            assert conn.recv(64) == b""
        except ConnectionResetError:
            pass
        conn.close()
        server.settimeout(0.5)
        with pytest.raises(socket.timeout):
            server.accept()  # nothing gets through while the link is down
        printed(device, r"link error (\d+)")

        device.set_link(True)
        conn, again = accept_hello(server)
        assert again > first
        link.latency = 0.15
        slow = echo_time(conn)
        assert slow >= 0.3 > fast
        conn.close()


# ------------------------------------------------------------------ in-process pieces

def test_network_shim_follows_the_virtual_clock():
    install(World({"name": "test"}, Clock()))
    try:
        from host_sim.world import current
        current().network = network.NetworkState.from_dict(
            dict(WIFI, link=[[5000, "down"], [9000, "up"]]))
        clock = current().clock
        wlan = network.WLAN(network.STA_IF)
        with pytest.raises(OSError):
            wlan.connect("greenhouse", "hunter2")  # not active yet
        wlan.active(True)
        wlan.connect("greenhouse", "hunter2")
        assert wlan.status() == network.STAT_CONNECTING
        clock.advance(1500 * 1000)
        assert wlan.isconnected() and wlan.status("rssi") == -48
        assert network.WLAN(network.STA_IF).isconnected()  # the same interface
        clock.advance_to(6000 * 1000)
        assert not wlan.isconnected() and wlan.scan() == []
        assert wlan.ifconfig()[0] == "0.0.0.0"
        clock.advance_to(9500 * 1000)
        assert wlan.status() == network.STAT_CONNECTING  # re-associating
        clock.advance_to(10500 * 1000)
        assert wlan.isconnected()
        assert wlan.config("ssid") == "greenhouse" and len(wlan.config("mac")) == 6
        with pytest.raises(ValueError):
            wlan.config("password")
        wlan.config(reconnects=0)
        current().network.set_link(False)
        assert wlan.status() == network.STAT_BEACON_TIMEOUT
        current().network.set_link(True)
        assert wlan.status() == network.STAT_BEACON_TIMEOUT  # it does not try again
        wlan.connect("greenhouse", "hunter2")
        clock.advance(1500 * 1000)
        assert wlan.isconnected()
        ap = network.WLAN(network.AP_IF)
        ap.config(ssid="jotunheim-setup", key="secret1")
        ap.active(True)
        assert ap.ifconfig()[0] == "192.168.4.1" and not ap.isconnected()
        wlan.disconnect()
        assert wlan.status() == network.STAT_IDLE
    finally:
        install(None)


def assert_reset(client=None, port=None):
    """The proxy resets `client`, or a new connection to `port`."""
    try:
        client = client or socket.create_connection(("127.0.0.1", port), timeout=5)
        assert client.recv(16) == b""
    except ConnectionResetError:
        pass
    finally:
        if client is not None:
            client.close()


def test_link_proxy_cut_restore_drop_and_latency():
    with socket.create_server(("127.0.0.1", 0)) as server, \
            LinkProxy(server.getsockname()[1]) as link:
        server.settimeout(5)

        def connect():
            client = socket.create_connection(("127.0.0.1", link.port), timeout=5)
            peer, _ = server.accept()
            peer.settimeout(5)
            return client, peer

        client, peer = connect()
        client.sendall(b"up")
        assert peer.recv(16) == b"up"
        link.latency = 0.2
        start = time.monotonic()
        peer.sendall(b"down")
        assert client.recv(16) == b"down" and time.monotonic() - start >= 0.2
        link.latency = 0
        link.cut()
        assert link.is_cut
        assert_reset(client)
        assert_reset(port=link.port)  # refused while the link is down
        link.restore()
        client, peer = connect()
        client.sendall(b"relayed")
        assert peer.recv(16) == b"relayed" and link.open_connections == 1
        link.drop()
        assert_reset(client)
        client, peer = connect()  # drop() leaves the link up
        client.sendall(b"again")
        assert peer.recv(16) == b"again"
        assert link.connections == 4


# ------------------------------------------------------------------ jotunheim sim

def test_jotunheim_sim_runs_a_scenario_until_interrupted(tmp_path):
    scenario = tmp_path / "scenario.json"
    runtimes = ["micropython", "cpython"]
    scenario.write_text(json.dumps({"devices": [
        {"board": "esp32", "runtime": runtime, "files": {"main.py": "print('hi')\n"}}
        for runtime in runtimes]}))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.path.join(ROOT, "tools")]))
    sim = subprocess.Popen(
        [sys.executable, "-m", "jotunheim_host.cli", "sim", "--scenario", str(scenario),
         "--root", str(tmp_path / "state")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        urls = []
        for line in sim.stdout:
            urls += re.findall(r"socket://127\.0\.0\.1:\d+", line)
            if line.startswith("mpremote connect"):
                break
        assert len(urls) == len(runtimes)
        for url in urls:
            done = subprocess.run(["mpremote", "connect", url, "resume", "exec",
                                   "import os; print(os.listdir())"],
                                  capture_output=True, text=True, timeout=60)
            assert done.stdout.strip() == "['main.py']", done.stderr
        sim.send_signal(signal.SIGINT)
        assert sim.wait(30) == 0
        assert "stopped %d simulated devices" % len(runtimes) in sim.stderr.read()
    finally:
        if sim.poll() is None:
            sim.kill()
            sim.wait()


def test_jotunheim_sim_usage_errors(capsys):
    from jotunheim_host.cli import main
    assert main(["sim"]) == 2
    assert "name a board" in capsys.readouterr().err
    assert main(["sim", "nonesuch"]) == 2
    assert "unknown board 'nonesuch'" in capsys.readouterr().err


HEAP_MAIN = """
import gc
gc.collect()
print('free', gc.mem_free())
block = bytearray(%d)  # most of the budget in one piece, as a fresh board allows
print('block ok')
"""


@pytest.mark.parametrize("board", ["esp8266", "esp32", "pico_w"])
def test_micropython_device_gets_its_boards_heap_in_one_piece(make_device, board):
    from host_sim import boards
    from host_sim.runner import word_factor
    budget = word_factor() * boards.load(board)["heap_bytes"]
    device = make_device("micropython", {"main.py": HEAP_MAIN % (budget // 2)}, board=board)
    device.start()
    device.console.wait_for("block ok", timeout=30)
    free = int(re.search(r"free (\d+)", device.console.text()).group(1))
    assert budget * 0.9 < free < budget * 1.1
