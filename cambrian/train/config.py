"""``TrainConfig``: every knob of a training run, loaded from a YAML recipe plus ``key=value`` overrides
(dotted keys reach into mappings, values parsed as YAML: ``lr=2e-5``, ``lora.enabled=true``,
``data=[{path: x.jsonl}]``). Saved as ``train_config.yaml`` next to every checkpoint.

Checked by the project's one typed loader (``cambrian.typed``): on construction, from a file or in code, every
field's type and range, unknown keys at any depth (with a did-you-mean), and the values that mean nothing
(``warmup_ratio=2``, ``resume`` with ``overwrite``)."""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import field
from pathlib import Path
from typing import Annotated

import yaml
from pydantic import BeforeValidator, ConfigDict, with_config
from typing_extensions import NotRequired, TypedDict

from ..typed import (
    Bool,
    Choice,
    ConfigError,
    Int,
    Num,
    OptInt,
    OptNum,
    OptStr,
    OptStrList,
    Str,
    StrList,
    _fail,
    apply_overrides,
    build,
    did_you_mean,
    read_mapping,
    typed_config,
)

DISTRIBUTED = ("auto", "none", "ddp", "fsdp_full", "fsdp_grad_op")
SAMPLERS = ("modality_length", "length", "random")
PRECISIONS = ("auto", "fp32", "bf16")
SCHEDULERS = ("cosine", "linear", "constant")
REPORTERS = ("tensorboard", "wandb")
GROUNDING_OBJECTIVES = ("mse", "ce", "mse+words")  # cambrian.models.grounding.KINDS (a test keeps them equal)
LORA_DEFAULTS = {
    "enabled": False,
    "r": 16,
    "alpha": 32,
    "dropout": 0.05,
    "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
}
GROUNDING_DEFAULTS = {"objective": "mse+words", "scale": 100.0}
FORBID = ConfigDict(extra="forbid")


@with_config(FORBID)
class DataEntry(TypedDict):
    """One training source: a LLaVA-format file and the root its image paths resolve against."""

    path: Str
    images: NotRequired[OptStr]
    category: NotRequired[Str]  # for mixing_ratios (default "general")
    name: NotRequired[OptStr]
    allow_outside_root: NotRequired[Bool]  # accept image paths outside ``images`` (default: counted bad)


@with_config(FORBID)
class LoraSpec(TypedDict, total=False):
    enabled: Bool
    r: Int(ge=1)
    alpha: Num(gt=0)
    dropout: Num(ge=0, lt=1)
    target_modules: StrList


@with_config(FORBID)
class GroundingSpec(TypedDict, total=False):
    objective: Choice(*GROUNDING_OBJECTIVES)
    scale: Num(gt=0)


def _data_list(v):
    """``data:`` as a list of entries; a bare path or a single entry is a one-element list."""
    if v is None:
        return []
    if isinstance(v, (dict, str)):
        v = [v]
    if not isinstance(v, (list, tuple)):
        _fail("must be a list of {path: ..., images: ...} entries", v)
    return [{"path": d} if isinstance(d, str) else d for d in v]


def _betas(v):
    if not isinstance(v, (list, tuple)) or len(v) != 2:
        _fail("must be two numbers [beta1, beta2]", v)
    return tuple(v)


def _reporters(v):
    v = [v] if isinstance(v, str) else (v or [])
    if not isinstance(v, (list, tuple)) or not all(isinstance(x, str) for x in v):
        _fail("must be a list of strings", v)
    for x in v:
        if x not in REPORTERS:
            _fail(f"entries must be among {', '.join(REPORTERS)}{did_you_mean(x, REPORTERS)}", x)
    return list(v)


Beta = Num(ge=0, lt=1)


