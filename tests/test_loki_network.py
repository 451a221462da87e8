"""Jormungandr, the scripts' network: MQTT through a real broker (Debian's mosquitto,
started here on a free loopback port, stopped and restarted mid-test) and HTTP against a
local http.server, on both runtimes."""
import http.server
import json
import os
import queue
import shutil
import socket
import subprocess
import threading
import time

import paho.mqtt.client as paho
import pytest

from agent_support import RUNTIMES, free_port, run
from jotunheim_host.controller import connect
from test_loki import device_url, example, listening, param, refused, registered

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
MQ = """\
async def run(ctx, action, host="", port=0, topic="", payload="", qos=0, retain=False,
              timeout_ms=3000):
    j = ctx.jormungandr
    if action == "connect":
        return await j.mqtt_connect(host, port, keepalive_s=4, backoff_max_ms=800,
                                    timeout_ms=timeout_ms)
    if action == "publish":
        await j.mqtt_publish(topic, payload, qos, retain, timeout_ms=timeout_ms)
        return True
    if action == "subscribe":
        return await j.mqtt_subscribe(topic, qos)
    if action == "receive":
        got = await j.mqtt_receive(topic or None, timeout_ms)
        return None if got is None else {"topic": got["topic"],
                                         "payload": got["payload"].decode()}
    return j.mqtt_status()
"""
MQ_PARAMS = [param("action", "string", required=True), param("host", "string", default=""),
             param("port", "int", default=0), param("topic", "string", default=""),
             param("payload", "string", default=""), param("qos", "int", default=0),
             param("retain", "bool", default=False),
             param("timeout_ms", "int", default=3000)]


class Broker:
    """mosquitto on a loopback port, with a generated configuration; stop() and start()
    again keep the port."""

    def __init__(self, directory):
        self.port = free_port()
        self.config = os.path.join(str(directory), "mosquitto.conf")
        with open(self.config, "w") as f:
            f.write("listener %d 127.0.0.1\nallow_anonymous true\npersistence false\n"
                    % self.port)
        self.log = os.path.join(str(directory), "mosquitto.log")
        self.process = None

    def start(self):
        with open(self.log, "a") as log:
            self.process = subprocess.Popen([MOSQUITTO, "-v", "-c", self.config],
                                            stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise AssertionError("mosquitto did not start: " + self.text())
                time.sleep(0.05)

    def stop(self):
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None

    def text(self):
        with open(self.log) as f:
            return f.read()


@pytest.fixture
def broker(tmp_path):
    b = Broker(tmp_path).start()
    yield b
    b.stop()


class HostClient:
    """paho-mqtt on the host: what it receives lands in a queue."""
    made = 0

    def __init__(self, port, *topics):
        HostClient.made += 1
        self.messages = queue.Queue()
        self.subscribed = threading.Event()
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="host-%d" % HostClient.made)
        self.client.on_message = lambda c, u, m: self.messages.put((m.topic, m.payload))
        self.client.on_subscribe = lambda *args: self.subscribed.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        for topic in topics:
            self.subscribed.clear()
            self.client.subscribe(topic, qos=1)
            assert self.subscribed.wait(10)

    def publish(self, topic, payload):
        self.client.publish(topic, payload, qos=1).wait_for_publish(10)

    def next(self):
        return self.messages.get(timeout=15)

    def close(self):
        self.client.loop_stop()
        self.client.disconnect()


async def until(condition, what, tries=300):
    """Poll condition() (a coroutine function) until it holds."""
    for _ in range(tries):
        value = await condition()
        if value:
            return value
        await _pause()
    raise AssertionError("never: " + what)


