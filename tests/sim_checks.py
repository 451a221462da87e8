"""Checks shared by the simulator tests."""

import json
import os
import re
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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


def whole_lines(text):
    """`text` up to its last newline: a line still being printed is not matched half."""
    return text[:text.rfind("\n") + 1]


def printed(device, pattern, since=0, timeout=20):
    """The groups of the first match of `pattern` in what the device printed after `since`
    (whole lines only)."""
    deadline = time.monotonic() + timeout
    while True:
        found = re.search(pattern, whole_lines(device.console.text(since)))
        if found:
            return found.groups()
        if time.monotonic() > deadline:
            raise AssertionError("%r not printed; the device printed: %s" % (
                pattern, device.console.text(since)[-800:]))
        time.sleep(0.02)


def micropython_env():
    """The environment for a check script on the unix port: the shims shadow the
    built-in modules, as on a simulated device."""
    path = os.pathsep.join((os.path.join(ROOT, "host_sim", "shims"), ROOT, ".frozen"))
    return dict(os.environ, MICROPYPATH=path)


def run_check_script(runtime, script, args, heap, timeout=120):
    """Run a check script under `runtime`; the JSON objects it printed, merged."""
    if runtime == "micropython":
        cmd, env = [shutil.which("micropython"), "-X", "heapsize=" + heap, script], \
            micropython_env()
    else:
        cmd, env = [sys.executable, script], dict(os.environ, PYTHONPATH=ROOT)
    proc = subprocess.run(cmd + [str(a) for a in args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = {}
    for line in proc.stdout.splitlines():
        rows.update(json.loads(line))
    return rows
