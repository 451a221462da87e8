"""Over-the-air updates, loaded when needed: manifest checks, transfer, activation,
validation and rollback of application bundles in A/B slots (protocol/SPEC.md 1.12).

How this works. OtaBegin carries the encoded OtaManifest, its signature and the key's id.
The signature is checked first (RSA PKCS#1 v1.5 with SHA-256 against a public key in
/ota_keys.json), then the board, the counter (above the installed image's: no downgrade)
and the size (the slot budget in /ota_keys.json: the board's ota.slot_bytes; and room
on the flash). The payload, a bundle
archive (firmware/FORMATS.md), is appended to SLOT/payload.part in the inactive slot
(/ota/a or /ota/b) as the chunks arrive, hashed on the way; each chunk is closed on the
flash before it is acknowledged, so the file's size is the offset a transfer resumes
from, after a lost link or a power cut (then the received part is hashed again from the
flash: a hash state cannot be saved). /ota/recv.json says which manifest that is.
OtaCommit checks size and SHA-256, unpacks the archive into SLOT/lib and activates the
slot by rewriting /ota/state.json (one atomic rename: before it the old image boots,
after it the new one). boot.py counts the boots of the new image while it is pending
and rolls back after FAILED_BOOT_LIMIT of them; this module marks it valid once a
controller session is up and the self-test passes.

Why RSA-3072 with e = 65537: verifying is one modular exponentiation, written below as
16 squarings and a multiplication (a few milliseconds, no three-argument pow needed, as
on the ESP8266), in a few lines; Ed25519 in pure Python takes about a second and much
garbage on a microcontroller. Signing happens on the host (`jotunheim ota build`)."""
import binascii
import hashlib
import json
import os

import protocol
from jotunheim import checks, configfile, port
from jotunheim.ota import KEYS, STATE, read_state

OK, INVALID_ARGUMENT, PERMISSION_DENIED, RESOURCE_EXHAUSTED = 0, 3, 7, 8
FAILED_PRECONDITION, OUT_OF_RANGE, DATA_LOSS = 9, 11, 15
IDLE, RECEIVING, READY, PENDING, VALID, ROLLED_BACK, FAILED = 1, 2, 4, 5, 6, 7, 8

RECV = "ota/recv.json"
PART = "/payload.part"
MAGIC = b"JOTA\x01"
CREDIT_FRAMES = 4            # chunks of max_frame bytes the controller may have in flight
HEAP_SHARE = 4               # ... and at most this fraction of the board's heap
SPARE_BYTES = 16384          # flash kept free beyond what an update needs
REBOOT_DELAY_MS = 300        # the answer goes out first
# DER DigestInfo of a SHA-256 digest (RFC 8017, section 9.2, note 1)
SHA256_INFO = b"\x30\x31\x30\x0d\x06\x09\x60\x86\x48\x01\x65\x03\x04\x02\x01\x05\x00\x04\x20"
NAME_CHARS = "_-./"


class Refused(Exception):
    def __init__(self, status, message):
        super().__init__(message)
        self.status = status
        self.message = message


def verify(n_bytes, message, signature):
    """True if signature is an RSA PKCS#1 v1.5 SHA-256 signature of message under the
    public key (n_bytes, 65537): the whole padded block is rebuilt and compared."""
    k = len(n_bytes)
    if len(signature) != k or k < 64:
        return False
    n = int.from_bytes(n_bytes, "big")
    s = int.from_bytes(signature, "big")
    if s >= n:
        return False
    m = s
    for _ in range(16):  # s ** 65537 mod n: 16 squarings, one multiplication
        m = m * m % n
    m = m * s % n
    digest = hashlib.sha256(message).digest()
    expected = b"\x00\x01" + b"\xff" * (k - 3 - len(SHA256_INFO) - 32) + b"\x00" + \
        SHA256_INFO + digest
    return m.to_bytes(k, "big") == expected


def hexdigest(data):
    return binascii.hexlify(hashlib.sha256(data).digest()).decode()


def exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def remove(path):
    try:
        os.remove(path)
    except OSError:
        pass


