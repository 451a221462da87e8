# What a simulated device under CPython lacks that the MicroPython unix port has built in:
# a flash of its own and MicroPython's REPL protocol. Runs inside the device process, on
# CPython only.
#
# The flash is a host directory. confine() makes it the device's "/": open() and the os
# functions MicroPython has (listdir, ilistdir, stat, remove, rename, mkdir, rmdir, chdir,
# getcwd, statvfs) take device paths, resolve them inside the directory, and refuse to
# climb out of it (EINVAL, as LittleFS does). A file opened for writing is written beside
# the real one and renamed over it when closed, so that after a power cut a file is, as
# on LittleFS, either as it was or as it was last closed. That keeps device code on its
# own files; it is not a sandbox: io.open, os.open, pathlib, C extensions and the import
# system still reach the whole host, statvfs reports the host's disk, flush() commits
# nothing (on LittleFS it does), and the heap is not limited.
#
# repl() speaks what mpremote expects of a board: the friendly REPL (echo, ">>> ", paste
# mode), the raw REPL (Ctrl-A; code, Ctrl-D; "OK", output, 0x04, error, 0x04, ">"), with
# raw-paste declined ("R\x00"), and errors named as MicroPython names them
# ("OSError: [Errno 2] ENOENT"). Like the unix port's REPL it lets the terminal turn 0x03
# into SIGINT (KeyboardInterrupt) only while code runs, and reads it as a character while
# it waits for input. Ctrl-D at an empty prompt ends the process, which the runner turns
# into a soft reset.
import builtins
import codeop
import errno
import os
import shutil
import stat
import sys
import termios
import traceback

_real = {}
_root = [None]   # the host directory that is the device's "/"
_committed = [None]  # called after each change reaches the flash (fault injection)
_cwd = ["/"]     # the device's current directory
DIR, FILE = 0x4000, 0x8000
PENDING = ".~uncommitted"  # a file being written, renamed into place when it is closed


def device_path(path):
    """The normalised absolute device path of `path`; OSError(EINVAL) above "/"."""
    path = os.fsdecode(path)
    parts = [] if path.startswith("/") else [p for p in _cwd[0].split("/") if p]
    for part in path.split("/"):
        if part == "..":
            if not parts:
                raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
            parts.pop()
        elif part not in ("", "."):
            parts.append(part)
    return "/" + "/".join(parts)


def host_path(path):
    return _root[0] + device_path(path).rstrip("/")


def _commit():
    if _committed[0] is not None:
        _committed[0]()


def _confined(name, changes=False):
    real = getattr(os, name)
    _real[name] = real

    def call(path, *args, **kwargs):
        result = real(host_path(path), *args, **kwargs)
        if changes:
            _commit()
        return result
    call.__name__ = name
    return call


def _rename(src, dst):
    _real["rename"](host_path(src), host_path(dst))
    _commit()


def _listdir(path="."):
    return [name for name in _real["listdir"](host_path(path)) if not name.endswith(PENDING)]


def _ilistdir(path="."):
    for name in _listdir(path):
        st = _real["stat"](host_path(path) + "/" + name)
        yield (name, DIR if stat.S_ISDIR(st.st_mode) else FILE, 0, st.st_size)


def _chdir(path):
    target = device_path(path)
    _real["chdir"](_root[0] + target)
    _cwd[0] = target


class _Uncommitted:
    """A file open for writing. As on LittleFS, its changes count once it is closed: it
    is written beside the real one and renamed over it by close()."""

    def __init__(self, host, mode, args, kwargs):
        if "x" in mode and os.path.lexists(host):
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST))
        if "w" not in mode and "x" not in mode:  # "a", "r+": start from what is there
            if os.path.lexists(host):  # lstat: os.stat takes device paths once confined
                # the real open: shutil's would be the confined one
                with _real["open"](host, "rb") as fin:
                    with _real["open"](host + PENDING, "wb") as fout:
                        shutil.copyfileobj(fin, fout)
            elif "a" not in mode:
                raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT))
        self._host = host
        self._file = _real["open"](host + PENDING, mode.replace("x", "w"), *args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._file, name)

    def __iter__(self):
        return iter(self._file)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        self.close()

    def close(self):
        file = self.__dict__.get("_file")  # absent when __init__ failed
        if file is not None and not file.closed:
            file.close()
            _real["rename"](self._host + PENDING, self._host)
            _commit()


