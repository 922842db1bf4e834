"""Exceptions with one-line messages: the CLI prints ``str(err)`` and exits, never a traceback."""


class TvmOfaError(Exception):
    """Base class of every error the project raises on purpose."""


class ArchError(TvmOfaError, ValueError):
    """An architecture (or search space) that is malformed or outside the space."""


class CheckpointError(TvmOfaError):
    """A checkpoint that cannot be read or does not fit the network."""


class ConfigError(TvmOfaError, ValueError):
    """A configuration file (target YAML, train config, ...) that fails validation."""