@typed_config
class TrainConfig:
    # ---- what -------------------------------------------------------------------------------------------
    # model preset, YAML file, or a saved model dir (stage 2: the stage-1 output dir); None: the caller passes the
    # model object to Trainer (the demo trains the model it holds)
    model: OptStr = "tiny"
    stage: Choice(1, 2, "ground") = (
        1  # 1: connector only; 2: connector + LLM; "ground": connector only, grounding objective
    )
    # stage "ground": records carry per-cell word targets (``grounding``, see cambrian.data.grounding); the
    # connector's tokens are pulled onto the LLM's input embeddings of those words ("mse+words": regression x scale
    # plus a distance softmax over the batch's target words; "mse"; or
    # "ce" classification over the vocabulary); the LLM does not run
    grounding: GroundingSpec | None = field(default_factory=lambda: dict(GROUNDING_DEFAULTS))
    unfreeze_vision: Bool = False  # stage 2 option: train the vision towers too (with vision_lr)
    trainable: OptStrList = None  # explicit trainable name prefixes; overrides the stage policy
    data: Annotated[list[DataEntry], BeforeValidator(_data_list)] = field(
        default_factory=list
    )  # [{path, images, category, name}]
    mixing_cap: OptInt(ge=1) = None  # per-source cap t (paper: 350k); None: no cap
    mixing_ratios: dict[str, Num(ge=0)] | None = None  # category -> weight
    mixing_total: OptInt(ge=1) = None
    max_length: OptInt(ge=1) = None  # None: the model's llm.max_length
    output_dir: Str = "runs/train"
    # ---- optimisation -----------------------------------------------------------------------------------
    micro_batch_size: Int(ge=1) = 8  # per device and forward
    global_batch_size: OptInt(ge=1) = None  # if set, grad_accum = global / (micro * world)
    grad_accum: Int(ge=1) = 1
    epochs: Int(ge=1) = 1
    max_steps: OptInt(ge=0, none_means="no cap") = (
        None  # cap on optimizer steps (None or 0: whole epochs; negative: an error)
    )
    lr: Num(gt=0) = 1e-3  # base lr (projector, newline, LLM)
    sva_lr: OptNum(gt=0) = None  # names containing vision_sampler / vision_query (official stage 1: 1e-4)
    vision_lr: OptNum(gt=0) = None  # vision towers when unfrozen (None: lr)
    weight_decay: Num(ge=0) = 0.0
    betas: Annotated[tuple[Beta, Beta], BeforeValidator(_betas)] = (0.9, 0.999)
    eps: Num(gt=0) = 1e-8
    scheduler: Choice(*SCHEDULERS) = "cosine"
    warmup_ratio: Num(ge=0, le=1) = 0.03
    max_grad_norm: OptNum(gt=0) = 1.0
    seed: Int(ge=0) = 0
    # ---- execution --------------------------------------------------------------------------------------
    precision: Choice(*PRECISIONS) = "auto"  # auto: bf16 autocast on GPU, fp32 on CPU
    gradient_checkpointing: Bool = False
    compile: Bool = False  # torch.compile the LLM
    lora: LoraSpec | None = field(default_factory=lambda: copy.deepcopy(LORA_DEFAULTS))
    distributed: Choice(*DISTRIBUTED) = "auto"  # auto: ddp under torchrun (world > 1), else none
    sampler: Choice(*SAMPLERS) = "modality_length"  # modality_length | length | random
    num_workers: Int(ge=0) = 2
    feature_cache: OptStr = None  # dir (or "auto") for cached frozen-tower features; None: run the towers
    # ---- bookkeeping ------------------------------------------------------------------------------------
    save_steps: Int(ge=0) = 1000
    save_total_limit: OptInt(ge=0) = 1
    log_steps: Int(ge=1) = 1
    max_bad_fraction: Num(ge=0, le=1) = 0.01
    bad_check_after: Int(ge=0) = 1000  # samples seen before the bad-sample share is enforced (always at the end)
    # metrics.jsonl is always written; "tensorboard" / "wandb" here must be able to start (else a clear error)
    report_to: Annotated[list[str], BeforeValidator(_reporters)] = field(default_factory=list)
    wandb_project: Str = "cambrian"
    progress: Bool = True
    resume: OptStr = None  # "auto" (latest checkpoint in output_dir), a checkpoint dir, or None
    overwrite: Bool = False  # output_dir holds a previous run: delete that run's files first (else refused)

    def __post_init__(self):
        """Types and ranges are checked by the field types; here: defaults of the nested mappings and the values
        that only mean something together."""
        g = dict(GROUNDING_DEFAULTS)
        g.update(self.grounding or {})
        self.grounding = g
        lora = copy.deepcopy(LORA_DEFAULTS)
        lora.update(self.lora or {})
        if float(lora["alpha"]).is_integer():
            lora["alpha"] = int(lora["alpha"])
        self.lora = lora
        self.data = [dict(d) for d in self.data]
        self.max_steps = self.max_steps or None  # 0: no cap
        if self.resume and self.overwrite:
            raise ConfigError(
                "resume and overwrite exclude each other (overwrite deletes the checkpoints resume reads)"
            )

    # ---- (de)serialisation ------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["betas"] = list(self.betas)
        return d

    @classmethod
    def from_dict(cls, d: dict, where: str | None = None) -> TrainConfig:
        return build(cls, d, where)

    def save(self, path: str | Path) -> None:
        from ..utils.io import atomic_write_text

        atomic_write_text(path, yaml.safe_dump(self.to_dict(), sort_keys=False))

    @classmethod
    def load(cls, path: str | Path, overrides: list[str] | None = None) -> TrainConfig:
        """A recipe file, or the name of a shipped recipe (``tiny``, ``nano-stage1``, ``cambrian-8b-stage2``; see
        ``cambrian.presets.models.list_recipes``). A recipe file's relative data paths resolve against its folder;
        a shipped recipe's against the current directory (its own folder is inside the installed package)."""
        from ..presets.models import RECIPE_DIR, list_recipes, recipe_path

        path = Path(path)
        if not path.exists():
            shipped = recipe_path(str(path))
            if shipped is None:
                raise FileNotFoundError(
                    f"{path}: no such recipe file, and not a shipped recipe name (shipped: {', '.join(list_recipes())})"
                )
            path = shipped
        relative_base = None if path.resolve().parent == RECIPE_DIR else path.parent
        data = read_mapping(path)
        if data.get("data") is not None and relative_base is not None:  # a recipe file's data: relative to its folder
            try:
                entries = _data_list(data["data"])
            except Exception:  # noqa: BLE001 - malformed data entries: the typed check below names the problem
                entries = None  # malformed: the typed check below names the problem
            if entries is not None:
                data["data"] = [_relative_to(e, relative_base) if isinstance(e, dict) else e for e in entries]
        try:
            data = apply_overrides(data, overrides or [])
        except ConfigError as e:
            raise ConfigError(f"{path}: {e}") from None
        return build(cls, data, str(path))


def _relative_to(entry: dict, folder: Path) -> dict:
    """``path`` / ``images`` of a recipe's data entry resolved against the recipe's folder (absolute ones kept,
    ``~`` expanded)."""
    entry = dict(entry)
    for k in ("path", "images"):
        if isinstance(entry.get(k), str):
            p = Path(entry[k]).expanduser()
            entry[k] = str(p if p.is_absolute() else folder / p)
    return entry