def rmtree(path):
    try:
        entries = list(os.ilistdir(path))
    except OSError:
        return
    for entry in entries:
        inner = path + "/" + entry[0]
        if entry[1] == 0x4000:
            rmtree(inner)
        else:
            os.remove(inner)
    os.rmdir(path)


def makedirs(path):
    """Make path and its parents (path has no trailing slash)."""
    if not path or exists(path):
        return
    makedirs(path.rpartition("/")[0])
    os.mkdir(path)


def check_name(name):
    """A path in a bundle archive: under lib/, plain parts, nothing that climbs out."""
    parts = name.split("/")
    if parts[0] != "lib" or len(parts) < 2 or not checks.chars_ok(name, NAME_CHARS):
        return False
    for part in parts:
        if part in ("", ".", ".."):
            return False
    return True


def unpack(path, dest):
    """Unpack the archive file at path under dest: [[name, size], ...] of its files.
    ValueError says what is wrong with a malformed archive."""
    index = []
    buf = bytearray(4096)
    view = memoryview(buf)
    with open(path, "rb") as f:
        if f.read(len(MAGIC)) != MAGIC:
            raise ValueError("not a bundle archive (bad magic)")
        while True:
            head = f.read(2)
            if len(head) != 2:
                raise ValueError("the archive ends inside an entry")
            length = head[0] << 8 | head[1]
            if not length:
                break
            try:
                name = f.read(length).decode()
            except UnicodeError:
                raise ValueError("an entry's name is not UTF-8")
            if not check_name(name):
                raise ValueError("bad entry name %r" % name)
            size = int.from_bytes(f.read(4), "big")
            makedirs((dest + "/" + name).rpartition("/")[0])
            with open(dest + "/" + name, "wb") as out:
                left = size
                while left:
                    got = f.readinto(view[:min(left, len(buf))])
                    if not got:
                        raise ValueError("the archive ends inside %s" % name)
                    out.write(view[:got])
                    left -= got
            index.append([name, size])
        if f.read(1):
            raise ValueError("data after the archive's end")
    return index


def installed(state):
    """(slot, its record) of the active image; ("", {}) for the factory image."""
    slot = state.get("active") or ""
    return slot, ((state.get("slots") or {}).get(slot) or {}) if slot else {}


