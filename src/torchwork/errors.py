"""The one exception type for mistakes a user can fix."""


class TorchworkError(Exception):
    """A problem the user can fix; its message is one sentence that says what to change.

    The command line prints it on one line, without a traceback, and exits with
    `exit_code`: 2 unless a subclass says otherwise.
    """

    exit_code = 2
