"""Configuration files: JSON checked on load, a last-good copy, atomic saves, change polling."""
# How this works: load() reads the file, parses it and runs the caller's check on it; bytes
# that check are copied to PATH.good so that a later bad edit can fall back to them
# (load_good). changed() hashes the file in small chunks and compares the digest with that of
# the bytes last loaded, so polling costs a read and a SHA-256, never a parse. Every write
# goes to PATH.tmp first and is renamed over the file: rename replaces a file atomically on
# LittleFS and POSIX, so a power cut leaves the old content or the new, never a mix.
#
# This module stays loaded (the files are polled); what only checking or saving a file
# needs (jotunheim.checks: text helpers for error messages, JSON for people) is loaded when
# used, with the checks of settings and tools.json.
import hashlib
import json
import os

MAX_BYTES = 32768  # a config file larger than this is refused before it is read
_MISSING = b""     # the digest recorded for a missing file (a real digest is 32 bytes)


class ConfigError(ValueError):
    """A configuration that does not check: `source: where: why` (.source, .where, .why)."""

    def __init__(self, source, where, why):
        self.source = source
        self.where = where
        self.why = why
        super().__init__(": ".join([part for part in (source, where, why) if part]))


class ConfigFile:
    """A JSON file on the device and the function that checks its content."""

    def __init__(self, path, check, max_bytes=MAX_BYTES):
        self.path = path
        self.check = check
        self.max_bytes = max_bytes
        self.name = path.rpartition("/")[2]
        self._digest = None  # of the bytes last loaded or attempted; None: never tried
        self._buf = bytearray(128)

    def load(self):
        """The checked content of the file; on success it becomes the last good copy."""
        try:
            data = self._read(self.path, self.name)
        except ConfigError:
            self._digest = self._file_digest(self.path)
            raise
        self._digest = hashlib.sha256(data).digest()
        value = self._parse(data, self.name)
        if self._file_digest(self.path + ".good") != self._digest:
            try:
                self._write(self.path + ".good", data)
            except OSError:
                pass  # the load itself succeeded; the previous good copy stays
        return value

    def load_good(self):
        """The checked content of the last good copy (PATH.good)."""
        name = self.name + ".good"
        if not _exists(self.path + ".good"):
            raise ConfigError(self.name, "", "no last good copy to fall back to")
        return self._parse(self._read(self.path + ".good", name), name)

    def seen(self):
        """Take the file as it is now (missing, say) as the state changed() compares to."""
        self._digest = self._file_digest(self.path)

    def forget(self):
        """Count the file as not loaded: changed() is True until it is loaded again."""
        self._digest = None

    def changed(self):
        """True when the file differs from what was last loaded, attempted or saved."""
        return self._file_digest(self.path) != self._digest

    def save(self, value):
        """Write value (already checked) as JSON, atomically; it counts as loaded and as the
        last good copy. A storage failure raises OSError and leaves the file as it was."""
        from jotunheim.checks import dumps
        data = (dumps(value) + "\n").encode()
        self._write(self.path, data)
        self._digest = hashlib.sha256(data).digest()
        self._write(self.path + ".good", data)

    def _read(self, path, name):
        try:
            size = os.stat(path)[6]
        except OSError:
            raise ConfigError(name, "", "file not found")
        if size > self.max_bytes:
            raise ConfigError(name, "", "file too large (%d bytes, at most %d)"
                              % (size, self.max_bytes))
        try:
            with open(path, "rb") as f:
                return f.read()
        except OSError as e:
            raise ConfigError(name, "", "cannot read: %s" % (e,))

    def _parse(self, data, name):
        try:
            text = data.decode()
        except UnicodeError:
            raise ConfigError(name, "", "not valid JSON: the file is not UTF-8 text")
        if text.startswith("\ufeff"):
            text = text[1:]  # the byte order mark some Windows editors write
        if not text.strip():
            raise ConfigError(name, "", "not valid JSON: the file is empty")
        try:
            doc = json.loads(text)
        except (ValueError, RuntimeError) as e:  # RuntimeError: CPython's recursion limit
            raise ConfigError(name, "", "not valid JSON: %s" % (e,))
        try:
            return self.check(doc)
        except ConfigError as e:
            raise ConfigError(name, e.where, e.why)

    def _file_digest(self, path):
        """SHA-256 of a file read in small chunks; _MISSING when it cannot be read."""
        buf = self._buf
        try:
            with open(path, "rb") as f:
                digest = hashlib.sha256()
                while True:
                    n = f.readinto(buf)
                    if not n:
                        return digest.digest()
                    digest.update(buf if n == len(buf) else memoryview(buf)[:n])
        except OSError:
            return _MISSING

    def _write(self, path, data):
        write_atomic(path, data)


def _exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def write_atomic(path, data):
    """Write a file through a temporary one renamed over it: a power cut leaves the old
    content or the new, never a mix (LittleFS and POSIX rename atomically)."""
    temp = path + ".tmp"
    try:
        with open(temp, "wb") as f:
            f.write(data)
            if hasattr(os, "fsync"):  # CPython on a Linux board; MicroPython syncs on close
                f.flush()
                os.fsync(f.fileno())
        os.rename(temp, path)
    except OSError:
        if _exists(temp):
            os.remove(temp)
        raise
