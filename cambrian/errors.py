"""User-facing error types. ``cambrian.cli.main`` prints any of these (and FileNotFoundError and the like, registry
KeyErrors, YAML syntax errors) as one ``error: ...`` line and exits 2; ``cambrian --debug ...`` shows the traceback.
Anything else, a bare ``ValueError`` included, is a bug of the program (a broken contract between its parts) and
crashes with its traceback. Import-light on purpose: the CLI entry point imports it before any subcommand."""

from __future__ import annotations


class UserError(Exception):
    """A mistake in the user's input (config, data, paths, resources): reported in one line, no traceback."""


class InputError(UserError, ValueError):
    """A value the user gave (a flag, a file's content, a prompt, a conversation) is wrong; still a ``ValueError``
    for library callers that catch those (the server answers them with a 400)."""


class ResourceError(UserError, MemoryError):
    """Refused before allocating: the model would not fit in the available memory."""


class WeightsUnavailable(UserError, OSError):
    """Pretrained weights that cannot be read (offline and not cached, a missing local directory)."""
