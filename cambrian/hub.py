"""One answer to "may we reach the Hugging Face hub?" and the keyword arguments every hub call gets.

The hub counts as off exactly when huggingface_hub itself thinks so: ``HF_HUB_OFFLINE`` when it is set (non-empty),
else ``TRANSFORMERS_OFFLINE``, holding a true value (``1``, ``true``, ``yes``, ``on``, any case); so
``HF_HUB_OFFLINE=0`` turns the hub on even where ``TRANSFORMERS_OFFLINE=1``. Every loader (LLM, towers, checkpoints)
asks here, so they cannot disagree. ``trust_remote_code`` is always False: no code from a model repository runs.
"""

from __future__ import annotations

import os

TRUE = frozenset({"1", "true", "yes", "on"})


def offline() -> bool:
    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return value.strip().lower() in TRUE


def hub_kwargs() -> dict:
    """For ``from_pretrained`` / ``AutoConfig.from_pretrained``: local files only when offline, never remote code."""
    return {"local_files_only": offline(), "trust_remote_code": False}


def looks_like_repo_id(spec: str) -> bool:
    """``org/name`` (one slash, no leading dot or slash): what may be fetched from the hub when it is reachable."""
    s = str(spec)
    return s.count("/") == 1 and not s.startswith((".", "/", "~")) and all(s.split("/"))
