"""Atomic, rotating training checkpoints.

``<output_dir>/checkpoint-<step:07d>/``:

* ``trainable.safetensors`` trainable weights only (full, unsharded names; gathered on rank 0 under FSDP)
* ``optimizer.pt``         optimizer state keyed by parameter name, read back with ``torch.load(weights_only=True)``
                           (tensors and plain containers only; anything else is refused)
* ``trainer_state.json``   step, epoch / position in the epoch, scheduler state, counters (samples, tokens,
                           bad samples by reason)
* ``rng_state_rank<r>.json`` + ``rng_state_rank<r>.safetensors``  python / numpy RNG states (JSON) and torch CPU /
                           CUDA RNG states (uint8 tensors) of every rank
* ``train_config.yaml``, ``config.json`` (the run's TrainConfig and the model's config)

A checkpoint is written into ``.tmp-checkpoint-<step>`` and renamed when complete, so a crash never leaves a
half checkpoint that ``--resume`` could pick up; only the last ``save_total_limit`` are kept.

Nothing in a checkpoint is unpickled: a checkpoint directory may come from someone else, and unpickling runs code.
Files of older versions (``rng_state_rank<r>.pt``) are ignored with a warning.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from ..errors import InputError
from ..utils.io import atomic_write_json
from .distributed import DistEnv, barrier

CKPT_RE = re.compile(r"^checkpoint-(\d+)$")


def list_checkpoints(output_dir: str | os.PathLike, complete_only: bool = True) -> list[Path]:
    """The ``checkpoint-<step>`` dirs, oldest first: those with a ``trainer_state.json``, or every one with
    ``complete_only=False`` (``--resume`` falls back past broken ones)."""
    d = Path(output_dir)
    if not d.is_dir():
        return []
    found = [
        (int(m.group(1)), p)
        for p in d.iterdir()
        if p.is_dir() and (m := CKPT_RE.match(p.name)) and (not complete_only or (p / "trainer_state.json").exists())
    ]
    return [p for _, p in sorted(found)]


def _state_options(cpu_offload=True):
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, cpu_offload=cpu_offload)


def trainable_state(engine: nn.Module, model: nn.Module, optimizer, env: DistEnv) -> tuple[dict, dict]:
    """(trainable weights, optimizer state) as full tensors on CPU; collective under FSDP/DDP."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_optimizer_state_dict

    names = {n for n, p in model.named_parameters() if p.requires_grad}
    msd = get_model_state_dict(engine, options=_state_options())
    msd = {k: v.detach().cpu().contiguous() for k, v in msd.items() if k in names}
    osd = get_optimizer_state_dict(engine, optimizer, options=_state_options())
    return msd, osd


class CheckpointError(InputError):
    """A checkpoint that cannot be resumed from (missing, foreign or tampered files)."""


def rng_state() -> dict:
    st = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def set_rng_state(st: dict) -> None:
    random.setstate(st["python"])
    np.random.set_state(st["numpy"])
    torch.set_rng_state(st["torch"])
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


def _rng_paths(directory: Path, rank: int) -> tuple[Path, Path]:
    return directory / f"rng_state_rank{rank}.json", directory / f"rng_state_rank{rank}.safetensors"


