"""The released Cambrian-1 ``config.json`` <-> our ``CambrianConfig`` (docs/official-code.md#towers, docs/official-code.md#release).

A released config is a transformers ``LlamaConfig`` (``model_type`` ``cambrian_llama``; ``cambrian_phi3`` for the
3B) with the Cambrian keys added. Mapping:

| official key                                   | ours                                                        |
|------------------------------------------------|-------------------------------------------------------------|
| ``mm_vision_tower_aux_list[k]``                | ``encoders[k]``: the preset of ``OFFICIAL_TOWERS[name]``    |
| ``mm_vision_tower_aux_token_len_list[k]`` (N)  | ``encoders[k].grid_size = sqrt(N)`` when the tower's own grid differs (the official ``-interp{N}``) |
| ``mm_vision_select_layer`` (-2)                | ``encoders[k].select_layer`` for towers that read it (CLIP); SigLIP / DINOv2 / ConvNeXt ignore it |
| ``mm_vision_select_feature`` ("patch")         | CLS dropped (``drop_cls``); "cls_patch" cannot form a grid: refused |
| ``mm_projector_type`` ("sva")                  | ``connector.type``                                          |
| ``vision_hidden_size``                         | ``connector.hidden_size`` (d)                               |
| ``image_token_len``                            | ``connector.image_token_len``                               |
| ``query_num_list`` / ``num_query_group``       | ``connector.query_num_list`` (G = its length)               |
| ``connector_depth``                            | ``connector.depth``                                         |
| ``connector_only`` / ``num_of_vision_sampler_layers`` | ``connector.num_llm_layers`` (0 when connector_only) |
| ``start_/stride_of_vision_sampler_layers``     | ``connector.llm_start`` / ``connector.llm_stride``          |
| ``tokenizer_model_max_length``                 | ``llm.max_length``                                          |
| the LLaMA / Phi-3 keys                         | ``llm.hf_config`` (``model_type`` llama / phi3)             |
| model family (``_name_or_path``, vocabulary)   | ``llm.template``: llama_3 (8B), vicuna_v1 (13B), chatml (34B), phi3 (3B) |
| ``image_position`` (91 for the 8B)             | not used: our model finds the image from the token ids; kept for the round trip and checked by ``cambrian info`` |

The released file itself is kept in ``connector.options["official"]["config"]`` so that converting back writes the
same ``config.json`` (its mapped keys re-derived from our config, so a changed model writes its new values).
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ...config import (
    MAX_CONNECTOR_DEPTH,
    MAX_LAYERS,
    MAX_QUERY_GROUPS,
    CambrianConfig,
    ConnectorConfig,
    EncoderConfig,
    LLMConfig,
    architecture_counts_problem,
)
from ...registry import Registry
from ...typed import ConfigError
from .errors import ReleaseFormatError
from .llm_keys import FAMILY_OF, official_llm_keys
from .llm_keys import llm_hf_config as _llm_hf_config

# keys of the released config that our config represents (everything else is carried verbatim)
CAMBRIAN_KEYS = (
    "mm_vision_tower_aux_list",
    "mm_vision_tower_aux_token_len_list",
    "vision_tower_aux_list",
    "vision_tower_aux_token_len_list",
    "mm_vision_select_layer",
    "mm_vision_select_feature",
    "mm_projector_type",
    "vision_hidden_size",
    "image_token_len",
    "query_num_list",
    "num_query_group",
    "connector_depth",
    "connector_only",
    "num_of_vision_sampler_layers",
    "start_of_vision_sampler_layers",
    "stride_of_vision_sampler_layers",
    "tokenizer_model_max_length",
    "image_position",
    "conv_mode",
)
OFFICIAL_KEY = "official"  # connector.options[...]: the released config's keys we do not map


# ---- towers ------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class OfficialTower:
    """How one official tower name maps onto our encoder presets."""

    preset: str  # our encoder preset (cambrian.presets.encoders)
    reads_select_layer: bool = False  # the official tower honours mm_vision_select_layer (CLIP does; SigLIP,
    # DINOv2 and ConvNeXt take their final features whatever it says, docs/official-code.md#towers)
    note: str = ""


OFFICIAL_TOWERS: Registry[OfficialTower] = Registry("official tower name")
for _name, _tower in {
    "siglip/CLIP-ViT-SO400M-14-384": OfficialTower("siglip-so400m-384", note="timm trunk.forward_features"),
    "openai/clip-vit-large-patch14-336": OfficialTower("clip-vit-l-14-336", reads_select_layer=True),
    "openai/clip-vit-large-patch14": OfficialTower("clip-vit-l-14-224", reads_select_layer=True),
    "facebook/dinov2-giant-res378": OfficialTower("dinov2-giant-378", note="last_hidden_state, 27x27 -> 24x24"),
    "clip-convnext-XXL-multi-stage": OfficialTower("clip-convnext-xxl-1024", note="stem + 4 stages at 96x96"),
    "clip-convnext-L": OfficialTower("clip-convnext-l-1024", note="last stage"),
}.items():
    OFFICIAL_TOWERS.register(_name, _tower)


def official_tower_name(enc: EncoderConfig) -> str | None:
    """The official name of one of our towers: recorded in ``options["official_name"]`` when it came from a
    released config, else the table's name for its preset."""
    name = enc.options.get("official_name")
    if name:
        return str(name)
    for n, t in OFFICIAL_TOWERS.items():
        if t.preset == enc.id:
            return n
    return None


