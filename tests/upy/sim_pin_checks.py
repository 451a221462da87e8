# Pin-level simulator scenarios that run unchanged on MicroPython and CPython; the test
# suite runs this script on both, for every board, and requires identical output.
#
# usage: sim_pin_checks.py BOARD BOARDS_DIR SHIMS_DIR
# Prints one JSON object per scenario: blink, button IRQs, ADC waveforms, PWM, timers,
# misuse errors, watchdog, deep sleep and resets, chip-level odds and ends. Times are
# microseconds since boot; no floats are printed (their repr differs between interpreters).
#
# Firmware would write `import machine, time`; `time` here would be the host's on CPython,
# so the scenarios move time with the World's clock (what time.sleep does on a device).
import gc
import json
import sys

from host_sim import boards, parts, pins
from host_sim.world import World, install

machine = Pin = None  # set by load_machine()


def load_machine(shims):
    """The machine shim: on MicroPython by its own name, shadowing the built-in one as on
    a device; on CPython as host_sim.shims.machine."""
    global machine, Pin
    if sys.implementation.name == "micropython":
        sys.path.insert(0, shims)
        import machine
    else:
        from host_sim.shims import machine
    Pin = machine.Pin

LED_PIN = {"esp32": 2, "esp8266": 2, "pico_w": "LED", "linux_sbc": 17}
BUTTON_PIN = {"esp32": 0, "esp8266": 0, "pico_w": 15, "linux_sbc": 27}
PWM_PINS = {"esp32": (5, 18), "esp8266": (4, 5), "pico_w": (16, 17), "linux_sbc": (18, 13)}
ADC_SOURCE = {"esp32": (34, 34), "esp8266": (0, "A0"), "pico_w": (26, 26)}


def outcome(fn, *args):
    """What fn(*args) did: ["ok", result] or [exception name, args]."""
    try:
        result = fn(*args)
    except pins.DeviceReset as e:
        return ["DeviceReset", e.reason, e.cause]
    except Exception as e:  # noqa: BLE001 - the exception type is what we compare
        return [type(e).__name__, list(e.args)]
    if isinstance(result, bytes):
        result = "bytes:" + result.hex()
    elif not isinstance(result, (int, str, list, tuple)) and result is not None:
        result = type(result).__name__
    return ["ok", result]


def fresh(board):
    world = install(World(board))
    return world, world.clock


def history(part):
    return [[t, int(v * 10000)] for t, v in part.history]


def blink(board):
    _, clock = fresh(board)
    led = parts.LED(LED_PIN[board["name"]], active_low=board["name"] == "esp8266")
    pin = Pin(LED_PIN[board["name"]], Pin.OUT)
    for _ in range(6):
        pin.toggle()
        clock.advance(500000)
    signal = machine.Signal(pin, invert=True)
    signal.on()
    after_on = pin.value()
    signal.off()
    return {"history": history(led), "signal_on_pin": after_on, "signal": signal.value(),
            "is_on": led.is_on()}


def button(board):
    _, clock = fresh(board)
    number = BUTTON_PIN[board["name"]]
    btn = parts.Button(number)
    pin = Pin(number, Pin.IN, Pin.PULL_UP)
    events = []
    pin.irq(handler=lambda p: events.append([clock.uptime_us(), p.value()]),
            trigger=Pin.IRQ_FALLING | Pin.IRQ_RISING)
    clock.advance(100000)
    btn.click(30)
    clock.advance(70000)
    btn.press()
    clock.advance(1000)
    btn.release()
    pin.irq(handler=lambda p: events.append(["falling", clock.uptime_us()]),
            trigger=Pin.IRQ_FALLING)
    btn.click(10)
    state = machine.disable_irq()
    btn.press()
    held = len(events)
    clock.advance(5000)
    machine.enable_irq(state)
    btn.release()
    pin.init(pull=None)  # no pull-up: an active-low button cannot make an edge
    floating = len(events)
    btn.click(10)
    return {"events": events, "held_back": held, "floating_edges": len(events) - floating,
            "flags": pin.irq().flags()}


