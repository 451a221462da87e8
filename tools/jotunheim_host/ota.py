"""Over-the-air updates from the host: keys, signed updates, pushing them, status, rollback.

How this works. `keygen` makes an RSA-3072 key pair with `cryptography`: the private key
stays with the owner (PEM, mode 0600); the public key goes onto the device with the
firmware, as /ota_keys.json (bundle.firmware_files(..., ota_key=...)). RSA with
e = 65537 because the device verifies a signature with one modular exponentiation (16
squarings and a multiplication, a few milliseconds in MicroPython, no three-argument
pow needed); Ed25519 in pure Python costs about a second and much garbage on an ESP32.
Signatures are PKCS#1 v1.5 over SHA-256: the device rebuilds the padded block and
compares it whole, which is a few lines.

An update is the application bundle (the firmware's /lib: .mpy files for MicroPython,
.py for CPython) packed as a bundle archive (firmware/FORMATS.md), and a manifest (an
encoded OtaManifest: board, version, counter, size, SHA-256) signed over exactly its
bytes. `build` writes it to one file: the line "JOTUNHEIM-OTA 1", one line of JSON
(manifest and signature in hex, key id), then the archive.

`push` sends it with the controller library (Device.request): OtaBegin, then OtaChunk
requests pipelined within the device's credit, each at most the device's max_frame, then
OtaCommit. When the link drops, it waits for the Device to reconnect and begins again with
the same manifest: the device answers the offset it holds, and the transfer resumes
there. After the commit the device reboots into the new image, which becomes valid once
it has reconnected and passed its self-test; push waits for that verdict."""
import asyncio
import hashlib
import json
import os
import time

import protocol
from jotunheim_host import bundle

ALGORITHM = "RSA-3072-PKCS1v15-SHA256"
E = 65537
MAGIC = b"JOTA\x01"
FILE_HEADER = b"JOTUNHEIM-OTA 1\n"
FLIGHT = 8  # chunks in flight within the device's credit
CHUNK_OVERHEAD = 32  # OtaChunk's fields other than data, and then some (SPEC 1.12: <= 21)
STATES = {0: "unspecified", 1: "idle", 2: "receiving", 3: "verifying", 4: "ready",
          5: "pending_validation", 6: "valid", 7: "rolled_back", 8: "failed"}
OK, UNAVAILABLE, OUT_OF_RANGE = 0, 14, 11


class OtaError(Exception):
    """An update step failed: status (a Status name) and the device's message."""

    def __init__(self, status, message, answer=None):
        Exception.__init__(self, "%s: %s" % (status, message))
        self.status = status
        self.message = message
        self.answer = answer


# ------------------------------------------------------------------ keys


def key_id(n_bytes):
    """A key's short fingerprint: the first 8 bytes of SHA-256 of its modulus, in hex."""
    return hashlib.sha256(n_bytes).hexdigest()[:16]


def keygen(private_path, public_path=None):
    """Make a key pair: the private key as PEM (mode 0600), the public key as the device's
    key file. Returns {"key_id", "private", "public"}."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    if public_path is None:
        public_path = os.path.splitext(private_path)[0] + ".pub.json"
    for path in (private_path, public_path):
        if os.path.exists(path):
            raise OtaError("ALREADY_EXISTS", "%s exists: not overwriting a key" % path)
    key = rsa.generate_private_key(public_exponent=E, key_size=3072)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    public = public_document(key)
    with open(public_path, "w") as f:
        json.dump(public, f, indent=2)
        f.write("\n")
    return {"key_id": public["keys"][0]["id"], "private": private_path, "public": public_path}


def load_private_key(path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    try:
        with open(path, "rb") as f:
            key = serialization.load_pem_private_key(f.read(), password=None)
    except OSError as e:
        raise OtaError("NOT_FOUND", "cannot read the signing key %s: %s" % (path, e.strerror))
    except (ValueError, TypeError) as e:
        raise OtaError("INVALID_ARGUMENT", "%s is not a PEM private key: %s" % (path, e))
    if not isinstance(key, rsa.RSAPrivateKey) or key.public_key().public_numbers().e != E:
        raise OtaError("INVALID_ARGUMENT", "%s is not an RSA key with e = 65537" % path)
    return key


def public_document(key):
    """The public half of a key as the device's key file holds it ({"keys": [...]})."""
    if hasattr(key, "public_key"):
        key = key.public_key()
    numbers = key.public_numbers()
    n = numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")
    return {"keys": [{"id": key_id(n), "algorithm": ALGORITHM, "e": numbers.e,
                      "n": n.hex()}]}