TowerOverride = "EncoderConfig | str"


def _tower_config(
    name: str,
    token_len: int,
    select_layer: int | None,
    select_feature: str,
    override: EncoderConfig | str | None,
    where: str,
) -> EncoderConfig:
    from ...presets.encoders import expand_encoder_entry

    try:
        spec = OFFICIAL_TOWERS.get(name) if name in OFFICIAL_TOWERS else None
    except KeyError:
        spec = None
    if override is not None:
        enc = copy.deepcopy(override) if isinstance(override, EncoderConfig) else expand_encoder_entry(override)
    elif spec is not None:
        enc = expand_encoder_entry(spec.preset)
    else:
        raise ReleaseFormatError(
            f"{where}: tower {name!r} has no mapping to our encoder presets (known: {', '.join(OFFICIAL_TOWERS.names())}); "
            f"pass a mapping for it (cambrian convert/info --tower '{name}=PRESET[@LOCAL_DIR]')"
        )
    side = math.isqrt(int(token_len))
    if side * side != int(token_len) or side <= 0:
        raise ReleaseFormatError(
            f"{where}: mm_vision_tower_aux_token_len_list entry {token_len} for {name!r} is not a square"
        )
    if enc.out_grid != side:  # the official "-interp{N}": the tower's tokens are resized to N
        enc.grid_size = side
    if select_feature not in ("patch",):
        raise ReleaseFormatError(
            f"{where}: mm_vision_select_feature {select_feature!r} is not supported (only 'patch': "
            "our towers output a square grid without the CLS token)"
        )
    reads = spec.reads_select_layer if spec is not None else enc.select_layer is not None
    if reads and select_layer is not None:
        enc.select_layer = int(select_layer)
    enc.options = {**enc.options, "official_name": name}
    return enc


# ---- model families -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Family:
    """A released model family: how to recognise it, its chat template and the official image position."""

    template: str
    model_type: str  # official model_type
    name_pattern: str  # regex on the config's ``_name_or_path``
    vocab_size: int | None
    image_position: int | None  # the released training scripts' --image_position (docs/official-code.md#in-llm)
    llm_model_type: str  # transformers model_type of the LLM part


FAMILIES: Registry[Family] = Registry("model family")
for _f in (
    Family("llama_3", "cambrian_llama", r"llama-?3", 128256, 91, "llama"),  # cambrian-8b
    Family("vicuna_v1", "cambrian_llama", r"vicuna", 32000, 35, "llama"),  # cambrian-13b
    Family("chatml", "cambrian_llama", r"yi-34b|hermes-2-yi", 64000, 87, "llama"),  # cambrian-34b
    Family("phi3", "cambrian_phi3", r"phi-?3", 32064, None, "phi3"),  # cambrian-phi3-3b
):
    FAMILIES.register(_f.template, _f)
LLM_MODEL_TYPES = FAMILY_OF
OFFICIAL_MODEL_TYPES = {"llama": "cambrian_llama", "phi3": "cambrian_phi3"}


def detect_template(cfg: Mapping, where: str = "config.json") -> str:
    """The chat template of a released config: ``conv_mode`` when present (written by our converter), else the
    family whose ``_name_or_path`` pattern matches, else the one with this model_type and vocabulary size."""
    from ..llm.templates import TEMPLATES

    conv = cfg.get("conv_mode")
    if conv:
        return TEMPLATES.get(str(conv)).name
    name = str(cfg.get("_name_or_path") or "").lower()
    mt = cfg.get("model_type")
    for _, fam in FAMILIES.items():
        if fam.model_type == mt and re.search(fam.name_pattern, name):
            return fam.template
    for _, fam in FAMILIES.items():
        if fam.model_type == mt and fam.vocab_size == cfg.get("vocab_size"):
            return fam.template
    raise ReleaseFormatError(
        f"{where}: cannot tell the chat template of this model (model_type {mt!r}, _name_or_path "
        f"{name!r}, vocab_size {cfg.get('vocab_size')}); pass --template (one of "
        f"{', '.join(FAMILIES.names())})"
    )


