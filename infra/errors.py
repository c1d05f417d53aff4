"""User-facing errors: one line, exit code 2, no traceback (see nas.cli)."""


class UserError(Exception):
    """Bad input. The message names the key or file and, where useful, the valid values."""