def _open(file, mode="r", *args, **kwargs):
    if isinstance(file, int):
        return _real["open"](file, mode, *args, **kwargs)
    if any(c in mode for c in "wax+"):
        return _Uncommitted(host_path(file), mode, args, kwargs)
    return _real["open"](host_path(file), mode, *args, **kwargs)


def confine(root, committed=None):
    """Make the host directory `root` the device's filesystem (see the module comment).
    committed() is called after each change that reaches it (a file closed after
    writing, a rename, a removal, a new or removed directory)."""
    _root[0] = os.path.realpath(root)
    _committed[0] = committed
    for directory, _, names in os.walk(_root[0]):  # what a power cut left half-written
        for name in names:
            if name.endswith(PENDING):
                os.remove(os.path.join(directory, name))
    for name in ("stat", "remove", "unlink", "mkdir", "rmdir", "statvfs"):
        setattr(os, name, _confined(name, name not in ("stat", "statvfs")))
    _real["listdir"], os.listdir = os.listdir, _listdir
    _real["rename"], os.rename = os.rename, _rename
    _real["chdir"], os.chdir = os.chdir, _chdir
    _real["open"], builtins.open = builtins.open, _open
    os.ilistdir = _ilistdir
    os.getcwd = lambda: _cwd[0]
    os.chdir("/")
    keep = [p for p in sys.path if p.startswith(sys.prefix) or p.startswith(sys.base_prefix)]
    sys.path[:] = [_root[0], _root[0] + "/lib"] + keep


def error_text(exc):
    """An exception's last traceback line, as MicroPython words it."""
    if isinstance(exc, OSError) and exc.errno in errno.errorcode:
        return "OSError: [Errno %d] %s" % (exc.errno, errno.errorcode[exc.errno])
    message = str(exc)
    return type(exc).__name__ + (": " + message if message else "")


def traceback_text(exc):
    lines = ["Traceback (most recent call last):"]
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename == __file__:  # Repl.execute, the confined open() ...
            continue
        lines.append('  File "%s", line %d, in %s' % (frame.filename, frame.lineno, frame.name))
    return "\r\n".join(lines + [error_text(exc)]) + "\r\n"


def _interrupt_char(on):
    """Let the terminal turn 0x03 into SIGINT (on) or pass it through as input (off)."""
    try:
        attrs = termios.tcgetattr(0)
    except termios.error:
        return  # not a terminal
    attrs[3] = attrs[3] | termios.ISIG if on else attrs[3] & ~termios.ISIG
    termios.tcsetattr(0, termios.TCSANOW, attrs)


COMPOUND = ("if", "while", "for", "try", "with", "def", "class", "async")


def starts_compound(source):
    """True if source opens a compound statement (MicroPython's REPL then waits for an
    empty line, even after `while True: pass`)."""
    source = source.lstrip()
    word = source.split(None, 1)[0] if source else ""
    return source.startswith("@") or word.split("(")[0].rstrip(":") in COMPOUND


BANNER = ("CPython %s on jotunheim-sim (MicroPython REPL protocol)\r\n"
          "Type \"help()\" for more information.\r\n" % sys.version.split()[0])