# ---- detection and mapping ------------------------------------------------------------------------------------
def is_official_config(cfg: Mapping) -> bool:
    """A released-format config: a Cambrian model_type, or the official tower-list key."""
    return isinstance(cfg, Mapping) and (
        str(cfg.get("model_type", "")).startswith("cambrian_") or "mm_vision_tower_aux_list" in cfg
    )


def _need(cfg: Mapping, key: str, kind, where: str):
    if key not in cfg:
        raise ReleaseFormatError(f"{where}: missing key {key!r}")
    v = cfg[key]
    if kind is int and isinstance(v, bool) or not isinstance(v, kind):
        raise ReleaseFormatError(f"{where}: {key!r} must be {getattr(kind, '__name__', kind)}, got {v!r}")
    return v


# the released keys that decide how many modules are built, and their limits (cambrian.config)
_COUNT_LIMITS = {
    "connector_depth": MAX_CONNECTOR_DEPTH,
    "num_of_vision_sampler_layers": MAX_LAYERS,
    "start_of_vision_sampler_layers": MAX_LAYERS,
    "stride_of_vision_sampler_layers": MAX_LAYERS,
    "num_query_group": MAX_QUERY_GROUPS,
}


# the LLM's sizes: whole numbers in [1, 2^24] (None: the official default) before any of them is computed with
_LLM_SIZES = (
    "hidden_size",
    "intermediate_size",
    "num_attention_heads",
    "num_key_value_heads",
    "vocab_size",
    "max_position_embeddings",
    "head_dim",
)


def check_counts(cfg: Mapping, where: str) -> None:
    """Layer, expert and SVA counts within the limits of ``cambrian.config``, and the LLM's sizes whole numbers,
    before anything is built or computed with."""
    for key in _LLM_SIZES:
        v = cfg.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 1 << 24):
            raise ReleaseFormatError(f"{where}: {key!r} must be a whole number from 1 to {1 << 24}, got {v!r}")
    for key, limit in _COUNT_LIMITS.items():
        v = cfg.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= limit):
            raise ReleaseFormatError(f"{where}: {key!r} must be a whole number from 0 to {limit}, got {v!r}")
    for key in ("query_num_list", "mm_vision_tower_aux_list", "mm_vision_tower_aux_token_len_list"):
        if isinstance(cfg.get(key), list) and len(cfg[key]) > MAX_QUERY_GROUPS:
            raise ReleaseFormatError(f"{where}: {key!r} has {len(cfg[key])} entries, more than {MAX_QUERY_GROUPS}")
    problem = architecture_counts_problem(dict(cfg))
    if problem:
        raise ReleaseFormatError(f"{where}: {problem}")


def _whole(cfg: Mapping, key: str, default: int, where: str) -> int:
    """``cfg[key]`` as a whole number (``default`` when absent or null)."""
    v = cfg.get(key)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, int):
        raise ReleaseFormatError(f"{where}: {key!r} must be a whole number, got {v!r}")
    return v


def official_to_config(
    cfg: Mapping,
    towers: Mapping[str, EncoderConfig | str] | None = None,
    template: str | None = None,
    source: str | None = None,
    where: str = "config.json",
    tower_weights: Callable[[str], str | None] | None = None,
) -> CambrianConfig:
    """Map a released ``config.json`` (a dict) to our ``CambrianConfig``.

    ``towers``: official tower name -> an ``EncoderConfig`` or preset entry to use instead of the table's preset
    (other weights, a local copy, tiny towers in tests). ``source``: where the LLM weights and tokenizer live
    (the checkpoint directory or hub id). ``template`` overrides the detected chat template."""
    try:
        return _official_to_config(cfg, towers, template, source, where, tower_weights)
    except ConfigError as e:  # a value our typed config refuses: name the file
        raise ReleaseFormatError(f"{where}: {e}") from None


