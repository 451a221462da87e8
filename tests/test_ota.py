"""Over-the-air updates on simulated devices, both runtimes (protocol/SPEC.md 1.12): a
complete update and rollback; each kind of bad update refused with its reason while the
old image keeps serving; a transfer resumed after a lost link and after power cuts at
every chunk boundary; power cuts at every flash commit of activation and validation
(host_sim's fault injection); an image failing its self-test rolled back automatically."""
import asyncio
import hashlib
import json
import os
import time

import pytest

import protocol
from agent_support import RUNTIMES, console_lines, free_port, install, run
from jotunheim_host import bundle, ota
from jotunheim_host.controller import connect
from jotunheim_host.session import STATUS, CallError

CODES = {name: number for number, name in STATUS.items()}
STATE = {name: number for number, name in ota.STATES.items()}
FACTORY = "0.1.0"


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    """The owner's key pair and a stranger's: {"owner": info, "stranger": info}."""
    where = tmp_path_factory.mktemp("keys")
    return {name: ota.keygen(str(where / (name + ".pem"))) for name in ("owner", "stranger")}


@pytest.fixture(scope="module")
def app_files():
    """The application bundle for each runtime, built once."""
    cache = {}

    def files(runtime):
        if runtime not in cache:
            cache[runtime] = ota.application_files(runtime)
        return cache[runtime]
    return files


def ota_device(make_device, runtime, keys, board="esp32"):
    """A started listening device with the owner's key: (device, url)."""
    port = free_port()
    device = make_device(runtime, board=board)
    install(device, {"agent.mode": "listen", "agent.listen_port": port})
    device.put_files({"/ota_keys.json": ota.device_key_file(keys["owner"]["public"],
                                                             device.board)})
    device.start()
    console_lines(device, r"listening on port")
    return device, "tcp://127.0.0.1:%d" % port


def tiny(keys, version, counter, note=b"", board="esp32", signer="owner", files=None):
    """A small signed update: one module (the factory's packages stay in use)."""
    files = files or {"lib/ota_note.py": b"NOTE = %r\n" % (version + note.decode())}
    return ota.build(keys[signer]["private"], board, version, counter, files=files)


def signed(keys, signer="owner", **fields):
    """An update whose manifest fields are given outright (sizes, boards, kinds)."""
    key = ota.load_private_key(keys[signer]["private"])
    payload = fields.pop("payload", ota.pack({"lib/x.py": b"X = 1\n"}))
    manifest = protocol.encode("OtaManifest", dict({
        "board": "esp32", "version": "9.9.9", "counter": 99, "size": len(payload),
        "sha256": hashlib.sha256(payload).digest(), "kind": "bundle"}, **fields))
    return ota.Update(manifest, ota.sign(key, manifest),
                      ota.public_document(key)["keys"][0]["id"], payload)


async def refused(d, update, status, match, when="begin"):
    """Push update; it must fail with `status` (a name) and a message matching `match`."""
    with pytest.raises(ota.OtaError) as e:
        await ota.push(d, update, wait_valid=False)
    assert e.value.status == status, e.value
    assert match in e.value.message, e.value.message
    answer = await ota.status(d)
    assert answer["version"] == FACTORY or answer["version"] != update.version
    return answer


