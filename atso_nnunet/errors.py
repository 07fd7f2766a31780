"""Exceptions with the exit codes the command-line tools return.

Every error meant for a user names the case, the file and what to do. Library code raises these;
the CLIs catch :class:`AtsoError`, log its message and exit with :attr:`AtsoError.exit_code`.
"""


class AtsoError(Exception):
    """Base class of all errors reported to users."""

    exit_code = 1


class InputError(AtsoError):
    """Bad user input (dataset, image, label, plan, pseudo-label folder), found before any work."""

    exit_code = 2


class RunLockedError(AtsoError):
    """Another driver holds the lock on this run directory."""

    exit_code = 3


class StepFailedError(AtsoError):
    """A step (training, prediction, ...) failed after its retries; the message names its log."""

    exit_code = 4
