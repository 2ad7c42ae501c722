"""Option-likelihood scoring (``cambrian.models.scoring``) and the ``--mc likelihood`` eval mode
(``cambrian.eval.likelihood``)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from helpers import VLM_KINDS, make_vlm
from PIL import Image

from cambrian.constants import IGNORE_INDEX, IMAGE_TOKEN, IMAGE_TOKEN_INDEX
from cambrian.models.scoring import ContinuationScore, best, score_continuations

# ---------------------------------------------------------------------------------------------- a bigram model
# Characters are tokens; the reply format is "U:" + prompt + "A:" + reply + EOS (EOS = 2). The next-token
# distribution depends only on the current token: after "x" it is P(y) = 1/2, P(x) = 1/4, P(EOS) = 1/8 and
# 1/8 spread over the rest; after any other token P(x) = 1/2, P(y) = 1/4, P(EOS) = 1/8. An image is a block of
# K positions of token 1, after which P(z) = 1/2: a mistake in where the reply lands after the image block
# reads a different distribution.
V, EOS, IMG, K = 128, 2, 1, 5


def _row(current: int) -> torch.Tensor:
    p = torch.full((V,), (1 / 8) / (V - 3))
    x, y, z = ord("x"), ord("y"), ord("z")
    if current == x:
        p[y], p[x], p[EOS] = 1 / 2, 1 / 4, 1 / 8
    elif current == IMG:
        p[:] = (1 / 2) / (V - 1)
        p[z] = 1 / 2
    else:
        p[x], p[y], p[EOS] = 1 / 2, 1 / 4, 1 / 8
    if current != IMG:
        p[z] = (1 / 8) / (V - 3)
    return p.log()


class BigramVLM(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.tokenizer = SimpleNamespace(pad_token_id=0, eos_token_id=EOS)
        self.encoders = torch.nn.ModuleList([_Enc()])
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.calls = 0

    def visual_token_count(self, size) -> int:
        return K

    def tokenize_conversation(self, messages):
        ids, labels = [], []
        for m in messages:
            if m["role"] == "assistant":
                head = [ord(c) for c in "A:"]
                body = [ord(c) for c in m["content"]] + [EOS]
                ids += head + body
                labels += [IGNORE_INDEX] * len(head) + body
            else:
                seq = [ord(c) for c in "U:"]
                for k, part in enumerate(m["content"].split(IMAGE_TOKEN)):
                    if k:
                        seq.append(IMAGE_TOKEN_INDEX)
                    seq += [ord(c) for c in part]
                ids += seq
                labels += [IGNORE_INDEX] * len(seq)
        return {"input_ids": ids, "labels": labels}

    def forward(self, input_ids, attention_mask=None, labels=None, pixel_values=None, image_sizes=None, **kw):
        self.calls += 1
        rows = []
        for b in range(input_ids.shape[0]):
            ids = input_ids[b][attention_mask[b].bool()].tolist()
            spliced = []
            for t in ids:
                spliced += [IMG] * K if t == IMAGE_TOKEN_INDEX else [t]
            rows.append(spliced)
        T = max(len(r) for r in rows)
        logits = torch.zeros(len(rows), T, V)
        for b, r in enumerate(rows):
            for t, tok in enumerate(r):
                logits[b, t] = _row(tok)
        return SimpleNamespace(logits=logits, loss=None)


class _Enc(torch.nn.Module):
    def preprocess(self, images):
        return torch.zeros(len(images), 3, 2, 2)


def test_bigram_scores_are_the_hand_computed_log_probabilities():
    m = BigramVLM()
    im = Image.new("RGB", (4, 4))
    got = score_continuations(
        m, ["q", f"{IMAGE_TOKEN}\nq", f"{IMAGE_TOKEN}"], [[], [im], [im]], [["xy", "y", "x"], ["xy"], ["zx", "x"]]
    )
    L2 = math.log(2)
    # "A:" then "x" (P 1/2 after ":"), then "y" after "x" (1/2): -2 log 2; "y" after ":" is 1/4; "x" is 1/2
    assert [s.logprob for s in got[0]] == pytest.approx([-2 * L2, -2 * L2, -L2])
    assert [s.tokens for s in got[0]] == [2, 1, 1]
    assert got[1][0].logprob == pytest.approx(-2 * L2)  # the image sits before "\nqA:": the reply is unaffected
    # the image ends the user turn, "A:" follows it, so "x" is still the likely reply and "z" is not
    assert got[2][1].logprob == pytest.approx(-L2)
    assert got[2][0].logprob == pytest.approx(math.log((1 / 8) / (V - 3)) - L2)
    assert got[0][0].mean == pytest.approx(-L2)
    # with the end-of-turn: "x" then EOS after "x" (1/8)
    (end,) = score_continuations(m, ["q"], None, [["x"]], include_end=True)
    assert end[0].logprob == pytest.approx(-L2 - 3 * L2) and end[0].tokens == 2


def test_reply_position_after_an_image_block():
    """A user turn that *ends* with the image: the token after "A:" is still scored at the right spliced position
    (the image block adds K - 1 positions before it)."""

    class ImageLast(BigramVLM):
        def tokenize_conversation(self, messages):  # reply right after the image, no "A:" head
            out = super().tokenize_conversation(messages)
            ids, labels = out["input_ids"], out["labels"]
            k = ids.index(ord("A"))
            return {"input_ids": ids[:k] + ids[k + 2 :], "labels": labels[:k] + labels[k + 2 :]}

    m = ImageLast()
    (row,) = score_continuations(m, [f"q{IMAGE_TOKEN}"], [[Image.new("RGB", (4, 4))]], [["z", "x"]])
    assert row[0].logprob == pytest.approx(-math.log(2))  # after the image block P(z) = 1/2
    assert row[1].logprob == pytest.approx(math.log((1 / 2) / (V - 1)))


def test_one_token_candidates_share_one_forward_row():
    m = BigramVLM()
    score_continuations(m, ["q", "r"], None, [["A", "B", "C", "D"], ["A", "B"]], batch_size=8)
    assert m.calls == 1
    m.calls = 0
    out = score_continuations(m, ["q"], None, [["x", "xy", "yx"]], batch_size=1)
    assert m.calls == 3 and len(out[0]) == 3  # inputs "…A:", "…A:x", "…A:y"


def test_best_and_errors():
    s = [ContinuationScore(-3.0, 3), ContinuationScore(-2.0, 1), ContinuationScore(-2.0, 4)]
    assert best(s) == 1 and best(s, normalize=True) == 2
    m = BigramVLM()
    with pytest.raises(ValueError, match="placeholders but 0 images"):
        score_continuations(m, [f"{IMAGE_TOKEN}q"], [[]], [["x"]])
    with pytest.raises(ValueError, match="no candidate"):
        score_continuations(m, ["q"], None, [[]])
    with pytest.raises(ValueError, match="2 prompts but 1 candidate lists"):
        score_continuations(m, ["q", "r"], None, [["x"]])


# ---------------------------------------------------------------------------------------------- real models
@pytest.mark.parametrize("kind", VLM_KINDS)
def test_scores_match_the_models_own_loss(kind):
    """With the end-of-turn included, a candidate's summed log-probability is minus the model's own training loss
    on the whole conversation times its supervised tokens (both VLM implementations), whatever the batching."""
    torch.manual_seed(0)
    model = make_vlm(kind).eval()
    size = model.encoders[0].config.image_size if kind == "toy" else 32
    ims = [Image.new("RGB", (size, size), c) for c in ("red", "blue")]
    prompts = [f"{IMAGE_TOKEN}\nwhat colour?", f"{IMAGE_TOKEN}\nhow many?"]
    cands = [["red", "a blue one"], ["2", "three"]]
    a = score_continuations(model, prompts, [[ims[0]], [ims[1]]], cands, include_end=True, batch_size=8)
    b = score_continuations(model, prompts, [[ims[0]], [ims[1]]], cands, include_end=True, batch_size=1)
    for i, (p, cs) in enumerate(zip(prompts, cands)):
        for j, c in enumerate(cs):
            assert a[i][j].logprob == pytest.approx(b[i][j].logprob, abs=1e-4)
            msgs = [{"role": "user", "content": p}, {"role": "assistant", "content": c}]
            tok = model.tokenize_conversation(msgs)
            ids = torch.tensor([tok["input_ids"]])
            labels = torch.tensor([tok["labels"]])
            px = [enc.preprocess([ims[i]]) for enc in model.encoders]
            with torch.no_grad():
                out = model(
                    input_ids=ids,
                    attention_mask=torch.ones_like(ids),
                    labels=labels,
                    pixel_values=px,
                    image_sizes=[ims[i].size],
                )
            n = int((labels != IGNORE_INDEX).sum())
            assert a[i][j].tokens == n
            assert a[i][j].logprob == pytest.approx(-float(out.loss) * n, rel=1e-4, abs=1e-4)
