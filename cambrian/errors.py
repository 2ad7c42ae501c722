"""User-facing error types. ``cambrian.cli.main`` prints any of these (and FileNotFoundError, ValueError, registry
KeyErrors, YAML syntax errors) as one ``error: ...`` line and exits 2; ``cambrian --debug ...`` shows the traceback.
Import-light on purpose: the CLI entry point imports it before any subcommand."""

from __future__ import annotations


class UserError(Exception):
    """A mistake in the user's input (config, data, paths, resources): reported in one line, no traceback."""


class ResourceError(UserError, MemoryError):
    """Refused before allocating: the model would not fit in the available memory."""


class WeightsUnavailable(UserError, OSError):
    """Pretrained weights that cannot be read (offline and not cached, a missing local directory)."""
