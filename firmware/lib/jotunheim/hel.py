"""Hel's files, time series and cache for one script (jotunheim.children.Hel uses these;
loaded with the first use of any of them)."""
# How this works, under /data/NAME/ (NAME: the script):
# - files/FILE: whole files, each written through a temporary file renamed into place
#   (jotunheim.configfile.write_atomic), so a power cut leaves the old file or the new one.
# - series/SERIES.ts: samples of 8 bytes each (uint32 seconds, float32 value, little
#   endian), oldest first. An append rewrites the file atomically with the newest `keep`
#   samples (bounded retention on the flash; keep it small, the whole series is rewritten):
#   a power cut leaves the series with or without the new sample, never a partial one.
# - The cache is RAM only (nothing on the flash): at most MAX_CACHE entries, each with a
#   time to live; when full, expired entries go first, then the one closest to expiry.
# Every byte on the flash counts against the script's storage quota (Hel.used).
import os
import struct

from jotunheim import loki_scripts, port

RECORD = 8
_FORMAT = "<If"
MAX_KEEP = 4096
MAX_WINDOWS = 128
MAX_CACHE = 16
_CHUNK = 32   # records read at a time


def size(path):
    try:
        return os.stat(path)[6]
    except OSError:
        return 0


def listing(directory):
    try:
        return sorted([n for n in os.listdir(directory) if not n.endswith(".tmp")])
    except OSError:
        return []


# ------------------------------------------------------------------ files


def write_file(hel, name, data):
    path = hel.path("files/", name, "")
    if isinstance(data, str):
        data = data.encode()
    elif not isinstance(data, (bytes, bytearray)):
        raise ValueError("a file holds text or bytes")
    old = size(path)
    hel.reserve(len(data) - old, "file " + name)
    loki_scripts.make_dirs(hel.dir + "files/")
    loki_scripts.write_atomic(path, bytes(data))
    hel.used += len(data) - old


def read_file(hel, name, default):
    try:
        with open(hel.path("files/", name, ""), "rb") as f:
            return f.read()
    except OSError:
        return default


def remove_file(hel, name):
    return _remove(hel, hel.path("files/", name, ""))


def _remove(hel, path):
    """Remove a file of the store, giving its bytes back to the quota; False if none."""
    old = size(path)
    if old:
        os.remove(path)
        hel.used -= old
        return True
    return False


# ------------------------------------------------------------------ time series


def now_s():
    import time
    return int(time.time())


def append(hel, series, value, t, keep):
    if not 1 <= keep <= MAX_KEEP:
        raise ValueError("keep must be 1 to %d samples" % MAX_KEEP)
    if type(value) not in (int, float):
        raise ValueError("a sample is a number")
    t = now_s() if t is None else int(t)
    if not 0 <= t <= 0xFFFFFFFF:
        raise ValueError("a sample's time is 0 to 2^32-1 seconds")
    path = hel.path("series/", series, ".ts")
    old = size(path)
    whole = min(old // RECORD, keep - 1)     # the newest samples that stay
    data = b""
    if whole:
        with open(path, "rb") as f:
            f.seek((old // RECORD - whole) * RECORD)
            data = f.read(whole * RECORD)
    data += struct.pack(_FORMAT, t, value)
    hel.reserve(len(data) - old, "series " + series)
    loki_scripts.make_dirs(hel.dir + "series/")
    loki_scripts.write_atomic(path, data)
    hel.used += len(data) - old
    return whole + 1


def samples(hel, series, since, until):
    """Yield (t, value) of a series from `since` to `until` (seconds, inclusive)."""
    path = hel.path("series/", series, ".ts")
    try:
        f = open(path, "rb")
    except OSError:
        return
    with f:
        while True:
            chunk = f.read(RECORD * _CHUNK)
            n = len(chunk) // RECORD
            for i in range(n):
                t, value = struct.unpack_from(_FORMAT, chunk, i * RECORD)
                if (since is None or t >= since) and (until is None or t <= until):
                    yield t, value
            if n < _CHUNK:
                return


def windows(hel, series, window_s, since, until):
    """[{"start", "count", "min", "max", "avg"}] for each window of window_s seconds (0:
    one window for everything) that has samples, oldest first; the newest MAX_WINDOWS."""
    if window_s < 0:
        raise ValueError("window_s must be 0 or more")
    buckets = {}
    for t, value in samples(hel, series, since, until):
        start = t - t % window_s if window_s else 0
        b = buckets.get(start)
        if b is None:
            if len(buckets) >= MAX_WINDOWS:
                del buckets[min(buckets)]
            buckets[start] = [1, value, value, value]
        else:
            b[0] += 1
            b[1] = min(b[1], value)
            b[2] = max(b[2], value)
            b[3] += value
    result = []
    for start in sorted(buckets):
        count, low, high, total = buckets[start]
        result.append({"start": start, "count": count, "min": low, "max": high,
                       "avg": total / count})
    return result


def series_names(hel):
    return [n[:-3] for n in listing(hel.dir + "series") if n.endswith(".ts")]


def drop_series(hel, series):
    return _remove(hel, hel.path("series/", series, ".ts"))


# ------------------------------------------------------------------ cache


def cache_put(cache, key, value, ttl_ms):
    if ttl_ms <= 0:
        raise ValueError("ttl_ms must be more than 0")
    now = port.ticks_ms()
    if key not in cache and len(cache) >= MAX_CACHE:
        for k in list(cache):
            if port.ticks_diff(cache[k][0], now) <= 0:
                del cache[k]
        if len(cache) >= MAX_CACHE:
            soonest = None
            for k in cache:
                if soonest is None or port.ticks_diff(cache[k][0], cache[soonest][0]) < 0:
                    soonest = k
            del cache[soonest]
    cache[key] = (port.ticks_add(now, ttl_ms), value)


def cache_get(cache, key, default):
    entry = cache.get(key)
    if entry is None:
        return default
    if port.ticks_diff(entry[0], port.ticks_ms()) <= 0:
        del cache[key]
        return default
    return entry[1]
