"""The one error type for a user's mistake (a flag, a data file, a column, a model directory that does not fit).

Its message says what is wrong and how to fix it; the command line prints it without a traceback and exits with
status 2, as argparse does for its own usage errors. Anything else that goes wrong keeps its traceback.
"""


class UsageError(ValueError):
    """A mistake in what the user asked for; the message names it and the fix."""


__all__ = ["UsageError"]
