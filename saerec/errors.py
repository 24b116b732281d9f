"""The few exception types a user can see.

Everything a user can get wrong (a path, a malformed file, a config value) raises a
subclass of :class:`SaerecError`. The CLI maps them to exit code 2 with one line; the
gRPC service (later) maps them to INVALID_ARGUMENT / NOT_FOUND / FAILED_PRECONDITION.
"""


class SaerecError(Exception):
    """Base class: a problem with the user's input, reported as one line."""


class UsageError(SaerecError):
    """A bad command-line flag or config value."""


class DataError(SaerecError):
    """A dataset file is missing, malformed, or lacks a required column."""


class DatasetNotFound(DataError):
    """A named dataset is neither local nor downloadable."""


class RunError(SaerecError):
    """A run directory lacks what a stage needs (e.g. evaluate before train)."""


class SteeringError(SaerecError, ValueError):
    """A malformed or unresolvable steering edit (bad mode, non-finite value, unknown attribute or feature)."""
