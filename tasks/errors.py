"""The error every job raises when it cannot run as asked (the CLI turns it into one line and exit code 2)."""


class ConfigError(Exception):
    """A setting or input is missing or invalid; the message says what to change."""