class Repl:
    """MicroPython's REPL on stdin/stdout, for a device running under CPython."""

    def __init__(self, namespace, on_system_exit):
        self.namespace = namespace
        self.on_system_exit = on_system_exit  # sys.exit(), machine.reset() ...
        self.pending = b""

    def write(self, data):
        sys.stdout.flush()
        os.write(1, data.encode() if isinstance(data, str) else data)

    def read(self):
        """One input byte; Ctrl-C (which arrives as SIGINT) gives 3."""
        while not self.pending:
            try:
                self.pending = os.read(0, 512)
            except KeyboardInterrupt:
                return 3
            if not self.pending:  # the terminal went away
                sys.exit(0)
        byte, self.pending = self.pending[0], self.pending[1:]
        return byte

    def run(self):
        """Serve the friendly and raw REPLs until Ctrl-D (which exits the process)."""
        _interrupt_char(False)
        self.write(BANNER)
        raw = False
        while True:
            try:
                raw = self.raw_repl() if raw else self.friendly_repl()
            except KeyboardInterrupt:
                self.write("\r\n")

    def execute(self, source, mode=None):
        """Run source (compiled in `mode`) or a code object (mode None); returns the
        error report, empty if none."""
        report = ""
        _interrupt_char(True)
        try:
            code = source if mode is None else compile(source, "<stdin>", mode)
            exec(code, self.namespace)
        except SystemExit as e:
            sys.stdout.flush()
            self.on_system_exit(e)
        except BaseException as e:
            report = traceback_text(e)
        finally:
            _interrupt_char(False)
        sys.stdout.flush()
        sys.stderr.flush()
        return report

    def soft_reset(self):
        sys.stdout.flush()
        raise SystemExit(0)

    def raw_repl(self):
        """Run raw REPL commands; returns False when Ctrl-B goes back to the friendly one."""
        self.write("raw REPL; CTRL-B to exit\r\n>")
        code = bytearray()
        while True:
            c = self.read()
            if c == 1 and code == b"\x05A":  # raw-paste requested: not offered
                self.write(b"R\x00")
                code = bytearray()
            elif c == 1:
                self.write("\r\nraw REPL; CTRL-B to exit\r\n>")
                code = bytearray()
            elif c == 2:
                self.write("\r\n" + BANNER)
                return False
            elif c == 3:
                code = bytearray()
            elif c == 4 and not code:
                self.write("OK\r\n")
                self.soft_reset()
            elif c == 4:
                self.write("OK")
                report = self.execute(bytes(code), "exec")
                self.write(b"\x04" + report.encode() + b"\x04>")
                code = bytearray()
            else:
                code.append(c)

    def friendly_repl(self):
        """Read and run lines; returns True when Ctrl-A switches to the raw REPL."""
        source = ""
        line = bytearray()
        self.write(">>> ")
        previous = 0
        while True:
            c = self.read()
            if c == 10 and previous == 13:
                previous = c
                continue
            previous = c
            if c == 1 and not line and not source:
                self.write("\r\n")
                return True
            if c == 3:
                self.write("\r\n")
                return False
            if c == 4 and not line and not source:
                self.write("\r\n")
                self.soft_reset()
            if c == 5 and not line and not source:
                self.paste_mode()
                return False
            if c in (8, 127):
                if line:
                    line.pop()
                    self.write("\x08 \x08")
            elif c in (10, 13):
                self.write("\r\n")
                source += line.decode("utf-8", "replace") + "\n"
                line = bytearray()
                if self.run_lines(source):
                    return False
                self.write("... ")
            elif c >= 32 or c == 9:
                line.append(c)
                self.write(bytes((c,)))

    def run_lines(self, source):
        """Run `source` if it is complete (True), or say that it needs more (False).

        As MicroPython's REPL does, a compound statement always waits for an empty line."""
        if starts_compound(source) and not source.endswith("\n\n"):
            return False
        try:
            code = codeop.compile_command(source, "<stdin>", "single")
        except (SyntaxError, OverflowError, ValueError) as e:
            self.write(traceback_text(e))
            return True
        if code is None:
            return False
        self.write(self.execute(code))
        return True

    def paste_mode(self):
        self.write("\r\npaste mode; Ctrl-C to cancel, Ctrl-D to finish\r\n=== ")
        text = bytearray()
        while True:
            c = self.read()
            if c == 3:
                self.write("\r\n")
                return
            if c == 4:
                self.write("\r\n")
                self.write(self.execute(bytes(text), "exec"))
                return
            text.append(c)
            self.write(b"\r\n=== " if c == 13 else bytes((c,)))


def repl(namespace, on_system_exit):
    """Serve the REPL until Ctrl-D; on_system_exit(exc) takes SystemExit raised by code."""
    Repl(namespace, on_system_exit).run()
