"""The one exception type that reaches the user as a one-line message."""


class DbprobeError(Exception):
    """A problem the user can act on; printed as one line, exit status 2."""

    exit_status = 2
