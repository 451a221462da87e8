"""Device settings: the schema, defaults from the board profile, and validation."""
# How this works: settings are one flat JSON object of dotted keys ("agent.mode": "dial").
# SCHEMA lists every key once. check() validates a user's object key by key, fills what it
# lacks from a base (the defaults, or the settings in force for SettingsSet), then applies
# the rules that tie keys to each other and to the board. Nothing that a fresh device lacks
# (a controller, Wi-Fi) is an error: it must boot to be provisioned. problems() says what
# such a device cannot do yet.
from jotunheim.checks import chars_ok, json_type, show, suggest
from jotunheim.configfile import ConfigError

# (key, type, default, low, high, form, secret). Types: "str" (low..high characters), "int"
# and "number" (low..high), "bool", "choice" (low is the tuple of choices). form adds a rule:
# "id" (letters, digits, '.', '_', '-'), "hostport" ("" or host:port), "hexkey" ("" or 32 to
# 128 hex digits, an even count), "off" (0 is allowed too: off, or automatic).
SCHEMA = (
    ("device.id", "str", "", 1, 32, "id", False),
    ("device.name", "str", "", 0, 64, None, False),
    ("agent.mode", "choice", "dial", ("dial", "listen"), None, None, False),
    ("agent.transport", "choice", "tcp", ("tcp", "uart"), None, None, False),
    ("agent.controller", "str", "", 0, 259, "hostport", False),
    ("agent.listen_port", "int", 7480, 1, 65535, None, False),
    ("agent.listen_host", "str", "0.0.0.0", 1, 253, None, False),
    ("agent.discovery_port", "int", 7481, 1, 65535, "off", False),
    ("agent.uart_id", "int", 1, 0, 7, None, False),
    ("agent.uart_baud", "int", 115200, 1200, 3000000, None, False),
    ("agent.heartbeat_s", "number", 20, 0.5, 3600, None, False),
    ("agent.peer_timeout_s", "number", 0, 1, 86400, "off", False),
    ("agent.reconnect_min_s", "number", 1, 0.05, 3600, None, False),
    ("agent.reconnect_max_s", "number", 60, 0.05, 86400, None, False),
    ("agent.reconnect_factor", "number", 1.8, 1, 10, None, False),
    ("agent.reconnect_jitter", "number", 0.25, 0, 1, None, False),
    ("auth.key", "str", "", 0, 128, "hexkey", True),
    ("wifi.ssid", "str", "", 0, 32, None, False),
    ("wifi.password", "str", "", 0, 64, None, True),
    ("wifi.retries", "int", 5, 0, 100, None, False),
    ("wifi.timeout_s", "number", 15, 1, 300, None, False),
    ("calls.concurrency", "int", 4, 1, 32, None, False),
    ("calls.queue", "int", 8, 0, 256, None, False),
    ("calls.deadline_s", "number", 10, 0.001, 86400, None, False),
    ("calls.remember", "int", 16, 1, 256, None, False),
    ("watchdog.timeout_s", "number", 0, 1, 3600, "off", False),
    ("memory.collect_kb", "int", 0, 1, 1024, "off", False),
    ("power.mode", "choice", "always", ("always", "duty"), None, None, False),
    ("power.awake_s", "number", 10, 0.1, 3600, None, False),
    ("power.sleep_s", "number", 300, 1, 604800, None, False),
    ("log.level", "choice", "info", ("debug", "info", "warning", "error"), None, None, False),
)

SECRET = tuple([entry[0] for entry in SCHEMA if entry[6]])


def defaults(board):
    """Every key's default: the schema's, then the board profile's "settings" over them."""
    values = {}
    for entry in SCHEMA:
        values[entry[0]] = entry[2]
    name = board.get("name") or "device"
    unique_id = (board.get("machine") or {}).get("unique_id")
    values["device.id"] = name + "-" + unique_id if unique_id else name
    values["device.name"] = (board.get("title") or "")[:64]
    source = "boards/%s.json" % name
    _apply(board.get("settings") or {}, values, source)
    _together(values, board, source)
    return values


def check(values, board, base=None):
    """The complete settings: values (a user's object) checked, over base (a complete dict;
    by default defaults(board)). Raises ConfigError naming the first bad key."""
    result = defaults(board) if base is None else dict(base)
    _apply(values, result, "settings")
    _together(result, board, "settings")
    return result


def public(values):
    """A copy of values fit to show: a secret that is set reads "***"."""
    shown = dict(values)
    for key in SECRET:
        if key in shown:
            shown[key] = "***" if shown[key] else ""
    return shown


def problems(values):
    """Warnings for people: valid settings with which the device cannot do its job yet."""
    found = []
    tcp = values["agent.transport"] == "tcp"
    if values["agent.mode"] == "dial" and tcp and not values["agent.controller"]:
        found.append("agent.controller is empty: a dialing device has nowhere to connect")
    if values["agent.mode"] == "listen" and tcp and not values["auth.key"]:
        found.append("auth.key is empty: anyone who can reach the device can control it")
    if values["agent.mode"] == "listen" and values["power.mode"] == "duty":
        found.append("power.mode is duty: a listening device is unreachable while it sleeps")
    if values["wifi.password"] and not values["wifi.ssid"]:
        found.append("wifi.ssid is empty: the Wi-Fi password is not used")
    return found