def save_rng_state(directory: str | os.PathLike, rank: int, st: dict | None = None) -> None:
    """Write ``st`` (default: the current RNG states) without pickle: python / numpy states as JSON (ints and
    floats only), torch CPU / CUDA states as uint8 tensors in a safetensors file."""
    from safetensors.torch import save_file

    st = rng_state() if st is None else st
    version, internal, gauss = st["python"]
    kind, keys, pos, has_gauss, cached = st["numpy"]
    meta = {
        "format": 1,
        "python": {
            "version": int(version),
            "state": [int(x) for x in internal],
            "gauss_next": None if gauss is None else float(gauss),
        },
        "numpy": {
            "kind": str(kind),
            "keys": np.asarray(keys).astype(np.uint32).tolist(),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "cuda_devices": len(st.get("cuda", [])),
    }
    tensors = {"torch": st["torch"].detach().cpu().contiguous()}
    for i, t in enumerate(st.get("cuda", [])):
        tensors[f"cuda.{i}"] = t.detach().cpu().contiguous()
    jpath, tpath = _rng_paths(Path(directory), rank)
    save_file(tensors, str(tpath))
    atomic_write_json(jpath, meta, indent=None)


def load_rng_state(directory: str | os.PathLike, rank: int) -> dict | None:
    """The RNG states written by ``save_rng_state`` (None when this rank has none); ``CheckpointError`` when the
    files are malformed. Never unpickles."""
    from safetensors.torch import load_file

    jpath, tpath = _rng_paths(Path(directory), rank)
    if not (jpath.exists() and tpath.exists()):
        return None
    try:
        meta = json.loads(jpath.read_text(encoding="utf-8"))
        tensors = load_file(str(tpath))
        py, npy = meta["python"], meta["numpy"]
        st = {
            "python": (
                int(py["version"]),
                tuple(int(x) for x in py["state"]),
                None if py["gauss_next"] is None else float(py["gauss_next"]),
            ),
            "numpy": (
                str(npy["kind"]),
                np.asarray(npy["keys"], dtype=np.uint32),
                int(npy["pos"]),
                int(npy["has_gauss"]),
                float(npy["cached_gaussian"]),
            ),
            "torch": tensors["torch"].to(torch.uint8),
        }
        n_cuda = int(meta.get("cuda_devices", 0))
        if n_cuda:
            st["cuda"] = [tensors[f"cuda.{i}"].to(torch.uint8) for i in range(n_cuda)]
    except Exception as e:  # noqa: BLE001 - any malformed content is the same user-facing problem
        raise CheckpointError(
            f"{jpath.parent}: unreadable RNG state for rank {rank} ({type(e).__name__}: {e})"
        ) from None
    return st


def save_checkpoint(
    output_dir,
    step: int,
    engine,
    model,
    optimizer,
    trainer_state: dict,
    env: DistEnv,
    train_config=None,
    save_total_limit: int | None = 1,
) -> Path:
    out = Path(output_dir)
    final = out / f"checkpoint-{step:07d}"
    tmp = out / f".tmp-checkpoint-{step:07d}"
    if env.is_main:
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
    barrier(env)
    save_rng_state(tmp, env.rank)  # RNG of every rank, no pickle
    msd, osd = trainable_state(engine, model, optimizer, env)
    if env.is_main:
        from safetensors.torch import save_file

        save_file(msd, str(tmp / "trainable.safetensors"))
        torch.save(osd, tmp / "optimizer.pt")
        atomic_write_json(tmp / "trainer_state.json", trainer_state)
        if train_config is not None:
            train_config.save(tmp / "train_config.yaml")
        model.config.save(tmp / "config.json")
    barrier(env)
    if env.is_main:
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        if save_total_limit is not None and save_total_limit > 0:
            for old in list_checkpoints(out)[:-save_total_limit]:
                shutil.rmtree(old, ignore_errors=True)
    barrier(env)
    return final


def load_checkpoint(path, engine, model, optimizer, env: DistEnv) -> dict:
    """Restore trainable weights, optimizer and this rank's RNG; returns the trainer state dict."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict, set_optimizer_state_dict

    path = Path(path)
    state, msd = read_checkpoint_files(path)
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    missing = names - set(msd)
    if missing:
        raise CheckpointError(
            f"{path}: checkpoint lacks trainable parameters {sorted(missing)[:5]} (different freeze policy?)"
        )
    opts = StateDictOptions(full_state_dict=True, strict=False)
    set_model_state_dict(engine, msd, options=opts)
    osd = load_optimizer_state(path / "optimizer.pt")
    set_optimizer_state_dict(engine, optimizer, osd, options=StateDictOptions(full_state_dict=True))
    if state.get("world_size", 1) == env.world_size:
        st = load_rng_state(path, env.rank)
        if st is not None:
            set_rng_state(st)
        elif (path / f"rng_state_rank{env.rank}.pt").exists():
            warnings.warn(
                f"{path}: ignoring rng_state_rank{env.rank}.pt (pickle, written by an older version; "
                "never loaded): the resumed run continues with fresh RNG states",
                stacklevel=2,
            )
    return state


def read_checkpoint_files(path: Path) -> tuple[dict, dict]:
    """(trainer state, trainable weights) of a checkpoint dir; ``CheckpointError`` when a file is missing, truncated
    or malformed (nothing is changed in the model before both are read)."""
    from safetensors.torch import load_file

    for name in ("trainer_state.json", "trainable.safetensors", "optimizer.pt"):
        if not (path / name).is_file():
            raise CheckpointError(f"{path / name} not found")
    try:
        state = json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))
        if not isinstance(state, dict) or not isinstance(state.get("step"), int) or "scheduler" not in state:
            raise ValueError("not a trainer state object")
    except (ValueError, OSError) as e:
        raise CheckpointError(f"{path / 'trainer_state.json'}: unreadable ({type(e).__name__}: {e})") from None
    try:
        msd = load_file(str(path / "trainable.safetensors"))
    except Exception as e:  # noqa: BLE001 - SafetensorError, OSError: truncated / not safetensors
        raise CheckpointError(f"{path / 'trainable.safetensors'}: unreadable ({type(e).__name__}: {e})") from None
    return state, msd


def load_optimizer_state(path: Path) -> dict:
    """``optimizer.pt`` with ``weights_only=True``: tensors and plain containers only, no code from the file."""
    if not path.exists():
        raise CheckpointError(f"{path} not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - UnpicklingError, RuntimeError, EOFError ... all mean "not ours"
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{path}: refused to load (not a plain tensor file: {first[:200]})") from None
