"""The one error the benchmark reports to its user as a single line."""


class BenchError(Exception):
    """Something the benchmark needs is missing or went wrong; the message says what."""
