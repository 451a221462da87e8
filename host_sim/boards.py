# Board profiles: boards/<name>.json, read by the simulator and by the firmware.
import json

try:
    import os.path as _path

    _BOARDS = _path.join(_path.dirname(_path.dirname(_path.abspath(__file__))), "boards")
except ImportError:  # MicroPython has no os.path: boards/ sits beside this package
    _PARTS = __file__.rsplit("/", 2)
    _BOARDS = (_PARTS[0] if len(_PARTS) == 3 else ".") + "/boards"

NAMES = ("esp32", "esp8266", "pico_w", "linux_sbc")


def load(name, directory=None):
    """The profile of board `name` as a dict; ValueError for an unknown board."""
    if name not in NAMES:
        raise ValueError("unknown board %r (known: %s)" % (name, ", ".join(NAMES)))
    with open((directory or _BOARDS) + "/" + name + ".json") as f:
        return json.load(f)
