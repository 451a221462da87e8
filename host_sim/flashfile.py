# Flash memory kept in a host file, for the port modules' block devices (esp32.Partition,
# rp2.Flash): unwritten space reads as erased flash (0xFF), as on a chip.
BLOCK = 4096
ERASED = b"\xff" * BLOCK


def read(file, pos, buf):
    """Fill buf from file at pos; past the end of the file flash reads erased."""
    view = memoryview(buf)
    file.seek(0, 2)
    end = file.tell()
    n = 0
    if pos < end:
        file.seek(pos)
        while n < len(buf):
            got = file.readinto(view[n:])
            if not got:
                break
            n += got
    while n < len(buf):
        step = min(BLOCK, len(buf) - n)
        view[n:n + step] = ERASED[:step]
        n += step


def write(file, pos, data):
    file.seek(0, 2)
    end = file.tell()
    while end < pos:  # a gap reads erased, not as the zeros a sparse file holds
        end += file.write(ERASED[:min(BLOCK, pos - end)])
    file.seek(pos)
    file.write(data)  # unbuffered: once written it survives a power cut
