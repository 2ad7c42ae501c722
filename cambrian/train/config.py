"""``TrainConfig``: every knob of a training run, loaded from a YAML recipe plus ``key=value`` overrides
(dotted keys reach into mappings, values parsed as YAML: ``lr=2e-5``, ``lora.enabled=true``,
``data=[{path: x.jsonl}]``). Saved as ``train_config.yaml`` next to every checkpoint."""

from __future__ import annotations

import copy
import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..utils.checks import Check as _Check  # noqa: F401  (re-exported names used by callers)
from ..utils.checks import ConfigError, did_you_mean  # noqa: F401
from ..utils.checks import check_mapping as _mapping

DISTRIBUTED = ("auto", "none", "ddp", "fsdp_full", "fsdp_grad_op")
SAMPLERS = ("modality_length", "length", "random")
LORA_DEFAULTS = {"enabled": False, "r": 16, "alpha": 32, "dropout": 0.05,
                 "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]}
DATA_KEYS = ("path", "images", "category", "name", "allow_outside_root")


def _data_entries(data) -> list[dict]:
    if data is None:
        return []
    if isinstance(data, (dict, str)):
        data = [data]
    if not isinstance(data, (list, tuple)):
        raise ConfigError(f"data must be a list of {{path: ..., images: ...}} entries, got {data!r}")
    out = []
    v = _Check()
    for i, d in enumerate(data):
        if isinstance(d, str):
            d = {"path": d}
        d = _mapping(f"data[{i}]", d, DATA_KEYS)
        if "path" not in d:
            raise ConfigError(f"data[{i}] needs a 'path'")
        d["path"] = v.str_(f"data[{i}].path", d["path"])
        if d.get("images") is not None:
            d["images"] = v.str_(f"data[{i}].images", d["images"])
        if "allow_outside_root" in d:
            d["allow_outside_root"] = v.bool_(f"data[{i}].allow_outside_root", d["allow_outside_root"])
        out.append(d)
    return out


PRECISIONS = ("auto", "fp32", "bf16")
SCHEDULERS = ("cosine", "linear", "constant")


@dataclass
class TrainConfig:
    # ---- what -------------------------------------------------------------------------------------------
    model: str = "tiny"  # model preset, YAML file, or a saved model dir (stage 2: the stage-1 output dir)
    stage: int | str = 1  # 1: connector only; 2: connector + LLM; "ground": connector only, grounding objective
    # stage "ground": records carry per-cell word targets (``grounding``, see cambrian.data.grounding); the
    # connector's tokens are pulled onto the LLM's input embeddings of those words ("mse+words": regression x scale
    # plus a distance softmax over the batch's target words; "mse"; or
    # "ce" classification over the vocabulary); the LLM does not run
    grounding: dict = field(default_factory=lambda: {"objective": "mse+words", "scale": 100.0})
    unfreeze_vision: bool = False  # stage 2 option: train the vision towers too (with vision_lr)
    trainable: list[str] | None = None  # explicit trainable name prefixes; overrides the stage policy
    data: list[dict] = field(default_factory=list)  # [{path, images, category, name}]
    mixing_cap: int | None = None  # per-source cap t (paper: 350k); None: no cap
    mixing_ratios: dict | None = None  # category -> weight
    mixing_total: int | None = None
    max_length: int | None = None  # None: the model's llm.max_length
    output_dir: str = "runs/train"
    # ---- optimisation -----------------------------------------------------------------------------------
    micro_batch_size: int = 8  # per device and forward
    global_batch_size: int | None = None  # if set, grad_accum = global / (micro * world)
    grad_accum: int = 1
    epochs: int = 1
    max_steps: int | None = None  # cap on optimizer steps (None or 0: whole epochs; negative: an error)
    lr: float = 1e-3  # base lr (projector, newline, LLM)
    sva_lr: float | None = None  # names containing vision_sampler / vision_query (official stage 1: 1e-4)
    vision_lr: float | None = None  # vision towers when unfrozen (None: lr)
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    scheduler: str = "cosine"
    warmup_ratio: float = 0.03
    max_grad_norm: float | None = 1.0
    seed: int = 0
    # ---- execution --------------------------------------------------------------------------------------
    precision: str = "auto"  # auto: bf16 autocast on GPU, fp32 on CPU
    gradient_checkpointing: bool = False
    compile: bool = False  # torch.compile the LLM
    lora: dict = field(default_factory=lambda: copy.deepcopy(LORA_DEFAULTS))
    distributed: str = "auto"  # auto: ddp under torchrun (world > 1), else none
    sampler: str = "modality_length"  # modality_length | length | random
    num_workers: int = 2
    feature_cache: str | None = None  # dir (or "auto") for cached frozen-tower features; None: run the towers
    # ---- bookkeeping ------------------------------------------------------------------------------------
    save_steps: int = 1000
    save_total_limit: int = 1
    log_steps: int = 1
    max_bad_fraction: float = 0.01
    bad_check_after: int = 1000  # samples seen before the bad-sample share is enforced (always at the end)
    report_to: list[str] = field(default_factory=lambda: ["tensorboard", "wandb"])  # used when installed
    wandb_project: str = "cambrian"
    progress: bool = True
    resume: str | None = None  # "auto" (latest checkpoint in output_dir), a checkpoint dir, or None
    overwrite: bool = False  # output_dir holds a previous run: delete that run's files first (else refused)

    def __post_init__(self):
        """Every field checked for type and range; the error names the field (``ConfigError``, a ValueError)."""
        from ..models.grounding import KINDS

        v = _Check()
        self.model = v.str_("model", self.model)
        if self.stage not in (1, 2, "ground") or isinstance(self.stage, bool):
            raise ConfigError(f"stage must be 1, 2 or 'ground', got {self.stage!r}")
        g = {"objective": "mse+words", "scale": 100.0}
        g.update(_mapping("grounding", self.grounding, g))
        if g["objective"] not in KINDS:
            raise ConfigError(f"grounding.objective must be one of {KINDS}, got {g['objective']!r}")
        g["scale"] = v.float_("grounding.scale", g["scale"], low=0.0, low_open=True)
        self.grounding = g
        self.unfreeze_vision = v.bool_("unfreeze_vision", self.unfreeze_vision)
        if self.trainable is not None:
            self.trainable = v.str_list("trainable", self.trainable)
        self.data = _data_entries(self.data)
        self.mixing_cap = v.int_("mixing_cap", self.mixing_cap, low=1, optional=True)
        if self.mixing_ratios is not None:
            ratios = _mapping("mixing_ratios", self.mixing_ratios, None)
            self.mixing_ratios = {str(k): v.float_(f"mixing_ratios.{k}", r, low=0.0) for k, r in ratios.items()}
        self.mixing_total = v.int_("mixing_total", self.mixing_total, low=1, optional=True)
        self.max_length = v.int_("max_length", self.max_length, low=1, optional=True)
        self.output_dir = v.str_("output_dir", self.output_dir)
        self.micro_batch_size = v.int_("micro_batch_size", self.micro_batch_size, low=1)
        self.global_batch_size = v.int_("global_batch_size", self.global_batch_size, low=1, optional=True)
        self.grad_accum = v.int_("grad_accum", self.grad_accum, low=1)
        self.epochs = v.int_("epochs", self.epochs, low=1)
        self.max_steps = v.int_("max_steps", self.max_steps, low=0, optional=True, none_means="no cap") or None  # 0: no cap
        self.lr = v.float_("lr", self.lr, low=0.0, low_open=True)
        self.sva_lr = v.float_("sva_lr", self.sva_lr, low=0.0, low_open=True, optional=True)
        self.vision_lr = v.float_("vision_lr", self.vision_lr, low=0.0, low_open=True, optional=True)
        self.weight_decay = v.float_("weight_decay", self.weight_decay, low=0.0)
        if not isinstance(self.betas, (list, tuple)) or len(self.betas) != 2:
            raise ConfigError(f"betas must be two numbers [beta1, beta2], got {self.betas!r}")
        self.betas = tuple(v.float_(f"betas[{i}]", b, low=0.0, high=1.0, high_open=True) for i, b in enumerate(self.betas))
        self.eps = v.float_("eps", self.eps, low=0.0, low_open=True)
        self.scheduler = v.choice("scheduler", self.scheduler, SCHEDULERS)
        self.warmup_ratio = v.float_("warmup_ratio", self.warmup_ratio, low=0.0, high=1.0)
        self.max_grad_norm = v.float_("max_grad_norm", self.max_grad_norm, low=0.0, low_open=True, optional=True)
        self.seed = v.int_("seed", self.seed, low=0)
        self.precision = v.choice("precision", self.precision, PRECISIONS)
        self.gradient_checkpointing = v.bool_("gradient_checkpointing", self.gradient_checkpointing)
        self.compile = v.bool_("compile", self.compile)
        lora = dict(LORA_DEFAULTS)
        lora.update(_mapping("lora", self.lora, LORA_DEFAULTS))
        lora["enabled"] = v.bool_("lora.enabled", lora["enabled"])
        lora["r"] = v.int_("lora.r", lora["r"], low=1)
        lora["alpha"] = v.float_("lora.alpha", lora["alpha"], low=0.0, low_open=True)
        if float(lora["alpha"]).is_integer():
            lora["alpha"] = int(lora["alpha"])
        lora["dropout"] = v.float_("lora.dropout", lora["dropout"], low=0.0, high=1.0, high_open=True)
        lora["target_modules"] = v.str_list("lora.target_modules", lora["target_modules"])
        self.lora = lora
        self.distributed = v.choice("distributed", self.distributed, DISTRIBUTED)
        self.sampler = v.choice("sampler", self.sampler, SAMPLERS)
        self.num_workers = v.int_("num_workers", self.num_workers, low=0)
        self.feature_cache = v.str_("feature_cache", self.feature_cache, optional=True)
        self.save_steps = v.int_("save_steps", self.save_steps, low=0)
        self.save_total_limit = v.int_("save_total_limit", self.save_total_limit, low=0, optional=True)
        self.log_steps = v.int_("log_steps", self.log_steps, low=1)
        self.max_bad_fraction = v.float_("max_bad_fraction", self.max_bad_fraction, low=0.0, high=1.0)
        self.bad_check_after = v.int_("bad_check_after", self.bad_check_after, low=0)
        if isinstance(self.report_to, str):
            self.report_to = [self.report_to]
        self.report_to = v.str_list("report_to", self.report_to or [])
        self.wandb_project = v.str_("wandb_project", self.wandb_project)
        self.progress = v.bool_("progress", self.progress)
        self.resume = v.str_("resume", self.resume, optional=True)
        self.overwrite = v.bool_("overwrite", self.overwrite)
        if self.resume and self.overwrite:
            raise ConfigError("resume and overwrite exclude each other (overwrite deletes the checkpoints resume reads)")

    # ---- (de)serialisation ------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["betas"] = list(self.betas)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        if not isinstance(d, dict):
            raise ConfigError(f"a training config must be a mapping, got {type(d).__name__}")
        names = [f.name for f in dataclasses.fields(cls)]
        for k in d:
            if k not in names:
                raise ConfigError(f"unknown TrainConfig keys [{k!r}]{did_you_mean(k, names)}")
        return cls(**d)

    def save(self, path: str | Path) -> None:
        from ..utils.io import atomic_write_text

        atomic_write_text(path, yaml.safe_dump(self.to_dict(), sort_keys=False))

    @classmethod
    def load(cls, path: str | Path, overrides: list[str] | None = None) -> "TrainConfig":
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
            raise ValueError(f"{path}: not valid YAML{where}: {getattr(e, 'problem', None) or e}") from None
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a mapping at top level")
        data = dict(data)
        if data.get("data") is not None:  # the recipe's own data paths are relative to the recipe's folder
            try:
                data["data"] = [_relative_to(e, path.parent) for e in _data_entries(data["data"])]
            except ConfigError as e:
                raise ConfigError(f"{path}: {e}") from None
        data = apply_overrides(data, overrides or [])
        try:
            return cls.from_dict(data)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"{path}: {e}") from None


def _relative_to(entry: dict, folder: Path) -> dict:
    """``path`` / ``images`` of a recipe's data entry resolved against the recipe's folder (absolute ones kept,
    ``~`` expanded)."""
    entry = dict(entry)
    for k in ("path", "images"):
        if entry.get(k) is not None:
            p = Path(entry[k]).expanduser()
            entry[k] = str(p if p.is_absolute() else folder / p)
    return entry



def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """``["lr=2e-5", "lora.enabled=true"]`` -> nested update of ``data`` (values parsed as YAML)."""
    data = dict(data)
    for ov in overrides:
        if "=" not in ov:
            raise ValueError(f"override {ov!r} is not key=value")
        key, raw = ov.split("=", 1)
        value: Any = yaml.safe_load(raw) if raw != "" else None
        parts = key.strip().split(".")
        cur = data
        for p in parts[:-1]:
            nxt = cur.get(p)
            nxt = dict(nxt) if isinstance(nxt, dict) else {}
            cur[p] = nxt
            cur = nxt
        cur[parts[-1]] = value
    return data
