"""The one exception type for user errors: the CLI prints it on one line and exits 2."""


class SaefeaturesError(Exception):
    """Bad input or an environment the user can fix; the message says what and how."""
