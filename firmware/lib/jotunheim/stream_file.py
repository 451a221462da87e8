"""The file stream kind: a device file read out, or written atomically and checked."""
import hashlib
import os

from jotunheim import port
from jotunheim.stream_core import (DATA_LOSS, INVALID_ARGUMENT, NOT_FOUND, RESOURCE_EXHAUSTED,
                                   Refused, param_int)

FILE_READ = 4096        # largest file read at once


def _hex(digest):
    return "".join("%02x" % b for b in digest)


class FileOut:
    """A device file read out, from params["offset"] (a resumed transfer) to its end. The
    StreamClose that ends it says "sha256:HEX", the digest of the whole file."""

    def __init__(self, path, params):
        try:
            self.size = os.stat(path)[6]
            self.file = open(path, "rb")
        except OSError:
            raise Refused(NOT_FOUND, "no file %s" % path)
        self.offset = param_int(params, "offset", 0, 0, self.size)

    async def run(self, stream):
        digest = hashlib.sha256()
        try:
            done = 0
            while done < self.offset:  # the part sent before counts in the digest
                data = self.file.read(min(FILE_READ, self.offset - done))
                digest.update(data)
                done += len(data)
            while True:
                n = await stream.room(FILE_READ)
                data = self.file.read(n)
                if not data:
                    break
                digest.update(data)
                stream.send_now(data)
        finally:
            self.file.close()
        return "sha256:" + _hex(digest.digest())

    def abort(self, link_lost=False):
        self.file.close()


class FileIn:
    """A device file written: params size (bytes, required), sha256 (32 bytes, checked
    when given) and resume (with sha256: an upload of the same content cut by a lost link
    goes on where it stopped; the Ack says "resume at offset N"). The data goes to a
    temporary file (PATH.tmp; PATH.HASH8.part when resumable), renamed over PATH when the
    sender's StreamClose{OK} finds the size and digest right; anything else leaves the old
    file, and only a lost link keeps a resumable part."""

    def __init__(self, path, params):
        self.path = path
        self.size = param_int(params, "size", -1, 0, 1 << 31)
        self.sha256 = params.get("sha256")
        if self.sha256 is not None and (type(self.sha256) is not bytes or
                                        len(self.sha256) != 32):
            raise Refused(INVALID_ARGUMENT, "sha256 must be 32 bytes")
        self.resumable = params.get("resume") is True and self.sha256 is not None
        self.temp = path + (("." + _hex(self.sha256[:4]) + ".part") if self.resumable
                            else ".tmp")
        self.digest = hashlib.sha256()
        self.written = 0
        if self.resumable and _exists(self.temp):
            self._hash_part()
        total, free = port.storage()
        if total and self.size - self.written + 4096 > free:
            raise Refused(RESOURCE_EXHAUSTED, "%d bytes do not fit: the flash has %d free"
                          % (self.size - self.written, free))
        _make_dirs(path)
        try:
            self.file = open(self.temp, "ab" if self.written else "wb")
        except OSError as e:
            raise Refused(INVALID_ARGUMENT, "cannot write %s: %s" % (path, e))
        self.offset = self.written    # where the sender starts

    def _hash_part(self):
        """Take up the part an earlier upload left (not beyond size)."""
        with open(self.temp, "rb") as f:
            while self.written < self.size:
                data = f.read(min(FILE_READ, self.size - self.written))
                if not data:
                    break
                self.digest.update(data)
                self.written += len(data)
        if os.stat(self.temp)[6] != self.written:   # longer than announced: start over
            os.remove(self.temp)
            self.digest = hashlib.sha256()
            self.written = 0

    def write(self, data):
        if self.written + len(data) > self.size:
            raise Refused(INVALID_ARGUMENT, "more than the %d bytes announced" % self.size)
        self.file.write(data)
        self.digest.update(data)
        self.written += len(data)

    def finish(self, received, total):
        self.file.close()
        digest = self.digest.digest()
        if received != self.size or total != received:
            self.abort()
            raise Refused(DATA_LOSS, "%d bytes received, %d sent, %d announced: %s kept" % (
                received, total, self.size, "the old file is" if _exists(self.path)
                else "nothing is"))
        if self.sha256 is not None and digest != self.sha256:
            self.abort()
            raise Refused(DATA_LOSS, "SHA-256 mismatch: the file was not changed")
        os.rename(self.temp, self.path)
        return "sha256:" + _hex(digest)

    def abort(self, link_lost=False):
        self.file.close()
        if link_lost and self.resumable:
            return   # kept for the next try
        try:
            os.remove(self.temp)
        except OSError:
            pass


def _exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def _make_dirs(path):
    done = ""
    for part in path.split("/")[:-1]:
        done += part
        if part and not _exists(done):
            os.mkdir(done)
        done += "/"
