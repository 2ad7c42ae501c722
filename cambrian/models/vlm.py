"""The ``VLM`` contract: what the trainer, the datasets, the eval adapter and the demo may rely on in a model,
including what the model declares for training (which parameters train in a stage, the learning-rate groups, the
FSDP units: ``cambrian.models.training``). Generation has its own contract (``cambrian.models.generate``).

``CambrianModel`` is the implementation this package ships; any other ``nn.Module`` with these members trains,
evaluates and saves through the same code (the test suite has a second, deliberately different one, with its own
parameter names). The trainer and the server probe no model with ``getattr``/``hasattr`` and read no parameter or
class names (``tests/test_layers.py``): they use these members, and :func:`check_vlm` names what is missing when a
model does not fit.

A model is loaded from a string (``--model``, ``model:`` in a recipe) by :func:`load_vlm`: the first registered
:data:`MODEL_SOURCES` entry whose ``matches(spec)`` is true loads it; otherwise ``CambrianModel.load`` (a checkpoint
directory, a model preset, a YAML/JSON config, or a hub id when the hub is reachable).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

MEMBERS = (
    "config",
    "tokenizer",
    "encoders",
    "llm",
    "max_length",
    "grounding_grid",
    "forward",
    "tokenize_conversation",
    "visual_token_count",
    "save_pretrained",
    "saved_files",
    "generate_text",
    "trainable_parameters",
    "lr_groups",
    "fsdp_units",
)


@runtime_checkable
class VLM(Protocol):
    """Members (all required; ``check_vlm`` lists the missing ones):

    - ``config``: the model's configuration; ``config.save(path)`` writes it (a copy goes into each checkpoint).
    - ``tokenizer``: ``pad_token_id`` / ``eos_token_id``, ``encode`` / ``decode``.
    - ``encoders``: the vision towers (``nn.ModuleList``); each has ``preprocess(list[PIL]) -> [n, 3, R, R]``, maps
      pixels to an ``[n, s, s, C]`` grid, and has a ``config`` that identifies it (the feature cache's key).
      Frozen towers can be replaced by cached features.
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
    - ``save_pretrained(dir)`` and a ``from_pretrained(dir)`` classmethod; ``saved_files``: the files it writes
      that identify the model, in the order written (the last marks a complete directory).
    - ``generate_text(texts, images, max_new_tokens=..., system=None) -> list[str]``: batched greedy answers.
    - ``trainable_parameters(stage, unfreeze_vision=False, lora=False) -> list[Parameter]``: what trains in a stage
      (1, 2 or ``"ground"``; ``lora``: the LLM's LoRA adapters instead of the LLM).
    - ``lr_groups() -> {"sva" | "projector" | "llm" | "vision": [Parameter]}``: every parameter in one group (the
      connector names its SVA modules: ``sva_lr``; the towers: ``vision_lr``).
    - ``fsdp_units() -> list[nn.Module]``: the modules FSDP wraps as units.
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

    saved_files: tuple[str, ...]
    config: Any

    def trainable_parameters(self, stage: int | str, unfreeze_vision: bool = False, lora: bool = False) -> list: ...

    def lr_groups(self) -> dict[str, list]: ...

    def fsdp_units(self) -> list: ...


class NotAVLMError(TypeError):
    """A model object that misses members of the ``VLM`` contract."""


def require_members(model, members: Sequence[str], purpose: str, contract: str, error: type[TypeError]) -> None:
    """Raise ``error`` naming every member of ``members`` that ``model`` lacks."""
    missing = [m for m in members if not hasattr(model, m)]
    if missing:
        raise error(
            f"{type(model).__name__} cannot be used for {purpose}: it lacks {', '.join(missing)} of the {contract}"
        )


def check_vlm(model, purpose: str = "this") -> None:
    """Raise :class:`NotAVLMError` naming every ``VLM`` member ``model`` lacks."""
    require_members(model, MEMBERS, purpose, "VLM contract (cambrian.models.vlm)", NotAVLMError)


@dataclass(frozen=True)
class ModelSource:
    """A way to turn a ``--model`` string into a VLM: ``matches(spec)`` decides, ``load(spec)`` builds; ``files``:
    the model's ``saved_files`` (what identifies a saved directory of it)."""

    name: str
    matches: Callable[[str], bool]
    load: Callable[[str], Any]
    files: tuple[str, ...] = ()


MODEL_SOURCES: list[ModelSource] = []


def register_model_source(source: ModelSource) -> ModelSource:
    """Add a model source, tried before the built-in ``CambrianModel.load`` (later registrations first)."""
    if any(s.name == source.name for s in MODEL_SOURCES):
        raise ValueError(f"model source {source.name!r} is already registered")
    MODEL_SOURCES.insert(0, source)
    return source


def saved_model_files(spec: str) -> tuple[str, ...]:
    """The files that identify a saved model named by ``spec`` (a registered source's, else ``CambrianModel``'s),
    without loading it."""
    for src in MODEL_SOURCES:
        if src.matches(str(spec)):
            return src.files
    from .persistence import MODEL_FILES

    return MODEL_FILES


def load_vlm(spec: str, towers=None):
    """The model named by ``spec``: a registered source's, else ``CambrianModel.load(spec)``. ``towers``: a
    ``TowerMap`` (``--tower``) for a released-format checkpoint."""
    for src in MODEL_SOURCES:
        if src.matches(str(spec)):
            if towers:
                from ..errors import UserError

                raise UserError(f"--tower applies to released-format checkpoints only; {spec} is a {src.name} model")
            return src.load(str(spec))
    from .cambrian_model import CambrianModel

    return CambrianModel.load(str(spec), towers=towers)
