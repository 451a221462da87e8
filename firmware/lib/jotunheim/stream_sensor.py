"""The sensor stream kind: a pin sampled at a rate, each sample timestamped."""
import struct

from jotunheim import port
from jotunheim.stream_core import (INVALID_ARGUMENT, UNIMPLEMENTED, Clock, Refused,
                                   param_int)

MAX_RATE_HZ = 1000
SAMPLE = 8              # a sensor sample: uint32 t_us, int32 value (little-endian)


class Sensor:
    """Samples of a pin ("adc:34": ADC read_u16; "pin:4": digital level) at rate_hz, for
    count samples or duration_ms (0: until closed). Data: SAMPLE-byte records, t_us since
    the first sample (uint32) and the value (int32); the timestamp_us of a message is the
    device's microsecond clock at its first sample."""

    def __init__(self, source, params):
        kind, _, pin = source.partition(":")
        if kind not in ("adc", "pin") or not pin.isdigit():
            raise Refused(INVALID_ARGUMENT, "source %r: want adc:PIN or pin:PIN" % source)
        rate = params.get("rate_hz", 10)
        if type(rate) not in (int, float) or not 0 < rate <= MAX_RATE_HZ:
            raise Refused(INVALID_ARGUMENT, "rate_hz must be above 0 and at most %d"
                          % MAX_RATE_HZ)
        self.period_us = int(1000000 / rate)
        self.count = param_int(params, "count", 0, 0, 1 << 30)
        self.duration_us = param_int(params, "duration_ms", 0, 0, 1 << 30) * 1000
        self.batch = param_int(params, "batch", max(1, min(64, int(rate) // 4)), 1, 512)
        try:
            import machine
        except ImportError:
            raise Refused(UNIMPLEMENTED, "this device has no pins (no machine module)")
        try:
            if kind == "adc":
                self.read = machine.ADC(int(pin)).read_u16
            else:
                self.read = machine.Pin(int(pin), machine.Pin.IN).value
            self.read()
        except (ValueError, OSError, TypeError) as e:
            raise Refused(INVALID_ARGUMENT, "source %r cannot be read: %s" % (source, e))

    async def run(self, stream):
        per_chunk = max(1, min(self.batch, stream.max_chunk // SAMPLE))
        buf = bytearray(per_chunk * SAMPLE)
        clock = Clock()
        taken = slot = n = 0
        first = origin = None   # clock times of the chunk's and the stream's first sample
        while not self.count or taken < self.count:
            target = slot * self.period_us
            now = clock.now()
            if target > now:
                await port.sleep_ms((target - now + 999) // 1000)
                continue
            value = self.read()
            t = clock.now()
            if origin is None:
                origin = t
            if n == 0:
                first = t
            struct.pack_into("<Ii", buf, n * SAMPLE, (t - origin) & 0xFFFFFFFF, value)
            n += 1
            taken += 1
            slot = max(slot + 1, t // self.period_us)   # late: skip the slots missed
            last = self.duration_us and t >= self.duration_us
            if n == per_chunk or last or taken == self.count:
                await stream.send(bytes(buf[:n * SAMPLE]), clock.start + first)
                n = 0
            if last:
                return
            await port.sleep_ms(0)
