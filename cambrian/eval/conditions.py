"""Evaluation conditions beside the question's own image: ``blind`` (no image, the paper's vision-disabled setting)
and ``other`` (the image of a question about a *different* scene or image, under the same prompt: what a model
answers from another image's visual tokens, the control that shows whether it reads its image at all).

``condition_samples(samples, vision)`` gives the samples a run feeds the model (``enabled`` and ``disabled`` leave
them as they are; the runner drops the images for ``disabled``); answers are scored against the original ones.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import InputError

VISION_SETTINGS = ("enabled", "disabled", "other")


def other_scene_pairing(scenes: Sequence[str], seed: int = 0) -> list[int]:
    """For every item ``i``, an index ``j`` with ``scenes[j] != scenes[i]``: a random permutation rotated until
    no item lands on its own scene (greedy repair of the few that do). Needs at least two distinct scenes."""
    n = len(scenes)
    if len(set(scenes)) < 2:
        raise InputError("the image-use probe needs questions about at least two different scenes")
    rng = np.random.default_rng([seed, 23])
    perm = [int(x) for x in rng.permutation(n)]
    for i in range(n):
        if scenes[perm[i]] == scenes[i]:
            for k in range(n):
                # swap with a position k such that both i and k end up on a foreign scene
                if scenes[perm[k]] != scenes[i] and scenes[perm[i]] != scenes[k]:
                    perm[i], perm[k] = perm[k], perm[i]
                    break
            else:  # pragma: no cover - impossible with >= 2 scenes unless one scene holds most items
                perm[i] = next(j for j in range(n) if scenes[j] != scenes[i])
    return perm


def scene_key(sample) -> str:
    """Which scene / image a sample is about: CV-Bench-Synth rows keep the rendered scene's file name, synth-attribute
    rows their scene id, easy-VQA rows their image id."""
    m = sample.meta
    for k in ("source_filename", "scene", "image_id", "filename"):
        if m.get(k) is not None:
            return str(m[k])
    return str(sample.idx)


def with_other_images(samples: Sequence, seed: int = 0) -> list:
    """The same samples (same prompts, answers, ids) with the images of a sample about a *different* scene/image
    (:func:`other_scene_pairing`): what the model answers from another image's visual tokens."""
    import dataclasses

    pair = other_scene_pairing([scene_key(s) for s in samples], seed)
    return [dataclasses.replace(s, images=list(samples[j].images)) for s, j in zip(samples, pair)]


def condition_samples(samples: Sequence, vision: str, seed: int = 0) -> list:
    """The samples to feed under ``vision`` (one of :data:`VISION_SETTINGS`)."""
    if vision not in VISION_SETTINGS:
        raise InputError(f"vision must be one of {VISION_SETTINGS}, got {vision!r}")
    return with_other_images(samples, seed) if vision == "other" else list(samples)
