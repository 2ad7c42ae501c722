"""Released-format weights: reading (sharded) safetensors and ``.bin`` files, writing sharded safetensors, and the
strict name mapping between the official state dict and ours (docs/official-code.md#release).

| official key (released file)                      | ours (``CambrianModel.state_dict()``)                  |
|---------------------------------------------------|--------------------------------------------------------|
| ``model.mm_projector_aux_{k}.{0,2,3}.*``           | ``connector.mm_projector_aux_{k}.{0,2,3}.*``           |
| ``model.vision_sampler_{g}.layers.{i}.*``          | ``connector.vision_sampler_{g}.layers.{i}.*``          |
| ``model.vision_sampler_layers.{j}.layers.0.*``     | ``connector.vision_sampler_layers.{j}.layers.0.*``     |
| ``model.mm_projector.{0,2}.*``                     | ``connector.mm_projector.{0,2}.*``                     |
| ``model.vision_query`` (G, d)                      | ``connector.vision_query`` (G, d)                      |
| ``model.image_newline`` (D,)                       | ``connector.image_newline`` (D,)                       |
| ``model.embed_tokens.weight``, ``model.layers.*``, ``model.norm.weight`` | ``llm.model.*`` (the same names)  |
| ``lm_head.weight``                                 | ``llm.lm_head.weight``                                 |
| (none: towers come from their own hub ids)         | ``encoders.*``                                         |

Inside each SVA layer the names are the official ones (``proj_context``, ``proj_in``, ``proj_out.linear_{1,2}``,
``norm``, ``cross_attn.{q,k_k,v_k}_proj.{0,1}``, ``cross_attn.o_proj``, ``pos_embed_{k}``), so the mapping is a prefix
change. ``*.rotary_emb.inv_freq`` buffers that older transformers versions saved are recomputed, not loaded.

Files (no pickle from the file: ``.bin`` is read with ``torch.load(weights_only=True)``): ``model.safetensors``,
``model.safetensors.index.json`` + shards, ``pytorch_model.bin``, ``pytorch_model.bin.index.json`` + shards. Index files
and shard names are checked: a shard must be a plain file name inside the checkpoint directory.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path

import torch

from .errors import ReleaseFormatError

CONNECTOR_PARAM = re.compile(
    r"^(mm_projector_aux_\d+|vision_sampler_\d+|vision_sampler_layers|mm_projector|vision_query"
    r"|image_newline)(\.|$)"
)
SKIP_SUFFIXES = (".rotary_emb.inv_freq",)  # non-persistent buffers some releases saved; recomputed on build
MAX_INDEX_BYTES = 64 << 20  # an index json larger than this is not a weight index
WEIGHT_FILES = (
    "model.safetensors.index.json",
    "model.safetensors",
    "pytorch_model.bin.index.json",
    "pytorch_model.bin",
)
SAFE_INDEX, BIN_INDEX = "model.safetensors.index.json", "pytorch_model.bin.index.json"


# ---- names ---------------------------------------------------------------------------------------------------------
def official_to_ours(key: str) -> str | None:
    """Our parameter name for an official one (None: a key that is not loaded, see ``SKIP_SUFFIXES``)."""
    if key.endswith(SKIP_SUFFIXES):
        return None
    if key.startswith("lm_head."):
        return "llm." + key
    if key.startswith("model."):
        rest = key[len("model.") :]
        return ("connector." if CONNECTOR_PARAM.match(rest) else "llm.model.") + rest
    return "?" + key  # never one of ours: reported as unexpected


def ours_to_official(key: str) -> str | None:
    """The official name of one of our parameters (None: not part of the released format, i.e. the towers)."""
    if key.startswith("connector."):
        return "model." + key[len("connector.") :]
    if key.startswith("llm.model."):
        return "model." + key[len("llm.model.") :]
    if key.startswith("llm.lm_head."):
        return key[len("llm.") :]
    if key.startswith("encoders."):
        return None
    raise ReleaseFormatError(f"parameter {key!r} has no place in the released format")


def check_keys(
    official_keys,
    expected: Mapping[str, tuple],
    shapes: Mapping[str, tuple] | None = None,
    where: str = "checkpoint",
    optional: set[str] | frozenset = frozenset(),
) -> dict[str, str]:
    """Map official names onto ours strictly: every official key lands on exactly one of ``expected`` (our names ->
    shapes) and every expected key is present, else one ``ReleaseFormatError`` lists the missing and unexpected
    names (and shape mismatches). Returns {official: ours}."""
    mapping, unexpected, mismatched = {}, [], []
    for k in official_keys:
        ours = official_to_ours(k)
        if ours is None:
            continue
        if ours not in expected:
            unexpected.append(k)
            continue
        if ours in mapping.values():
            unexpected.append(f"{k} (duplicate)")
            continue
        if shapes is not None and tuple(shapes[k]) != tuple(expected[ours]):
            mismatched.append(f"{k}: {tuple(shapes[k])} in the file, {tuple(expected[ours])} in the model")
        mapping[k] = ours
    missing = sorted(set(expected) - set(mapping.values()) - set(optional))
    if missing or unexpected or mismatched:
        parts = []
        if missing:
            parts.append(
                f"{len(missing)} missing: "
                + ", ".join(_official_name(m) for m in missing[:20])
                + (" ..." if len(missing) > 20 else "")
            )
        if unexpected:
            parts.append(
                f"{len(unexpected)} unexpected: "
                + ", ".join(sorted(unexpected)[:20])
                + (" ..." if len(unexpected) > 20 else "")
            )
        if mismatched:
            parts.append(f"{len(mismatched)} with another shape: " + "; ".join(mismatched[:10]))
        raise ReleaseFormatError(f"{where}: the weights do not match the model of its config.json ({'; '.join(parts)})")
    return mapping


def _official_name(ours: str) -> str:
    try:
        return ours_to_official(ours) or ours
    except ReleaseFormatError:
        return ours


# ---- reading -------------------------------------------------------------------------------------------------------
def _read_index(path: Path) -> dict[str, str]:
    if path.stat().st_size > MAX_INDEX_BYTES:
        raise ReleaseFormatError(f"{path}: {path.stat().st_size} bytes is too large for a weight index")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise ReleaseFormatError(f"{path}: not valid JSON ({e})") from None
    wm = data.get("weight_map") if isinstance(data, dict) else None
    if not isinstance(wm, dict) or not wm:
        raise ReleaseFormatError(f"{path}: no 'weight_map' object")
    for k, v in wm.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise ReleaseFormatError(f"{path}: weight_map entries must map names to file names")
        if v != Path(v).name or v in ("", ".", "..") or "\\" in v:
            raise ReleaseFormatError(f"{path}: shard {v!r} is not a plain file name inside the checkpoint directory")
    return wm


def weight_files(root: Path) -> tuple[str, list[Path], dict[str, str] | None]:
    """("safetensors" | "bin", shard files in order, weight_map or None) of a checkpoint directory."""
    root = Path(root)
    for kind, index, single in (
        ("safetensors", SAFE_INDEX, "model.safetensors"),
        ("bin", BIN_INDEX, "pytorch_model.bin"),
    ):
        if (root / index).is_file():
            wm = _read_index(root / index)
            files = sorted({root / v for v in wm.values()})
            absent = [f.name for f in files if not f.is_file()]
            if absent:
                raise ReleaseFormatError(f"{root / index}: shard file(s) {absent} not found")
            return kind, files, wm
        if (root / single).is_file():
            return kind, [root / single], None
    raise ReleaseFormatError(f"{root}: no weights ({', '.join(WEIGHT_FILES)})")


def iter_shards(root: Path) -> Iterator[tuple[Path, dict[str, torch.Tensor]]]:
    """(file, {official name: tensor}) per shard, one shard in memory at a time."""
    kind, files, wm = weight_files(root)
    for f in files:
        if kind == "safetensors":
            from safetensors.torch import load_file

            try:
                part = load_file(str(f), device="cpu")
            except Exception as e:  # noqa: BLE001 - a corrupt / truncated file: one clear line
                raise ReleaseFormatError(f"{f}: not a readable safetensors file ({type(e).__name__}: {e})") from None
        else:
            try:
                try:
                    part = torch.load(str(f), map_location="cpu", weights_only=True, mmap=True)
                except RuntimeError as e:  # a legacy (pre-zip) file cannot be memory-mapped: read it whole
                    if "mmap" not in str(e):
                        raise
                    part = torch.load(str(f), map_location="cpu", weights_only=True)
            except Exception as e:  # noqa: BLE001 - pickle with objects, corrupt file, ...
                raise ReleaseFormatError(
                    f"{f}: not a plain tensor file readable with weights_only=True "
                    f"({type(e).__name__}: {str(e).splitlines()[0][:200]})"
                ) from None
            if isinstance(part, dict) and "state_dict" in part and isinstance(part["state_dict"], dict):
                part = part["state_dict"]
            if not isinstance(part, dict) or not all(
                isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in part.items()
            ):
                raise ReleaseFormatError(f"{f}: expected a mapping of names to tensors")
        if wm is not None:
            stray = [k for k in part if wm.get(k) != f.name]
            if stray:
                raise ReleaseFormatError(f"{f}: holds {stray[:5]} which the index places elsewhere (or not at all)")
        yield f, part


def list_keys(root: Path) -> dict[str, tuple]:
    """{official name: shape} of every tensor of a checkpoint, without reading safetensors data."""
    kind, files, wm = weight_files(root)
    out: dict[str, tuple] = {}
    if kind == "safetensors":
        from safetensors import safe_open

        for f in files:
            try:
                with safe_open(str(f), framework="pt") as h:
                    for k in h.keys():
                        out[k] = tuple(h.get_slice(k).get_shape())
            except Exception as e:  # noqa: BLE001
                raise ReleaseFormatError(f"{f}: not a readable safetensors file ({type(e).__name__}: {e})") from None
    else:
        for _, part in iter_shards(root):
            out.update({k: tuple(v.shape) for k, v in part.items()})
    return out


# ---- writing -------------------------------------------------------------------------------------------------------
def write_shards(root: Path, tensors: Mapping[str, torch.Tensor], max_shard_bytes: int = 5 << 30) -> list[Path]:
    """Sharded safetensors as transformers writes them: ``model.safetensors`` when one shard suffices, else
    ``model-0000i-of-0000n.safetensors`` + ``model.safetensors.index.json``. Every file goes to a temp name first."""
    from safetensors.torch import save_file

    from ...utils.io import atomic_write_json, default_file_mode, temp_file_beside

    root = Path(root)
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for k in tensors:
        t = tensors[k]
        n = t.numel() * t.element_size()
        if shards[-1] and size + n > max_shard_bytes:
            shards.append({})
            size = 0
        shards[-1][k] = t.detach().to("cpu").contiguous().clone()
        size += n
    names = (
        ["model.safetensors"]
        if len(shards) == 1
        else [f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))]
    )
    written = []
    for name, part in zip(names, shards):
        tmp = temp_file_beside(root / name)
        try:
            save_file(part, str(tmp), metadata={"format": "pt"})
            os.chmod(tmp, default_file_mode())
            os.replace(tmp, root / name)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        written.append(root / name)
    if len(shards) > 1:
        total = sum(t.numel() * t.element_size() for t in tensors.values())
        atomic_write_json(
            root / SAFE_INDEX,
            {"metadata": {"total_size": total}, "weight_map": {k: n for n, part in zip(names, shards) for k in part}},
        )
        written.append(root / SAFE_INDEX)
    return written
