"""MQTT reporter: read a sensor and publish the reading to an MQTT broker as JSON.

A Jotunheim script (Python). Register it as script "mqtt_reporter" (it becomes tool
Script_mqtt_reporter) with these parameters:

    broker   string  the broker's host name or address        required
    port     int     the broker's port                         default 1883
    topic    string  where readings go                         default "jotunheim/reading"
    sensor   string  a part named in /wiring.json, or "adc"    default "adc"
    pin      int     the ADC pin when sensor is "adc"          default 34
    full_scale_v float  volts of a full-scale ADC reading      default 3.3 (ESP32: 3.9)

Call it from a schedule (every minute, say). The broker connection stays open between
calls and reconnects by itself; each reading is also kept in the Hel series "reading", so
the reply carries the statistics of the last hour. It returns {"published", "hour"}.
"""
import json


async def run(ctx, broker, port=1883, topic="jotunheim/reading", sensor="adc", pin=34,
              full_scale_v=3.3):
    net = ctx.jormungandr
    await net.mqtt_connect(broker, port)
    if sensor == "adc":
        reading = {"volts": round(ctx.fenrir.adc_read(pin) * full_scale_v / 65535, 3)}
        value = reading["volts"]
    else:
        reading = await ctx.fenrir.read(sensor)
        value = reading["temperature"]
    reading["sensor"] = sensor
    await net.mqtt_publish(topic, json.dumps(reading), qos=1)   # returns once it is taken
    ctx.hel.append("reading", value, keep=60)
    hour = ctx.hel.windows("reading", 3600)
    ctx.log("published %s to %s" % (value, topic))
    return {"published": reading, "hour": hour[-1]}
