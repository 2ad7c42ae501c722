"""The constants of guided search, in one typed config (``--search-set KEY=VALUE`` on the command line, ``search``
options on the server). Defaults follow V*'s code (``penghao-wu/vstar``) where it has the constant: detection stops
at 0.5 and keeps a tentative result from 0.3, leaves are patches whose short side is at most
``max(ceil(short side / 4), 224)``, ancestors' heatmaps count with weight ``4^-level``, memory crops are 1.2x the
found box; where ours differs (the localiser's scale, the memory layout, the trigger) the field says why."""

from __future__ import annotations

import dataclasses

from ..typed import Bool, Choice, ConfigError, Int, Num, Str, apply_overrides, build, did_you_mean, typed_config

LOCALISERS = ("embedding", "ask", "oracle")
TRIGGERS = ("margin", "always", "never", "refusal")
LAYOUTS = ("vstar", "focus", "crops")


@typed_config
class SearchSettings:
    # --- when to search
    trigger: Choice(*TRIGGERS) = "margin"  # margin: the model's own option margin (or first-token margin) is low
    margin: Num(ge=0) = 0.5  # search when p(best) - p(second) < margin (probabilities over the options)
    refusal: Str = "Sorry, I can not answer the question"  # trigger=refusal: this string in a free-form answer
    # --- where to look
    localiser: Choice(*LOCALISERS) = "embedding"  # embedding: grounded cells vs the target words' embeddings
    confidence_high: Num(ge=0, le=1) = 0.5  # a detection this confident ends the search (V*)
    confidence_low: Num(ge=0, le=1) = 0.3  # otherwise the best tentative detection is kept from this level (V*)
    min_size_scale: Num(gt=0) = 4.0  # leaves: short side <= max(ceil(short side of the image / this), min_size)
    min_size: Int(ge=1) = 224
    cue_threshold: Num(ge=0, le=1) = 0.5  # target heatmap peak that counts as prominent at level 1 ...
    cue_decay: Num(gt=0, le=1) = 0.7  # ... times this per level ...
    cue_minimum: Num(ge=0, le=1) = 0.25  # ... but never below this; else the context heatmap ranks the sub-patches
    decay: Num(gt=1) = 4.0  # an ancestor at level l adds its heatmap share / decay**l (V*: 4)
    max_patches: Int(ge=1) = 64  # a search scores at most this many patches
    refine_steps: Int(ge=0) = 1  # re-localise around a found box this many times (a tighter box)
    refine_context: Num(ge=1) = 3.0  # the refine window: this many times the box's long side ...
    refine_min: Int(ge=8) = 64  # ... and at least this many pixels
    max_targets: Int(ge=1) = 3  # targets searched per question
    targets: Choice("question", "annotated") = "question"  # annotated: a benchmark's own target names (V*'s
    # search-only evaluation), instead of the ones read off the question
    # --- what to remember
    crop_scale: Num(ge=1) = 1.2  # memory crop = this times the found box (V*: 1.2) ...
    crop_min: Int(ge=0) = 0  # ... and at least this many pixels on a side (0: no minimum, as V*'s evaluation)
    layout: Choice(*LAYOUTS) = "vstar"  # vstar: whole image, then each crop with its box, then the question;
    # focus: the crops with their boxes, no whole image; crops: the crops alone (models trained on one image)
    # --- how to answer
    normalize: Bool = False  # options: False = summed log-probability (the toolkit's --mc likelihood, so an A/B
    # against it differs only by the search); True = V*'s lowest mean loss per token, end of turn included
    max_new_tokens: Int(ge=1) = 64  # generation (no options)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def smallest_size(self, width: int, height: int) -> int:
        import math

        return max(int(math.ceil(min(width, height) / self.min_size_scale)), self.min_size)

    def cue_level_threshold(self, level: int) -> float:
        """Target-cue prominence threshold at quad-tree level ``level`` (root = 1), V*'s decaying rule."""
        return max(self.cue_minimum, self.cue_threshold * self.cue_decay ** (level - 1))


def search_settings(items=None, base: dict | None = None) -> SearchSettings:
    """``["trigger=always", "crop_scale=3"]`` (``--search-set``) over ``base``, checked as one :class:`SearchSettings`
    (unknown keys refused with a did-you-mean, values typed)."""
    raw = apply_overrides(dict(base or {}), [str(x) for x in items or []], what="--search-set")
    names = [f.name for f in dataclasses.fields(SearchSettings)]
    for key in raw:
        if key not in names:
            raise ConfigError(f"--search-set {key}: unknown search setting{did_you_mean(key, names)}")
    return build(SearchSettings, raw, "search settings")
