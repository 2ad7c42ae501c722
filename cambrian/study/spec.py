"""A study file: a base recipe and the axes whose product is the list of runs (``cambrian study STUDY.yaml``).

::

    name: nano-encoders
    model: nano                      # base model preset or config file: the LLM and the connector's settings
    model_overrides: {connector: {num_llm_layers: 0}}
    data: nano                       # nano: the study renders its offline data into OUT/data; external: data_root
    data_settings: {train_scenes: 240, ...}          # cambrian.study.data.NanoData fields
    table: nano                      # the category table: nano (synthetic sets) or paper (the paper's 16 benchmarks)
    benchmarks: {easyvqa: {max_images: 20}, synth-text: {}, ...}      # benchmark -> options
    eval: {batch_size: 16, max_new_tokens: 8, vision: [enabled, disabled]}
    stages:                          # training stages in order; each a TrainConfig recipe with placeholders
      - {name: ground, adapter: true, recipe: {stage: ground, data: [{path: "{data}/ground.jsonl"}], ...}}
      - {name: stage2, recipe: {stage: 2, data: [{path: "{data}/stage2.jsonl"}], trainable: [llm.], ...}}
    towers:                          # alias -> encoder entry (a preset id or {preset: ..., field: override})
      effnet: {encoder: {preset: efficientnet-lite0, image_size: 256}, label: EfficientNet-Lite0, supervision: class labels}
      random: {encoder: {preset: efficientnet-lite0, image_size: 256, options: {init: random}}, supervision: none}
      eva-clip: {encoder: null}      # no preset: listed, skipped
    connectors: {sva: {}, concat: {type: concat}}   # alias -> overrides of the base connector
    axes:                            # one block, or a list of blocks (each block's product; runs deduplicated)
      - {towers: [[random], [effnet], [effnet, dino]], connector: [sva], frozen: [true], adapter_data: [1.0], seed: [0]}
    control: random                  # the control tower set's alias (the report compares every run with it)
    quick: {...}                     # overrides applied by --quick (any of the keys above)

Placeholders in stage recipes: ``{data}`` (the data root), ``{run}`` (the run's directory), ``{cache}`` (the
study's feature cache). The study sets each stage's ``model`` (the run's model config for the first stage, the
previous stage's output directory after that), ``output_dir`` (``{run}/<stage name>``) and ``seed``.

Axes:

- ``towers``: tower sets (lists of aliases);
- ``connector``: connector aliases (``connectors``; an unknown alias means ``{type: alias}``);
- ``frozen``: false trains the towers in every stage that trains the LLM (``unfreeze_vision``; their features are
  then never cached); a tower that runs in onnxruntime cannot be unfrozen and such a run is skipped, with its
  reason;
- ``adapter_data``: scales the stages marked ``adapter: true`` (the connector's warm-up; the paper's 0 / 0.5M /
  1.2M adapter data): a fraction (<= 1) or a number of records (> 1) taken as a seeded subset; 0 skips those
  stages, and the next stage then trains the connector too (the paper's 0M setting);
- ``seed``: the training seed of every stage (the data stays the same).

A run's id is ``<towers>__<connector>__<frozen|unfrozen>__ad<adapter>__s<seed>__<hash>``; the hash covers
everything that shapes its training (model config, stage recipes, data settings, seed), so a changed axis value,
recipe or data setting is a new run and an unchanged one is found again (resume).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import itertools
import json
from dataclasses import field
from pathlib import Path
from typing import Any

from ..typed import (
    Bool,
    Choice,
    ConfigError,
    Int,
    Mapping,
    Num,
    OptInt,
    OptStr,
    Str,
    apply_overrides,
    build,
    read_mapping,
    typed_config,
)

STUDY_DIR = Path(__file__).resolve().parent.parent / "presets" / "studies"
PLACEHOLDERS = ("data", "run", "cache")


@typed_config
class StageSpec:
    name: Str
    recipe: Mapping
    adapter: Bool = False  # a connector warm-up stage: scaled by the adapter_data axis, skipped at 0


@typed_config
class EvalSpec:
    batch_size: Int(ge=1) = 16
    max_new_tokens: OptInt(ge=1) = None  # None: each benchmark's own (official) value
    vision: list[Choice("enabled", "disabled")] = field(default_factory=lambda: ["enabled", "disabled"])


@typed_config
class TowerSpec:
    encoder: Any = None  # an encoder entry (preset id or mapping); None: no preset here (listed, skipped)
    label: OptStr = None
    supervision: Str = "-"  # the paper's grouping: language, SSL, class labels, OCR, none (random) ...
    note: OptStr = None


@typed_config
class AxesBlock:
    towers: list[list[Str]]
    connector: list[Str] = field(default_factory=lambda: ["default"])
    frozen: list[Bool] = field(default_factory=lambda: [True])
    adapter_data: list[Num(ge=0)] = field(default_factory=lambda: [1.0])
    seed: list[Int(ge=0)] = field(default_factory=lambda: [0])


@typed_config
class StudySpec:
    name: Str
    description: Str = "-"
    model: Str = "nano"
    model_overrides: Mapping = field(default_factory=dict)
    data: Choice("nano", "external") = "nano"
    data_settings: Mapping = field(default_factory=dict)
    data_root: OptStr = None  # data: external: where the benchmarks live (DATA_ROOT/<bench>); {data} in recipes
    table: Choice("nano", "paper") = "nano"
    benchmarks: dict[str, Mapping] = field(default_factory=dict)
    eval: EvalSpec = field(default_factory=EvalSpec)
    stages: list[StageSpec] = field(default_factory=list)
    towers: dict[str, Any] = field(default_factory=dict)
    connectors: dict[str, Mapping] = field(default_factory=dict)
    axes: Any = None  # an AxesBlock mapping or a list of them
    control: OptStr = None  # alias of the control tower set (a one-tower set)
    keep_stage_models: Bool = False  # keep the weights of every stage (default: only the last stage's)
    quick: Mapping = field(default_factory=dict)

    def __post_init__(self):
        if not self.stages:
            raise ConfigError("stages: a study needs at least one training stage")
        if not self.benchmarks:
            raise ConfigError("benchmarks: a study needs at least one benchmark")
        names = [s.name for s in self.stages]
        if len(set(names)) != len(names):
            raise ConfigError(f"stages: names must be unique, got {names}")
        self.towers = {k: _tower(k, v) for k, v in self.towers.items()}
        blocks = self.axes if isinstance(self.axes, list) else [self.axes]
        if self.axes is None or not blocks:
            raise ConfigError("axes: give at least one block with towers: [[alias, ...], ...]")
        self.axes = [
            build(AxesBlock, b, f"axes[{i}]") if not isinstance(b, AxesBlock) else b for i, b in enumerate(blocks)
        ]
        for i, b in enumerate(self.axes):
            for ts in b.towers:
                if not ts:
                    raise ConfigError(f"axes[{i}].towers: an empty tower set")
                for t in ts:
                    if t not in self.towers:
                        from ..typed import did_you_mean

                        raise ConfigError(f"axes[{i}].towers: unknown tower {t!r}{did_you_mean(t, self.towers)}")
        if self.control is not None and self.control not in self.towers:
            raise ConfigError(f"control: {self.control!r} is not a tower alias")
        if self.data == "external" and not self.data_root:
            raise ConfigError("data: external needs data_root (where the benchmarks and the training data live)")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _tower(alias: str, v) -> TowerSpec:
    if isinstance(v, TowerSpec):
        return v
    if isinstance(v, dict) and ("encoder" in v or not v):
        t = build(TowerSpec, v, f"towers.{alias}")
    else:  # shorthand: the encoder entry itself (a preset id or {preset: ...})
        t = TowerSpec(encoder=v)
    if t.label is None:
        t.label = alias
    return t


# ---- loading -------------------------------------------------------------------------------------------------
def list_studies() -> list[str]:
    return sorted(p.stem for p in STUDY_DIR.glob("*.yaml"))


def study_path(name: str) -> Path:
    p = Path(name)
    if p.exists():
        return p
    shipped = STUDY_DIR / f"{name.removesuffix('.yaml')}.yaml"
    if "/" not in name and shipped.is_file():
        return shipped
    raise FileNotFoundError(
        f"{name}: no such study file, and not a shipped study (shipped: {', '.join(list_studies())})"
    )


def _merge(base: dict, over: dict) -> dict:
    """Nested update (mappings merged key by key; anything else replaced)."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict) and k not in ("benchmarks", "towers"):
            out[k] = _merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def load_study(name: str, overrides: list[str] | None = None, quick: bool = False) -> StudySpec:
    """A shipped study (``nano-encoders``) or a YAML file; ``quick`` applies its ``quick:`` block, then
    ``overrides`` (``key=value``, dotted keys) apply. Every mistake is one ``ConfigError`` naming the field."""
    path = study_path(name)
    data = read_mapping(path)
    if quick:
        q = data.get("quick") or {}
        if not q:
            raise ConfigError(f"{path}: --quick: the study has no quick: block")
        data = _merge(data, _quick_stages(data, q))
    try:
        data = apply_overrides(data, overrides or [], what="--set")
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
    return build(StudySpec, data, str(path))