def _official_to_config(cfg, towers, template, source, where, tower_weights) -> CambrianConfig:
    cfg = dict(cfg)
    check_counts(cfg, where)
    towers = dict(towers or {})
    names = cfg.get("mm_vision_tower_aux_list", cfg.get("vision_tower_aux_list"))
    lens = cfg.get("mm_vision_tower_aux_token_len_list", cfg.get("vision_tower_aux_token_len_list"))
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise ReleaseFormatError(f"{where}: 'mm_vision_tower_aux_list' must be a non-empty list of tower names")
    if not isinstance(lens, list) or len(lens) != len(names) or not all(isinstance(n, int) for n in lens):
        raise ReleaseFormatError(
            f"{where}: 'mm_vision_tower_aux_token_len_list' must hold one int per tower ({len(names)} towers)"
        )
    unknown_overrides = set(towers) - set(names)
    if unknown_overrides:
        raise ReleaseFormatError(
            f"{where}: tower mapping for {sorted(unknown_overrides)} but the model's towers are {names}"
        )
    ptype = _need(cfg, "mm_projector_type", str, where)
    if ptype != "sva":
        raise ReleaseFormatError(
            f"{where}: mm_projector_type {ptype!r} is not supported by the released-format loader "
            "(only 'sva', the projector of every released Cambrian-1 model)"
        )
    select_layer = _whole(cfg, "mm_vision_select_layer", -2, where)
    select_feature = str(cfg.get("mm_vision_select_feature", "patch"))
    encoders = [_tower_config(n, t, select_layer, select_feature, towers.get(n), where) for n, t in zip(names, lens)]
    if tower_weights is not None:
        for e, n in zip(encoders, names):
            local = tower_weights(n)
            if local:
                e.name_or_path = local

    queries = _need(cfg, "query_num_list", list, where)
    if not all(isinstance(q, int) and not isinstance(q, bool) for q in queries):
        raise ReleaseFormatError(f"{where}: 'query_num_list' must be a list of whole numbers, got {queries!r}")
    if "num_query_group" in cfg and cfg["num_query_group"] != len(queries):
        raise ReleaseFormatError(
            f"{where}: num_query_group {cfg['num_query_group']} but query_num_list has {len(queries)} entries"
        )
    connector_only = bool(cfg.get("connector_only", True))
    conn = ConnectorConfig(
        type="sva",
        hidden_size=_need(cfg, "vision_hidden_size", int, where),
        image_token_len=_need(cfg, "image_token_len", int, where),
        query_num_list=[int(q) for q in queries],
        depth=_need(cfg, "connector_depth", int, where),
        num_heads=16,  # hard-coded in the official SVA
        num_llm_layers=0 if connector_only else int(_need(cfg, "num_of_vision_sampler_layers", int, where)),
        llm_start=_whole(cfg, "start_of_vision_sampler_layers", 0, where),
        llm_stride=_whole(cfg, "stride_of_vision_sampler_layers", 0, where) or 1,
        newline=True,
        unpad=True,
        options={
            OFFICIAL_KEY: {
                "image_position": cfg.get("image_position"),
                "connector_only": connector_only,
                "num_of_vision_sampler_layers": cfg.get("num_of_vision_sampler_layers"),
                "config": cfg,
            }
        },
    )
    _need(cfg, "model_type", str, where)
    hf = llm_hf_config(cfg, where)
    tmpl = template or detect_template(cfg, where)
    llm = LLMConfig(
        backend="hf",
        name_or_path=source,
        hf_config=hf,
        template=tmpl,
        max_length=_whole(cfg, "tokenizer_model_max_length", 0, where) or 2048,
        tokenizer=source,
    )
    dtype = str(cfg.get("torch_dtype") or "float32")
    name = (source or "cambrian").rstrip("/").split("/")[-1] or "cambrian"
    return CambrianConfig(name=name, encoders=encoders, connector=conn, llm=llm, dtype=dtype)


def llm_hf_config(cfg: Mapping, where: str = "config.json") -> dict:
    """The LLM's own architecture dict (the released config without the Cambrian keys, as a plain llama / phi3 for the
    installed transformers), every key that changes the computation carried and checked (``llm_keys.py``)."""
    return _llm_hf_config(cfg, CAMBRIAN_KEYS, where)


