"""The ``VLM`` contract: what the trainer, the datasets, the eval adapter and the demo may rely on in a model.

``CambrianModel`` is the implementation this package ships; any other ``nn.Module`` with these members trains,
evaluates and saves through the same code (the test suite has a second, deliberately different one). Nothing
outside ``cambrian.models`` probes a model with ``getattr``/``hasattr``: it uses these names, and
:func:`check_vlm` names what is missing when a model does not fit.

A model is loaded from a string (``--model``, ``model:`` in a recipe) by :func:`load_vlm`: the first registered
:data:`MODEL_SOURCES` entry whose ``matches(spec)`` is true loads it; otherwise ``CambrianModel.load`` (a checkpoint
directory, a model preset, a YAML/JSON config, or a hub id when the hub is reachable).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

MEMBERS = (
    "tokenizer",
    "encoders",
    "llm",
    "max_length",
    "grounding_grid",
    "forward",
    "tokenize_conversation",
    "visual_token_count",
    "save_pretrained",
    "generate_text",
)


@runtime_checkable
class VLM(Protocol):
    """Members (all required; ``check_vlm`` lists the missing ones):

    - ``tokenizer``: ``pad_token_id`` / ``eos_token_id``, ``encode`` / ``decode``.
    - ``encoders``: the vision towers (``nn.ModuleList``); each has ``preprocess(list[PIL]) -> [n, 3, R, R]`` and
      maps pixels to an ``[n, s, s, C]`` grid. Frozen towers can be replaced by cached features.
    - ``llm``: the language model ``nn.Module`` (LoRA, gradient checkpointing, ``compile`` and FLOP counts apply
      to it).
    - ``max_length``: the LLM context the datasets truncate to (visual tokens included).
    - ``grounding_grid``: side L of the one-token-per-cell visual grid that ``stage: ground`` trains, or None when
      the model cannot be grounded.
    - ``forward(input_ids, attention_mask, labels, pixel_values=None, image_sizes=None, features=None,
      grounding=None)``: an object with ``.loss`` (and ``.logits`` for language-model batches).
    - ``tokenize_conversation(messages) -> {"input_ids", "labels"}``: a LLaVA conversation as token ids (one
      ``IMAGE_TOKEN_INDEX`` per image, labels -100 outside assistant turns), the model's chat template and system
      prompt applied; no truncation.
    - ``visual_token_count((W, H)) -> int``: how many sequence positions one image of that size takes.
    - ``save_pretrained(dir)`` and a ``from_pretrained(dir)`` classmethod.
    - ``generate_text(texts, images, max_new_tokens=..., system=None) -> list[str]``: batched greedy answers.
    """

    tokenizer: Any
    encoders: Any
    llm: Any

    @property
    def max_length(self) -> int: ...

    @property
    def grounding_grid(self) -> int | None: ...

    def forward(self, *args, **kwargs) -> Any: ...

    def tokenize_conversation(self, messages: list[dict]) -> dict: ...

    def visual_token_count(self, image_size: tuple[int, int]) -> int: ...

    def save_pretrained(self, path) -> None: ...

    def generate_text(
        self, texts: Sequence[str], images: Sequence[Sequence], max_new_tokens: int = 128, system: str | None = None
    ) -> list[str]: ...


class NotAVLMError(TypeError):
    """A model object that misses members of the ``VLM`` contract."""


def check_vlm(model, purpose: str = "this") -> None:
    """Raise :class:`NotAVLMError` naming every ``VLM`` member ``model`` lacks."""
    missing = [m for m in MEMBERS if not hasattr(model, m)]
    if missing:
        raise NotAVLMError(
            f"{type(model).__name__} cannot be used for {purpose}: it lacks {', '.join(missing)} of the "
            "VLM contract (cambrian.models.vlm)"
        )


@dataclass(frozen=True)
class ModelSource:
    """A way to turn a ``--model`` string into a VLM: ``matches(spec)`` decides, ``load(spec)`` builds."""

    name: str
    matches: Callable[[str], bool]
    load: Callable[[str], Any]


MODEL_SOURCES: list[ModelSource] = []


def register_model_source(source: ModelSource) -> ModelSource:
    """Add a model source, tried before the built-in ``CambrianModel.load`` (later registrations first)."""
    if any(s.name == source.name for s in MODEL_SOURCES):
        raise ValueError(f"model source {source.name!r} is already registered")
    MODEL_SOURCES.insert(0, source)
    return source


def unregister_model_source(name: str) -> None:
    MODEL_SOURCES[:] = [s for s in MODEL_SOURCES if s.name != name]


def load_vlm(spec: str, towers=None, quantize: str | None = None, device: str | None = None):
    """The model named by ``spec``: a registered source's, else ``CambrianModel.load(spec)``. ``towers``: a
    ``TowerMap`` (``--tower``) for a released-format checkpoint; ``quantize``/``device``: see
    ``CambrianModel.load``."""
    for src in MODEL_SOURCES:
        if src.matches(str(spec)):
            from ..errors import UserError

            if towers:
                raise UserError(f"--tower applies to released-format checkpoints only; {spec} is a {src.name} model")
            if quantize:
                raise UserError(f"--quantize applies to Cambrian models; {spec} is a {src.name} model")
            return src.load(str(spec))
    from .cambrian_model import CambrianModel

    return CambrianModel.load(str(spec), towers=towers, quantize=quantize, device=device)
