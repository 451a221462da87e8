"""Where benchmarks put their numbers: one JSON report per benchmark (bench-results/)."""
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))   # tests/bench
TESTS = os.path.dirname(HERE)
ROOT = os.path.dirname(TESTS)


def import_paths():
    """Let a benchmark run as a script import the project (protocol, host_sim, the tools)
    and the tests' helpers."""
    for path in (ROOT, os.path.join(ROOT, "tools"), TESTS, HERE):
        if path not in sys.path:
            sys.path.insert(0, path)


def write_report(path, report):
    """Write a report as indented JSON, making its directory if need be."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(report, f, indent=2, sort_keys=True)
        f.write("\n")
