"""Demo settings: one dataclass, two presets (default and ``--quick``), overridable from the command line."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass
class DemoConfig:
    out: str = "runs/demo"
    seed: int = 0
    device: str = "auto"  # auto: cuda (bf16 autocast in training) when available, else cpu (fp32)
    model: str = "nano"
    in_llm_sva: bool = False  # keep nano's in-LLM SVA layers (untrained by grounding; off in the CPU recipe)
    # data
    train_scenes: int = 240
    test_scenes: int = 60
    scene_variants: int = 1  # stage-2 records per train scene (each its own question draw)
    max_turns: int = 6  # questions packed into one stage-2 record (look-ups first, then CV-Bench-style)
    attribute_turns: int = 4  # lookup questions (colour of the only sphere, ...) first in each scene record
    box_prob: float = 0.3
    easyvqa_train_images: int = 100  # stage-2 QA records
    easyvqa_test_images: int = 20
    stage1_samples: int = 0  # scene captions for a stage 1 between grounding and stage 2 (0: skip)
    # grounding (connector only, LLM untouched: visual tokens -> the LLM's embeddings of the words per cell)
    ground_easyvqa_images: int = 300
    ground_epochs: int = 20
    ground_batch: int = 32
    ground_lr: float = 1e-3
    ground_sva_lr: float | None = None  # None: ground_lr
    ground_objective: str = "mse+words"
    ground_split_words: bool = False  # object cells take "red" / "cube" in a checkerboard instead of their mean
    ground_count_words: bool = False  # scene object cells also carry how many objects share their shape ("red cube two")
    # stage 1 (connector; LLM frozen): paper lrs (1e-3 projector, 1e-4 SVA)
    stage1_lr: float = 1e-3
    stage1_sva_lr: float = 1e-4
    stage1_batch: int = 8
    # stage 2 (LLM; the grounded connector too when stage2_train_connector)
    stage2_lr: float = 1e-4
    stage2_sva_lr: float | None = None  # None: stage2_lr
    stage2_train_connector: bool = False
    stage2_batch: int = 8
    stage2_micro_batch: int = 4
    stage2_max_samples: int | None = None  # cap (None: every record once)
    warmup_ratio: float = 0.05
    # eval
    eval_batch: int = 16
    probe_items: int = 64  # questions per benchmark in the gold-answer loss probe
    max_new_tokens: int = 8  # answers are one letter / one word; generation stops at the end-of-turn token
    progress: bool = True

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


QUICK = {
    "train_scenes": 24, "test_scenes": 10, "easyvqa_train_images": 64, "easyvqa_test_images": 8,
    "ground_easyvqa_images": 160, "ground_epochs": 20, "stage2_max_samples": 88, "max_turns": 6, "warmup_ratio": 0.0,
    "probe_items": 24,
}


def parse_settings(items) -> dict:
    """``["stage1_samples=300", "stage2_sva_lr=1e-3"]`` -> typed overrides (parsed like ``cambrian train``'s
    ``key=value`` overrides, then checked against the field's type: an int where a float is expected is fine, a
    string for a number is an error)."""
    import typing

    from ..train.config import apply_overrides

    hints = typing.get_type_hints(DemoConfig)
    try:
        raw = apply_overrides({}, [str(x) for x in items or []])
    except ValueError as e:
        raise ValueError(f"--set: {e} (expected KEY=VALUE)") from None
    out = {}
    for key, value in raw.items():
        key = key.strip().replace("-", "_")
        if key not in hints:
            raise ValueError(f"--set {key}: unknown demo setting; known: {', '.join(sorted(hints))}")
        allowed = typing.get_args(hints[key]) or (hints[key],)
        if isinstance(value, str) and (int in allowed or float in allowed):  # PyYAML reads "1e-3" as a string
            for num in (int, float):
                try:
                    value = num(value)
                    break
                except ValueError:
                    continue
        if float in allowed and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        ok = (value is None and type(None) in allowed) or any(
            isinstance(value, t) and not (t is int and isinstance(value, bool)) for t in allowed if t is not type(None))
        if not ok:
            names = " or ".join("None" if t is type(None) else t.__name__ for t in allowed)
            raise ValueError(f"--set {key}={value!r}: expected {names}, got {type(value).__name__}")
        out[key] = value
    return out


def make_config(quick: bool = False, **overrides) -> DemoConfig:
    base = dict(QUICK) if quick else {}
    base.update({k: v for k, v in overrides.items() if v is not None})
    names = {f.name for f in dataclasses.fields(DemoConfig)}
    unknown = set(base) - names
    if unknown:
        raise ValueError(f"unknown demo settings {sorted(unknown)}")
    return DemoConfig(**base)