def wait_for(check, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached within %g s" % timeout)
        time.sleep(0.02)


# ------------------------------------------------------------------ host side


def test_archive_and_update_file_round_trip(tmp_path, keys):
    files = {"lib/a.py": b"A = 1\n", "lib/pkg/b.mpy": bytes(range(256)) * 3}
    archive = ota.pack(files)
    assert archive.startswith(b"JOTA\x01") and archive.endswith(b"\x00\x00")
    assert ota.unpack(archive) == files
    with pytest.raises(ota.OtaError, match="bad path"):
        ota.pack({"lib/../boot.py": b""})
    update = tiny(keys, "1.2.3", 7)
    update.save(str(tmp_path / "u.ota"))
    again = ota.Update.load(str(tmp_path / "u.ota"))
    assert again.describe() == update.describe()
    assert again.describe()["size"] == len(again.payload)
    assert again.describe()["sha256"] == hashlib.sha256(again.payload).hexdigest()
    assert oct(os.stat(keys["owner"]["private"]).st_mode & 0o777) == "0o600"
    with pytest.raises(ota.OtaError, match="exists"):
        ota.keygen(keys["owner"]["private"])
    written = bundle.firmware_files("cpython", "esp32", ota_key=keys["owner"]["public"])
    doc = json.loads(written["/ota_keys.json"])
    assert doc["keys"][0]["id"] == keys["owner"]["key_id"] and doc["slot_bytes"] == 1572864
    assert "/ota_keys.json" not in bundle.firmware_files("cpython", "esp32")


def test_device_verifier_matches_cryptography(keys):
    """The device's PKCS#1 v1.5 check against signatures made by `cryptography`."""
    from jotunheim import ota_update
    key = ota.load_private_key(keys["owner"]["private"])
    n = bytes.fromhex(ota.public_document(key)["keys"][0]["n"])
    assert len(n) == 384
    signature = ota.sign(key, b"manifest")
    assert ota_update.verify(n, b"manifest", signature)
    assert not ota_update.verify(n, b"manifest!", signature)
    assert not ota_update.verify(n, b"manifest", signature[:-1] + bytes([signature[-1] ^ 1]))
    assert not ota_update.verify(n, b"manifest", signature[1:])
    other = ota.load_private_key(keys["stranger"]["private"])
    assert not ota_update.verify(n, b"manifest", ota.sign(other, b"manifest"))


# ------------------------------------------------------------------ devices


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_complete_update_then_manual_rollback(make_device, runtime, keys, app_files):
    device, url = ota_device(make_device, runtime, keys)
    update = ota.build(keys["owner"]["private"], "esp32", "2.0.0", 10,
                       files=app_files(runtime))
    seen = []

    async def main():
        d = await connect(url, reconnect=True)
        try:
            caps = await d.capabilities()
            assert caps["device"]["firmware_version"] == FACTORY
            assert caps["features"]["ota_method"] == "ab-bundle"
            done = await ota.push(d, update, progress=lambda n, size: seen.append((n, size)))
            assert done["state"] == STATE["valid"] and done["version"] == "2.0.0"
            name, event = await d.next_event("CapabilityChanged")
            assert "2.0.0 validated" in event["reason"]
            caps = await d.capabilities(refresh=True)
            assert caps["device"]["firmware_version"] == "2.0.0"
            assert d.hello["firmware_version"] == "2.0.0"
            assert await d.call("device_echo", value="new") == "new"
            # the same update again: installed already, nothing is sent
            assert (await ota.push(d, update))["version"] == "2.0.0"
            back = await ota.rollback(d)
            assert back["state"] == STATE["rolled_back"]
            now = await ota.wait_version(d, FACTORY)
            assert now["version"] == FACTORY and now["state"] == STATE["rolled_back"]
            assert "by request" in now["message"]
            assert d.hello["firmware_version"] == FACTORY
            assert await d.call("device_echo", value="old") == "old"
            again = await d.request("OtaRollback", {})
            assert again["status"] == CODES["FAILED_PRECONDITION"], again
            assert "factory image" in again["message"]
        finally:
            await d.close()
    run(main())
    assert seen and seen[-1] == (len(update.payload), len(update.payload))
    assert device.boots == 3  # the update's reboot, the rollback's


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_device_without_keys_takes_no_updates(make_device, runtime, keys):
    port = free_port()
    device = make_device(runtime)
    install(device, {"agent.mode": "listen", "agent.listen_port": port})
    device.start()
    console_lines(device, r"listening on port")

    async def main():
        d = await connect("tcp://127.0.0.1:%d" % port)
        try:
            caps = await d.capabilities()
            assert not caps["features"].get("ota_method")
            with pytest.raises(CallError) as e:
                await ota.begin(d, tiny(keys, "1.0.0", 1))
            assert e.value.status_name == "UNIMPLEMENTED"
        finally:
            await d.close()
    run(main())


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_bad_updates_are_refused_with_their_reason(make_device, runtime, keys):
    device, url = ota_device(make_device, runtime, keys)
    good = tiny(keys, "3.0.0", 30)

    async def main():
        d = await connect(url, reconnect=True)
        try:
            stranger = tiny(keys, "3.0.0", 30, signer="stranger")
            await refused(d, stranger, "PERMISSION_DENIED", "unknown key")
            forged = ota.Update(stranger.manifest, stranger.signature, good.key_id,
                                good.payload)
            await refused(d, forged, "PERMISSION_DENIED", "does not verify")
            altered = bytearray(good.manifest)
            altered[-1] ^= 1
            altered = ota.Update(bytes(altered), good.signature, good.key_id, good.payload)
            await refused(d, altered, "PERMISSION_DENIED", "does not verify")
            await refused(d, tiny(keys, "3.0.0", 30, board="pico_w"), "FAILED_PRECONDITION",
                          "for board 'pico_w'")
            await refused(d, signed(keys, kind="image"), "FAILED_PRECONDITION", "kind")
            await refused(d, signed(keys, size=1 << 24), "RESOURCE_EXHAUSTED", "slot holds")
            tampered = ota.Update(good.manifest, good.signature, good.key_id,
                                  good.payload[:-3] + b"\x01" + good.payload[-2:])
            answer = await refused(d, tampered, "DATA_LOSS", "SHA-256")
            assert answer["state"] == STATE["failed"] and "SHA-256" in answer["message"]
            # truncated: everything but the last bytes, then a commit
            begun = await ota.begin(d, good)
            assert begun["status"] == 0 and begun["offset"] == 0
            part = await d.request("OtaChunk", {"offset": 0, "data": good.payload[:-4]})
            assert part["offset"] == len(good.payload) - 4
            skipped = await d.request("OtaChunk", {"offset": 1, "data": b"x"})
            assert skipped["status"] == CODES["OUT_OF_RANGE"]
            assert skipped["offset"] == len(good.payload) - 4
            short = await d.request("OtaCommit", {"reboot": True})
            assert short["status"] == CODES["FAILED_PRECONDITION"]
            assert "incomplete" in short["message"]
            assert (await d.request("OtaAbort", {"reason": "test"}))["state"] == STATE["idle"]
            assert await d.call("device_echo", value=1) == 1  # the old image still serves
            await ota.push(d, good)
            assert (await ota.status(d))["version"] == "3.0.0"
            await refused(d, tiny(keys, "2.9.0", 29), "FAILED_PRECONDITION", "not above")
            await refused(d, tiny(keys, "3.0.1", 30), "FAILED_PRECONDITION", "not above")
            assert (await ota.status(d))["version"] == "3.0.0"
            assert await d.call("device_echo", value=2) == 2
        finally:
            await d.close()
    run(main())
    assert device.boots == 2  # only the good update rebooted it


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_transfer_resumes_after_a_lost_link(make_device, runtime, keys):
    device, url = ota_device(make_device, runtime, keys)
    update = tiny(keys, "4.0.0", 40, files={"lib/blob.bin": os.urandom(12000)})

    async def main():
        d = await connect(url, reconnect=True)
        try:
            begun = await ota.begin(d, update)
            half = 5000
            await d.request("OtaChunk", {"offset": 0, "data": update.payload[:half]})
            first = d.session
            first.close()  # the link drops mid-transfer
            await ota._reconnected(d, 30)
            assert d.session is not first
            resumed = await ota.begin(d, update)
            assert resumed["status"] == 0 and resumed["state"] == STATE["receiving"]
            assert resumed["offset"] == half and begun["offset"] == 0
            sent = []
            done = await ota.push(d, update, progress=lambda n, size: sent.append(n),
                                  chunk=2048)
            assert done["version"] == "4.0.0" and done["state"] == STATE["valid"]
            assert sent[0] > half  # nothing before the device's offset went again
        finally:
            await d.close()
    run(main())


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_power_cut_at_every_chunk_boundary(make_device, runtime, keys):
    device, url = ota_device(make_device, runtime, keys)
    chunk = 1024
    update = tiny(keys, "5.0.0", 50, files={"lib/blob.bin": os.urandom(3000)})
    size = len(update.payload)

    async def step(offset):
        """Begin (the device says where it stands) and send one chunk; then power cut."""
        d = await connect(url, reconnect=False)
        try:
            begun = await ota.begin(d, update)
            assert begun["status"] == 0 and begun["offset"] == offset, begun
            data = update.payload[offset:offset + chunk]
            answer = await d.request("OtaChunk", {"offset": offset, "data": data})
            assert answer["offset"] == offset + len(data)
            return answer["offset"]
        finally:
            await d.close()

    offset = 0
    while offset < size:
        offset = run(step(offset))
        device.power_cut()  # right after the acknowledgement
        device.start()
        console_lines(device, r"listening on port", count=device.boots)

    async def finish():
        d = await connect(url, reconnect=True)
        try:
            begun = await ota.begin(d, update)
            assert begun["offset"] == size
            done = await ota.push(d, update)
            assert done["version"] == "5.0.0" and done["state"] == STATE["valid"]
        finally:
            await d.close()
    run(finish())


def off(device):
    with device._lock:  # not in the middle of a reboot
        return device._process is None


async def keep_on(device, restarts):
    """Power the device on again whenever a cut turned it off."""
    loop = asyncio.get_running_loop()
    while True:
        if off(device):
            restarts.append(device.boots)
            await loop.run_in_executor(None, device.start)
        await asyncio.sleep(0.02)


async def connect_soon(url, timeout=30.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await connect(url, reconnect=True)
        except Exception:  # noqa: BLE001 - off, or booting: try again
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)


def _cut_during(device, url, keys, version, counter, next_boot, commits):
    """Transfer a small update, arm a power cut after `commits` flash commits (counted
    from now, or from the next boot's mount), commit; power the device on again after a
    cut, and finish the update with the host's ordinary push: the device must end valid
    on `version`. Returns True if the cut happened."""
    update = tiny(keys, version, counter)

    async def main():
        restarts = []
        keeper = asyncio.ensure_future(keep_on(device, restarts))
        try:
            d = await connect_soon(url)
            try:
                assert (await ota.transfer(d, update))["offset"] == len(update.payload)
                device.power_cut_after(commits, next_boot=next_boot)
                try:
                    await d.request("OtaCommit", {"reboot": True}, timeout=10)
                except Exception:  # noqa: BLE001 - the cut may come before the answer
                    pass
            finally:
                await d.close()
            d = await connect_soon(url)
            try:
                done = await ota.push(d, update, timeout=60)
                assert done["version"] == version and done["state"] == STATE["valid"]
                assert await d.call("device_echo", value=version) == version
            finally:
                await d.close()
        finally:
            keeper.cancel()
        return bool(restarts)
    return run(main())


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_power_cut_at_every_step_of_activation_and_validation(make_device, runtime, keys):
    device, url = ota_device(make_device, runtime, keys)
    counter = 60
    cuts = {}
    for next_boot in (False, True):  # the commit; then boot.py and the validation
        commits = 0
        while True:
            commits += 1
            counter += 1
            assert commits < 40, "the activation never completed"
            if not _cut_during(device, url, keys, "6.0.%d" % counter, counter, next_boot,
                               commits):
                break
        cuts[next_boot] = commits - 1
    # the commit makes lib/, writes the file, the file list and the state, and cleans up
    # (7 commits on CPython, more LittleFS syncs); the next boot counts itself in boot.py
    # and validates (2 + 2)
    assert cuts[False] >= 7 and cuts[True] >= 4, cuts
    state = json.loads(device_file(device, "/ota/state.json"))
    assert state["pending"] == 0 and state["last"] == "valid"


def device_file(device, path):
    device.power_cut()
    return device.read_file(path)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_image_failing_its_self_test_is_rolled_back(make_device, runtime, keys):
    device, url = ota_device(make_device, runtime, keys)
    good = tiny(keys, "7.0.0", 70)
    bad = tiny(keys, "7.1.0", 71, files={
        "lib/ota_note.py": b"NOTE = 'bad'\n",
        "lib/selftest.py": b"def check(agent):\n    raise RuntimeError('sensor bus dead')\n"})

    async def main():
        d = await connect(url, reconnect=True)
        try:
            await ota.push(d, good)
            with pytest.raises(ota.OtaError) as e:
                await ota.push(d, bad, timeout=90)
            assert e.value.status == "ABORTED" and "rolled back" in e.value.message
            now = await ota.status(d)
            assert now["version"] == "7.0.0" and now["state"] == STATE["rolled_back"]
            assert now["failed_boots"] == 3
            assert "3 boots without validation" in now["message"]
            assert await d.call("device_echo", value="ok") == "ok"
            # the failed image's counter is not the installed one: a fixed build may follow
            fixed = tiny(keys, "7.1.1", 72)
            assert (await ota.push(d, fixed))["version"] == "7.1.1"
        finally:
            await d.close()
    run(main(), timeout=180)
    assert "self-test failed: RuntimeError: sensor bus dead" in device.console.text()


def test_cli_build_push_status_rollback(make_device, keys, tmp_path, capsys):
    """`jotunheim ota` as a maker runs it (one runtime: the verbs are host code)."""
    from jotunheim_host import cli
    device, url = ota_device(make_device, "cpython", keys)
    update = str(tmp_path / "u.ota")

    def jotunheim(*argv):
        code = cli.main(list(argv) + ["--format", "json"])
        out = capsys.readouterr()
        return code, json.loads(out.out or out.err)

    code, built = jotunheim("ota", "build", "--key", keys["owner"]["private"], "--board",
                            "esp32", "--version", "8.0.0", "--runtime", "cpython", "-o", update)
    assert code == 0 and built["version"] == "8.0.0" and built["key_id"] == keys["owner"]["key_id"]
    code, plan = jotunheim("ota", "push", url, "--update", update, "--dry-run")
    assert code == 0 and plan[url]["version"] == FACTORY and plan[url]["board"] == "esp32"
    code, pushed = jotunheim("ota", "push", url, "--update", update)
    assert code == 0 and pushed[url]["version"] == "8.0.0" and pushed[url]["state"] == "valid"
    code, status = jotunheim("ota", "status", url)
    assert code == 0 and status[url]["version"] == "8.0.0"
    code, back = jotunheim("ota", "rollback", url)
    assert code == 0 and back[url]["version"] == FACTORY and back[url]["state"] == "rolled_back"
    code, error = jotunheim("ota", "rollback", url)
    assert code == 20 and error["details"]["status"] == "FAILED_PRECONDITION"
    ota.build(keys["stranger"]["private"], "esp32", "8.1.0", 81,
              files={"lib/x.py": b""}).save(update)
    code, error = jotunheim("ota", "push", url, "--update", update)
    assert code == 20 and error["details"]["status"] == "PERMISSION_DENIED"
    assert "ota_keys.json" in error["hint"]
    code, error = jotunheim("ota", "push", url)
    assert code == 2


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_image_whose_agent_does_not_load_is_rolled_back_at_once(make_device, runtime, keys):
    device, url = ota_device(make_device, runtime, keys)
    broken = tiny(keys, "9.0.0", 90, files={
        "lib/jotunheim/__init__.py": b"raise RuntimeError('broken build')\n"})

    async def main():
        d = await connect(url, reconnect=True)
        try:
            with pytest.raises(ota.OtaError) as e:
                await ota.push(d, broken)
            assert e.value.status == "ABORTED"
            now = await ota.status(d)
            assert now["version"] == FACTORY and now["state"] == STATE["rolled_back"]
            assert "does not load: RuntimeError: broken build" in now["message"]
            assert now["failed_boots"] == 1
            assert await d.call("device_echo", value="up") == "up"
        finally:
            await d.close()
    run(main())
    assert device.boots == 2  # the update's reboot: the rollback needed no other


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_update_of_a_device_that_dials_its_hub(make_device, runtime, keys):
    """A dialing device validates its new image once it has dialled its hub again."""
    from jotunheim_host.controller import Hub
    update = tiny(keys, "10.0.0", 100)

    async def main():
        async with Hub() as hub:
            device = make_device(runtime)
            install(device, {"agent.controller": "127.0.0.1:%d" % hub.port},
                    files={"/ota_keys.json": ota.device_key_file(keys["owner"]["public"],
                                                                  device.board)})
            device.start()
            d = await hub.device()
            first = d.hello["boot_id"]
            done = await ota.push(d, update)
            assert done["version"] == "10.0.0" and done["state"] == STATE["valid"]
            assert d.hello["boot_id"] != first and d.hello["firmware_version"] == "10.0.0"
            assert await d.call("device_echo", value=3) == 3
    run(main())
