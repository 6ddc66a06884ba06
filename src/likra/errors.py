"""User-facing errors: the CLI prints them on one line and exits with code 2."""


class LikraError(Exception):
    """Bad input or missing assets; the message says what and where."""