class Updater:
    """The device's side of one update at a time."""

    def __init__(self, agent):
        self.agent = agent
        self.root = agent.root
        self.recv = None  # the transfer in progress (recv.json), or None
        self.offset = 0
        self.hash = None  # SHA-256 of payload[:offset], None until needed
        self.keys = {}    # ota_keys.json: the owner's public keys, the slot budget
        self._load_transfer()

    def busy(self):
        return self.recv is not None

    # ------------------------------------------------------------ files

    def _path(self, name):
        return self.root + name

    def _save_state(self, state):
        configfile.write_atomic(self._path(STATE), json.dumps(state).encode())

    def _part(self):
        return self._path("ota/" + self.recv["slot"] + PART)

    def _part_size(self):
        try:
            return os.stat(self._part())[6]
        except OSError:
            return 0

    def _load_transfer(self):
        try:
            with open(self._path(RECV)) as f:
                recv = json.load(f)
        except (OSError, ValueError):
            return
        state = read_state(self.root)
        slot, record = installed(state)
        self.recv = recv
        if record.get("id") == recv.get("id") or recv.get("slot") == slot:
            self._forget_transfer()  # activated already (a cut came before the clean-up)
            return
        self.offset = self._part_size()

    def _forget_transfer(self):
        if self.recv is not None:
            remove(self._part())
        remove(self._path(RECV))
        self.recv = None
        self.hash = None
        self.offset = 0

    def _discard(self):
        """Drop the transfer and what it wrote into the inactive slot."""
        if self.recv is not None:
            rmtree(self._path("ota/" + self.recv["slot"]))
        self._forget_transfer()

    def _ensure_hash(self):
        """Hash what the flash holds of the payload (after a reboot, or a failed write)."""
        if self.hash is not None:
            return
        digest = hashlib.sha256()
        buf = bytearray(4096)
        done = 0
        try:
            with open(self._part(), "rb") as f:
                while True:
                    got = f.readinto(buf)
                    if not got:
                        break
                    digest.update(memoryview(buf)[:got])
                    done += got
        except OSError:
            done = 0
            digest = hashlib.sha256()
        self.hash, self.offset = digest, done

    # ------------------------------------------------------------ requests

    def serve(self, request, fields):
        """The OtaStatus answering one request."""
        failed = None
        try:
            getattr(self, "_" + request)(fields)
        except Refused as e:
            failed = e
        except OSError as e:
            failed = Refused(RESOURCE_EXHAUSTED if e.args and e.args[0] == 28 else DATA_LOSS,
                             "flash: %s" % e)
        answer = self.status()
        answer["request_id"] = fields["request_id"]
        if failed is not None:
            answer["status"], answer["message"] = failed.status, failed.message
            if request in ("OtaBegin", "OtaCommit") and failed.status != OUT_OF_RANGE:
                self.agent.ota_failure = failed.message
                answer["state"] = FAILED
            self.agent.log("update: %s refused: %s" % (request, failed.message), "warning")
        return answer

    def status(self):
        agent = self.agent
        state = read_state(self.root)
        slot, record = installed(state)
        tries = state.get("tries", 0)
        answer = {"status": OK, "state": IDLE, "version": agent.version, "offset": 0,
                  "credit": 0, "pending_version": "", "message": "",
                  "failed_boots": max(tries - 1, 0) if state.get("pending")
                  else state.get("failed_boots", 0)}
        failure = getattr(agent, "ota_failure", None)
        if self.recv is not None:
            answer.update(state=RECEIVING, offset=self.offset, credit=self._credit(),
                          pending_version=self.recv["version"])
        elif slot != agent.ota_running and state.get("last") == "ready":
            answer.update(state=READY, pending_version=record.get("version", ""),
                          message="activated: runs from the next boot")
        elif state.get("pending"):
            answer.update(state=PENDING, pending_version=record.get("version", ""),
                          message=state.get("note", ""))
        elif failure:
            answer.update(state=FAILED, message=failure)
        elif state.get("last") == "rolled_back":
            answer.update(state=ROLLED_BACK, message=state.get("note", ""))
        elif state.get("last") == "valid":
            answer["state"] = VALID
        return answer

    def _credit(self):
        """Bytes the controller may send beyond the offset: a few frames, and no more
        than a share of the board's heap. The controller sends them as several chunks
        (a chunk is decoded and copied on arrival: its size is what costs RAM), and the
        chunks in flight keep the link busy while the device writes."""
        board = self.agent.board
        credit = CREDIT_FRAMES * (board.get("limits") or {}).get("max_frame", 4096)
        if board.get("heap_bytes"):
            credit = min(credit, board["heap_bytes"] // HEAP_SHARE)
        return min(credit, self.recv["size"] - self.offset)

    def _OtaStatusRequest(self, fields):
        pass

    def _OtaBegin(self, fields):
        agent = self.agent
        manifest = bytes(fields["manifest"])
        key = self._key(fields["key_id"])
        if not verify(binascii.unhexlify(key["n"]), manifest, bytes(fields["signature"])):
            raise Refused(PERMISSION_DENIED, "the signature does not verify with key %s: the "
                          "update was not signed by this device's owner, or was altered"
                          % fields["key_id"])
        try:
            m = protocol.decode("OtaManifest", manifest, agent.limits)
        except protocol.ProtocolError as e:
            raise Refused(INVALID_ARGUMENT, "the manifest does not decode: %s" % e)
        ident = hexdigest(manifest)
        state = read_state(self.root)
        slot, record = installed(state)
        if record.get("id") == ident:
            return  # installed already: the status says how far (READY, PENDING, VALID)
        if state.get("pending"):
            raise Refused(FAILED_PRECONDITION, "image %s awaits validation (or a reboot): "
                          "no new update until then" % record.get("version", "?"))
        if m["kind"] != "bundle":
            raise Refused(FAILED_PRECONDITION, "kind %r: this device takes application "
                          "bundles" % m["kind"])
        if m["board"] != agent.board["name"]:
            raise Refused(FAILED_PRECONDITION, "the update is for board %r, this is %r"
                          % (m["board"], agent.board["name"]))
        counter = record.get("counter", 0)
        if m["counter"] <= counter:
            raise Refused(FAILED_PRECONDITION, "counter %d is not above the installed "
                          "image's %d (no downgrades)" % (m["counter"], counter))
        if len(m["sha256"]) != 32:
            raise Refused(INVALID_ARGUMENT, "the manifest's sha256 is not 32 bytes")
        self._check_room(m["size"])
        agent.ota_failure = None
        if self.recv is not None and self.recv["id"] == ident:
            self._ensure_hash()  # a resumed transfer: the offset is what the flash holds
            if self.offset > self.recv["size"]:
                self._discard()
            else:
                return
        self._start(state, slot, ident, m)

    def _start(self, state, active, ident, m):
        self._discard()
        slot = "b" if active == "a" else "a"
        if (state.get("previous") or "") == slot:  # about to be overwritten
            state["previous"] = ""
            self._save_state(state)
        directory = self._path("ota/" + slot)
        rmtree(directory)
        makedirs(directory)
        recv = {"id": ident, "slot": slot, "version": m["version"], "counter": m["counter"],
                "size": m["size"], "sha256": binascii.hexlify(m["sha256"]).decode()}
        configfile.write_atomic(self._path(RECV), json.dumps(recv).encode())
        self.recv = recv
        open(self._part(), "wb").close()
        self.offset = 0
        self.hash = hashlib.sha256()

    def _check_room(self, size):
        budget = self.keys.get("slot_bytes")  # absent: the free flash is the limit
        if budget and size > budget:
            raise Refused(RESOURCE_EXHAUSTED, "the update has %d bytes; a slot holds %d"
                          % (size, budget))
        total, free = port.storage(self.root or "/")
        if self.recv is not None:
            free += self._part_size()
        need = 2 * size + SPARE_BYTES  # the received archive, then its files
        if total and free < need:
            raise Refused(RESOURCE_EXHAUSTED, "the update needs %d bytes of flash, %d are "
                          "free" % (need, free))

    def _key(self, key_id):
        try:
            with open(self._path(KEYS)) as f:
                self.keys = json.load(f)
            keys = self.keys.get("keys") or []
        except (OSError, ValueError, AttributeError):
            raise Refused(PERMISSION_DENIED, "no update keys on this device (%s): deploy the "
                          "firmware with the owner's public key" % KEYS)
        for key in keys:
            if type(key) is dict and key.get("id") == key_id and key.get("e", 65537) == 65537:
                return key
        raise Refused(PERMISSION_DENIED, "unknown key %r: this device trusts %s" % (
            key_id, ", ".join([str(k.get("id")) for k in keys if type(k) is dict]) or "none"))

    def _OtaChunk(self, fields):
        if self.recv is None:
            raise Refused(FAILED_PRECONDITION, "no transfer in progress: send OtaBegin")
        self._ensure_hash()
        data = fields["data"]
        if fields["offset"] != self.offset:
            raise Refused(OUT_OF_RANGE, "expected offset %d, not %d"
                          % (self.offset, fields["offset"]))
        if self.offset + len(data) > self.recv["size"]:
            raise Refused(OUT_OF_RANGE, "the chunk goes beyond the manifest's %d bytes"
                          % self.recv["size"])
        try:
            with open(self._part(), "ab") as f:
                f.write(data)
                if hasattr(os, "fsync"):  # CPython on a Linux board; LittleFS syncs on close
                    f.flush()
                    os.fsync(f.fileno())
        except OSError:
            self.hash = None  # what reached the flash is hashed again
            raise
        self.hash.update(data)
        self.offset += len(data)

    def _OtaCommit(self, fields):
        agent = self.agent
        state = read_state(self.root)
        slot, record = installed(state)
        if self.recv is None:
            if slot != agent.ota_running:  # activated already: only the reboot is due
                if fields["reboot"]:
                    agent.reboot_soon(REBOOT_DELAY_MS)
                return
            raise Refused(FAILED_PRECONDITION, "no transfer to commit")
        recv = self.recv
        self._ensure_hash()
        if self.offset != recv["size"]:
            raise Refused(FAILED_PRECONDITION, "the transfer is incomplete: %d of %d bytes "
                          "received" % (self.offset, recv["size"]))
        digest = binascii.hexlify(self.hash.digest()).decode()
        self.hash = None  # final: hashed again from the flash if needed
        if digest != recv["sha256"]:
            self._discard()
            raise Refused(DATA_LOSS, "the SHA-256 of the %d bytes received does not match "
                          "the manifest: the update was discarded" % recv["size"])
        directory = self._path("ota/" + recv["slot"])
        rmtree(directory + "/lib")  # what an interrupted commit left
        try:
            index = unpack(self._part(), directory)
        except ValueError as e:
            self._discard()
            raise Refused(DATA_LOSS, "the bundle does not unpack: %s" % e)
        configfile.write_atomic(directory + "/files.json", json.dumps(index).encode())
        slots = state.get("slots") or {}
        slots[recv["slot"]] = {"version": recv["version"], "counter": recv["counter"],
                               "id": recv["id"]}
        state.update(active=recv["slot"], previous=slot, pending=1, tries=0, last="ready",
                     slots=slots, note="", failed_boots=0)
        self._save_state(state)  # the switch: from here on the new image boots
        self._forget_transfer()
        agent.log("update %s activated in slot %s" % (recv["version"], recv["slot"]))
        if fields["reboot"]:
            agent.reboot_soon(REBOOT_DELAY_MS)

    def _OtaAbort(self, fields):
        if self.recv is not None:
            self.agent.log("update %s aborted: %s" % (self.recv["version"],
                                                      fields["reason"] or "no reason given"))
        self._discard()
        self.agent.ota_failure = None

    def _OtaRollback(self, fields):
        agent = self.agent
        state = read_state(self.root)
        slot, record = installed(state)
        if not slot:
            raise Refused(FAILED_PRECONDITION, "the factory image is running: there is no "
                          "previous image to return to")
        self._discard()
        previous = state.get("previous") or ""
        state.update(active=previous, previous="", pending=0, tries=0, last="rolled_back",
                     note="rolled back from %s by request" % record.get("version", "?"),
                     failed_boots=0)
        self._save_state(state)
        agent.ota_failure = None
        agent.log("rolled back from %s; restarting" % record.get("version", "?"))
        agent.reboot_soon(REBOOT_DELAY_MS)

    # ------------------------------------------------------------ validation

    def validate(self, session):
        """A controller session is up on an image pending validation: self-test it;
        mark it valid, or restart (boot.py counts the failed boots)."""
        agent = self.agent
        state = read_state(self.root)
        slot, record = installed(state)
        if not state.get("pending") or slot != agent.ota_running:
            return
        problem = self.selftest(slot)
        if problem:
            state["note"] = "self-test failed: %s" % problem
            self._save_state(state)
            agent.log("image %s: %s; restarting" % (record.get("version"), state["note"]),
                      "error")
            agent.reboot_soon(REBOOT_DELAY_MS)
            return
        state.update(pending=0, tries=0, last="valid", note="")
        self._save_state(state)
        agent.log("image %s validated" % record.get("version"))
        agent.capabilities_changed("firmware %s validated" % record.get("version"))

    def selftest(self, slot):
        """None if the running image is sound, else what is wrong: every file of the slot
        there with its size, the capability document builds, and the image's own check
        (lib/selftest.py: check(agent) raises on failure) passes where it has one."""
        directory = self._path("ota/" + slot)
        try:
            with open(directory + "/files.json") as f:
                index = json.load(f)
        except (OSError, ValueError):
            return "the slot's file list is missing"
        own = False
        for name, size in index:
            try:
                if os.stat(directory + "/" + name)[6] != size:
                    return "%s is damaged" % name
            except OSError:
                return "%s is missing" % name
            own = own or name in ("lib/selftest.py", "lib/selftest.mpy")
        try:
            self.agent.tools.document()
            if own:
                import sys
                try:
                    __import__("selftest").check(self.agent)
                finally:
                    sys.modules.pop("selftest", None)
        except Exception as e:  # noqa: BLE001 - any failure fails the image
            return "%s: %s" % (type(e).__name__, e)
        return None
