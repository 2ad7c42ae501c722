"""Does the model use the image at all? Gold-answer loss with the right image vs another scene's image.

Accuracy with vision on vs off mixes two things: what the image adds, and how the model behaves on a prompt
shape it was never trained on (no visual tokens). This probe keeps the prompt shape: every CV-Bench-Synth question
is scored once with its own image and once with the image of a question about a *different* scene (a fixed
derangement), and the negative log-likelihood of the gold letter is averaged. A model that reads the image has
``nll_matched`` clearly below ``nll_shuffled``; equal values mean the visual tokens carry no usable information
(for example a connector that collapsed to an image-independent soft prompt).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..constants import IMAGE_TOKEN
from ..eval.conditions import other_scene_pairing, scene_key, with_other_images  # noqa: F401  (re-exported)


@torch.no_grad()
def gold_nll(
    model, prompts: Sequence[str], images: Sequence, golds: Sequence[str], batch_size: int = 16
) -> list[float]:
    """NLL of the first token of each gold answer after ``<image>\\n`` + prompt (the generation prompt of the
    model's template), one image per prompt, batched like generation (``model.next_token_logits``)."""
    tok = model.tokenizer
    out: list[float] = []
    for s in range(0, len(prompts), batch_size):
        texts = [IMAGE_TOKEN + "\n" + p for p in prompts[s : s + batch_size]]
        targets = [tok.encode(g, add_special_tokens=False)[0] for g in golds[s : s + batch_size]]
        logits = model.next_token_logits(texts, [[im] for im in images[s : s + batch_size]])
        logp = torch.log_softmax(logits.float(), dim=-1)
        out += [-float(logp[b, t]) for b, t in enumerate(targets)]
    return out


def cvbench_gold(sample) -> str:
    return str(sample.answer).strip("()")


def image_use(
    model, samples: Sequence, max_items: int = 96, seed: int = 0, batch_size: int = 16, gold=cvbench_gold
) -> dict:
    """``samples``: eval samples with one image each (``prompt``, ``images``, ``answer``; the scene from
    :func:`scene_key`); ``gold(sample)``: the answer text whose first token is scored (CV-Bench: the letter).
    Returns ``{"n", "nll_matched", "nll_shuffled", "gap"}`` (nats; gap = shuffled - matched, > 0 when the image
    helps)."""
    rng = np.random.default_rng([seed, 29])
    pick = sorted(int(i) for i in rng.permutation(len(samples))[:max_items])
    items = [samples[i] for i in pick]
    scenes = [scene_key(s) for s in items]
    if len(set(scenes)) < 2:
        return {"n": len(items), "nll_matched": None, "nll_shuffled": None, "gap": None}
    pair = other_scene_pairing(scenes, seed)
    golds = [gold(s) for s in items]
    prompts = [s.prompt for s in items]
    images = [s.load_images()[0] for s in items]
    matched = gold_nll(model, prompts, images, golds, batch_size)
    shuffled = gold_nll(model, prompts, [images[j] for j in pair], golds, batch_size)
    m, sh = float(np.mean(matched)), float(np.mean(shuffled))
    return {"n": len(items), "nll_matched": round(m, 4), "nll_shuffled": round(sh, 4), "gap": round(sh - m, 4)}
