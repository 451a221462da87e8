# Stand-ins for the firmware's built-in modules (machine, time, network, ...), acting on
# the current simulated World. On a simulated device this directory goes first on sys.path
# and each shim is imported by its own name (`import machine`), as on a board; on CPython,
# tests may import them as host_sim.shims.<name>.
