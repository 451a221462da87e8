# Put the repository root and firmware/lib on sys.path the way a board has /lib, and
# tools/ for the host package, so tests import protocol, jotunheim and jotunheim_host.
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for path in (ROOT, os.path.join(ROOT, "tools"), os.path.join(ROOT, "firmware", "lib")):
    if path not in sys.path:
        sys.path.insert(0, path)

# Google's reference for canonical bytes is its deterministic serialization. The upb
# backend (the protobuf package's default) sorts string map keys in reverse byte order, a
# known upb bug that C++, Java and protobuf's own pure-Python backend do not share; the
# differential tests use the pure-Python backend, and test_protocol_vectors checks upb
# separately.
os.environ["PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION"] = "python"
