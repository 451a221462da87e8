# network: Wi-Fi as MicroPython's network module has it, with outcomes scripted by the World.
#
# world.network is a NetworkState: the access points in range (ssid, password, rssi,
# channel), how long association takes (virtual ms), failures forced on the next
# connection attempts, and a schedule of link drops (virtual ms since boot). A WLAN works
# its state out from the clock whenever it is asked, so nothing runs in the background and
# both interpreters behave alike; association time passes only as the device's clock
# does. Traffic still goes over real loopback sockets: when the link drops, isconnected()
# turns False here and the runner's link proxy drops the device's connections.
from host_sim.world import current

STA_IF = 0
AP_IF = 1
# The ESP32 port's status values. Firmware compares names, never numbers: ESP8266 and
# Pico W boards number them differently.
STAT_IDLE = 1000
STAT_CONNECTING = 1001
STAT_GOT_IP = 1010
STAT_BEACON_TIMEOUT = 200
STAT_NO_AP_FOUND = 201
STAT_WRONG_PASSWORD = 202
STAT_ASSOC_FAIL = 203
STAT_HANDSHAKE_TIMEOUT = 204
STAT_CONNECT_FAIL = STAT_ASSOC_FAIL
STATUS_NAMES = {
    "STAT_IDLE": STAT_IDLE, "STAT_CONNECTING": STAT_CONNECTING, "STAT_GOT_IP": STAT_GOT_IP,
    "STAT_BEACON_TIMEOUT": STAT_BEACON_TIMEOUT, "STAT_NO_AP_FOUND": STAT_NO_AP_FOUND,
    "STAT_WRONG_PASSWORD": STAT_WRONG_PASSWORD, "STAT_ASSOC_FAIL": STAT_ASSOC_FAIL,
    "STAT_HANDSHAKE_TIMEOUT": STAT_HANDSHAKE_TIMEOUT, "STAT_CONNECT_FAIL": STAT_CONNECT_FAIL,
}
AUTH_OPEN = 0
AUTH_WEP = 1
AUTH_WPA_PSK = 2
AUTH_WPA2_PSK = 3
AUTH_WPA_WPA2_PSK = 4
_NO_ADDRESS = ("0.0.0.0", "0.0.0.0", "0.0.0.0", "0.0.0.0")


class NetworkState:
    """The scripted Wi-Fi around one simulated device."""

    def __init__(self, access_points=(), associate_ms=1000, failures=(), link=(),
                 addresses=("192.168.4.2", "255.255.255.0", "192.168.4.1", "192.168.4.1")):
        self.access_points = [dict(ap) for ap in access_points]  # ssid, password, rssi, ...
        self.associate_ms = associate_ms
        self.failures = list(failures)  # statuses forced on the next connection attempts
        self.link_events = sorted(link)  # (at_ms, up): up is True or False
        self.addresses = tuple(addresses)  # what DHCP hands out: ip, netmask, gateway, dns
        self.interfaces = {}
        self.hostname = "jotunheim"
        self.country = "XX"

    @classmethod
    def from_dict(cls, settings):
        """A NetworkState from JSON-like settings (status names, "up"/"down" links)."""
        link = [(at, state in (True, "up")) for at, state in settings.get("link", ())]
        failures = [STATUS_NAMES[name] for name in settings.get("failures", ())]
        state = cls(settings.get("access_points", ()), settings.get("associate_ms", 1000),
                    failures, link)
        if "addresses" in settings:
            state.addresses = tuple(settings["addresses"])
        return state

    def set_link(self, up, at_ms=None):
        """Bring the link up or down now (or at virtual time at_ms since boot)."""
        if at_ms is None:
            at_ms = _now_ms()
        self.link_events.append((at_ms, bool(up)))
        self.link_events.sort()

    def link_up(self, now_ms):
        up = True
        for at_ms, state in self.link_events:
            if at_ms > now_ms:
                break
            up = state
        return up

    def link_since(self, now_ms):
        """When the link last came up (0: it never went down)."""
        since = 0
        for at_ms, state in self.link_events:
            if at_ms > now_ms:
                break
            if state:
                since = at_ms
        return since

    def link_dropped(self, since_ms, now_ms):
        """True if the link went down after since_ms, by now_ms."""
        for at_ms, state in self.link_events:
            if since_ms < at_ms <= now_ms and not state:
                return True
        return False

    def find(self, ssid):
        for ap in self.access_points:
            if ap["ssid"] == ssid:
                return ap
        return None


def _world():
    world = current()
    control = getattr(world, "control", None)
    if control is not None:  # a subprocess device: the runner may have news
        control.poll()
    if world.network is None:
        world.network = NetworkState()
    return world


def _now_ms():
    return current().clock.uptime_us() // 1000


def _mac(interface):
    return bytes((0x24, 0x6F, 0x28, 0x10, 0x20, 0x30 + interface))


class _Interface:
    """What one interface remembers (WLAN objects for it share this)."""

    def __init__(self, interface):
        self.active = False
        self.attempt = None  # (ssid, started_ms, outcome)
        self.static = None   # addresses set with ifconfig()
        self.settings = {"mac": _mac(interface), "channel": 1, "hostname": "jotunheim",
                         "reconnects": -1, "txpower": 20, "security": AUTH_WPA2_PSK,
                         "ssid": "jotunheim-ap" if interface == AP_IF else ""}


