"""A session writing answers into a socket that takes little at a time (a board's lwIP
keeps a few KB a connection): tests/link_checks.py on both runtimes, real loopback
sockets with small buffers."""
import json
import os
import shutil
import subprocess
import sys

import pytest

from agent_support import free_port
from sim_checks import ROOT

CHECKS = os.path.join(ROOT, "tests", "link_checks.py")
LIB = os.path.join(ROOT, "firmware", "lib")


def run_checks(runtime, frames=40, size=1000):
    if runtime == "micropython":
        cmd = [shutil.which("micropython"), "-X", "heapsize=1000000", CHECKS]
        env = dict(os.environ, MICROPYPATH=os.pathsep.join((".frozen", ROOT, LIB)))
    else:
        cmd = [sys.executable, CHECKS]
        env = dict(os.environ, PYTHONPATH=os.pathsep.join((ROOT, LIB)))
    done = subprocess.run(cmd + [str(free_port()), str(frames), str(size)], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("runtime", ["micropython", "cpython"])
def test_answers_to_a_controller_that_reads_nothing_arrive_whole_and_in_order(runtime):
    out = run_checks(runtime)
    assert out["most_queued"] > 0     # frames had to wait in the session's outbox
    assert out["in_order"] and out["queued_after"] == 0 and out["logged"] == []
    # one frame bigger than both socket buffers, alone: its rest goes out with a drain
    assert out["last_whole"]
    if runtime == "micropython":     # the stream kept what the socket did not take
        assert out["most_held"] > 0 and out["last_held"] > 0
