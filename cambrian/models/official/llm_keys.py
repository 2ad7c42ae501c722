"""The LLM keys of a released ``config.json``, key by key, in both directions (docs/release-keys.md).

A released config is the official code's transformers config — ``LlamaConfig`` as transformers 4.37–4.40 wrote it,
or the Phi-3 config class the official code vendors — with the Cambrian keys added. Our LLM is built by the installed
transformers, whose config classes have changed since: transformers 5 folds ``rope_theta`` and ``rope_scaling`` into
``rope_parameters``, so filtering a release by the keys the new class lists drops the RoPE base silently (the 8B's
500000 became 10000). So nothing here filters by a class's key list. Every key has a fate:

- **compute**: changes what the model computes. Carried into the HF config we build, then read back from the built
  config and compared with the release's value (the official code's default where the file has none); a value the
  installed transformers cannot represent is a :class:`ReleaseFormatError`, never a silent change.
- **carried**: special-token ids, cache, initialisation and dropout settings: carried as they are (no effect on
  inference logits, or checked by the tokenizer).
- **renamed**: carried under another name (RoPE settings inside ``rope_parameters``; ``torch_dtype`` -> our
  ``dtype``; the Cambrian keys -> our encoders / connector, in ``config.py``).
- **dropped**: bookkeeping (``transformers_version``, ``_name_or_path``: read for the chat template only).
- **round trip**: the official training flags, kept verbatim for the export and otherwise unused; the few whose
  other values would change the computation (``mm_use_im_start_end``, ``mm_patch_merge_type``,
  ``image_aspect_ratio``) are refused unless they hold the value every release has.

A key no table knows is carried into the HF config (transformers keeps unknown keys as attributes) and reported as
``unknown`` by :func:`audit`. :func:`official_llm_keys` is the reverse: the LLM keys the official code must read to
compute what our LLM computes, refusing what its transformers version cannot express.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import ReleaseFormatError

# transformers model_type of each released family's LLM
FAMILY_OF = {"cambrian_llama": "llama", "cambrian_phi3": "phi3", "llama": "llama", "phi3": "phi3"}

# what the official code computes with when a key is absent (its transformers 4.37-4.40 LlamaConfig defaults, and the
# defaults of the Phi-3 config it vendors)
OFFICIAL_DEFAULTS: dict[str, dict[str, Any]] = {
    "llama": {
        "vocab_size": 32000,
        "hidden_size": 4096,
        "intermediate_size": 11008,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": None,  # = num_attention_heads
        "hidden_act": "silu",
        "max_position_embeddings": 2048,
        "rms_norm_eps": 1e-6,
        "rope_theta": 10000.0,
        "rope_scaling": None,
        "attention_bias": False,
        "tie_word_embeddings": False,
    },
    "phi3": {
        "vocab_size": 32064,
        "hidden_size": 3072,
        "intermediate_size": 8192,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": None,
        "hidden_act": "silu",
        "max_position_embeddings": 4096,
        "original_max_position_embeddings": 4096,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "rope_scaling": None,
        "sliding_window": None,
        "tie_word_embeddings": False,
    },
}
COMPUTE_KEYS = {family: tuple(d) for family, d in OFFICIAL_DEFAULTS.items()}
# keys the installed transformers reads but the official code's classes do not: the official code always computes
# as the second value says, whatever a file holds (a file that says otherwise is refused)
NOT_READ_BY_OFFICIAL = {
    "mlp_bias": (False, "the official LLaMA MLP (transformers 4.40) has no biases"),
    "head_dim": (None, "the official code derives it: hidden_size / num_attention_heads"),
}
COMPUTE_NEUTRAL = {
    "pretraining_tp": "the official lm_head slicing: the same product, split (kept)",
}
CARRIED = {
    "bos_token_id": "special token id",
    "eos_token_id": "special token id",
    "pad_token_id": "special token id",
    "use_cache": "KV cache at inference",
    "initializer_range": "initialisation only",
    "attention_dropout": "training only (0 in every release)",
    "resid_pdrop": "training only",
    "embd_pdrop": "training only",
}
DROPPED = {
    "transformers_version": "bookkeeping",
    "_name_or_path": "read for the chat template (llm.template), then dropped",
    "architectures": "rewritten (LlamaForCausalLM / Phi3ForCausalLM)",
    "model_type": "rewritten (llama / phi3)",
    "torch_dtype": "our config's dtype",
}
# official training flags: kept verbatim for the export; (key, the one value every release has) where another value
# would change what the model computes
ROUND_TRIP = {
    "freeze_mm_mlp_adapter": None,
    "tune_mm_mlp_adapter": None,
    "unfreeze_mm_vision_tower": None,
    "mm_projector_lr": None,
    "mm_vision_sampler_lr": None,
    "mm_vision_tower_lr": None,
    "spmd_debug": None,
    "spmd_fsdp_sharding": None,
    "spmd_mesh": None,
    "use_mm_proj": None,
    "tokenizer_padding_side": None,
    "mm_use_im_patch_token": None,
    "mm_use_im_start_end": False,  # True would wrap each image in start/end tokens (not in any release)
    "mm_patch_merge_type": "flat",
    "image_aspect_ratio": "pad",  # letterbox (docs/official-code.md#letterbox)
}
# RoPE scaling types the official code's transformers understands (llama: 4.40's LlamaRotaryEmbedding variants;
# phi3: the vendored Phi-3 code's long-context variants), and their names in the installed transformers
OFFICIAL_ROPE_TYPES = {"llama": {"linear": "linear", "dynamic": "dynamic"}, "phi3": {"su": "longrope", "yarn": "yarn"}}


@dataclass(frozen=True)
class AuditRow:
    key: str
    official: Any  # the release's value ("(absent)" when the file has none)
    fate: str  # compute / carried / renamed / dropped / round trip / cambrian / unknown
    ours: str  # where it goes and with which value
    note: str = ""


def family_of(cfg: Mapping, where: str = "config.json") -> str:
    mt = cfg.get("model_type")
    if mt not in FAMILY_OF:
        raise ReleaseFormatError(
            f"{where}: model_type {mt!r} is not a released Cambrian family "
            f"(known: {', '.join(sorted(k for k in FAMILY_OF if k.startswith('cambrian')))})"
        )
    return FAMILY_OF[str(mt)]


def _official_value(cfg: Mapping, family: str, key: str):
    if key in cfg:
        return cfg[key]
    if key == "num_key_value_heads":
        return cfg.get("num_attention_heads", OFFICIAL_DEFAULTS[family]["num_attention_heads"])
    return OFFICIAL_DEFAULTS[family][key]


def _rope_scaling_ours(family: str, scaling, where: str) -> dict | None:
    """The release's ``rope_scaling`` in the installed transformers' terms (``rope_type`` plus its parameters)."""
    if scaling is None:
        return None
    if not isinstance(scaling, Mapping):
        raise ReleaseFormatError(f"{where}: rope_scaling must be an object or null, got {scaling!r}")
    kind = scaling.get("type", scaling.get("rope_type"))
    known = OFFICIAL_ROPE_TYPES[family]
    if kind not in known:
        raise ReleaseFormatError(
            f"{where}: rope_scaling type {kind!r} is not one the official {family} code computes "
            f"(known: {', '.join(known)}); refusing to guess how this model's positions are encoded"
        )
    rest = {k: v for k, v in scaling.items() if k not in ("type", "rope_type")}
    return {"rope_type": known[kind], **rest}


def _sliding_window_ours(family: str, window) -> int | None:
    """The official Phi-3 mask lets a query see ``window + 1`` keys (itself and ``window`` before it; transformers
    4.40's ``_prepare_4d_causal_attention_mask``); the installed transformers lets it see ``window`` in all. Ours is
    one larger, so both attend to the same keys (checked against the official code in tests/test_official_parity.py)."""
    if window is None or family != "phi3":
        return window
    return int(window) + 1


def official_sliding_window(family: str, window) -> int | None:
    if window is None or family != "phi3":
        return window
    return int(window) - 1


def _rope_of(built) -> tuple[float, dict | None]:
    """(RoPE base, scaling as ``{"rope_type", ...}`` or None) of a built transformers config, whichever way the
    installed version stores them."""
    params = getattr(built, "rope_parameters", None)
    if isinstance(params, Mapping) and "rope_theta" in params:
        theta = float(params["rope_theta"])
        kind = params.get("rope_type", "default")
        rest = {k: v for k, v in params.items() if k not in ("rope_theta", "rope_type", "partial_rotary_factor")}
        return theta, (None if kind == "default" else {"rope_type": kind, **rest})
    scaling = getattr(built, "rope_scaling", None)
    if scaling:
        scaling = dict(scaling)
        scaling["rope_type"] = scaling.pop("type", scaling.get("rope_type"))
    return float(built.rope_theta), scaling or None


def _official_behaviour(cfg: Mapping, family: str, key: str):
    if key == "head_dim":
        hidden, heads = (_official_value(cfg, family, k) for k in ("hidden_size", "num_attention_heads"))
        return int(hidden) // max(1, int(heads))
    return NOT_READ_BY_OFFICIAL[key][0]


def _partial_rotary(built) -> float:
    """The rotated fraction of each head (the official LLaMA and Phi-3 code rotate whole heads)."""
    params = getattr(built, "rope_parameters", None)
    if isinstance(params, Mapping) and "partial_rotary_factor" in params:
        return float(params["partial_rotary_factor"])
    return float(getattr(built, "partial_rotary_factor", 1.0) or 1.0)


def _built_value(built, family: str, key: str):
    if key == "head_dim":
        return getattr(built, "head_dim", None) or built.hidden_size // built.num_attention_heads
    if key == "rope_theta":
        return _rope_of(built)[0]
    if key == "rope_scaling":
        return _rope_of(built)[1]
    if key == "sliding_window":
        return official_sliding_window(family, getattr(built, "sliding_window", None))
    if key == "mlp_bias":
        return bool(getattr(built, "mlp_bias", False))
    return getattr(built, key, None)


def _same(a, b) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        try:
            return abs(float(a) - float(b)) <= 1e-12 * max(1.0, abs(float(a)))
        except (TypeError, ValueError):
            return False
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return a == b


def classify(key: str, family: str, cambrian_keys) -> str:
    if key in cambrian_keys:
        return "cambrian"
    if key in COMPUTE_KEYS[family] or key in NOT_READ_BY_OFFICIAL:
        return "compute"
    if key in COMPUTE_NEUTRAL or key in CARRIED:
        return "carried"
    if key in DROPPED:
        return "dropped"
    if key in ROUND_TRIP:
        return "round trip"
    return "unknown"


def llm_hf_config(cfg: Mapping, cambrian_keys, where: str = "config.json") -> dict:
    """The LLM's architecture dict for the installed transformers (``config.to_dict()`` of the built config): every
    key of the release carried (see the module docstring), then every compute key checked on the built config."""
    family = family_of(cfg, where)
    for key, value in ROUND_TRIP.items():
        if value is not None and key in cfg and cfg[key] != value:
            raise ReleaseFormatError(
                f"{where}: {key} {cfg[key]!r} is not supported (every released model has {value!r}, the only value "
                "the official inference code implements)"
            )
    hf: dict[str, Any] = {}
    for key, value in cfg.items():
        fate = classify(key, family, cambrian_keys)
        if fate in ("cambrian", "dropped", "round trip"):
            continue
        hf[key] = value
    for key in COMPUTE_KEYS[family]:  # the official default, not the installed transformers' one
        if key not in ("rope_theta", "rope_scaling"):
            hf[key] = _official_value(cfg, family, key)
    for key, (_, why) in NOT_READ_BY_OFFICIAL.items():
        want = _official_behaviour(cfg, family, key)
        if key in cfg and cfg[key] is not None and not _same(cfg[key], want):
            raise ReleaseFormatError(
                f"{where}: {key} {cfg[key]!r}: {why}, so the official code computes with {want!r}; refusing a "
                "config whose own value would change the model"
            )
        hf[key] = want
    hf.pop("rope_scaling", None)
    hf.pop("rope_theta", None)
    rope = {"rope_theta": float(_official_value(cfg, family, "rope_theta"))}
    scaling = _rope_scaling_ours(family, cfg.get("rope_scaling"), where)
    rope.update(scaling or {"rope_type": "default"})
    if family == "phi3":
        hf["sliding_window"] = _sliding_window_ours(family, hf["sliding_window"])
    hf["model_type"] = family
    hf["architectures"] = [{"llama": "LlamaForCausalLM", "phi3": "Phi3ForCausalLM"}[family]]
    built = _build(family, hf, rope, where)
    check_carried(cfg, built, where)
    out = built.to_dict()
    for k in ("transformers_version", "_name_or_path"):
        out.pop(k, None)
    return out


def _build(family: str, hf: dict, rope: dict, where: str):
    """The installed transformers' config (transformers 5: RoPE settings in one ``rope_parameters`` dict; the rest
    of this module reads both layouts, so a check never passes by reading a key that is not used)."""
    from transformers import AutoConfig

    from ..buildable import library_errors

    cls = type(AutoConfig.for_model(family))
    kwargs = {k: v for k, v in hf.items() if k != "model_type"}
    try:
        return cls(**kwargs, rope_parameters=rope)
    except (ValueError, *library_errors()) as e:  # transformers' typed configs raise StrictDataclass errors
        raise ReleaseFormatError(f"{where}: the LLM settings are not a valid {family} config ({e})") from None


def check_carried(cfg: Mapping, built, where: str = "config.json") -> None:
    """Every compute key of the release, read back from the built config, equals the official value."""
    family = family_of(cfg, where)
    if _partial_rotary(built) != 1.0:
        raise ReleaseFormatError(
            f"{where}: the installed transformers would rotate {_partial_rotary(built)} of each head; the official "
            "code rotates whole heads"
        )
    for key in (*COMPUTE_KEYS[family], *NOT_READ_BY_OFFICIAL):
        if key in NOT_READ_BY_OFFICIAL:
            want = _official_behaviour(cfg, family, key)
        else:
            want = _official_value(cfg, family, key)
        if key == "rope_scaling":
            want = _rope_scaling_ours(family, want, where)
        got = _built_value(built, family, key)
        if not _same(want, got):
            raise ReleaseFormatError(
                f"{where}: {key} {want!r} would become {got!r} in the installed transformers' {family} config; "
                "refusing to load a model that would compute something else than the official code"
            )


def official_llm_keys(hf: Mapping | Any) -> dict:
    """The LLM keys of a released-format ``config.json`` for our LLM (an architecture dict or a built transformers
    config): what the official code (transformers 4.40, or its vendored Phi-3) must read to compute the same thing.
    Settings it cannot express are refused."""
    if isinstance(hf, Mapping):
        from ..llm.loader import config_from_dict

        built = config_from_dict(dict(hf))
    else:
        built = hf
    family = FAMILY_OF.get(getattr(built, "model_type", None))
    if family is None:
        raise ReleaseFormatError(
            f"LLM model_type {getattr(built, 'model_type', None)!r} has no released-format equivalent "
            "(known: llama, phi3)"
        )
    heads = built.num_attention_heads
    head_dim = getattr(built, "head_dim", None)
    if head_dim is not None and head_dim * heads != built.hidden_size:
        raise ReleaseFormatError(
            f"head_dim {head_dim} x {heads} heads != hidden_size {built.hidden_size}: the official code derives "
            "head_dim = hidden_size / num_attention_heads and cannot express this LLM"
        )
    if getattr(built, "mlp_bias", False):
        raise ReleaseFormatError("mlp_bias=true: the official code's LLaMA MLP (transformers 4.40) has no biases")
    if _partial_rotary(built) != 1.0:
        raise ReleaseFormatError(
            f"partial_rotary_factor {_partial_rotary(built)}: the official code rotates whole heads and cannot "
            "express this LLM"
        )
    theta, scaling = _rope_of(built)
    out: dict[str, Any] = {}
    for key in COMPUTE_KEYS[family]:
        if key in ("rope_theta", "rope_scaling"):
            continue
        out[key] = _built_value(built, family, key)
    out["rope_theta"] = theta
    if scaling is None:
        out["rope_scaling"] = None
    else:
        back = {ours: theirs for theirs, ours in OFFICIAL_ROPE_TYPES[family].items()}
        kind = scaling["rope_type"]
        if kind not in back:
            raise ReleaseFormatError(
                f"RoPE scaling {kind!r} cannot be written for the official {family} code (it knows "
                f"{', '.join(OFFICIAL_ROPE_TYPES[family].values())}); the export would compute differently"
            )
        out["rope_scaling"] = {"type": back[kind], **{k: v for k, v in scaling.items() if k != "rope_type"}}
    for key in ("bos_token_id", "eos_token_id", "pad_token_id", "initializer_range", "use_cache"):
        if getattr(built, key, None) is not None:
            out[key] = getattr(built, key)
    if family == "llama":
        out["pretraining_tp"] = getattr(built, "pretraining_tp", 1) or 1
        out["attention_dropout"] = getattr(built, "attention_dropout", 0.0)
    else:
        for key in ("attention_dropout", "resid_pdrop", "embd_pdrop"):
            out[key] = getattr(built, key, 0.0)
    if family == "llama":
        out.pop("sliding_window", None)
    return out


def audit(cfg: Mapping, cambrian_keys, where: str = "config.json") -> list[AuditRow]:
    """What each key of a released config becomes (the table of docs/release-keys.md)."""
    family = family_of(cfg, where)
    hf = llm_hf_config(cfg, cambrian_keys, where)
    from ..llm.loader import config_from_dict

    built = config_from_dict(hf)
    rows = []
    keys = list(dict.fromkeys([*sorted(cfg), *COMPUTE_KEYS[family], *NOT_READ_BY_OFFICIAL]))
    for key in keys:
        official = cfg[key] if key in cfg else "(absent)"
        fate = classify(key, family, cambrian_keys)
        note = ""
        if fate == "compute":
            value = _built_value(built, family, key)
            if key in ("rope_theta", "rope_scaling"):
                fate, ours = "renamed", f"rope_parameters: {built.to_dict().get('rope_parameters', value)}"
            elif key == "sliding_window" and value is not None:
                ours = f"sliding_window: {built.sliding_window}"
                note = "official window w sees w + 1 keys; transformers 5's w sees w"
            else:
                ours = f"{key}: {value}"
            if key in NOT_READ_BY_OFFICIAL:
                note = NOT_READ_BY_OFFICIAL[key][1]
            if key not in cfg:
                fate = "defaulted"
                note = note or "the official code's default"
        elif fate == "carried":
            ours = f"{key}: {hf.get(key, '(not used)')}"
            note = COMPUTE_NEUTRAL.get(key) or CARRIED.get(key, "")
        elif fate == "dropped":
            ours, note = "-", DROPPED[key]
            if key == "torch_dtype":
                fate, ours = "renamed", f"dtype: {cfg[key]}"
        elif fate == "round trip":
            ours, note = "kept for the export", "official training flag"
            if ROUND_TRIP[key] is not None:
                note = f"must be {ROUND_TRIP[key]!r} (checked)"
        elif fate == "cambrian":
            ours, note = "encoders / connector / llm.max_length", "see config.py"
        else:
            ours = f"{key}: {hf.get(key)}"
            note = "not a known key: carried as it is"
        rows.append(AuditRow(key, official, fate, ours, note))
    return rows


def _cell(v) -> str:
    text = "null" if v is None else str(v)
    return text.replace("|", "\\|")


def audit_markdown(configs: Mapping[str, Mapping], cambrian_keys) -> str:
    """``docs/release-keys.md``: one table per released family (its LLM keys; the Cambrian keys are in config.py's
    table), written by ``scripts/official_parity/key_audit.py`` and kept current by a test."""
    out = [
        "# The LLM keys of the released configs, key by key",
        "",
        "Generated by `scripts/official_parity/key_audit.py` from `tests/fixtures/official_configs/` (a test keeps it",
        "current). For each released family: every LLM key of its `config.json`, its value there, its fate in our",
        "loader (`cambrian/models/official/llm_keys.py`) and what it becomes in the transformers config we build",
        "(transformers 5 stores RoPE settings in `rope_parameters`). *compute* keys are read back from the built config",
        "and compared with the official value; a difference refuses the load. The Cambrian keys (towers, SVA, in-LLM",
        "layout) map onto our encoders and connector (`cambrian/models/official/config.py`); the official training",
        "flags are kept for the export only.",
        "",
        "Provenance: `cambrian-8b.json` is the published `nyu-visionx/cambrian-8b` config; the 13B, 34B and Phi-3",
        "files are reconstructed by `scripts/official_parity/family_configs.py` (the official config class of",
        "transformers 4.40.1 built from the base LLM's published architecture, plus the Cambrian keys of that size's",
        "official fine-tuning script; the Phi-3 3B's in-LLM layout is not published, so it is written connector-only).",
    ]
    for name, cfg in configs.items():
        rows = [r for r in audit(cfg, cambrian_keys, where=name) if r.fate not in ("cambrian", "round trip")]
        out += ["", f"## {name}", "", "| key | official value | fate | in our config | note |", "|---|---|---|---|---|"]
        for r in rows:
            out.append(f"| `{r.key}` | {_cell(r.official)} | {r.fate} | {_cell(r.ours)} | {_cell(r.note)} |")
    return "\n".join(out) + "\n"
