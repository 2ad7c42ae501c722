"""Demo settings: one dataclass, two presets (default and ``--quick``), overridable from the command line."""

from __future__ import annotations

import dataclasses

from ..cvbench.builder import PerImage
from ..train.config import GROUNDING_OBJECTIVES
from ..typed import (
    Bool,
    Choice,
    ConfigError,
    Int,
    Num,
    OptInt,
    OptNum,
    Str,
    apply_overrides,
    build,
    did_you_mean,
    typed_config,
)

DEMO_PER_IMAGE = {"Count": 2, "Relation": 2, "Depth": 6, "Distance": 4}


@typed_config
class DemoConfig:
    out: Str = "runs/demo"
    seed: Int(ge=0) = 0
    device: Str = "auto"  # auto: cuda (bf16 autocast in training) when available, else cpu (fp32)
    model: Str = "nano"
    in_llm_sva: Bool = False  # keep nano's in-LLM SVA layers (untrained by grounding; off in the CPU recipe)
    # data
    train_scenes: Int(ge=1) = 240
    test_scenes: Int(ge=1) = 120
    # CV-Bench-Synth test questions per image and task. The official builder (``cambrian cvbench``) draws at most
    # 2/1/1/1 (Count/Relation/Depth/Distance); the demo asks for more so each task has >= 150 questions from its
    # 120 test scenes (Depth is the scarce one: ~1.4 valid pairs per scene). A partial dict (``--set
    # cvbench_max_per_image='{Depth: 8}'``) keeps the demo's other caps; null: the official caps. Recorded in
    # results.json (data.cvbench_synth) and stated in report.md.
    cvbench_max_per_image: PerImage | None = dataclasses.field(default_factory=lambda: dict(DEMO_PER_IMAGE))
    scene_variants: Int(ge=1) = 1  # stage-2 records per train scene (each its own question draw)
    max_turns: Int(ge=1) = 6  # questions packed into one stage-2 record (look-ups first, then CV-Bench-style)
    attribute_turns: Int(ge=0) = 4  # lookup questions (colour of the only sphere, ...) first in each scene record
    # direct position lookups ("In which column ... is the red cube?" -> "three") after them; 0: none
    position_turns: Int(ge=0) = 0
    box_prob: Num(ge=0, le=1) = 0.3
    easyvqa_train_images: Int(ge=0) = 100  # stage-2 QA records
    easyvqa_test_images: Int(ge=1) = 20
    stage1_samples: Int(ge=0) = 0  # scene captions for a stage 1 between grounding and stage 2 (0: skip)
    # grounding (connector only, LLM untouched: visual tokens -> the LLM's embeddings of the words per cell)
    ground_easyvqa_images: Int(ge=0) = 300
    ground_epochs: Int(ge=0) = 20
    ground_batch: Int(ge=1) = 32
    ground_lr: Num(gt=0) = 1e-3
    ground_sva_lr: OptNum(gt=0) = None  # None: ground_lr
    ground_objective: Choice(*GROUNDING_OBJECTIVES) = "mse+words"
    ground_split_words: Bool = False  # object cells take "red" / "cube" in a checkerboard instead of their mean
    ground_count_words: Bool = (
        False  # scene object cells also carry how many objects share their shape ("red cube two")
    )
    ground_position_words: Bool = False  # scene object cells also carry where the object is ("red cube two fifth")
    # which cell the position words name: the object's centre cell on all its cells, or each cell its own
    ground_position_of: Choice("centre", "cell") = "centre"
    # stage 2 Relation / Depth answers worked from looked-up positions ("x: red cube two, blue sphere six. The answer
    # is (A)") instead of the bare letter; eval then needs max_new_tokens >= ~24
    reasoning: Bool = False
    # stage 1 (connector; LLM frozen): paper lrs (1e-3 projector, 1e-4 SVA)
    stage1_lr: Num(gt=0) = 1e-3
    stage1_sva_lr: Num(gt=0) = 1e-4
    stage1_batch: Int(ge=1) = 8
    # stage 2 (LLM; the grounded connector too when stage2_train_connector)
    stage2_lr: Num(gt=0) = 1e-4
    stage2_sva_lr: OptNum(gt=0) = None  # None: stage2_lr
    stage2_train_connector: Bool = False
    stage2_batch: Int(ge=1) = 8
    stage2_micro_batch: Int(ge=1) = 4
    stage2_max_samples: OptInt(ge=1) = None  # cap (None: every record once)
    warmup_ratio: Num(ge=0, le=1) = 0.05
    # eval
    eval_batch: Int(ge=1) = 16
    probe_items: Int(ge=1) = 64  # questions per benchmark in the gold-answer loss probe
    max_new_tokens: Int(ge=1) = 8  # answers are one letter / one word; generation stops at the end-of-turn token
    # option-likelihood answering of the multiple-choice questions (the option the model finds most likely, not the
    # official generation score), own / other / blind on the same questions; reported apart. Off in the default
    # preset (about 2,000 prefills per condition: estimated 11+ min on 2 cores, past the demo's 20-minute budget),
    # on in --quick (~90 s there), so CI runs the path end to end; --set likelihood=true turns it on
    likelihood: Bool = False
    progress: Bool = True

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


