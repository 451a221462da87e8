"""Checks shared by the simulator tests."""

import re
import time


def check_flash_after_cut(device):
    """Every data file is whole, and count is the last or the one before the last."""
    count = int(device.read_file("count"))
    written = []
    for k in range(3):
        lines = device.read_file("data%d" % k).decode().splitlines()
        numbers = {int(line.split()[0]) for line in lines}
        assert len(lines) == 40 and len(numbers) == 1, "data%d is torn: %r" % (k, lines)
        written.append(numbers.pop())
    assert max(written) in (count, count + 1)
    return count


def printed(device, pattern, since=0, timeout=20):
    """The groups of the first match of `pattern` in what the device printed after `since`."""
    deadline = time.monotonic() + timeout
    while True:
        found = re.search(pattern, device.console.text(since))
        if found:
            return found.groups()
        if time.monotonic() > deadline:
            raise AssertionError("%r not printed; the device printed: %s" % (
                pattern, device.console.text(since)[-800:]))
        time.sleep(0.02)
