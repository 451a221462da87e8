"""pytest fixtures for in-process simulated devices (host_sim.inprocess).

    fleet                  a Fleet: devices on one virtual clock, closed after the test
    inprocess_device       make(board, main=None, **options): a device in that fleet

A test module uses them by importing them: `from sim_inprocess_fixtures import fleet,
inprocess_device`.
"""
import pytest

from host_sim.inprocess import Fleet


@pytest.fixture
def fleet():
    """An empty Fleet; add devices with fleet.add(board, main), run with fleet.run_for(s)."""
    with Fleet() as running:
        yield running


@pytest.fixture
def inprocess_device(fleet):
    """make(board, main=None, name=None, network=None, start=True): an InProcessDevice in
    the test's fleet. main is a coroutine function or firmware source (a main.py)."""
    def make(board, main=None, **options):
        return fleet.add(board, main, **options)
    return make
