"""Errors meant for the user: the message names the file or key and says how to fix it."""


class UserFacingError(Exception):
    """An error whose message is complete on its own; the CLI prints it without a traceback."""


class ConfigError(UserFacingError):
    """A config key or value is wrong."""


class DataError(UserFacingError):
    """Input data (a video, an annotation file) is missing or malformed."""