async def _pause():
    import asyncio
    await asyncio.sleep(0.05)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_mqtt_through_a_real_broker_survives_its_restart(make_device, runtime, broker):
    device, port = listening(make_device, runtime)
    hosts = [HostClient(broker.port, "jh/out/#")]

    async def scenario():
        host = hosts[0]
        d = await connect(device_url(port), reconnect=False)
        await registered(d, "mq", MQ, parameters=MQ_PARAMS)

        def mq(action, **args):
            return d.call("Script_mq", action=action, **args)
        status = await mq("connect", host="127.0.0.1", port=broker.port)
        assert status["connected"] and status["connects"] == 1
        # a script publishes, the host receives (QoS 0 and 1)
        assert await mq("publish", topic="jh/out/t", payload="21.5", qos=1) is True
        assert host.next() == ("jh/out/t", b"21.5")
        assert await mq("publish", topic="jh/out/q0", payload="fire and forget") is True
        assert host.next() == ("jh/out/q0", b"fire and forget")
        # the host publishes, a subscribed script receives
        assert await mq("subscribe", topic="jh/in/+", qos=1) == 1
        host.publish("jh/in/a", "hello device")
        assert await mq("receive", topic="jh/in/+") == {"topic": "jh/in/a",
                                                          "payload": "hello device"}
        assert await mq("receive", timeout_ms=100) is None
        status, message = await refused(mq("publish", topic="jh/#", payload="x"))
        assert status == "INVALID_ARGUMENT" and "cannot hold + or #" in message

        # the broker goes away: the device notices, and QoS 1 publishes wait for it
        broker.stop()
        await until(lambda: _not_connected(mq), "the device saw the broker go")
        status, message = await refused(mq("publish", topic="jh/out/t", payload="lost",
                                           qos=0, timeout_ms=200))
        assert status == "UNAVAILABLE" and "not connected" in message
        import asyncio
        waiting = asyncio.ensure_future(mq("publish", topic="jh/out/kept", payload="kept",
                                           qos=1, retain=True, timeout_ms=20000))
        await asyncio.sleep(0.5)
        broker.start()
        assert await waiting is True                 # sent once the broker is back
        host = HostClient(broker.port, "jh/out/kept")   # retained: it has it in any order
        hosts.append(host)
        assert host.next() == ("jh/out/kept", b"kept")
        status = await until(lambda: _connected(mq), "the device reconnected")
        assert status["connects"] >= 2 and status["subscriptions"] == ["jh/in/+"]
        # its subscription was made again: a message from the host still arrives
        await until(lambda: _subscribed_again(broker), "the device subscribed again")
        host.publish("jh/in/b", "after the restart")
        assert await mq("receive", topic="jh/in/+", timeout_ms=5000) == {
            "topic": "jh/in/b", "payload": "after the restart"}
        children = (await d.request("ChildrenStatusRequest", {}))["children"]
        network = [c for c in children if c["name"] == "Jormungandr"][0]
        assert network["errors"] >= 1 and "not connected" in network["last_error"]
        await d.close()
    try:
        run(scenario())
    finally:
        for host in hosts:
            host.close()


async def _connected(mq):
    status = await mq("status")
    return status if status["connected"] else None


async def _not_connected(mq):
    return not (await mq("status"))["connected"]


async def _subscribed_again(broker):
    return broker.text().count("jh/in/+ (QoS 1)") >= 2


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _send(self, status, body, content_type="text/plain", chunked=False):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("X-Test", "yes")
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(0, len(body), 7):
                piece = body[i:i + 7]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.write(b"0\r\n\r\n")
        else:
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    def do_GET(self):
        if self.path == "/hello":
            self._send(200, b"hello from the host")
        elif self.path == "/big":
            self._send(200, b"x" * 10000)
        elif self.path == "/chunked":
            self._send(200, b"a chunked body of some length", chunked=True)
        else:
            self._send(404, b"no such page")

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        answer = {"path": self.path, "type": self.headers["Content-Type"],
                  "agent": self.headers["User-Agent"], "token": self.headers.get("X-Token"),
                  "got": json.loads(body)}
        self._send(201, json.dumps(answer).encode(), "application/json")


@pytest.fixture
def web():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield "http://127.0.0.1:%d" % server.server_address[1]
    server.shutdown()
    server.server_close()


