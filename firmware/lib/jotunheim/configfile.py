"""Configuration files: JSON checked on load, a last-good copy, atomic saves, change polling."""
# How this works: load() reads the file, parses it and runs the caller's check on it; bytes
# that check are copied to PATH.good so that a later bad edit can fall back to them
# (load_good). changed() hashes the file in small chunks and compares the digest with that of
# the bytes last loaded, so polling costs a read and a SHA-256, never a parse. Every write
# goes to PATH.tmp first and is renamed over the file: rename replaces a file atomically on
# LittleFS and POSIX, so a power cut leaves the old content or the new, never a mix.
#
# ConfigError, and the small text helpers the settings and tools checks share, live here
# because this is the one module both of them import.
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

    def changed(self):
        """True when the file differs from what was last loaded, attempted or saved."""
        return self._file_digest(self.path) != self._digest

    def save(self, value):
        """Write value (already checked) as JSON, atomically; it counts as loaded and as the
        last good copy. A storage failure raises OSError and leaves the file as it was."""
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


def dumps(value, indent=""):
    """JSON text for people: keys sorted, one member or list item of a container per line
    (a list of plain values stays on one line)."""
    inner = indent + "  "
    if type(value) is dict and value:
        items = [inner + json.dumps(key) + ": " + dumps(value[key], inner)
                 for key in sorted(value)]
        return "{\n" + ",\n".join(items) + "\n" + indent + "}"
    if type(value) is list and value and [item for item in value if type(item) in (dict, list)]:
        items = [inner + dumps(item, inner) for item in value]
        return "[\n" + ",\n".join(items) + "\n" + indent + "]"
    return json.dumps(value)


# ------------------------------------------------------------------ shared by the checks


def chars_ok(text, extra):
    """True when every character of text is an ASCII letter or digit, or one of extra."""
    for c in text:
        if not ("a" <= c <= "z" or "A" <= c <= "Z" or "0" <= c <= "9" or c in extra):
            return False
    return True


def json_type(value):
    """The JSON name of value's type: null, boolean, number, string, array, object."""
    t = type(value)
    if value is None:
        return "null"
    if t is bool:
        return "boolean"
    if t is int or t is float:
        return "number"
    if t is str:
        return "string"
    if t is list:
        return "array"
    if t is dict:
        return "object"
    return t.__name__


def show(value):
    """value as an error message quotes it: 'text', 3, true, null, an array."""
    t = type(value)
    if t is str:
        return repr(value if len(value) <= 40 else value[:37] + "...")
    if t is bool:
        return "true" if value else "false"
    if t is int or t is float:
        return str(value)
    if value is None:
        return "null"
    name = json_type(value)
    return ("an " if name[0] in "aeiou" else "a ") + name


def suggest(word, known):
    """The known name closest to a mistyped word, or None when none is close."""
    if type(word) is not str:
        return None
    lower = word.lower()
    best, best_distance = None, max(2, len(word) // 4) + 1
    for name in known:
        other = name.lower()
        if other.endswith("." + lower):
            distance = 0  # the section left out
        elif min(len(other), len(lower)) >= 3 and (lower.startswith(other)
                                                   or other.startswith(lower)):
            distance = 1  # "integer" for "int"
        else:
            distance = _distance(lower, other)
        if distance < best_distance:
            best, best_distance = name, distance
    return best


def _distance(a, b):
    """Levenshtein distance (for error messages only)."""
    row = list(range(len(b) + 1))
    for i in range(len(a)):
        previous, row[0] = row[0], i + 1
        for j in range(len(b)):
            current = row[j + 1]
            row[j + 1] = min(current + 1, row[j] + 1, previous + (a[i] != b[j]))
            previous = current
    return row[-1]


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
