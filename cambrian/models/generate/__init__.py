"""Generation: the contract callers use (:class:`GenerativeVLM`) and the decode engine behind it, one idea per
module:

- ``contract.py``: :class:`GenerativeVLM`, :class:`GenerationEvent`, :class:`Prefill`, :class:`DecoderState`;
- ``sampling.py``: :class:`SamplingParams` (how a row picks its next token);
- ``logits.py``: logit processing per row, :class:`RowProcessor` (per-request constraints such as a grammar mask);
- ``detok.py``: incremental detokenisation and stop strings;
- ``decode.py``: :class:`DecodeRun`, the decode loop with continuous batching;
- ``kv_cache.py``: :class:`KVCacheState`, the decoder state of an HF causal LM;
- ``scoring.py``: option likelihood (multiple choice without generating);
- ``mixin.py``: :class:`GenerationMixin`, the caller side built on a model's ``prefill``.

Callers import from this package (``from cambrian.models.generate import SamplingParams, GenerativeVLM``).
"""

from .contract import (
    FINISH_CANCELLED,
    FINISH_LENGTH,
    FINISH_STOP,
    DecoderState,
    GenerationEvent,
    GenerativeVLM,
    NotGenerativeError,
    Prefill,
    PromptIds,
    check_generative,
)
from .decode import DecodeRun
from .kv_cache import KVCacheState
from .logits import RowProcessor
from .mixin import GenerationMixin
from .sampling import SamplingParams, resolve_sampling
from .scoring import option_logprobs

__all__ = [
    "FINISH_CANCELLED",
    "FINISH_LENGTH",
    "FINISH_STOP",
    "DecodeRun",
    "DecoderState",
    "GenerationEvent",
    "GenerationMixin",
    "GenerativeVLM",
    "KVCacheState",
    "NotGenerativeError",
    "Prefill",
    "PromptIds",
    "RowProcessor",
    "SamplingParams",
    "check_generative",
    "option_logprobs",
    "resolve_sampling",
]
