"""The generation contract: what the server, chat, the demo, evaluation and search use to make a model answer, and
what a model provides so that the decode engine of this package can run it.

Two sides:

- **What callers use** (:class:`GenerativeVLM`): ``prompt_ids`` (a prompt as token ids, one ``IMAGE_TOKEN_INDEX``
  per image), ``visual_token_count`` (positions one image takes), ``context_length`` (positions a prompt plus its
  answer may take), ``generate_events`` (the event stream of a decode run, :class:`GenerationEvent`), and on top of
  it ``generate_text`` / ``stream_text`` / ``score_options`` / ``next_token_logits``.
- **What a model implements** for the engine: ``prefill(texts, images, system, use_cache) -> Prefill`` (the prompts
  through the model, images spliced: next-token logits and a :class:`DecoderState`) and ``stop_token_ids``. A model
  that inherits :class:`~cambrian.models.generate.mixin.GenerationMixin` gets every caller-side member from these
  (``CambrianModel`` and the test suite's second implementation both do).

A :class:`DecoderState` is the model's decoder state for a batch of rows (for an HF causal LM: the KV cache, the
attention mask and the positions, :class:`~cambrian.models.generate.kv_cache.KVCacheState`). The decode loop only
feeds it one token per row (``step``), drops or repeats rows (``select``) and appends the rows of another state
(``merge``, continuous batching); it never looks inside.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch

from ...constants import IMAGE_TOKEN_INDEX
from ..vlm import require_members

FINISH_STOP = "stop"  # end-of-turn token, a stop string, or a row processor's completed constraint
FINISH_LENGTH = "length"  # max_new_tokens or the model's context length reached
FINISH_CANCELLED = "cancelled"  # DecodeRun.cancel(row) (a client went away)


class PromptIds(tuple):
    """A prompt tokenised already (what ``prompt_ids`` returned): every member that takes a prompt takes this too and
    does not tokenise again (the server tokenises off its generation thread). ``prompt_ids(PromptIds)`` returns it."""

    @property
    def num_images(self) -> int:
        return sum(1 for t in self if t == IMAGE_TOKEN_INDEX)


@dataclass
class GenerationEvent:
    """One row's progress in a decode run: a text ``delta`` (streaming rows), or its end (``finish_reason`` set;
    ``text`` is the whole answer and ``delta`` its not yet streamed rest). Token counts: prompt positions (images
    included) and generated tokens (stop token excluded). ``row == -1`` is a step boundary (see :attr:`step`)."""

    row: int
    delta: str = ""
    finish_reason: str | None = None
    text: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def finished(self) -> bool:
        return self.finish_reason is not None

    @property
    def step(self) -> bool:
        """A step boundary (only with ``step_events=True``): other prefilled runs may ``join`` now."""
        return self.row < 0


@runtime_checkable
class DecoderState(Protocol):
    """A model's decoder state for a batch of rows, after the prefill and each decode step."""

    @property
    def can_select(self) -> bool:
        """Whether :meth:`select` works (rows that cannot be dropped keep decoding padding)."""

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        """Feed one token per row (``[B]`` long); returns the next-token logits ``[B, V]``."""

    def select(self, rows: torch.Tensor) -> None:
        """Keep these rows, in this order (``[B']`` long; a row may repeat: option scoring forks a prompt)."""

    def can_merge(self, other: DecoderState | None = None) -> bool:
        """Whether rows of ``other`` (or of any state like this one, when None) can be appended by :meth:`merge`."""

    def merge(self, other: DecoderState) -> None:
        """Append the rows of ``other`` (prefilled, not stepped by anyone else) after this state's rows."""


@dataclass
class Prefill:
    """What a model's ``prefill`` returns: ``logits [B, V]`` at each prompt's last position, the decoder ``state``
    (None without a cache), each prompt's token ids (``IMAGE_TOKEN_INDEX`` per image) and the positions it takes
    (images included)."""

    logits: torch.Tensor
    state: DecoderState | None
    prompt_ids: list[list[int]]
    prompt_tokens: list[int]


GENERATIVE_MEMBERS = (
    "tokenizer",
    "context_length",
    "stop_token_ids",
    "prompt_ids",
    "visual_token_count",
    "prefill",
    "generate_events",
    "generate_text",
    "stream_text",
    "score_options",
    "next_token_logits",
)


@runtime_checkable
class GenerativeVLM(Protocol):
    """Members (all required; :func:`check_generative` lists the missing ones). ``texts[i]`` is a user turn (a
    string) or a conversation (``[{"role", "content"}, ...]`` ending with a user turn) with one ``<image>`` tag per
    image of ``images[i]``.

    - ``tokenizer``: ``decode(ids, skip_special_tokens=True)``, ``pad_token_id``.
    - ``context_length``: positions a prompt plus its answer may take (images included), or None (unbounded).
    - ``stop_token_ids``: the ids that end an answer (end of turn / end of text).
    - ``prompt_ids(text, system=None) -> list[int]``: the prompt as the model sees it, chat template and generation
      prompt included, one ``IMAGE_TOKEN_INDEX`` per image (a wrong conversation raises ``ValueError``); a
      :class:`PromptIds` (tokenised already) is returned as it is.
    - ``visual_token_count((W, H)) -> int``: positions one image of that size takes.
    - ``prefill(texts, images=None, system=None, use_cache=True) -> Prefill``.
    - ``generate_events(texts, images=None, max_new_tokens=None, system=None, sampling=None, stream=False,
      step_events=False, processors=None) -> DecodeRun``: prefills now (errors raise here), then an iterator of
      :class:`GenerationEvent`; ``processors``: one :class:`~cambrian.models.generate.logits.RowProcessor` (or None)
      per prompt.
    - ``generate_text(...) -> list[str]``, ``stream_text(text, images, ...) -> Iterator[str]``,
      ``score_options(texts, images, options, system=None) -> list[list[float]]`` (log-likelihood of each option as
      the answer), ``next_token_logits(texts, images=None, system=None) -> [B, V]``.
    """

    tokenizer: Any

    @property
    def context_length(self) -> int | None: ...

    @property
    def stop_token_ids(self) -> Sequence[int]: ...

    def prompt_ids(self, text, system: str | None = None) -> list[int]: ...

    def visual_token_count(self, image_size: tuple[int, int]) -> int: ...

    def prefill(self, texts, images=None, system: str | None = None, use_cache: bool = True) -> Prefill: ...

    def generate_events(self, texts, images=None, **kwargs) -> Any: ...

    def generate_text(self, texts, images=None, **kwargs) -> list[str]: ...

    def stream_text(self, text, images=(), **kwargs) -> Any: ...

    def score_options(self, texts, images, options, system: str | None = None) -> list[list[float]]: ...

    def next_token_logits(self, texts, images=None, system: str | None = None) -> torch.Tensor: ...


class NotGenerativeError(TypeError):
    """A model object that misses members of the generation contract."""


def check_generative(model, purpose: str = "generation") -> None:
    """Raise :class:`NotGenerativeError` naming every :class:`GenerativeVLM` member ``model`` lacks."""
    require_members(
        model,
        GENERATIVE_MEMBERS,
        purpose,
        "generation contract (cambrian.models.generate.contract)",
        NotGenerativeError,
    )