def config_to_official(
    config: CambrianConfig,
    image_position: int | None = None,
    tower_names: Mapping[int, str] | None = None,
    llm_hf: Mapping | None = None,
) -> dict:
    """Our ``CambrianConfig`` -> a released-format ``config.json`` dict (what the official loader and the lmms-eval /
    VLMEvalKit Cambrian adapters read). A config that came from a released file is written back as it was (the
    mapped keys re-derived from ours, so a changed model writes its new values); a model trained here gets the
    LLM's architecture keys, the Cambrian keys and the release's defaults, plus ``conv_mode`` (ours: the official
    code ignores it, our loader reads it to pick the chat template)."""
    c = config.connector
    if c.type != "sva":
        raise ReleaseFormatError(f"connector type {c.type!r} has no released-format equivalent (only 'sva')")
    if c.num_heads != 16:
        raise ReleaseFormatError(f"connector.num_heads={c.num_heads}: the official SVA hard-codes 16 heads")
    if not c.newline or not c.unpad:
        raise ReleaseFormatError(
            "the official model always unpads the token grid and appends newline embeddings "
            "(connector.newline and connector.unpad must be true)"
        )
    official = dict(c.options.get(OFFICIAL_KEY) or {})
    original = official.get("config")
    hf = dict(llm_hf if llm_hf is not None else (config.llm.hf_config or {}))
    mt = hf.get("model_type")
    if mt not in OFFICIAL_MODEL_TYPES:
        raise ReleaseFormatError(
            f"LLM model_type {mt!r} has no released-format equivalent (known: {', '.join(OFFICIAL_MODEL_TYPES)})"
        )
    names, lens, select = [], [], None
    for k, e in enumerate(config.encoders):
        name = (tower_names or {}).get(k) or official_tower_name(e)
        if not name:
            raise ReleaseFormatError(
                f"encoder {k} ({e.id!r}) has no official tower name; known presets: "
                + ", ".join(f"{t.preset} -> {n}" for n, t in OFFICIAL_TOWERS.items())
            )
        names.append(name)
        lens.append(e.token_len)
        spec = OFFICIAL_TOWERS.get(name) if name in OFFICIAL_TOWERS else None
        reads = spec.reads_select_layer if spec is not None else e.select_layer is not None
        if reads and e.select_layer is not None:
            if select is not None and select != e.select_layer:
                raise ReleaseFormatError(
                    f"towers select different layers ({select} and {e.select_layer}); the "
                    "released format has one mm_vision_select_layer"
                )
            select = e.select_layer
    if original:
        out = dict(original)
    else:
        out = {}
        out.update(
            {
                "mm_use_im_start_end": False,
                "mm_use_im_patch_token": False,
                "mm_patch_merge_type": "flat",
                "image_aspect_ratio": "pad",
                "tokenizer_padding_side": "right",
                "use_mm_proj": True,
                "torch_dtype": config.dtype,
                "conv_mode": config.llm.template,
                "vision_tower_aux_token_len_list": lens,
            }
        )
        if config.llm.name_or_path:
            out["_name_or_path"] = config.llm.name_or_path
    # the LLM keys always re-derived from the LLM itself, in the official code's terms (RoPE base and scaling as
    # rope_theta / rope_scaling, the Phi-3 window, ...): an exported model computes what ours computes
    out.update(official_llm_keys(hf))
    fam = FAMILIES.get(config.llm.template) if config.llm.template in FAMILIES else None
    if image_position is None:
        image_position = official.get("image_position")
    if image_position is None and fam is not None:
        image_position = fam.image_position
    out.update(
        {
            "architectures": ["CambrianLlamaForCausalLM" if mt == "llama" else "CambrianPhi3ForCausalLM"],
            "model_type": OFFICIAL_MODEL_TYPES[mt],
            "mm_vision_tower_aux_list": names,
            "mm_vision_tower_aux_token_len_list": lens,
            "mm_vision_select_layer": select if select is not None else out.get("mm_vision_select_layer", -2),
            "mm_vision_select_feature": "patch",
            "mm_projector_type": "sva",
            "vision_hidden_size": c.hidden_size,
            "image_token_len": c.image_token_len,
            "num_query_group": len(c.query_num_list),
            "query_num_list": list(c.query_num_list),
            "connector_depth": c.depth,
            "connector_only": c.num_llm_layers == 0,
            "num_of_vision_sampler_layers": c.num_llm_layers
            if c.num_llm_layers
            else (official.get("num_of_vision_sampler_layers") or 0),
            "start_of_vision_sampler_layers": c.llm_start,
            "stride_of_vision_sampler_layers": c.llm_stride,
            "tokenizer_model_max_length": config.llm.max_length,
            "image_position": image_position,
        }
    )
    if "vision_tower_aux_token_len_list" in out:
        out["vision_tower_aux_token_len_list"] = lens
    return out


def mapping_rows(config: CambrianConfig) -> list[tuple[str, str, str]]:
    """(official tower name, our preset, grid / features) per tower, for ``cambrian info``."""
    rows = []
    for e in config.encoders:
        feat = f"{e.image_size}px -> {e.out_grid}x{e.out_grid}x{e.hidden_size}"
        if e.select_layer is not None:
            feat += f", hidden_states[{e.select_layer}]"
        rows.append((official_tower_name(e) or "?", e.id, feat))
    return rows
