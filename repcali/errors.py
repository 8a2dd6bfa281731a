"""The one exception type for user errors: its message names the problem and the fix."""


class RepCaliError(Exception):
    """A problem the user can fix (bad input, missing file, unusable model); shown without a traceback."""


def one_line(error: BaseException) -> str:
    """Another library's error message on one line, without its final period, to go before a "Fix: ..."."""
    return " ".join(str(error).split()).rstrip(".")
