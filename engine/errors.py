"""The one exception type for mistakes a user can make and fix."""


class UserError(Exception):
    """Bad input: the CLI prints the message on one line and exits with status 2.

    The message names the thing at fault and, where there is one, the fix.
    """