def adc(board):
    world, clock = fresh(board)
    source = ADC_SOURCE.get(board["name"])
    if source is None:
        return {"none": outcome(lambda: machine.ADC(0))}
    spec = board["adc"]
    channel, key = source
    a = machine.ADC(channel)
    out = {}
    pins.set_voltage(world, key, 0.25)
    out["constant"] = [a.read_u16()] + extras(a, spec)
    pins.set_voltage(world, key, lambda t: 0.1 * t / 1000000)
    samples = []
    for _ in range(4):
        clock.advance(1000000)
        samples.append(a.read_u16())
    out["ramp"] = samples
    start = clock.uptime_us()
    pins.set_voltage(world, key, [(start, 0.0), (start + 1000000, 1.0), (start + 1000000, 0.2),
                                  (start + 3000000, 0.6)])
    samples = []
    for _ in range(5):
        samples.append(a.read_u16())
        clock.advance(750000)
    out["points"] = samples
    pins.set_voltage(world, key, 5.0)
    out["over_range"] = [a.read_u16()] + extras(a, spec)
    out["by_board"] = adc_by_board(board, world, a)
    return out


def extras(a, spec):
    return [outcome(getattr(a, name)) for name in ("read", "read_uv")
            if name in spec["methods"]]


def adc_by_board(board, world, a):
    name = board["name"]
    if name == "esp32":
        pins.set_voltage(world, 34, 0.5)
        a.atten(machine.ADC.ATTN_0DB)
        a.width(machine.ADC.WIDTH_10BIT)
        adc2 = machine.ADC(Pin(25))
        world.machine["radio_on"] = True
        return [a.read(), a.read_u16(), a.read_uv(), outcome(lambda: a.atten(7)),
                outcome(lambda: a.width(8)), outcome(adc2.read_u16), a.read_u16()]
    if name == "esp8266":
        vdd = machine.ADC(1)
        return [vdd.read(), outcome(lambda: a.read_uv())]
    temperature = machine.ADC(4)
    return [temperature.read_u16(), machine.ADC(Pin(27)).read_u16(),
            outcome(lambda: machine.ADC(29).read_u16()), outcome(lambda: a.read())]


def pwm(board):
    _, clock = fresh(board)
    first, second = PWM_PINS[board["name"]]
    led = parts.LED(first)
    p = machine.PWM(Pin(first), freq=1000, duty_u16=16384)
    out = {"start": [p.freq(), p.duty_u16(), p.duty_ns()]}
    clock.advance(1000)
    p.duty_u16(65535)
    clock.advance(1000)
    p.duty_ns(250000)
    out["ns"] = [p.duty_u16(), p.duty_ns()]
    out["low_freq"] = outcome(lambda: p.freq(0))
    out["high_freq"] = outcome(lambda: p.freq(10 ** 9))
    out["after"] = p.freq()
    out["bad_duty"] = outcome(lambda: p.duty_u16(70000))
    out["duty10"] = outcome(lambda: p.duty(512))
    out["duty10_read"] = outcome(lambda: p.duty())
    other = machine.PWM(Pin(second), freq=300, duty_u16=0)
    out["shared"] = [p.freq(), other.freq()]
    default = machine.PWM(Pin(second))
    out["default"] = [default.freq(), default.duty_u16()]
    clock.advance(1000)
    p.deinit()
    out["history"] = history(led)
    inverted = machine.PWM(Pin(first), freq=500, duty_u16=16384, invert=True)
    out["inverted"] = history(led)[-1][1]
    inverted.deinit()
    return out


def timers(board):
    _, clock = fresh(board)
    fired = []
    periodic = machine.Timer(-1)
    periodic.init(mode=machine.Timer.PERIODIC, period=100,
                  callback=lambda t: fired.append(["p", clock.uptime_us()]))
    once = machine.Timer(-1)
    once.init(mode=machine.Timer.ONE_SHOT, period=250,
              callback=lambda t: fired.append(["o", clock.uptime_us()]))
    clock.advance(1000000)
    periodic.deinit()
    clock.advance(500000)
    fast = machine.Timer(-1, freq=4, callback=lambda t: fired.append(["f", clock.uptime_us()]))
    machine.lightsleep(600)
    machine.lightsleep()
    machine.idle()
    fast.deinit()
    nested = []

    def sleepy(t):
        nested.append(clock.uptime_us())
        clock.advance(20000)  # a callback that sleeps moves the clock on

    machine.Timer(-1, mode=machine.Timer.ONE_SHOT, period=10, callback=sleepy)
    clock.advance(5000)
    clock.advance(5000)
    return {"fired": fired, "now": clock.uptime_us(), "nested": nested,
            "bad_id": outcome(lambda: machine.Timer(9))}


