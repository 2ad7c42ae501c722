"""The demo's image-use probe: gold-letter loss with the question's own image vs another scene's image."""

import math

import numpy as np
import pytest
import torch
from PIL import Image

from cambrian.demo.image_use import gold_nll, image_use, other_scene_pairing
from cambrian.eval.api import EvalSample
from cambrian.models.cambrian_model import CambrianModel
from cambrian.presets.models import load_preset


def _img(seed, w=40, h=32):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return CambrianModel.from_config(load_preset("tiny")).eval()


@pytest.mark.parametrize("scenes", [list("aabbcc"), list("aaabbc"), list("abcdefgh"), ["s1"] * 5 + ["s2"] * 5])
def test_pairing_always_points_at_another_scene(scenes):
    pair = other_scene_pairing(scenes, seed=3)
    assert len(pair) == len(scenes)
    assert all(scenes[j] != scenes[i] for i, j in enumerate(pair))


def test_pairing_needs_two_scenes():
    with pytest.raises(ValueError, match="two different scenes"):
        other_scene_pairing(["a", "a", "a"])


def test_gold_nll_equals_the_models_own_last_position_logits(model):
    """Hand check against the plain forward (full logits, no padding): -log_softmax at the last prompt position."""
    prompts = ["Which one? (A) x (B) y", "How many? (A) 1 (B) 2 (C) 3 with a longer prompt"]
    images = [_img(1), _img(2, 30, 50)]
    got = gold_nll(model, prompts, images, ["B", "C"], batch_size=2)
    for p, im, g, nll in zip(prompts, images, ["B", "C"], got):
        ids = torch.tensor([model.prompt_ids("<image>\n" + p)])
        pixels, sizes = model.encode_images([im])
        with torch.no_grad():
            logits = model(input_ids=ids, pixel_values=pixels, image_sizes=sizes).logits[0, -1]
        t = model.tokenizer.encode(g, add_special_tokens=False)[0]
        assert math.isclose(nll, -float(torch.log_softmax(logits.float(), -1)[t]), rel_tol=1e-4, abs_tol=1e-4)


def test_image_use_reports_matched_vs_shuffled(model):
    samples = [
        EvalSample(
            idx=i,
            prompt=f"Question {i}? (A) yes (B) no",
            images=[(lambda s=i: _img(s // 2))],
            answer="(A)" if i % 2 else "(B)",
            meta={"source_filename": f"scene{i // 2}.png"},
        )
        for i in range(8)
    ]
    r = image_use(model, samples, max_items=8, batch_size=3)
    assert r["n"] == 8
    assert r["nll_matched"] > 0 and r["nll_shuffled"] > 0
    assert math.isclose(r["gap"], r["nll_shuffled"] - r["nll_matched"], abs_tol=2e-4)
    assert r["nll_matched"] != r["nll_shuffled"]  # the swapped-in images really are other pictures
    # one scene only: no foreign image to swap in, reported as missing rather than a fake number
    one = [
        EvalSample(idx=i, prompt="Q? (A) a (B) b", images=[_img(0)], answer="(A)", meta={"source_filename": "s.png"})
        for i in range(3)
    ]
    assert image_use(model, one)["gap"] is None


def test_eval_feature_memo_runs_each_image_once_and_changes_nothing(model):
    """``with model.features_from(EvalFeatureMemo())``: same logits as without; a repeated image is a memo hit;
    outside the block the towers run again (nothing stays patched on the model)."""
    from cambrian.demo.features import EvalFeatureMemo

    texts = ["<image>\nWhat colour?", "<image>\nWhat shape?"]
    images = [[_img(1)], [_img(1)]]
    plain = model.next_token_logits(texts, images)
    memo = EvalFeatureMemo()
    with model.features_from(memo):
        memoised = model.next_token_logits(texts, images)
        again = model.next_token_logits(texts[:1], images[:1])
    assert torch.allclose(plain, memoised, atol=1e-5) and torch.allclose(plain[:1], again, atol=1e-5)
    assert memo.stats == {"hits": 2, "misses": 1}  # one distinct image: computed once, then two hits
    assert model._feature_provider is None and "image_features" not in vars(model)
    with pytest.raises(RuntimeError, match="do not nest"):
        with model.features_from(memo), model.features_from(memo):
            pass
