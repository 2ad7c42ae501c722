"""A model directory on disk: ``config.json`` + ``model.safetensors`` + tokenizer files (no pickle), written file by
file atomically, and found locally or, when the hub is reachable, downloaded by repo id."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from ..errors import InputError

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
# the files that identify a saved model (run fingerprints), in the order they are written: config.json last, so a
# directory only looks loadable once complete
MODEL_FILES = (WEIGHTS_NAME, "tokenizer.json", CONFIG_NAME)
# files a tokenizer's save_pretrained may write: the tokenizer part of a saved model directory
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "tokenizer.model",
    "spiece.model",
    "vocab.json",
    "merges.txt",
    "vocab.txt",
    "chat_template.jinja",
    "chat_template.json",
)


def save_model_dir(model, path: str | os.PathLike) -> None:
    """Write config.json + model.safetensors + tokenizer files into ``path`` (created if needed).

    Only these files are replaced, each atomically (a temp file in the same directory, then ``os.replace``),
    with ``config.json`` last; other files in ``path`` are left alone. Tokenizer files of an earlier save that
    this one does not write are removed, so the directory never mixes two tokenizers. Files and directories
    get the usual permissions (umask), not those of a private temp file."""
    from safetensors.torch import save_model

    from ..utils.io import default_file_mode, temp_file_beside

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    weights = temp_file_beside(path / WEIGHTS_NAME)
    try:
        save_model(model, str(weights))
        os.chmod(weights, default_file_mode())  # safetensors may recreate the file private
        os.replace(weights, path / WEIGHTS_NAME)
    except BaseException:
        weights.unlink(missing_ok=True)
        raise
    if model.tokenizer is not None:
        written += save_tokenizer(model.tokenizer, path)
    for name in TOKENIZER_FILES:
        stale = path / name
        if stale not in written and stale.is_file():
            stale.unlink()
    model.config.save(path / CONFIG_NAME)


def save_tokenizer(tokenizer, path: Path) -> list[Path]:
    """``tokenizer.save_pretrained`` into a temp dir beside ``path``, then each file moved in (``os.replace``): a
    reader never sees half a tokenizer. Returns the files written."""
    written = []
    tmp = Path(tempfile.mkdtemp(dir=path, prefix=".tokenizer.tmp"))
    try:
        tokenizer.save_pretrained(str(tmp))
        for f in sorted(tmp.iterdir()):
            if f.is_file():
                os.replace(f, path / f.name)
                written.append(path / f.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return written


def resolve_checkpoint(path) -> Path:
    """A saved-model directory, or a hub repo id downloaded when the hub is reachable."""
    p = Path(path)
    if p.is_dir():
        if not (p / "config.json").exists():
            raise FileNotFoundError(f"{p} has no config.json (not a cambrian checkpoint)")
        return p
    if p.exists():
        raise InputError(f"{p} is a file; expected a checkpoint directory")
    from ..hub import looks_like_repo_id, offline

    if offline() or not looks_like_repo_id(str(path)):
        raise FileNotFoundError(f"checkpoint {path!r} not found locally (and hub access is off or it is not a repo id)")
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(str(path), allow_patterns=["*.json", "*.safetensors", "*.model", "*.txt"]))