def misuse(board):
    world, _ = fresh(board)
    numbered = sorted([int(k) for k in board["pins"] if k.isdigit()])
    caps = board["pins"]
    missing = [n for n in range(41) if n not in numbered][:2]
    checks = {"missing": [outcome(Pin, n) for n in missing], "huge": outcome(Pin, 99),
              "name": outcome(Pin, "NOPE"), "digits": outcome(Pin, "5")}
    for label, cap in (("output", "out"), ("pwm", "pwm"), ("irq", "irq"),
                       ("pull_up", "pull_up"), ("pull_down", "pull_down")):
        lacking = [k for k in sorted(caps) if cap not in caps[k]][:1]
        checks[label] = [lacking] + [outcome(try_cap, label, k) for k in lacking]
    checks["log"] = len(world.log)
    fresh(board)  # a new board each time, so the heap holds one board's pins at most
    checks["adc"] = [outcome(machine.ADC, n) for n in (2, 5, 99)]
    checks["pull_down_anywhere"] = outcome(lambda: Pin(numbered[0], Pin.IN, Pin.PULL_DOWN))
    checks["low"] = outcome(lambda: Pin(numbered[0], Pin.OUT).low())
    return checks


def chip_misuse(board):
    fresh(board)
    checks = {"wdt": [outcome(machine.WDT, 0, t) for t in (0, 10000)],
              "wdt_id": outcome(machine.WDT, 1, 5000)}
    allowed = board["machine"]["freq_mhz"]
    checks["freq"] = [outcome(machine.freq, f * 1000000) for f in (123, allowed[0])]
    checks["freq_now"] = machine.freq()
    checks["constants"] = [outcome(getattr, machine, n) for n in
                           ("PWRON_RESET", "HARD_RESET", "WDT_RESET", "DEEPSLEEP_RESET",
                            "SOFT_RESET", "NO_RESET")]
    return checks


def try_cap(label, key):
    pin = pins.canonical(key)
    if label == "output":
        return Pin(pin, Pin.OUT)
    if label == "pwm":
        return machine.PWM(Pin(pin))
    if label == "irq":
        return Pin(pin).irq(lambda p: None)
    pull = Pin.PULL_UP if label == "pull_up" else Pin.PULL_DOWN
    return Pin(pin, Pin.IN, pull).value()


def watchdog(board):
    world, clock = fresh(board)
    led = parts.LED(LED_PIN[board["name"]])
    Pin(LED_PIN[board["name"]], Pin.OUT, value=1)
    timeout = board["machine"]["wdt"].get("fixed_ms", 2000)
    wdt = machine.WDT(timeout=timeout)
    for _ in range(5):
        clock.advance(timeout * 500)
        wdt.feed()
    survived = clock.uptime_us()
    try:
        clock.advance(timeout * 3000)
        reset = None
    except pins.DeviceReset as e:
        reset = [e.reason, e.cause, e.sleep_us, clock.uptime_us(), isinstance(e, SystemExit)]
    return {"survived": survived, "reset": reset, "cause": machine.reset_cause(),
            "led": history(led), "log": [event for t, source, event in world.log]}


def sleeps(board):
    fresh(board)
    out = {"boot_cause": machine.reset_cause()}
    for name, call in (("deepsleep", lambda: machine.deepsleep(10000)),
                       ("deepsleep_forever", lambda: machine.deepsleep()),
                       ("reset", machine.reset), ("soft_reset", machine.soft_reset)):
        _, clock = fresh(board)
        fired = []
        machine.Timer(-1, period=5, callback=fired.append)
        try:
            call()
            out[name] = "returned"
        except pins.DeviceReset as e:
            clock.advance(100000)  # the dead device's timers stay silent
            out[name] = [e.reason, e.cause, e.sleep_us, machine.reset_cause(), len(fired)]
    return out


def chip(board):
    world, clock = fresh(board)
    rtc = machine.RTC()
    first = list(rtc.datetime())
    rtc.datetime((2024, 2, 28, 0, 23, 59, 58, 250000))
    clock.advance(1500000)
    later = list(rtc.datetime())
    world.machine["unique_id"] = b"\x01\x02"
    return {"unique_id": outcome(machine.unique_id),
            "board_id": board["machine"]["unique_id"], "rtc": [first, later],
            "freq": machine.freq(), "epoch_day": rtc.datetime()[3]}


SCENARIOS = (blink, button, adc, pwm, timers, misuse, chip_misuse, watchdog, sleeps,
             chip)


def main(name, directory, shims):
    load_machine(shims)
    board = boards.load(name, directory)
    for scenario in SCENARIOS:
        gc.collect()
        result = scenario(board)
        result["scenario"] = scenario.__name__
        result["board"] = name
        print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3])
