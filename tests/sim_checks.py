"""Checks shared by the simulator tests."""


def check_flash_after_cut(device):
    """Every data file is whole, and count is the last or the one before the last."""
    count = int(device.read_file("count"))
    written = []
    for k in range(3):
        lines = device.read_file("data%d" % k).decode().splitlines()
        numbers = {int(line.split()[0]) for line in lines}
        assert len(lines) == 40 and len(numbers) == 1, "data%d is torn: %r" % (k, lines)
        written.append(numbers.pop())
    assert max(written) in (count, count + 1)
    return count
