"""``TrainConfig``: every knob of a training run, loaded from a YAML recipe plus ``key=value`` overrides
(dotted keys reach into mappings, values parsed as YAML: ``lr=2e-5``, ``lora.enabled=true``,
``data=[{path: x.jsonl}]``). Saved as ``train_config.yaml`` next to every checkpoint."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

DISTRIBUTED = ("auto", "none", "ddp", "fsdp_full", "fsdp_grad_op")
PRECISIONS = ("auto", "fp32", "bf16")
SCHEDULERS = ("cosine", "linear", "constant")


@dataclass
class TrainConfig:
    # ---- what -------------------------------------------------------------------------------------------
    model: str = "tiny"  # model preset, YAML file, or a saved model dir (stage 2: the stage-1 output dir)
    stage: int | str = 1  # 1: connector only; 2: connector + LLM; "ground": connector only, grounding objective
    # stage "ground": records carry per-cell word targets (``grounding``, see cambrian.data.grounding); the
    # connector's tokens are pulled onto the LLM's input embeddings of those words ("mse" regression x scale, or
    # "ce" classification over the vocabulary); the LLM does not run
    grounding: dict = field(default_factory=lambda: {"objective": "mse", "scale": 100.0})
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
    max_steps: int | None = None  # cap on optimizer steps (None: whole epochs)
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
    lora: dict = field(default_factory=lambda: {"enabled": False, "r": 16, "alpha": 32, "dropout": 0.05,
                                                "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]})
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
        if self.stage not in (1, 2, "ground"):
            raise ValueError(f"stage must be 1, 2 or 'ground', got {self.stage!r}")
        g = {"objective": "mse", "scale": 100.0}
        unknown = set(self.grounding or {}) - set(g)
        if unknown:
            raise ValueError(f"unknown grounding keys {sorted(unknown)} (valid: {', '.join(sorted(g))})")
        g.update(self.grounding or {})
        if g["objective"] not in ("mse", "ce"):
            raise ValueError(f"grounding.objective must be 'mse' or 'ce', got {g['objective']!r}")
        g["scale"] = float(g["scale"])
        self.grounding = g
        if self.distributed not in DISTRIBUTED:
            raise ValueError(f"distributed must be one of {DISTRIBUTED}, got {self.distributed!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.scheduler not in SCHEDULERS:
            raise ValueError(f"scheduler must be one of {SCHEDULERS}, got {self.scheduler!r}")
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, int) or self.epochs < 1:
            raise ValueError(f"epochs must be a whole number >= 1, got {self.epochs!r}")
        if self.max_steps is not None and (isinstance(self.max_steps, bool) or not isinstance(self.max_steps, int)
                                           or self.max_steps < 1):
            raise ValueError(f"max_steps must be a whole number >= 1 or null (no cap), got {self.max_steps!r}")
        if self.resume and self.overwrite:
            raise ValueError("resume and overwrite exclude each other (overwrite deletes the checkpoints resume reads)")
        self.betas = tuple(self.betas)
        if isinstance(self.data, dict):
            self.data = [self.data]
        for i, d in enumerate(self.data):
            if isinstance(d, str):
                self.data[i] = d = {"path": d}
            if "path" not in d:
                raise ValueError(f"data[{i}] needs a 'path'")

    # ---- (de)serialisation ------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["betas"] = list(self.betas)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown TrainConfig keys {sorted(unknown)} (valid: {', '.join(sorted(names))})")
        d = dict(d)
        for k in _FLOATS:  # PyYAML reads "1e-3" (no dot) as a string
            if isinstance(d.get(k), str):
                d[k] = float(d[k])
        if isinstance(d.get("betas"), (list, tuple)):
            d["betas"] = tuple(float(b) for b in d["betas"])
        if "lora" in d and d["lora"] is not None:
            lora = cls().lora
            lora.update(d["lora"])
            d["lora"] = lora
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
        data = apply_overrides(data, overrides or [])
        try:
            return cls.from_dict(data)
        except (TypeError, ValueError) as e:
            raise ValueError(f"{path}: {e}") from None


_FLOATS = ("lr", "sva_lr", "vision_lr", "weight_decay", "eps", "warmup_ratio", "max_grad_norm", "max_bad_fraction")


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