def read_public(source):
    """A public key document from a .pub.json file, a PEM private key file, or a dict."""
    if isinstance(source, dict):
        doc = source
    elif str(source).endswith(".pem"):
        doc = public_document(load_private_key(source))
    else:
        try:
            with open(source) as f:
                doc = json.load(f)
        except OSError as e:
            raise OtaError("NOT_FOUND", "cannot read the public key %s: %s" % (source,
                                                                               e.strerror))
        except ValueError as e:
            raise OtaError("INVALID_ARGUMENT", "%s is not JSON: %s" % (source, e))
    keys = doc.get("keys") if isinstance(doc, dict) else None
    if not keys or not all(isinstance(k, dict) and k.get("e") == E and
                           isinstance(k.get("n"), str) and k.get("id") == key_id(
                               bytes.fromhex(k["n"])) for k in keys):
        raise OtaError("INVALID_ARGUMENT", "%s is not a key file made by `jotunheim ota "
                       "keygen`" % (source if not isinstance(source, dict) else "the key"))
    return {"keys": keys}


def device_key_file(public, board_profile):
    """The bytes of /ota_keys.json: the owner's public keys and the board's slot budget."""
    doc = dict(read_public(public))
    ota = board_profile.get("ota") or {}
    if ota.get("slot_bytes"):
        doc["slot_bytes"] = ota["slot_bytes"]
    return (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode()


def sign(private_key, data):
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding
    return private_key.sign(data, padding.PKCS1v15(), hashes.SHA256())


# ------------------------------------------------------------------ bundles


def pack(files):
    """A bundle archive of {path under the slot ("lib/..."): bytes} (firmware/FORMATS.md)."""
    out = [MAGIC]
    for name in sorted(files):
        raw = name.encode()
        if not name.startswith("lib/") or ".." in name.split("/") or len(raw) > 255:
            raise OtaError("INVALID_ARGUMENT", "bad path in a bundle: %r" % name)
        data = files[name]
        out += [len(raw).to_bytes(2, "big"), raw, len(data).to_bytes(4, "big"), data]
    out.append(b"\x00\x00")
    return b"".join(out)


def unpack(archive):
    """The files of a bundle archive (for checks on the host)."""
    if not archive.startswith(MAGIC):
        raise OtaError("INVALID_ARGUMENT", "not a bundle archive")
    files, pos = {}, len(MAGIC)
    while True:
        length = int.from_bytes(archive[pos:pos + 2], "big")
        pos += 2
        if not length:
            return files
        name = archive[pos:pos + length].decode()
        size = int.from_bytes(archive[pos + length:pos + length + 4], "big")
        pos += length + 4
        files[name] = archive[pos:pos + size]
        pos += size


def application_files(runtime, compiled=None):
    """The firmware's application bundle: {"lib/...": bytes}, .mpy for MicroPython."""
    files = {path: data for path, data in bundle.source_files().items()
             if path.startswith("/lib/")}
    if compiled is None:
        compiled = runtime == "micropython"
    if compiled:
        files = bundle.compile_files(files)
    return {path[1:]: data for path, data in files.items()}


class Update:
    """A signed update: manifest (encoded OtaManifest), signature, key_id, payload."""

    def __init__(self, manifest, signature, key_id, payload):
        self.manifest = manifest
        self.signature = signature
        self.key_id = key_id
        self.payload = payload
        self.fields = protocol.decode("OtaManifest", manifest)

    @property
    def version(self):
        return self.fields["version"]

    def describe(self):
        f = self.fields
        return {"board": f["board"], "version": f["version"], "counter": f["counter"],
                "size": f["size"], "sha256": f["sha256"].hex(), "kind": f["kind"],
                "key_id": self.key_id}

    def to_bytes(self):
        head = {"manifest": self.manifest.hex(), "signature": self.signature.hex(),
                "key_id": self.key_id}
        return FILE_HEADER + json.dumps(head, sort_keys=True).encode() + b"\n" + self.payload

    def save(self, path):
        with open(path, "wb") as f:
            f.write(self.to_bytes())

    @classmethod
    def load(cls, path):
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as e:
            raise OtaError("NOT_FOUND", "cannot read %s: %s" % (path, e.strerror))
        if not data.startswith(FILE_HEADER):
            raise OtaError("INVALID_ARGUMENT", "%s is not an update made by `jotunheim ota "
                           "build`" % path)
        line, _, payload = data[len(FILE_HEADER):].partition(b"\n")
        try:
            head = json.loads(line)
            return cls(bytes.fromhex(head["manifest"]), bytes.fromhex(head["signature"]),
                       head["key_id"], payload)
        except (ValueError, KeyError, TypeError, protocol.ProtocolError) as e:
            raise OtaError("INVALID_ARGUMENT", "%s has a damaged header: %s" % (path, e))


def build(private_key, board, version, counter=None, runtime=None, files=None, kind="bundle"):
    """A signed Update of `files` ({"lib/...": bytes}; default: this firmware's bundle
    for `runtime`, by default the board's). private_key: a key or a PEM file's path."""
    if not isinstance(private_key, (str, os.PathLike)):
        key = private_key
    else:
        key = load_private_key(private_key)
    profile = bundle._board_profile(board)
    if files is None:
        files = application_files(runtime or profile.get("runtime", "micropython"))
    payload = pack(files)
    manifest = protocol.encode("OtaManifest", {
        "board": profile["name"], "version": version,
        "counter": int(time.time()) if counter is None else counter, "size": len(payload),
        "sha256": hashlib.sha256(payload).digest(), "kind": kind})
    return Update(manifest, sign(key, manifest), public_document(key)["keys"][0]["id"],
                  payload)


# ------------------------------------------------------------------ devices


def _checked(answer, what):
    if answer["status"] != OK:
        from jotunheim_host.session import STATUS
        raise OtaError(STATUS.get(answer["status"], str(answer["status"])),
                       answer.get("message") or what, answer)
    return answer


async def status(device):
    """The device's OtaStatus (decoded)."""
    return await device.request("OtaStatusRequest", {})


async def rollback(device):
    """Return the device to its previous image (it reboots); OtaError if it has none."""
    return _checked(await device.request("OtaRollback", {}), "rollback refused")


async def begin(device, update):
    return await device.request("OtaBegin", {"manifest": update.manifest,
                                             "signature": update.signature,
                                             "key_id": update.key_id})


async def transfer(device, update, progress=None, chunk=None):
    """OtaBegin, then chunks within the device's credit until all are acknowledged.
    Returns the last OtaStatus. Resumes from the device's offset after OUT_OF_RANGE."""
    answer = _checked(await begin(device, update), "the update was refused")
    if answer["state"] != 2:  # installed already (READY, PENDING_VALIDATION, VALID)
        return answer
    size = len(update.payload)
    limit = (device.hello or {}).get("max_frame") or 4096
    chunk = min(chunk or limit, limit) - CHUNK_OVERHEAD
    acked, credit = answer["offset"], answer["credit"] or chunk
    sent = acked
    flight = []
    try:
        while acked < size:
            while sent < size and (sent - acked < credit or not flight):
                # a few chunks in flight: one decoded while the next ones arrive
                n = min(chunk, size - sent, max(credit // FLIGHT, 1024))
                flight.append(asyncio.ensure_future(device.request("OtaChunk", {
                    "offset": sent, "data": update.payload[sent:sent + n]})))
                sent += n
            answer = await flight.pop(0)
            if answer["status"] == OUT_OF_RANGE:  # out of step: go on from the device's
                for task in flight:
                    task.cancel()
                await asyncio.gather(*flight, return_exceptions=True)
                flight = []
                acked = sent = answer["offset"]
                continue
            _checked(answer, "chunk refused")
            acked, credit = answer["offset"], answer["credit"] or chunk
            if progress is not None:
                progress(acked, size)
    finally:
        for task in flight:
            task.cancel()
    return answer


async def push(device, update, progress=None, reboot=True, wait_valid=True, retries=8,
               timeout=120.0, chunk=None):
    """Install `update` on a connected controller Device (one made with reconnect, so
    that a lost link is dialled again): transfer (resumed after link losses), commit,
    and, with wait_valid, wait until the new image has validated. Returns the final
    OtaStatus; OtaError when the device refuses or the image was rolled back."""
    from jotunheim_host.session import CallError, ControllerError
    started = time.monotonic()
    attempt = 0
    while True:
        try:
            answer = await transfer(device, update, progress, chunk)
            if answer["state"] == 2:
                answer = _checked(await device.request("OtaCommit", {"reboot": reboot}),
                                  "commit refused")
            elif answer["state"] == 4 and reboot:  # activated before: reboot into it
                answer = _checked(await device.request("OtaCommit", {"reboot": True}),
                                  "commit refused")
            break
        except (CallError, ControllerError) as e:
            if isinstance(e, CallError) and e.status != UNAVAILABLE:
                raise OtaError(e.status_name, e.message) from None
            attempt += 1
            if attempt > retries or time.monotonic() - started > timeout:
                raise OtaError("UNAVAILABLE", "the link kept failing: %s" % e) from None
            await _reconnected(device, timeout)
    if not (reboot and wait_valid):
        return answer
    return await wait_validated(device, update, timeout - (time.monotonic() - started))


async def _reconnected(device, timeout):
    await asyncio.sleep(0.1)
    try:
        await device.wait_connected(timeout)
    except asyncio.TimeoutError:
        raise OtaError("UNAVAILABLE", "the device did not come back") from None


async def wait_validated(device, update, timeout=120.0):
    """Poll the device until it runs update's version validated (or has rolled back)."""
    def verdict(answer):
        if answer["version"] == update.version and answer["state"] in (1, 6):
            return True
        if answer["state"] == 7 or (answer["state"] == 8 and
                                    answer["version"] != update.version):
            raise OtaError("ABORTED", "the device rolled back to %s: %s" % (
                answer["version"], answer["message"]), answer)
        return False
    return await _poll(device, verdict, timeout, "%s did not validate" % update.version)


async def wait_version(device, version, timeout=60.0):
    """Poll the device (through reboots) until it runs `version`: its OtaStatus."""
    return await _poll(device, lambda answer: answer["version"] == version, timeout,
                       "the device did not come back with %s" % version)


async def wait_reboot(device, timeout=60.0):
    """Wait until the device has restarted (a new boot id): its OtaStatus then."""
    boot = device.hello["boot_id"]
    return await _poll(device, lambda answer: device.hello["boot_id"] != boot, timeout,
                       "the device did not restart")


async def _poll(device, done, timeout, failure):
    from jotunheim_host.session import ControllerError
    deadline = time.monotonic() + max(timeout, 1.0)
    while time.monotonic() < deadline:
        try:
            answer = await status(device)
        except ControllerError:
            await _reconnected(device, max(deadline - time.monotonic(), 0.1))
            continue
        if done(answer):
            return answer
        await asyncio.sleep(0.2)
    raise OtaError("DEADLINE_EXCEEDED", "%s within %g s" % (failure, timeout))


async def push_many(urls, update, key=None, progress=None, concurrency=4, **options):
    """push() to several devices at once: {url: final OtaStatus or OtaError}."""
    from jotunheim_host.controller import connect
    gate = asyncio.Semaphore(concurrency)

    async def one(url):
        async with gate:
            try:
                device = await connect(url, key=key, reconnect=True)
            except Exception as e:  # noqa: BLE001 - reported per device
                return url, OtaError("UNAVAILABLE", str(e))
            try:
                report = None if progress is None else (lambda d, t: progress(url, d, t))
                return url, await push(device, update, report, **options)
            except OtaError as e:
                return url, e
            finally:
                await device.close()
    return dict(await asyncio.gather(*(one(url) for url in urls)))
