# Put the repository root and firmware/lib on sys.path the way a board has /lib, and
# tools/ for the host package, so tests import protocol, jotunheim and jotunheim_host.
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for path in (ROOT, os.path.join(ROOT, "tools"), os.path.join(ROOT, "firmware", "lib")):
    if path not in sys.path:
        sys.path.insert(0, path)