def load_resolved(out: str | Path) -> StudySpec:
    """The study an output folder was run with (``OUT/study.yaml``, written by every run of ``cambrian study``)."""
    path = Path(out) / "study.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: give the study (a name or a file) as well as --out")
    return build(StudySpec, read_mapping(path), str(path))


def _quick_stages(data: dict, quick: dict) -> dict:
    """``quick.stages`` is a mapping stage name -> recipe overrides (the full list stays in the base)."""
    quick = dict(quick)
    stages = quick.pop("stages", None)
    if stages is None:
        return quick
    if not isinstance(stages, dict):
        raise ConfigError("quick.stages: a mapping of stage name -> recipe overrides")
    base = [dict(s) for s in data.get("stages") or []]
    known = {s.get("name") for s in base}
    for name in stages:
        if name not in known:
            raise ConfigError(f"quick.stages: no stage named {name!r} (stages: {sorted(known)})")
    for s in base:
        if s.get("name") in stages:
            s["recipe"] = _merge(s.get("recipe") or {}, stages[s["name"]] or {})
    return {**quick, "stages": base}


# ---- expansion -----------------------------------------------------------------------------------------------
@dataclasses.dataclass
class RunPlan:
    id: str
    axes: dict  # towers (aliases), connector, frozen, adapter_data, seed
    model: dict  # the run's model config mapping (encoders expanded by the model loader)
    stages: list[tuple[str, dict]]  # (stage name, recipe with placeholders; model/output_dir/seed set at run time)
    skipped_stages: list[str] = dataclasses.field(default_factory=list)
    towers_label: str = ""

    @property
    def frozen(self) -> bool:
        return bool(self.axes["frozen"])


