"""Dataset checks by reason, image-aware truncation, collator padding, and `cambrian data validate`."""

from __future__ import annotations

import pytest
from toy_vlm import ToyVLM

from cambrian.constants import IGNORE_INDEX as IG
from cambrian.constants import IMAGE_TOKEN_INDEX as IM
from cambrian.data.collator import Collator
from cambrian.data.dataset import BadSample, ImagePipeline, SupervisedDataset, normalize_conversation, truncate_sample
from cambrian.data.llava import LlavaSource
from cambrian.data.synthetic import make_synthetic_data

BAD = {
    "missing_image": 1,
    "corrupt_image": 1,
    "wrong_roles": 1,
    "empty_turn": 1,
    "image_count_mismatch": 1,
    "over_length": 1,
}


def _dataset(path, max_length=64):
    m = ToyVLM()
    return m, SupervisedDataset(
        [LlavaSource(path, path.parent / "images")],
        m.tokenize_conversation,
        m.visual_token_count,
        ImagePipeline.from_model(m),
        max_length=max_length,
    )


def test_every_bad_reason_is_detected(tmp_path):
    path = make_synthetic_data(tmp_path, n=4, text_only=2, bad=BAD)
    _, ds = _dataset(path)
    items = [ds[i] for i in range(len(ds))]
    got = sorted(x["bad"] for x in items if "bad" in x)
    assert got == sorted(BAD)
    good = [x for x in items if "bad" not in x]
    assert len(good) == 6
    img = next(x for x in good if x["image_sizes"])
    assert img["pixel_values"][0].shape == (1, 3, 8, 8)
    ids, labels = img["input_ids"].tolist(), img["labels"].tolist()
    assert ids.count(IM) == 1 and labels[ids.index(IM)] == IG
    # loss only on the reply (+ EOS): the labelled ids decode to "<colour>" then EOS=2
    reply = [t for t in labels if t != IG]
    assert reply[-1] == 2 and "".join(map(chr, reply[:-1])) in {"red", "green", "blue", "white"}
    assert img["num_tokens"] == len(ids) - 1 + 6  # the placeholder becomes a 2 x (2 + 1) block


def test_normalize_moves_single_image_to_front_and_checks_roles():
    rec = {"conversations": [{"from": "human", "value": "What is it? <image>"}, {"from": "gpt", "value": "x"}]}
    assert normalize_conversation(rec, 1)[0]["content"] == "<image>\nWhat is it?"
    sysrec = {"conversations": [{"from": "system", "value": "be brief"}] + rec["conversations"]}
    assert [m["role"] for m in normalize_conversation(sysrec, 1)] == ["system", "user", "assistant"]
    with pytest.raises(BadSample, match="wrong_roles"):
        normalize_conversation({"conversations": rec["conversations"][:1]}, 1)
    with pytest.raises(BadSample, match="image_count_mismatch"):
        normalize_conversation(rec, 0)


def test_truncation_never_splits_an_image():
    ids = [1, 5, IM, 6, 7, 8, 9]
    lab = [IG, IG, IG, IG, 7, 8, 9]
    # expanded length 6 + 10 = 16
    assert truncate_sample(ids, lab, [10], 16) == (ids, lab, 16)
    assert truncate_sample(ids, lab, [10], 14) == ([1, 5, IM, 6, 7], [IG, IG, IG, IG, 7], 14)
    with pytest.raises(BadSample, match="over_length"):
        truncate_sample(ids, lab, [10], 12)  # would keep only [1, 5, IM, 6]: nothing supervised left
    with pytest.raises(BadSample, match="split an image"):
        truncate_sample(ids, lab, [10], 11)


def test_collator_pads_right_and_flattens_images(tmp_path):
    path = make_synthetic_data(tmp_path, n=3, text_only=1)
    _, ds = _dataset(path)
    items = [ds[i] for i in range(4)] + [{"bad": "missing_image", "index": 9}]
    b = Collator(pad_token_id=0)(items)
    assert b["bad_counts"] == {"missing_image": 1} and b["num_samples"] == 5
    L = [len(x["input_ids"]) for x in items[:4]]
    assert b["input_ids"].shape == (4, max(L))
    for r, n in enumerate(L):
        assert b["attention_mask"][r].tolist() == [1] * n + [0] * (max(L) - n)
        assert (b["input_ids"][r, n:] == 0).all() and (b["labels"][r, n:] == IG).all()
    assert b["pixel_values"][0].shape == (3, 3, 8, 8) and len(b["image_sizes"]) == 3
    assert b["image_sizes"] == [s for x in items[:4] for s in x["image_sizes"]]


def test_validate_cli(tmp_path, capsys):
    from cambrian.cli.main import main

    path = make_synthetic_data(tmp_path, n=10, bad={"missing_image": 1, "wrong_roles": 1})
    rc = main(["data", "validate", str(path), "--images", str(tmp_path / "images")])
    out = capsys.readouterr().out
    assert rc == 1
    assert "12 samples (0 text-only), 2 bad (16.67%)" in out and "missing_image" in out and "wrong_roles" in out
    assert main(["data", "validate", str(path), "--images", str(tmp_path / "images"), "--max-bad-fraction", "0.2"]) == 0
