"""The exception types that the CLI turns into a single line and a non-zero exit.

    try:
        cnnlab.train("seed", lr=-1)
    except cnnlab.SettingsError as e:   # also a ValueError
        print(e)                        # cnnlab.train: optimizer.lr must be greater than 0, got -1.0
"""


class CnnlabError(Exception):
    """A problem the user can fix: the message says what is wrong and what to do next."""


class SettingsError(CnnlabError, ValueError):
    """A setting, model or data given to cnnlab.train (or a flag of `cnnlab train`) is wrong.

    Raised before any run folder exists; the message is the command line's one line.
    """


class StopTraining(Exception):
    """Raised by an on_epoch_end callback to end training after that epoch (as returning False
    does): the run keeps its checkpoint, is tested and saved, and can be resumed later."""


class CnnlabWarning(UserWarning):
    """Something the user should know that does not stop the job (shown as one line)."""