@dataclasses.dataclass
class Skipped:
    axes: dict
    reason: str


def _fmt_adapter(a: float) -> str:
    return f"{a:g}"


def base_model_mapping(spec: StudySpec) -> dict:
    """The base model config as a mapping (preset or file), ``model_overrides`` merged in."""
    from ..presets.models import PRESET_DIR

    p = Path(spec.model)
    path = p if p.exists() else PRESET_DIR / f"{spec.model}.yaml"
    if not path.is_file():
        from ..presets.models import list_presets

        raise ConfigError(f"model: {spec.model!r} is neither a file nor a model preset ({', '.join(list_presets())})")
    return _merge(read_mapping(path), spec.model_overrides)


def _needs_onnx(entry) -> bool:
    from ..presets.encoders import expand_encoder_entry

    try:
        return expand_encoder_entry(copy.deepcopy(entry)).backend == "ppocr_onnx"
    except (KeyError, ValueError):
        return False


def identity_hash(obj) -> str:
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:8]


def expand(spec: StudySpec) -> tuple[list[RunPlan], list[Skipped]]:
    """The runs of a study in a stable order (blocks in order, then the product of each block's axes in the order
    towers, connector, frozen, adapter_data, seed), duplicates removed; and the combinations that cannot run, each
    with its reason."""
    base = base_model_mapping(spec)
    runs: list[RunPlan] = []
    skipped: list[Skipped] = []
    seen: set[str] = set()
    for block in spec.axes:
        for towers, conn, frozen, adapter, seed in itertools.product(
            block.towers, block.connector, block.frozen, block.adapter_data, block.seed
        ):
            axes = {
                "towers": list(towers),
                "connector": conn,
                "frozen": bool(frozen),
                "adapter_data": float(adapter),
                "seed": int(seed),
            }
            missing = [t for t in towers if spec.towers[t].encoder is None]
            if missing:
                skipped.append(Skipped(axes, f"no preset for {', '.join(missing)} in this toolkit"))
                continue
            if not frozen and any(_needs_onnx(spec.towers[t].encoder) for t in towers):
                skipped.append(Skipped(axes, "an onnxruntime tower (no gradients) cannot be unfrozen"))
                continue
            plan = plan_run(spec, base, axes)
            if plan.id in seen:
                continue
            seen.add(plan.id)
            runs.append(plan)
    return runs, skipped


