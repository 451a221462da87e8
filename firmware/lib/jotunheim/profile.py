"""The part of a board profile a device keeps: deploy writes it as /board.json, with the
hardware worked out from the pins and buses (the Hardware of the capability document).
The whole profile stays on the host; a device given one anyway (an old deploy) works it
out with this module, loaded for that only."""


def hardware(board):
    """The Hardware part of the document, from the board profile."""
    reserved = board.get("reserved") or {}
    available, digital, analog, pwm, input_only = [], [], [], [], []
    for key, caps in board.get("pins", {}).items():
        if not key.isdigit() or key in reserved:
            continue
        pin = int(key)
        available.append(pin)
        if "in" in caps or "out" in caps:
            digital.append(pin)
        if "adc" in caps:
            analog.append(pin)
        if "pwm" in caps:
            pwm.append(pin)
        if "in" in caps and "out" not in caps:
            input_only.append(pin)
    for group in (available, digital, analog, pwm, input_only):
        group.sort()
    interfaces = []
    buses = board.get("buses") or {}
    for bus, label in (("i2c", "I2C"), ("spi", "SPI"), ("uart", "UART")):
        if (buses.get(bus) or {}).get("ports"):
            interfaces.append(label)
    if board.get("adc"):
        interfaces.append("ADC")
    if pwm:
        interfaces.append("PWM")
    if board.get("onewire"):
        interfaces.append("1-Wire")
    if board.get("dht"):
        interfaces.append("DHT")
    return {"gpio": {"available": available, "digital": digital, "analog": analog,
                     "pwm": pwm, "input_only": input_only},
            "interfaces": interfaces}


# what the device keeps of its board profile (with the hardware worked out), the rest stays
# on the host: the whole profile would take more heap than an ESP8266 can spare at boot
DEVICE_KEYS = ("name", "title", "type", "limits", "heap_bytes", "cpu_mhz", "settings",
               "script_languages")


def device_profile(board):
    """The part of a board profile the device needs: deploy writes it as /board.json."""
    kept = {"hardware": hardware(board)}
    for key in DEVICE_KEYS:
        if key in board:
            kept[key] = board[key]
    machine = board.get("machine") or {}
    kept["machine"] = {"unique_id": machine.get("unique_id", ""), "wdt": machine.get("wdt", {})}
    uart = ((board.get("buses") or {}).get("uart") or {}).get("ports")
    kept["buses"] = {"uart": {"ports": uart}} if uart else {}
    return kept