def _apply(values, result, source):
    """Check each key of values and store it in result; the first bad key raises."""
    if type(values) is not dict:
        raise ConfigError(source, "", "expected an object of settings, got " + show(values))
    unknown = [str(key) for key in values if _entry(key) is None]
    if unknown:
        key = min(unknown)
        near = suggest(key, _names())
        raise ConfigError(source, key, "unknown setting (did you mean %r?)" % near if near
                          else "unknown setting")
    for entry in SCHEMA:
        key = entry[0]
        if key in values:
            why = _why(entry, values[key])
            if why:
                raise ConfigError(source, key, why)
            result[key] = values[key]


def _entry(key):
    for entry in SCHEMA:
        if entry[0] == key:
            return entry
    return None


def _names():
    return [entry[0] for entry in SCHEMA]


def _why(entry, value):
    """Why value does not fit the schema entry, or None when it does."""
    kind, low, high, form = entry[1], entry[3], entry[4], entry[5]
    t = type(value)
    if kind == "choice":
        if t is str and value in low:
            return None
        return "expected one of %s, got %s" % (", ".join([repr(c) for c in low]), show(value))
    if kind == "bool":
        return None if t is bool else "expected true or false, got " + show(value)
    if kind == "str":
        if t is not str:
            return "expected a string, got " + json_type(value)
        if form == "hostport":
            return _hostport_why(value)
        if form == "hexkey":
            return _hexkey_why(value)
        if len(value) < low:
            return "must not be empty"
        if len(value) > high:
            return "too long (%d characters, at most %d)" % (len(value), high)
        if form == "id" and not chars_ok(value, "._-"):
            return "may only contain letters, digits, '.', '_' and '-', got " + show(value)
        return None
    if t is not int:
        if kind == "int":
            return "expected an integer, got " + show(value)
        if t is not float or value != value:
            return "expected a number, got " + show(value)
    if low <= value <= high or (form == "off" and value == 0):
        return None
    return "must be %sfrom %s to %s, got %s" % (
        "0 (off) or " if form == "off" else "", low, high, value)


def _hostport_why(value):
    if not value:
        return None
    host, colon, port = value.rpartition(":")
    if "://" in value:
        return "expected host:port without a scheme, like 'hub.local:7480', got " + show(value)
    if not colon or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        return "expected host:port with a port from 1 to 65535, like 'hub.local:7480', got " \
            + show(value)
    if len(host) > 253 or not chars_ok(host, ".-_"):
        return "not a host name or address: " + show(host)
    return None


def _hexkey_why(value):
    if not value:
        return None
    for c in value:
        if c not in "0123456789abcdefABCDEF":
            return "expected hex digits (0-9, a-f)"
    if not 32 <= len(value) <= 128 or len(value) % 2:
        return "expected an even count of 32 to 128 hex digits, got %d" % len(value)
    return None


def _together(values, board, source):
    """The rules between keys, and between keys and the board."""
    beat = values["agent.heartbeat_s"]
    peer = values["agent.peer_timeout_s"]
    if peer and peer < 2 * beat:
        raise ConfigError(source, "agent.peer_timeout_s", "must be 0 (three heartbeats) or at "
                          "least twice agent.heartbeat_s (%s), got %s" % (2 * beat, peer))
    if values["agent.reconnect_max_s"] < values["agent.reconnect_min_s"]:
        raise ConfigError(source, "agent.reconnect_max_s", "must be at least "
                          "agent.reconnect_min_s (%s), got %s" % (
                              values["agent.reconnect_min_s"], values["agent.reconnect_max_s"]))
    machine = board.get("machine") or {}
    wdt, timeout = machine.get("wdt") or {}, values["watchdog.timeout_s"]
    if timeout and "fixed_ms" in wdt and timeout * 1000 != wdt["fixed_ms"]:
        raise ConfigError(source, "watchdog.timeout_s", "this board's watchdog only does "
                          "%s s: use 0 (off) or %s" % (_seconds(wdt["fixed_ms"]),
                                                       _seconds(wdt["fixed_ms"])))
    if timeout and timeout * 1000 > wdt.get("max_ms", timeout * 1000):
        raise ConfigError(source, "watchdog.timeout_s", "this board's watchdog allows at most "
                          "%s s, got %s" % (_seconds(wdt["max_ms"]), timeout))
    ports = ((board.get("buses") or {}).get("uart") or {}).get("ports")
    if values["agent.transport"] == "uart" and ports is not None:
        usable = [port["id"] for port in ports if port.get("rx") is not None]
        if values["agent.uart_id"] not in usable:
            raise ConfigError(source, "agent.uart_id", "this board has no UART %d that can "
                              "receive (usable: %s)" % (values["agent.uart_id"],
                                                        ", ".join([str(i) for i in usable])))


def _seconds(ms):
    return ms // 1000 if ms % 1000 == 0 else ms / 1000