class WLAN:
    """A Wi-Fi interface: WLAN(STA_IF) is the station, WLAN(AP_IF) the access point."""

    def __init__(self, interface=STA_IF):
        if interface not in (STA_IF, AP_IF):
            raise ValueError("unknown interface")
        self._interface = interface

    def _state(self):
        interfaces = _world().network.interfaces
        if self._interface not in interfaces:
            interfaces[self._interface] = _Interface(self._interface)
        return interfaces[self._interface]

    def active(self, is_active=None):
        state = self._state()
        if is_active is None:
            return state.active
        state.active = bool(is_active)
        if not state.active:
            state.attempt = None
        return None

    def connect(self, ssid=None, key=None, bssid=None):
        """Start associating; status() tells how it went once associate_ms have passed."""
        state = self._state()
        self._station_only("connect")
        if not state.active:
            raise OSError("Wifi Not Started")
        network = _world().network
        now = _now_ms()
        ap = network.find(ssid)
        if network.failures:
            outcome = network.failures.pop(0)
        elif ap is None or not network.link_up(now):
            outcome = STAT_NO_AP_FOUND
        elif ap.get("password", "") != (key or ""):
            outcome = STAT_WRONG_PASSWORD
        else:
            outcome = STAT_GOT_IP
        state.attempt = (ssid, now, outcome)
        state.settings["ssid"] = ssid

    def disconnect(self):
        self._state().attempt = None

    def status(self, param=None):
        if param is not None:
            return self._status_param(param)
        state = self._state()
        if self._interface == AP_IF:
            return STAT_GOT_IP if state.active else STAT_IDLE
        if not state.active or state.attempt is None:
            return STAT_IDLE
        network = _world().network
        now = _now_ms()
        started, outcome = state.attempt[1], state.attempt[2]
        if now < started + network.associate_ms:
            return STAT_CONNECTING
        if outcome != STAT_GOT_IP:
            return outcome
        if state.settings["reconnects"] == 0 and network.link_dropped(started, now):
            return STAT_BEACON_TIMEOUT  # lost, and told not to try again
        if not network.link_up(now):  # lost: the station keeps trying, as the ESP32's does
            return STAT_CONNECTING
        back = network.link_since(now)
        if back > started and now < back + network.associate_ms:
            return STAT_CONNECTING
        return STAT_GOT_IP

    def _status_param(self, param):
        if param == "rssi":
            if not self.isconnected():
                raise OSError("not connected")
            ap = _world().network.find(self._state().attempt[0])
            return ap.get("rssi", -60)
        if param == "stations":
            return []
        raise ValueError("unknown status param")

    def isconnected(self):
        if self._interface == AP_IF:
            return False  # no station ever joins the simulated access point
        return self.status() == STAT_GOT_IP

    def ifconfig(self, addresses=None):
        state = self._state()
        if addresses is not None:
            state.static = tuple(addresses)
            return None
        if self._interface == AP_IF:
            ap_address = ("192.168.4.1", "255.255.255.0", "192.168.4.1", "192.168.4.1")
            return state.static or (ap_address if state.active else _NO_ADDRESS)
        if not self.isconnected():
            return _NO_ADDRESS
        return state.static or _world().network.addresses

    def config(self, *args, **kwargs):
        settings = self._state().settings
        if kwargs:
            for name, value in kwargs.items():
                name = {"essid": "ssid", "dhcp_hostname": "hostname",
                        "authmode": "security", "key": "password"}.get(name, name)
                if name not in settings and name != "password":
                    raise ValueError("unknown config param")
                settings[name] = value
            return None
        if len(args) != 1:
            raise TypeError("can query only one param")
        name = {"essid": "ssid", "dhcp_hostname": "hostname",
                "authmode": "security"}.get(args[0], args[0])
        if name not in settings or name == "password":
            raise ValueError("unknown config param")
        return settings[name]

    def scan(self):
        """The access points in range: (ssid, bssid, channel, RSSI, security, hidden)."""
        self._station_only("scan")
        if not self._state().active:
            raise OSError("Wifi Not Started")
        network = _world().network
        if not network.link_up(_now_ms()):
            return []
        found = []
        for i, ap in enumerate(network.access_points):
            bssid = ap.get("bssid") or _mac(0x40 + i)
            if isinstance(bssid, str):  # "24:6f:28:..." in a scenario file
                bssid = bytes.fromhex(bssid.replace(":", ""))
            security = ap.get("security", AUTH_WPA2_PSK if ap.get("password") else AUTH_OPEN)
            found.append((ap["ssid"].encode(), bssid, ap.get("channel", 1),
                          ap.get("rssi", -60), security, ap.get("hidden", False)))
        return found

    def _station_only(self, what):
        if self._interface != STA_IF:
            raise OSError("%s: station interface only" % what)


def hostname(name=None):
    """The device's host name (get, or set with an argument)."""
    network = _world().network
    if name is None:
        return network.hostname
    network.hostname = name
    return None


def country(code=None):
    """The Wi-Fi country code (get, or set with an argument)."""
    network = _world().network
    if code is None:
        return network.country
    network.country = code
    return None
