"""Targeted silencing of third-party warnings that do not apply where we call the library (never global).

* ``quiet_cache_deprecation()``: transformers 5.x renamed ``past_key_values`` to ``cache``; the greedy decoder
  passes and reads the KV cache under the old name, which works on every supported version but prints a
  FutureWarning and a "``past_key_values``/``cache_params`` are deprecated" log line during generation.
* ``quiet_length_warning(tokenizer)``: we tokenise whole conversations without truncation on purpose (the
  dataset cuts image-aware with the real per-image token counts), so the tokenizer's "Token indices sequence length
  is longer than the specified maximum" warning is noise there.
"""

from __future__ import annotations

import contextlib
import logging
import warnings

_CACHE_MSG = "`past_key_values`/`cache_params` are deprecated"
_LENGTH_KEY = "sequence-length-is-longer-than-the-specified-maximum"  # transformers' own once-only flag


class _DropCacheDeprecation(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return _CACHE_MSG not in record.getMessage()


_FILTER = _DropCacheDeprecation()


@contextlib.contextmanager
def quiet_cache_deprecation():
    """Inside: the transformers ``past_key_values`` FutureWarning and log line are dropped; nothing else."""
    tlog = logging.getLogger("transformers")
    targets = [logging.getLogger("transformers.utils.generic"), *tlog.handlers]
    for t in targets:
        t.addFilter(_FILTER)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings(
                "ignore", message=r"`(past_key_values|cache_params)` is deprecated", category=FutureWarning
            )
            yield
    finally:
        for t in targets:
            t.removeFilter(_FILTER)


def quiet_length_warning(tokenizer) -> None:
    """Mark the tokenizer's "sequence longer than model_max_length" warning as already shown (its own flag)."""
    dw = getattr(tokenizer, "deprecation_warnings", None)
    if isinstance(dw, dict):
        dw[_LENGTH_KEY] = True
