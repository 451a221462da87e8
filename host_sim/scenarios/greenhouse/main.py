# A greenhouse controller, the firmware of host_sim/scenarios/greenhouse.json.
#
# Every 5 s it reads the soil probe (DS18B20), the shade sensor (DHT22), the air sensor
# (BME280, when bme280-upy's bme280 package is in /lib), the soil moisture probe and the
# light sensor (ADC), and prints one line. The pump runs while the soil is dry or after
# the "water now" button, for one round. The status LED blinks while Wi-Fi is down.
import time

import dht
import ds18x20
import network
import onewire
from machine import ADC, Pin

DRY_UV = 1200000  # the moisture probe reads less than 1.2 V in dry soil

try:
    import bme280
    air = bme280.BME280(i2cBus=0, i2cAddr=0x76)
except ImportError:
    air = None

probes = ds18x20.DS18X20(onewire.OneWire(Pin(4)))
soil = probes.scan()[0]
shade = dht.DHT22(Pin(15))
moisture = ADC(Pin(34))
light = ADC(Pin(35))
status = Pin(2, Pin.OUT, value=0)
pump = Pin(5, Pin.OUT, value=0)
water_now = [False]


def pressed(pin):
    water_now[0] = True


Pin(0, Pin.IN, Pin.PULL_UP).irq(pressed, trigger=Pin.IRQ_FALLING)

wlan = network.WLAN(network.STA_IF)
wlan.active(True)
wlan.connect("greenhouse", "tomatoes")
online = False
n = 0
while True:
    n += 1
    probes.convert_temp()
    time.sleep_ms(750)
    shade.measure()
    air_text = "none"
    if air is not None:
        t, h, p = air.readForced(pollSleep=0.01)
        air_text = "%.1fC" % t
    wet = moisture.read_uv()
    print("reading %d soil %.2fC air %s humidity %.1f%% moisture %.2fV light %.2fV" % (
        n, probes.read_temp(soil), air_text, shade.humidity(), wet / 1e6,
        light.read_uv() / 1e6))
    pump.value(1 if wet < DRY_UV or water_now[0] else 0)
    water_now[0] = False
    if wlan.isconnected() != online:
        online = not online
        print("wifi up" if online else "wifi down")
    elif not online and wlan.status() != network.STAT_CONNECTING:
        wlan.connect("greenhouse", "tomatoes")  # it failed: try again
    for _ in range(17):
        status.value(1 if online else 1 - status.value())
        time.sleep_ms(250)
