"""Load a released Cambrian-1 checkpoint into a ``CambrianModel`` and write one back (docs/official-code.md#release).

Loading (``load_release``): read ``config.json`` (bounded), map it (``official_to_config``), build the towers with
their pretrained weights from their original hub ids (the released files hold none; ``towers`` / ``tower_weights``
point them elsewhere), build the LLM and the connector from the config without weights, check every released tensor
name and shape against the model strictly (one error lists all missing / unexpected names), then copy the shards in
one at a time. A hub id goes through ``huggingface_hub.snapshot_download`` when the hub is reachable and then takes
the same path as a local directory.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

import torch

from ...config import CambrianConfig, EncoderConfig
from ...constants import IMAGE_TOKEN, IMAGE_TOKEN_INDEX
from .config import config_to_official, is_official_config, official_to_config
from .errors import ReleaseFormatError
from .tower_map import FLAG
from .weights import check_keys, iter_shards, list_keys, ours_to_official, write_shards

CONFIG_MAX_BYTES = 4 << 20  # a config.json larger than this is refused before parsing
TOKENIZER_PATTERNS = [
    "tokenizer*",
    "special_tokens_map.json",
    "added_tokens.json",
    "*.model",
    "vocab.json",
    "merges.txt",
    "generation_config.json",
]


def read_config(path: str | os.PathLike) -> dict:
    """``config.json`` of a checkpoint directory (or the file itself), bounded in size, as a dict."""
    from ...typed import ConfigError, read_config_text

    path = Path(path)
    if path.is_dir():
        path = path / "config.json"
    try:
        data = json.loads(read_config_text(path, CONFIG_MAX_BYTES))  # a regular file, bounded (not a FIFO)
    except ConfigError as e:
        raise ReleaseFormatError(str(e)) from None
    except (ValueError, RecursionError) as e:
        raise ReleaseFormatError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise ReleaseFormatError(f"{path}: expected a JSON object")
    return data


def is_release_dir(path: str | os.PathLike) -> bool:
    """A local directory holding a released-format ``config.json``."""
    p = Path(path)
    if not (p.is_dir() and (p / "config.json").is_file()):
        return False
    try:
        return is_official_config(read_config(p))
    except (OSError, ReleaseFormatError):
        return False


def resolve_release(spec: str | os.PathLike, weights: bool = True) -> Path | None:
    """The local directory of a released-format checkpoint named by ``spec`` (a directory, or a hub id downloaded
    with ``snapshot_download`` when the hub is reachable; ``weights=False`` fetches only the config and tokenizer
    files), or None when ``spec`` is not one."""
    p = Path(spec)
    if p.is_dir():
        return p if is_release_dir(p) else None
    from ...hub import looks_like_repo_id, offline

    if p.exists() or not looks_like_repo_id(str(spec)) or offline():
        return None
    from huggingface_hub import hf_hub_download, list_repo_files, snapshot_download

    try:
        cfg = read_config(hf_hub_download(str(spec), "config.json"))
    except Exception:  # noqa: BLE001 - not a repo, no config, no network: not a release we can load
        return None
    if not is_official_config(cfg):
        return None
    patterns = ["config.json", *TOKENIZER_PATTERNS]
    if weights:  # one format only: a repository may hold both
        files = set(list_repo_files(str(spec)))
        patterns += (
            ["*.safetensors", "model.safetensors.index.json"]
            if any(f.endswith(".safetensors") for f in files)
            else ["*.bin", "pytorch_model.bin.index.json"]
        )
    return Path(snapshot_download(str(spec), allow_patterns=patterns))


def release_config(
    root: str | os.PathLike,
    towers: Mapping[str, EncoderConfig | str] | None = None,
    template: str | None = None,
    tower_weights: Mapping[str, str] | None = None,
) -> CambrianConfig:
    """Our config for a released-format directory (no weights read)."""
    root = Path(root)
    tw = dict(tower_weights or {})
    return official_to_config(
        read_config(root),
        towers=towers,
        template=template,
        source=str(root),
        where=str(root / "config.json"),
        tower_weights=tw.get,
    )


def load_release(
    root: str | os.PathLike,
    towers: Mapping[str, EncoderConfig | str] | None = None,
    template: str | None = None,
    dtype: torch.dtype | None = None,
    force: bool = False,
    load_towers: bool = True,
    tower_weights: Mapping[str, str] | None = None,
):
    """A ``CambrianModel`` from a released-format directory (see the module docstring). ``towers``: official tower
    name -> ``EncoderConfig`` / preset entry replacing the table's preset; ``tower_weights``: official tower name ->
    local directory of its weights; ``load_towers=False`` leaves the towers at random init (architecture checks)."""
    from ..builder import check_model_fits
    from ..cambrian_model import CambrianModel
    from ..connectors.base import build_connector
    from ..llm.loader import load_llm

    root = Path(root)
    config = release_config(root, towers, template, tower_weights)
    shapes = list_keys(root)  # fails early on a directory without (readable) weights
    check_model_fits(config, force=force)
    encoders = [_build_tower(e, load_towers, root) for e in config.encoders]
    llm, tokenizer = load_llm(config.llm, load_weights=False)
    connector = build_connector(
        config.connector,
        encoder_dims=[e.hidden_size for e in config.encoders],
        encoder_grids=[e.out_grid for e in config.encoders],
        llm_hidden=llm.config.hidden_size,
    )
    model = CambrianModel(config, encoders, connector, llm, tokenizer)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items() if not k.startswith("encoders.")}
    optional = {"llm.lm_head.weight"} if getattr(llm.config, "tie_word_embeddings", False) else set()
    mapping = check_keys(shapes, expected, shapes, where=str(root), optional=optional)
    with torch.no_grad():
        for _, part in iter_shards(root):
            sd = {mapping[k]: v for k, v in part.items() if k in mapping}
            bad = model.load_state_dict(sd, strict=False).unexpected_keys
            if bad:  # cannot happen after check_keys; never ignore silently
                raise ReleaseFormatError(f"{root}: tensors {bad[:5]} did not load")
            del part, sd
    model.connector_trained = True
    if dtype is not None:
        model.to(dtype)
    return model


def _build_tower(enc: EncoderConfig, load_weights: bool, root: Path):
    """One tower of a release; weights that cannot be had (no hub access, no local copy) are one error naming the
    tower and the flag that points it at local weights."""
    from ..encoders import build_encoder

    try:
        return build_encoder(enc, load_weights=load_weights)
    except OSError as e:
        name = enc.options.get("official_name", enc.id)
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ReleaseFormatError(
            f"{root}: tower {name!r} (our preset {enc.id!r}): its weights could not be loaded from "
            f"{enc.name_or_path!r} ({reason}); the release holds no tower weights: point it at a local copy with "
            f"{FLAG} '{name}=DIR' (in Python: tower_weights={{{name!r}: DIR}})"
        ) from None


def image_position(template, tokenizer, system: str | None = None) -> int | None:
    """Index of the image placeholder in a one-image prompt (``"<image>\\n..."`` first in the first user turn) as our
    template and tokenizer build it: the official ``image_position`` (91 for Cambrian-8B with Llama-3)."""
    if tokenizer is None:
        return None
    from ..llm.tokenize import tokenize_prompt

    ids = tokenize_prompt(IMAGE_TOKEN + "\nWhat is in the image?", template, tokenizer, system=system)
    return ids.index(IMAGE_TOKEN_INDEX)


def save_release(
    model, out: str | os.PathLike, max_shard_bytes: int = 5 << 30, tower_names: Mapping[int, str] | None = None
) -> Path:
    """Write ``model`` in the released format: ``config.json`` (official keys), sharded safetensors with the official
    tensor names, the tokenizer files. The towers are not written (the released format holds none: the official
    loader takes them from their hub ids), so towers trained here (not frozen) are refused."""
    out = Path(out)
    trained = [e.config.id for e in model.encoders if not e.frozen]
    if trained:
        raise ReleaseFormatError(
            f"towers {trained} were trained (not frozen); the released format holds no tower "
            "weights, so the official code would load the original ones instead"
        )
    pos = image_position(model.template, model.tokenizer)
    cfg = config_to_official(
        model.config, image_position=pos, tower_names=tower_names, llm_hf=model.llm.config.to_dict()
    )
    tied = bool(getattr(model.llm.config, "tie_word_embeddings", False))
    tensors = {}
    for k, v in model.state_dict().items():
        name = ours_to_official(k)
        if name is None or (tied and name == "lm_head.weight"):
            continue
        tensors[name] = v
    out.mkdir(parents=True, exist_ok=True)
    write_shards(out, tensors, max_shard_bytes=max_shard_bytes)
    if model.tokenizer is not None:
        from ..persistence import save_tokenizer

        save_tokenizer(model.tokenizer, out)
    from ...utils.io import atomic_write_json

    atomic_write_json(out / "config.json", cfg)
    return out