def plan_run(spec: StudySpec, base_model: dict, axes: dict) -> RunPlan:
    model = copy.deepcopy(base_model)
    model["encoders"] = [copy.deepcopy(spec.towers[t].encoder) for t in axes["towers"]]
    if not axes["frozen"]:
        for e in model["encoders"]:
            if isinstance(e, dict):
                e["frozen"] = False
        model["encoders"] = [e if isinstance(e, dict) else {"preset": e, "frozen": False} for e in model["encoders"]]
    conn = axes["connector"]
    if conn != "default":
        over = spec.connectors.get(conn, {"type": conn})
        model["connector"] = _merge(model.get("connector") or {}, over)
    model["name"] = f"{spec.name}:{'+'.join(axes['towers'])}"
    stages, skipped_stages = [], []
    adapter = axes["adapter_data"]
    dropped_adapter = False
    for st in spec.stages:
        recipe = copy.deepcopy(st.recipe)
        if st.adapter:
            if adapter == 0:
                skipped_stages.append(st.name)
                dropped_adapter = True
                continue
            if adapter != 1.0:
                recipe["study_adapter_data"] = adapter  # resolved to mixing_total when the data is known
        elif dropped_adapter and recipe.get("trainable"):
            # no warm-up: the first later stage with an explicit trainable list trains the connector too
            if not any(str(r).startswith("connector") for r in recipe["trainable"]):
                recipe["trainable"] = ["connector.", *recipe["trainable"]]
            dropped_adapter = False
        if not axes["frozen"] and recipe.get("stage") == 2:
            recipe["unfreeze_vision"] = True
            recipe["feature_cache"] = None
            if recipe.get("trainable") and "encoders." not in recipe["trainable"]:
                recipe["trainable"] = [*recipe["trainable"], "encoders."]
        recipe["seed"] = axes["seed"]
        stages.append((st.name, recipe))
    if not stages:
        raise ConfigError(f"run {axes}: every stage was skipped (adapter_data 0 and only adapter stages)")
    ident = {
        "model": model,
        "stages": stages,
        "data": spec.data,
        "data_settings": spec.data_settings,
        "data_root": spec.data_root if spec.data == "external" else None,
    }
    slug = "__".join(
        [
            "+".join(axes["towers"]),
            axes["connector"],
            "frozen" if axes["frozen"] else "unfrozen",
            f"ad{_fmt_adapter(axes['adapter_data'])}",
            f"s{axes['seed']}",
            identity_hash(ident),
        ]
    )
    label = " + ".join(spec.towers[t].label or t for t in axes["towers"])
    return RunPlan(slug, axes, model, stages, skipped_stages, towers_label=label)


def fill(value, mapping: dict):
    """Placeholders ``{data}``, ``{run}``, ``{cache}`` in every string of a recipe (nested)."""
    if isinstance(value, str):
        out = value
        for k, v in mapping.items():
            out = out.replace("{" + k + "}", str(v))
        return out
    if isinstance(value, list):
        return [fill(v, mapping) for v in value]
    if isinstance(value, dict):
        return {k: fill(v, mapping) for k, v in value.items()}
    return value
