"""Turning an untrusted architecture description (a released ``config.json``, an ``hf_config`` dict, a connector
config) into modules: what transformers, huggingface_hub or torch raise for values that describe no model (zero heads,
a negative or 10^30 width, a string where a size goes) becomes one :class:`~cambrian.typed.ConfigError` line naming
the part, instead of a traceback from deep inside the library."""

from __future__ import annotations

import contextlib

from ..typed import ConfigError

# ValueError is left alone: it is already a user error with its own message. The blocks wrapped are narrow (a
# library's config and model constructors), so these come from the values, not from a bug of ours.
_NOT_A_MODEL = (
    TypeError,
    ZeroDivisionError,
    OverflowError,
    RuntimeError,
    IndexError,
    KeyError,
    AttributeError,
    AssertionError,
)


def library_errors() -> tuple[type[BaseException], ...]:
    """What transformers / huggingface_hub / torch raise for a description of no model."""
    try:
        from huggingface_hub.errors import StrictDataclassError  # transformers' typed configs (>= 4.56)
    except ImportError:  # pragma: no cover - older huggingface_hub
        return _NOT_A_MODEL
    return (*_NOT_A_MODEL, StrictDataclassError)


@contextlib.contextmanager
def architecture_errors(what: str):
    """Inside the block, a library error about the architecture is re-raised as ``ConfigError("{what}: ...")``."""
    try:
        yield
    except ConfigError:
        raise
    except library_errors() as e:
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        detail = (lines[-1] if type(e).__name__.startswith("StrictDataclass") else lines[0])[:200] if lines else ""
        raise ConfigError(f"{what} does not describe a model that can be built ({detail or type(e).__name__})") from e