QUICK = {
    "train_scenes": 24,
    "test_scenes": 10,
    "cvbench_max_per_image": None,  # the official caps: a smoke run keeps its eval small
    "easyvqa_train_images": 64,
    "easyvqa_test_images": 8,
    "ground_easyvqa_images": 160,
    "ground_epochs": 20,
    "stage2_max_samples": 88,
    "max_turns": 6,
    "warmup_ratio": 0.0,
    "probe_items": 24,
    "likelihood": True,
}


# --long (issue 20's spatial recipe, <= 60 min on 2 idle cores): grounding cells also carry where they are (each
# cell its own column and row words), Relation / Depth answers are worked from looked-up positions (so eval
# generates up to 24 tokens), and each stage-2 scene record adds two direct position lookups ("In which column ...
# is the red cube?" -> "three") to two attribute lookups, packed up to 8 turns. docs/demo-results.md has what each
# setting gave (E2-E4) and which targets each preset reaches.
LONG = {
    "ground_position_words": True,
    "ground_position_of": "cell",
    "reasoning": True,
    "max_new_tokens": 24,
    "attribute_turns": 2,
    "position_turns": 2,
    "max_turns": 8,
}

PRESETS = {"default": {}, "quick": QUICK, "long": LONG}


def parse_settings(items) -> dict:
    """``["stage1_samples=300", "stage2_sva_lr=1e-3"]`` -> typed overrides, read and checked by the same loader as
    recipes (``cambrian.typed``): values parsed as YAML, unknown keys refused with a did-you-mean, types and ranges
    checked by ``DemoConfig``'s fields."""
    raw = apply_overrides({}, [str(x) for x in items or []], what="--set")
    names = [f.name for f in dataclasses.fields(DemoConfig)]
    out = {}
    for key, value in raw.items():
        key = key.strip().replace("-", "_")
        if key not in names:
            raise ConfigError(f"--set {key}: unknown demo setting{did_you_mean(key, names)}")
        out[key] = value
    try:
        typed = build(DemoConfig, out)
    except ConfigError as e:
        raise ConfigError(f"--set {e}") from None
    return {k: getattr(typed, k) for k in out}


def make_config(
    quick: bool = False, settings: dict | None = None, preset: str | None = None, **overrides
) -> DemoConfig:
    """The preset (``default``, ``quick`` -- also ``quick=True`` --, ``long``), then ``overrides`` that are not None
    (the named flags), then ``settings`` (``--set``; null included), checked as one ``DemoConfig``."""
    name = preset or ("quick" if quick else "default")
    if name not in PRESETS or (quick and name != "quick"):
        raise ConfigError(f"demo preset {name!r}{' with quick' if quick else ''}: choose one of {', '.join(PRESETS)}")
    base = dict(PRESETS[name])
    base.update({k: v for k, v in overrides.items() if v is not None})
    base.update(settings or {})
    return build(DemoConfig, base, "demo settings")
