"""The one exception type that the CLI turns into a single line and a non-zero exit."""


class CnnlabError(Exception):
    """A problem the user can fix: the message says what is wrong and what to do next."""


class CnnlabWarning(UserWarning):
    """Something the user should know that does not stop the job (shown as one line)."""
