"""The one exception type for user errors: its message names the problem and the fix."""


class RepCaliError(Exception):
    """A problem the user can fix (bad input, missing file, unusable model); shown without a traceback."""
