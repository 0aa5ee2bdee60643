"""Errors the command line turns into one line and exit code 2."""


class UserError(Exception):
    """A mistake in the user's input: reported as one line, exit code 2."""
