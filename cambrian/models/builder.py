"""Build the parts of a Cambrian model from a config, and count parameters without loading weights."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from ..config import CambrianConfig
from ..typed import ConfigError


def build_components(config: CambrianConfig, load_weights: bool = True):
    """-> (encoders, connector, llm, tokenizer). With ``load_weights`` False every part is built from the
    architecture recorded in the config (random init); ``from_pretrained`` then loads the checkpoint."""
    from .connectors.base import build_connector
    from .encoders import build_encoder
    from .llm.loader import load_llm

    if not config.encoders:
        raise ConfigError("a Cambrian model needs at least one vision encoder (config.encoders is empty)")
    encoders = [build_encoder(e, load_weights=load_weights) for e in config.encoders]
    llm, tokenizer = load_llm(config.llm, load_weights=load_weights)
    config.llm.hf_config = llm.config.to_dict()  # the caller's own copy (from_config deep-copies): rebuilds offline
    connector = build_connector(
        config.connector,
        encoder_dims=[e.hidden_size for e in config.encoders],
        encoder_grids=[e.out_grid for e in config.encoders],
        llm_hidden=llm.config.hidden_size,
    )
    return encoders, connector, llm, tokenizer


@dataclass
class ParamCounts:
    encoders: list[tuple[str, int]]
    connector: int
    connector_breakdown: dict[str, int]
    llm: int
    visual_tokens_square: int
    image_grid: int

    @property
    def total(self) -> int:
        return sum(n for _, n in self.encoders) + self.connector + self.llm

    def to_dict(self) -> dict:
        return {
            "encoders": {name: n for name, n in self.encoders},
            "encoders_total": sum(n for _, n in self.encoders),
            "connector": self.connector,
            "connector_breakdown": self.connector_breakdown,
            "llm": self.llm,
            "total": self.total,
            "visual_tokens_per_square_image": self.visual_tokens_square,
            "image_grid": self.image_grid,
        }


def _numel(module) -> int:
    # Count unique tensors (tied embeddings once).
    seen, n = set(), 0
    for p in module.parameters():
        if id(p) not in seen:
            seen.add(id(p))
            n += p.numel()
    return n


def count_parameters(config: CambrianConfig) -> ParamCounts:
    """Parameter counts per component, built on the meta device (no weights, no memory)."""
    import copy

    from .connectors.base import build_connector
    from .encoders import build_encoder
    from .llm.loader import build_architecture

    config = copy.deepcopy(config)
    with torch.device("meta"):
        encs = [(e.id, _numel(build_encoder(e, load_weights=False))) for e in config.encoders]
        llm = build_architecture(config.llm)
        conn = build_connector(
            config.connector,
            encoder_dims=[e.hidden_size for e in config.encoders],
            encoder_grids=[e.out_grid for e in config.encoders],
            llm_hidden=llm.config.hidden_size,
        )
    breakdown: dict[str, int] = {}
    for name, child in conn.named_children():
        breakdown[name] = _numel(child)
    for name, p in conn.named_parameters(recurse=False):
        breakdown[name] = p.numel()
    grid = config.connector.grid
    tokens = conn.num_tokens((grid, grid))
    return ParamCounts(encs, _numel(conn), breakdown, _numel(llm), tokens, grid)


# ---- resource guard --------------------------------------------------------------------------------------------
SKIP_MEMORY_ENV = "CAMBRIAN_SKIP_MEMORY_CHECK"
_DTYPE_BYTES = {
    "float32": 4,
    "fp32": 4,
    "float": 4,
    "float16": 2,
    "fp16": 2,
    "half": 2,
    "bfloat16": 2,
    "bf16": 2,
    "float64": 8,
    "double": 8,
}


def _unique_param_bytes(module) -> int:
    seen, n = set(), 0
    for p in module.parameters():
        if id(p) not in seen:
            seen.add(id(p))
            n += p.numel() * p.element_size()
    return n


def estimate_parameter_bytes(config: CambrianConfig) -> int:
    """Bytes the parameters of ``config`` take once built, without allocating any: the LLM from its config (one and
    two of its layers built on the meta device, the rest extrapolated, so a deep config costs no more than a shallow
    one), the towers and the connector on the meta device. Everything is built in float32 first (``from_config``
    casts afterwards), so that is the peak that counts. Layer counts are bounded by the config itself
    (``cambrian.config.MAX_LAYERS``)."""
    import copy

    from .connectors.base import build_connector
    from .encoders import build_encoder

    config = copy.deepcopy(config)
    with torch.device("meta"):
        total = sum(_unique_param_bytes(build_encoder(e, load_weights=False)) for e in config.encoders)
        llm_bytes, llm_hidden = _llm_parameter_bytes(config.llm)
        conn = build_connector(
            config.connector,
            encoder_dims=[e.hidden_size for e in config.encoders],
            encoder_grids=[e.out_grid for e in config.encoders],
            llm_hidden=llm_hidden,
        )
        total += llm_bytes + _unique_param_bytes(conn)
    return total


def _llm_parameter_bytes(cfg) -> tuple[int, int]:
    """(parameter bytes, hidden size) of the LLM: with a known architecture of >= 2 identical decoder layers, one- and
    two-layer copies are built (on the enclosing meta device) and the difference is the bytes of a layer; otherwise
    the whole architecture is built."""
    from .llm.loader import build_architecture, build_from_config

    hf = cfg.hf_config or {}
    layers = hf.get("num_hidden_layers")
    if isinstance(layers, int) and layers > 2 and "layer_types" not in hf:
        one, two = (build_from_config({**hf, "num_hidden_layers": n}) for n in (1, 2))
        b1, b2 = _unique_param_bytes(one), _unique_param_bytes(two)
        return b1 + (layers - 1) * (b2 - b1), one.config.hidden_size
    llm = build_architecture(cfg)
    return _unique_param_bytes(llm), llm.config.hidden_size


def available_memory_bytes(device: str | torch.device | None = None) -> int | None:
    """Free memory for new tensors: on a CUDA device its free memory, else the host's available memory (psutil
    when installed, else ``MemAvailable`` of /proc/meminfo); None when unknown."""
    dev = torch.device(device) if device is not None else torch.device("cpu")
    if dev.type == "cuda":
        try:
            free, _ = torch.cuda.mem_get_info(dev)
            return int(free)
        except Exception:  # noqa: BLE001 - no driver / device: unknown
            return None
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        pass
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def memory_check_skipped(force: bool = False) -> bool:
    return force or os.environ.get(SKIP_MEMORY_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def _gib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def check_memory(need: int, what: str, device: str | torch.device | None = None, force: bool = False) -> None:
    """Raise ``ResourceError`` when ``need`` bytes exceed the available memory of ``device`` (host RAM by default).
    Skipped with ``force`` or ``CAMBRIAN_SKIP_MEMORY_CHECK=1``; unknown free memory is not refused."""
    from ..errors import ResourceError

    if memory_check_skipped(force):
        return
    avail = available_memory_bytes(device)
    if avail is not None and need > avail:
        where = (
            f"{torch.device(device).type} device memory"
            if device is not None and torch.device(device).type != "cpu"
            else "available memory"
        )
        raise ResourceError(
            f"{what} needs about {_gib(need)} for its parameters, more than the {_gib(avail)} of "
            f"{where}; refusing to allocate (set {SKIP_MEMORY_ENV}=1 or pass force=True to try anyway)"
        )


def check_model_fits(config: CambrianConfig, device: str | torch.device | None = None, force: bool = False) -> None:
    """``check_memory`` for the model ``config`` describes (parameter bytes estimated on the meta device)."""
    if memory_check_skipped(force):
        return
    try:
        need = estimate_parameter_bytes(config)
    except Exception:  # noqa: BLE001 - an architecture the meta device cannot build: the real build reports it
        return
    check_memory(need, f"model {config.name!r}", device, force)
