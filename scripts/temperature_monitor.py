"""Temperature monitor: read a TMP36-style analog sensor and keep statistics on the device.

A Jotunheim script (Python, the board's MicroPython or CPython on a Linux board). Register
it as script "temperature_monitor" (it becomes tool Script_temperature_monitor) with these
parameters:

    pin           int    ADC pin of the sensor's output          default 34
    full_scale_v  float  volts of a full-scale ADC reading         default 3.3
    alarm_c       float  log a warning at or above this (Celsius)  default 40.0

It returns {"celsius", "min", "max", "avg", "count", "alarm"}; the statistics live in Hel
under "stats" (give the script a storage quota of a few hundred bytes) and survive reboots.
"""

SENSOR_OFFSET_V = 0.5     # TMP36: 0.5 V at 0 Celsius ...
VOLTS_PER_DEGREE = 0.01   # ... and 10 mV per degree


def run(ctx, pin=34, full_scale_v=3.3, alarm_c=40.0):
    raw = ctx.fenrir.adc_read(pin)                       # 0..65535
    volts = raw * full_scale_v / 65535
    celsius = round((volts - SENSOR_OFFSET_V) / VOLTS_PER_DEGREE, 1)
    stats = ctx.hel.get("stats") or {"min": celsius, "max": celsius, "sum": 0.0, "count": 0}
    stats["min"] = min(stats["min"], celsius)
    stats["max"] = max(stats["max"], celsius)
    stats["sum"] += celsius
    stats["count"] += 1
    ctx.hel.put("stats", stats)
    alarm = celsius >= alarm_c
    if alarm:
        ctx.log("%.1f C on pin %d: at or above the alarm level of %.1f C"
                % (celsius, pin, alarm_c), "warning")
    return {"celsius": celsius, "min": stats["min"], "max": stats["max"],
            "avg": round(stats["sum"] / stats["count"], 1), "count": stats["count"],
            "alarm": alarm}
