"""One exception type for problems a user can fix; the CLI prints its message as a single line."""


class DllgError(Exception):
    """A user-facing error: the message names the problem and the fix, on one line."""
