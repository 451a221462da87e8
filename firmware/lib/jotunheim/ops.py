# Device operations: the builtin tools, and what tools.json binds user tools to.
#
# OPS holds one row per operation: (name, description, parameters, returns, function).
# Parameters are (name, type, required, description); types are the ValueType names of
# jotunheim.toolconf. A function takes the agent and the checked arguments as keywords and
# returns the result, or a coroutine for work that waits (the caller awaits it). A bad pin
# raises what `machine` raises on that board (ValueError: the call fails with
# INVALID_ARGUMENT and says why).
import gc

from jotunheim import port


def _machine():
    import machine
    return machine


def pin_read(agent, pin):
    return _machine().Pin(pin).value()


def pin_write(agent, pin, value):
    machine = _machine()
    machine.Pin(pin, machine.Pin.OUT).value(1 if value else 0)


def pin_toggle(agent, pin):
    machine = _machine()
    p = machine.Pin(pin, machine.Pin.OUT)
    p.value(0 if p.value() else 1)
    return p.value()


def adc_read(agent, pin):
    return _machine().ADC(pin).read_u16()


def pwm_set(agent, pin, freq, duty):
    machine = _machine()
    if not 0 <= duty <= 65535:
        raise ValueError("duty must be from 0 to 65535")
    pwm = machine.PWM(machine.Pin(pin))
    pwm.freq(freq)
    pwm.duty_u16(duty)


def device_info(agent):
    total, free = port.storage()
    info = {"id": agent.settings["device.id"], "name": agent.settings["device.name"],
            "board": agent.board["name"], "firmware": agent.version,
            "uptime_ms": port.ticks_diff(port.ticks_ms(), agent.started_ms),
            "sessions": agent.sessions_started, "storage_total": total, "storage_free": free}
    if port.mem_free is not None:
        gc.collect()
        info["free_memory"] = port.mem_free()
    return info


def device_heap(agent):
    if port.mem_free is None:
        raise OSError("this interpreter does not report its free heap")
    gc.collect()
    return port.mem_free()


def device_echo(agent, value=None):
    return value


async def device_sleep(agent, ms):
    await port.sleep_ms(ms)
    return ms


def device_reboot(agent, delay_ms=200):
    agent.reboot_soon(delay_ms)


_PIN = ("pin", "int", True, "GPIO number")

OPS = (
    ("pin_read", "Read a GPIO pin's level (0 or 1) without changing its mode", (_PIN,), "int",
     pin_read),
    ("pin_write", "Drive a GPIO pin as an output", (_PIN, ("value", "bool", True, "level")),
     "null", pin_write),
    ("pin_toggle", "Invert an output pin; returns the new level", (_PIN,), "int", pin_toggle),
    ("adc_read", "Read an analog input (0..65535)", (("pin", "int", True, "ADC pin or channel"),),
     "int", adc_read),
    ("pwm_set", "Drive PWM on a pin", (_PIN, ("freq", "int", True, "frequency in Hz"),
                                       ("duty", "int", True, "duty cycle, 0..65535")),
     "null", pwm_set),
    ("device_info", "Identity, uptime, memory and storage of the device", (), "map",
     device_info),
    ("device_heap", "Free heap in bytes after a collection", (), "int", device_heap),
    ("device_echo", "Return the value it is given", (("value", "any", False, "anything"),),
     "any", device_echo),
    ("device_sleep", "Wait without blocking other calls; returns ms", (
        ("ms", "int", True, "milliseconds"),), "int", device_sleep),
    ("device_reboot", "Reboot the device shortly after answering", (
        ("delay_ms", "int", False, "wait before the reset"),), "null", device_reboot),
)


def signatures():
    """{op: {"params": [(name, type, required)], "returns": type}} for toolconf.check_tools."""
    table = {}
    for name, _, params, returns, _ in OPS:
        table[name] = {"params": [(p[0], p[1], p[2]) for p in params], "returns": returns}
    return table
