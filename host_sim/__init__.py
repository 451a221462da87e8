# The simulator: emulated boards that run the real firmware under CPython and under the
# MicroPython unix port. Everything in this package is valid on both interpreters except
# the runner and its helpers (runner, console, remote, flash, linkproxy, scenario_check)
# and the pytest fixtures, which are host-only. A scenario (scenario.py, SCENARIOS.md)
# says what is wired to a device and which faults to inject; control.py is the device's
# end of the socket through which the host changes its World while it runs.
#
# A simulated device is one process with one World (world.py): its board profile, its
# virtual clock (clock.py), its pins, buses and attached peripherals. The modules in
# shims/ (machine, time, network, dht, onewire, esp32, rp2) stand in for the firmware's
# built-in modules and act on that World. On CPython many devices can also share one
# process and one virtual clock, each World current in its own asyncio tasks
# (inprocess.py, host-only).
