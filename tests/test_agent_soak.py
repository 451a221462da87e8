"""The soak: 10,000 calls to a MicroPython-unix device with a board's heap; its free heap
after a collection is the same at the end as after the first thousand calls."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "bench"))

from soak_agent import GROWTH_SLACK, soak  # noqa: E402

SOAK_BOARD = "esp32"


def test_ten_thousand_calls_and_the_heap_does_not_grow():
    report = soak(SOAK_BOARD, calls=10000, every=1000)
    print(report["samples"])
    frees = [free for done, free in report["samples"]]
    assert len(frees) == 11 and all(0 < free < report["heap_budget"] for free in frees)
    assert min(frees[1:]) >= frees[1] - GROWTH_SLACK, report["samples"]
