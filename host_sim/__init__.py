# The simulator: emulated boards that run the real firmware under CPython and under the
# MicroPython unix port. Everything in this package is valid on both interpreters except
# the runner and the pytest fixtures, which are host-only.
#
# A simulated device is one process with one World (world.py): its board profile, its
# virtual clock (clock.py), its pins, buses and attached peripherals. The modules in
# shims/ (machine, time, network, dht, onewire, esp32, rp2) stand in for the firmware's
# built-in modules and act on that World.