HTTP = """\
import json


async def run(ctx, url, method="GET", data=None, max_bytes=4096):
    j = ctx.jormungandr
    if method == "POST":
        got = await j.http_post(url, data, headers={"X-Token": "t0k"})
        return {"status": got["status"], "json": json.loads(got["body"])}
    got = await j.http(method, url, max_bytes=max_bytes, timeout_ms=5000)
    body = got["body"]
    return {"status": got["status"], "reason": got["reason"], "test": got["headers"].get(
        "x-test"), "size": len(body), "body": body[:64].decode()}
"""


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_http_requests_from_a_script(make_device, runtime, web):
    device, port = listening(make_device, runtime)

    async def scenario():
        d = await connect(device_url(port), reconnect=False)
        await registered(d, "web", HTTP, parameters=[
            param("url", "string", required=True), param("method", "string", default="GET"),
            param("data", "any"), param("max_bytes", "int", default=4096)])
        # first, while the heap is as the device started: a 10 KB body is read in one
        # piece, which the heap of a simulated ESP32 need not have after some calls
        big = await d.call("Script_web", url=web + "/big", max_bytes=10000)
        assert big["size"] == 10000 and big["body"] == "x" * 64
        assert await d.call("Script_web", url=web + "/hello") == {
            "status": 200, "reason": "OK", "test": "yes", "size": 19,
            "body": "hello from the host"}
        assert await d.call("Script_web", url=web + "/chunked") == {
            "status": 200, "reason": "OK", "test": "yes", "size": 29,
            "body": "a chunked body of some length"}
        missing = await d.call("Script_web", url=web + "/nothing")
        assert missing["status"] == 404 and missing["body"] == "no such page"
        posted = await d.call("Script_web", url=web + "/echo", method="POST",
                              data={"t": 21.5, "list": [1, 2]})
        assert posted == {"status": 201, "json": {
            "path": "/echo", "type": "application/json", "agent": "jotunheim",
            "token": "t0k", "got": {"t": 21.5, "list": [1, 2]}}}
        status, message = await refused(d.call("Script_web", url=web + "/big"))
        assert status == "RESOURCE_EXHAUSTED" and "10000 bytes" in message
        status, message = await refused(d.call("Script_web", url="ftp://example.org/"))
        assert status == "INVALID_ARGUMENT" and "only http:// and https://" in message
        closed = "http://127.0.0.1:%d/" % free_port()          # nothing listens there
        assert (await refused(d.call("Script_web", url=closed)))[0] == "UNAVAILABLE"
        assert await d.call("device_echo", value=1) == 1
        await d.close()
    run(scenario())


REPORTER_PARAMS = [param("broker", "string", required=True), param("port", "int", default=1883),
                   param("topic", "string", default="jotunheim/reading"),
                   param("sensor", "string", default="adc"), param("pin", "int", default=34),
                   param("full_scale_v", "float", default=3.3)]


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_mqtt_reporter_example(make_device, runtime, broker):
    device, port = listening(make_device, runtime)
    host = HostClient(broker.port, "greenhouse/#")

    async def scenario():
        d = await connect(device_url(port), reconnect=False)
        await registered(d, "mqtt_reporter", example("mqtt_reporter.py"),
                         parameters=REPORTER_PARAMS, limits={"storage_bytes": 1024})
        for volts in (1.0, 2.0):
            device.world.voltage(34, volts=volts)
            got = await d.call("Script_mqtt_reporter", broker="127.0.0.1", port=broker.port,
                               topic="greenhouse/light", full_scale_v=3.9)
            topic, payload = host.next()
            assert topic == "greenhouse/light"
            assert json.loads(payload) == got["published"]
            assert got["published"]["sensor"] == "adc"
        assert got["published"]["volts"] == pytest.approx(2.0, abs=0.05)
        assert got["hour"]["count"] == 2 and got["hour"]["max"] == pytest.approx(2.0, abs=0.05)
        await d.close()
    try:
        run(scenario())
    finally:
        host.close()
