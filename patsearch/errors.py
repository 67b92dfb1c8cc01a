"""The one user-facing error type: bad input that the CLI reports as a single line and a non-zero exit."""


class UserError(Exception):
    """Something the user passed or pointed at is wrong. The message says what, and what to do instead."""

    exit_code = 2
