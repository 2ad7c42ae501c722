"""The error of the released-format code: one line naming the file and the field."""

from __future__ import annotations

from ...errors import UserError


class ReleaseFormatError(UserError, ValueError):
    """A released-format checkpoint (config or weights) that cannot be mapped; the message names file and field."""
