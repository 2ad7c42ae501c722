"""Run identity: a run directory (``run.json``) and each benchmark directory (``run_identity.json``) record what
produced them (model and weights fingerprint, vision setting, benchmark options, ``max_new_tokens``, a fingerprint
of the data), and a rerun with anything else is refused (:class:`RunMismatch`) unless ``--overwrite``."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path

from ..errors import InputError
from ..models.vlm import saved_model_files
from ..utils.log import get_logger
from .api import Benchmark, EvalSample

log = get_logger("eval")

IDENTITY_NAME = "run_identity.json"


class RunMismatch(InputError):
    """The output directory holds results of a different run (model, weights, vision, options or data)."""


def model_identity(spec: str) -> dict:
    """What a ``--model`` argument names: the spec (an absolute path for a checkpoint dir or config file) and, for
    files on disk, a fingerprint of their size and modification time (the weights changed = another model)."""
    p = Path(spec)
    if p.is_dir():
        named = saved_model_files(spec)
        files = [p / n for n in named] + sorted(f for f in p.glob("*.safetensors") if f.name not in named)
    elif p.is_file():
        files = [p]
    else:
        return {"model": spec}
    stats = {f.name: [f.stat().st_size, f.stat().st_mtime_ns] for f in files if f.is_file()}
    digest = hashlib.sha1(json.dumps(stats, sort_keys=True).encode()).hexdigest()[:16]
    return {"model": str(p.resolve()), "weights": digest}


def data_fingerprint(samples: Sequence[EvalSample]) -> str:
    """Hash of what the predictions depend on and are scored against: idx, prompt, answer, image count."""
    h = hashlib.sha1()
    for s in samples:
        h.update(json.dumps([str(s.idx), s.prompt, str(s.answer), len(s.images)], ensure_ascii=False).encode())
        h.update(b"\n")
    return f"{len(samples)}:{h.hexdigest()[:16]}"


def _describe(diff: dict) -> str:
    return "; ".join(f"{k} {old!r} there, {new!r} now" for k, (old, new) in diff.items())


def _diff(old: dict, new: dict, keys) -> dict:
    return {k: (old.get(k), new.get(k)) for k in keys if old.get(k) != new.get(k)}


def check_run_identity(run_dir: Path, model_ident: dict, vision: str, overwrite: bool = False) -> None:
    """Refuse a run directory whose run.json names another model / weights / vision setting (unless overwrite)."""
    path = run_dir / "run.json"
    if overwrite or not path.exists():
        return
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        info = None
    if not isinstance(info, dict) or not isinstance(info.get("identity"), dict):
        raise RunMismatch(
            f"{path}: unreadable run.json, or one without a run identity; use another --out, or --overwrite to "
            "start this run directory anew"
        )
    want = {**model_ident, "vision": vision}
    diff = _diff(info["identity"], want, sorted(set(info["identity"]) | set(want)))
    if diff:
        raise RunMismatch(
            f"{run_dir} holds a different run ({_describe(diff)}); use another --out, or --overwrite "
            "to replace the outputs of the benchmarks run now"
        )


def bench_identity(
    model_ident: dict, vision: str, bench: Benchmark, max_new_tokens: int | None, data: str | None
) -> dict:
    out = {
        **model_ident,
        "vision": vision,
        "benchmark": bench.name,
        "options": json.loads(json.dumps(getattr(bench, "opts", {}), default=str)),
        "max_new_tokens": int(max_new_tokens or bench.max_new_tokens),
    }
    if data is not None:
        out["data"] = data
    return out


def check_bench_identity(bench_dir: Path, ident: dict) -> None:
    """Refuse to resume predictions in ``bench_dir`` made by a different run (or by an unknown one: predictions
    without a ``run_identity.json``). ``ident`` without ``data`` compares everything else (a check before the data
    is loaded)."""
    path = bench_dir / IDENTITY_NAME
    if path.exists():
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            old = {}
        keys = [k for k in sorted(set(old) | set(ident)) if k != "created" and (k != "data" or "data" in ident)]
        diff = _diff(old if isinstance(old, dict) else {}, ident, keys)
    elif any(bench_dir.glob("predictions*.jsonl")):
        diff = {IDENTITY_NAME: ("missing", "required")}
    else:
        return
    if diff:
        raise RunMismatch(
            f"{bench_dir} holds predictions of a different run ({_describe(diff)}); use another --out, "
            "or --overwrite to replace this benchmark's outputs"
        )


def identity_token(ident: dict) -> str:
    return hashlib.sha1(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]


def precheck_run(
    run_dir: str | os.PathLike,
    benches: Sequence[Benchmark],
    identity: dict,
    vision: str,
    max_new_tokens: int | None = None,
    overwrite: bool = False,
) -> None:
    """The identity checks that need neither the model nor the data (the CLI runs them before loading a model);
    records of older versions are left to ``run_benchmarks``."""
    run_dir = Path(run_dir)
    if overwrite:
        return
    try:
        info = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        info = {}
    if isinstance(info.get("identity"), dict):
        check_run_identity(run_dir, identity, vision, False)
    for b in benches:
        if (run_dir / b.name / IDENTITY_NAME).exists():
            check_bench_identity(run_dir / b.name, bench_identity(identity, vision, b, max_new_tokens, None))


def warn_foreign_benches(run_dir: Path, benches: Sequence[Benchmark], model_ident: dict, vision: str) -> None:
    names = {b.name for b in benches}
    want = {**model_ident, "vision": vision}
    foreign = []
    for f in sorted(run_dir.glob(f"*/{IDENTITY_NAME}")):
        if f.parent.name in names:
            continue
        try:
            old = json.loads(f.read_text(encoding="utf-8"))
        except ValueError:
            old = {}
        if any(old.get(k) != v for k, v in want.items()):
            foreign.append(f.parent.name)
    if foreign:
        log.warning(
            f"{run_dir}: {', '.join(foreign)} still hold results of another model or vision setting; rerun "
            "them with --overwrite or remove them before `cambrian eval report`"
        )
