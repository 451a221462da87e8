"""Where benchmarks put their numbers: one JSON report per benchmark (bench-results/)."""
import json
import os


def write_report(path, report):
    """Write a report as indented JSON, making its directory if need be."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(report, f, indent=2, sort_keys=True)
        f.write("\n")
