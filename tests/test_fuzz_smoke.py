"""A short run of the atheris fuzz target, and checks that its harness reports breakage."""
import importlib.util
import os
import subprocess
import sys

import pytest

import atheris  # noqa: F401,E402 - the fuzz target needs it

import protocol  # noqa: E402  (first, so loading the target below leaves it uninstrumented)

FUZZ_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fuzz")
TARGET = os.path.join(FUZZ_DIR, "fuzz_protocol.py")
MAKE_CORPUS = os.path.join(FUZZ_DIR, "make_corpus.py")


def _load(path):
    spec = importlib.util.spec_from_file_location(os.path.basename(path)[:-3], path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def fuzz():
    return _load(TARGET)


def test_short_fuzz_run_finds_nothing(tmp_path):
    corpus = tmp_path / "corpus"
    made = subprocess.run([sys.executable, MAKE_CORPUS, str(corpus)],
                          capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    # a fixed seed makes a failure here reproducible; crash files land in tmp_path
    run = subprocess.run([sys.executable, TARGET, "-runs=3000", "-seed=1", str(corpus)],
                         cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-6000:]


def test_seed_inputs_meet_the_contract(fuzz):
    make_corpus = _load(MAKE_CORPUS)
    inputs = make_corpus.seed_inputs()
    covered = {data[0] for _, data in inputs}
    assert covered == set(range(len(fuzz.TARGETS)))
    for _, data in inputs:
        fuzz.TestOneInput(data)


def test_harness_lets_a_foreign_exception_through(fuzz, monkeypatch):
    def leaky_decode(type_name, data, limits=protocol.DEFAULT_LIMITS):
        raise IndexError("index out of range")

    monkeypatch.setattr(protocol, "decode", leaky_decode)
    with pytest.raises(IndexError):
        fuzz.TestOneInput(fuzz.target_input("Ping", b"\x08\x01"))


def test_harness_catches_a_result_over_the_limits(fuzz, monkeypatch):
    def greedy_decode(type_name, data, limits=protocol.DEFAULT_LIMITS):
        return {"request_id": 1, "keys": ["k"] * (limits.max_items + 1)}

    monkeypatch.setattr(protocol, "decode", greedy_decode)
    with pytest.raises(AssertionError, match="keys holds"):
        fuzz.TestOneInput(fuzz.target_input("SettingsGet", b"\x08\x01"))
