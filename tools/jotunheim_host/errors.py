"""The jotunheim command's failures and exit codes (documented in cli.py's docstring)."""

EXIT_OK = 0
EXIT_USAGE = 2        # the command line is wrong
EXIT_RUNTIME = 10     # the device, the link or the peer failed
EXIT_VALIDATION = 20  # input that does not check: a setting, a tool argument, a file
EXIT_MISSING = 30     # a program, package, file or port the command needs is not there
EXIT_INTERRUPTED = 130

CODE_NAMES = {EXIT_USAGE: "usage", EXIT_RUNTIME: "runtime", EXIT_VALIDATION: "validation",
              EXIT_MISSING: "missing", EXIT_INTERRUPTED: "interrupted"}


class CommandError(Exception):
    """A command failed: main() prints it (as JSON with --format json) and exits with
    exit_code. hint says what to do about it; details is data for programs."""

    def __init__(self, message, exit_code=EXIT_RUNTIME, hint=None, details=None):
        Exception.__init__(self, message)
        self.exit_code = exit_code
        self.hint = hint
        self.details = details

    def as_json(self):
        return {"code": self.exit_code, "error": CODE_NAMES.get(self.exit_code, "error"),
                "message": str(self), "hint": self.hint, "details": self.details}
