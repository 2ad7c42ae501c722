"""Generation: sampling settings and their logit processing (hand-computed), incremental detokenisation and stop
strings (a byte-level toy tokenizer), and the decode loop on the random ``tiny`` model (top-k=1 is greedy, seeds
reproduce, streaming adds up to the batch answer, finished rows leave the batch, cancel, context limit), its plug-ins
(per-row processors, option likelihood), and no library noise on the console."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from cambrian.models.cambrian_model import CambrianModel
from cambrian.models.generate import KVCacheState, RowProcessor, SamplingParams, resolve_sampling
from cambrian.models.generate.detok import RowText
from cambrian.models.generate.logits import (
    RowSampling,
    apply_repetition_penalty,
    choose_tokens,
    top_k_mask,
    top_p_mask,
)
from cambrian.presets.models import load_preset

INF = float("-inf")


def _img(w, h, seed):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = CambrianModel.from_config(load_preset("tiny")).eval()
    with torch.no_grad():
        m.connector.image_newline.normal_()
    return m


# ---- SamplingParams ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "field,value",
    [
        ("temperature", -0.1),
        ("top_p", 0.0),
        ("top_p", 1.5),
        ("top_k", -1),
        ("max_new_tokens", 0),
        ("repetition_penalty", 0.0),
        ("seed", -3),
        ("temperature", float("nan")),
        ("stop", ("",)),
        ("top_k", 1.5),
    ],
)
def test_sampling_params_reject_bad_values_naming_the_field(field, value):
    with pytest.raises(ValueError, match=f"sampling: {field} must be"):
        SamplingParams(**{field: value})


def test_sampling_params_defaults_are_greedy_and_stop_string_becomes_tuple():
    p = SamplingParams()
    assert p.greedy and p.top_k == 0 and p.top_p == 1.0 and p.repetition_penalty == 1.0
    assert SamplingParams(stop="###").stop == ("###",)
    assert not SamplingParams(temperature=0.5).greedy
    assert resolve_sampling(p, 7, 2) == [p.replace(max_new_tokens=7)] * 2
    assert resolve_sampling(None, None, 1)[0].max_new_tokens == 128
    with pytest.raises(ValueError, match="one SamplingParams per prompt"):
        resolve_sampling([p], None, 2)


# ---- logit processing, by hand ----------------------------------------------------------------------------


def test_repetition_penalty_divides_positive_and_multiplies_negative_seen_logits():
    logits = torch.tensor([[2.0, -1.0, 0.5, 3.0], [2.0, -1.0, 0.5, 3.0]])
    seen = torch.tensor([[True, True, False, False], [False, False, False, True]])
    out = apply_repetition_penalty(logits, seen, torch.tensor([2.0, 1.5]))
    assert torch.allclose(out, torch.tensor([[1.0, -2.0, 0.5, 3.0], [2.0, -1.0, 0.5, 2.0]]))


def test_top_p_keeps_the_smallest_set_reaching_p():
    probs = torch.tensor([0.5, 0.3, 0.15, 0.05])
    logits = probs.log().repeat(3, 1)
    out = top_p_mask(logits, torch.tensor([0.45, 0.75, 0.9]))
    keep = torch.isfinite(out)
    # 0.45: the first token alone (0.5) reaches it; 0.75: 0.5 + 0.3; 0.9: 0.5 + 0.3 + 0.15
    assert keep.tolist() == [[True, False, False, False], [True, True, False, False], [True, True, True, False]]
    assert torch.equal(out[keep], logits[keep])
    # order does not matter: the same distribution shuffled keeps the same tokens
    perm = torch.tensor([2, 0, 3, 1])
    out2 = top_p_mask(probs.log()[perm][None], torch.tensor([0.75]))
    assert torch.isfinite(out2)[0].tolist() == [False, True, False, True]
    assert torch.equal(top_p_mask(logits, torch.ones(3)), logits)


def test_top_k_per_row_and_zero_is_off():
    logits = torch.tensor([[1.0, 4.0, 3.0, 2.0], [1.0, 4.0, 3.0, 2.0], [5.0, 1.0, 5.0, 0.0]])
    out = top_k_mask(logits, torch.tensor([2, 0, 1]))
    assert out.tolist() == [[INF, 4.0, 3.0, INF], [1.0, 4.0, 3.0, 2.0], [5.0, INF, 5.0, INF]]  # ties kept


def test_choose_tokens_greedy_rows_argmax_and_sampled_rows_follow_their_generator():
    logits = torch.tensor([[0.0, 3.0, 1.0], [2.0, 0.0, 1.0], [0.0, 0.0, 9.0]])
    params = [
        SamplingParams(),
        SamplingParams(temperature=1.0, top_k=1, seed=5),
        SamplingParams(temperature=2.0, top_p=0.2, seed=1),
    ]
    rs = RowSampling(params, "cpu")
    assert choose_tokens(logits, rs).tolist() == [1, 0, 2]  # top-k 1 / tiny top-p leave one token
    # a uniform distribution: the draws come from the row's seeded generator
    flat = torch.zeros(2, 50)
    a = choose_tokens(flat, RowSampling([SamplingParams(temperature=1.0, seed=3)] * 2, "cpu"))
    b = choose_tokens(flat, RowSampling([SamplingParams(temperature=1.0, seed=3)] * 2, "cpu"))
    g = torch.Generator().manual_seed(3)
    expect = torch.multinomial(torch.full((50,), 1 / 50), 1, generator=g)[0]
    assert a.tolist() == b.tolist() == [int(expect)] * 2


# ---- incremental text, a byte-level toy tokenizer ---------------------------------------------------------


class ByteTok:
    """id -> bytes; decode joins the bytes and decodes UTF-8 with replacement (like byte-level BPE)."""

    def __init__(self, pieces):
        self.pieces = pieces
        self.calls = []

    def decode(self, ids, skip_special_tokens=True):
        self.calls.append(len(ids))
        return b"".join(self.pieces[i] for i in ids).decode("utf-8", errors="replace")


def _push_all(rt, ids):
    deltas, stopped = [], False
    for i in ids:
        if rt.push(i):
            stopped = True
            break
        deltas.append(rt.delta())
    return deltas, stopped


def test_row_text_waits_for_complete_utf8_and_holds_back_whitespace():
    tok = ByteTok({0: b"  Caf", 1: b"\xc3", 2: b"\xa9", 3: b" ", 4: b"au", 5: b" lait", 6: b"\n"})
    rt = RowText(tok, track=True)
    deltas, _ = _push_all(rt, [0, 1, 2, 3, 4, 5, 6])
    assert deltas == ["Caf", "", "\u00e9", "", " au", " lait", ""]  # leading spaces dropped, "é" only when whole
    text, rest = rt.final()
    assert text == "Caf\u00e9 au lait" and rest == ""
    assert "".join(deltas) + rest == text


def test_row_text_stop_string_across_tokens_is_never_streamed():
    tok = ByteTok({0: b"Hello", 1: b" E", 2: b"N", 3: b"D", 4: b"x", 5: b" wor", 6: b"ld ENDING"})
    rt = RowText(tok, stop=("END",), track=True)
    deltas, stopped = _push_all(rt, [0, 1, 2, 3, 4])
    assert stopped and deltas == ["Hello", "", ""]  # " E", " EN" could start "END": held back
    assert rt.final() == ("Hello", "")
    # a stop string inside one token; the text before it streams
    rt = RowText(tok, stop=("END", "zz"), track=True)
    deltas, stopped = _push_all(rt, [0, 5, 6])
    assert stopped and "".join(deltas) + rt.final()[1] == "Hello world" == rt.final()[0]
    # a near miss ("EN" then "x") is released
    rt = RowText(tok, stop=("END",), track=True)
    deltas, stopped = _push_all(rt, [0, 1, 2, 4])
    assert not stopped and "".join(deltas) == "Hello ENx"


def test_row_text_decodes_a_short_window_per_token():
    tok = ByteTok({0: b"a", 1: b" b"})
    rt = RowText(tok, track=True)
    for i in range(300):
        rt.push(i % 2)
    assert max(tok.calls) <= 2 and rt.text == ("a b" * 150)


# ---- the decode loop on the tiny model ----------------------------------------------------------------------


def test_top_k_one_equals_greedy_batched(model):
    texts = ["<image>\nWhat colour?", "no image here", "<image>\n<image>\ntwo"]
    images = [[_img(40, 30, 1)], [], [_img(32, 32, 3), _img(64, 20, 4)]]
    greedy = model.generate_text(texts, images, max_new_tokens=12)
    k1 = model.generate_text(
        texts, images, sampling=SamplingParams(temperature=1.3, top_k=1, seed=9, max_new_tokens=12)
    )
    assert k1 == greedy


def test_seed_reproduces_and_does_not_depend_on_the_batch(model):
    sp = SamplingParams(temperature=1.0, seed=1234, max_new_tokens=15)
    a = model.generate_text(["tell me"], sampling=sp)[0]
    assert model.generate_text(["tell me"], sampling=sp)[0] == a
    others = [model.generate_text(["tell me"], sampling=sp.replace(seed=s))[0] for s in (1, 2, 3)]
    assert len({a, *others}) > 1, "different seeds should give different samples"
    batch = model.generate_text(
        ["<image>\nsomething else first", "tell me", "x"],
        [[_img(40, 30, 2)], [], []],
        sampling=[SamplingParams(max_new_tokens=4), sp, sp.replace(seed=7)],
    )
    assert batch[1] == a
    assert model.generate_text(["tell me"], sampling=SamplingParams(temperature=1.0, max_new_tokens=15))[0] != ""


def test_stop_strings_cut_and_streaming_adds_up(model):
    full = model.generate_text(["hello there"], max_new_tokens=30)[0]
    assert len(full) > 12
    stop = full[6:9]
    k = full.find(stop)
    run = model.generate_events(
        ["hello there"], sampling=SamplingParams(max_new_tokens=30, stop=(stop, "@@@")), stream=True
    )
    events = list(run)
    final = events[-1]
    assert final.finish_reason == "stop" and final.text == full[:k].strip()
    assert "".join(e.delta for e in events) == final.text
    assert final.completion_tokens < len(run.rows[0].ids) + 1 and len(run.rows[0].ids) < 30


def test_streamed_deltas_add_up_to_generate_text(model):
    texts = ["<image>\nWhat colour?", "a longer prompt without any image at all", "<image>\nhi"]
    images = [[_img(40, 30, 1)], [], [_img(20, 60, 5)]]
    want = model.generate_text(texts, images, max_new_tokens=20)
    pieces = [[] for _ in texts]
    finals = {}
    for ev in model.generate_events(texts, images, max_new_tokens=20, stream=True):
        pieces[ev.row].append(ev.delta)
        if ev.finished:
            finals[ev.row] = ev
    assert ["".join(p) for p in pieces] == want
    assert all(len([d for d in p if d]) > 2 for p in pieces), "text should arrive in several pieces"
    assert all(finals[b].finish_reason == "length" and finals[b].completion_tokens == 20 for b in range(3))
    assert "".join(model.stream_text(texts[0], images[0], max_new_tokens=20)) == want[0]


def test_finished_rows_leave_the_batch_and_answers_stay_equal(model):
    texts = ["alpha", "beta gamma", "<image>\ndelta"]
    images = [[], [], [_img(30, 30, 8)]]
    full = model.generate_text(texts, images, max_new_tokens=16)
    # row 0 stops early through a stop string; the others run to the end
    stop0 = full[0][3:6]
    params = [
        SamplingParams(max_new_tokens=16, stop=(stop0,)),
        SamplingParams(max_new_tokens=16),
        SamplingParams(max_new_tokens=8),
    ]
    sizes = []
    layer = model._decoder_layers()[0]
    h = layer.register_forward_hook(lambda m, a, o: sizes.append(o.shape[0]))
    try:
        out = model.generate_text(texts, images, sampling=params)
    finally:
        h.remove()
    assert out[0] == full[0][: full[0].find(stop0)].strip()
    assert out[1] == full[1] and out[2] == model.generate_text([texts[2]], [images[2]], max_new_tokens=8)[0]
    assert sizes[0] == 3 and sizes[-1] == 1 and sorted(sizes, reverse=True) == sizes  # the batch shrinks


def test_rows_decode_padding_when_the_cache_cannot_drop_rows(model, monkeypatch):
    texts = ["alpha", "beta gamma"]
    want = [model.generate_text([t], max_new_tokens=n)[0] for t, n in zip(texts, (3, 10))]
    monkeypatch.setattr(KVCacheState, "can_select", property(lambda self: False))
    sizes = []
    h = model._decoder_layers()[0].register_forward_hook(lambda m, a, o: sizes.append(o.shape[0]))
    try:
        out = model.generate_text(texts, sampling=[SamplingParams(max_new_tokens=3), SamplingParams(max_new_tokens=10)])
    finally:
        h.remove()
    assert out == want and set(sizes) == {2}


def test_cancel_ends_one_row(model):
    run = model.generate_events(["alpha", "beta gamma"], max_new_tokens=12, stream=True)
    finals = {}
    for ev in run:
        if ev.row == 0 and not ev.finished:
            run.cancel(0)
        if ev.finished:
            finals[ev.row] = ev
    assert finals[0].finish_reason == "cancelled" and finals[0].completion_tokens < 12
    assert (
        finals[1].finish_reason == "length"
        and finals[1].text == model.generate_text(["beta gamma"], max_new_tokens=12)[0]
    )


def test_generation_stops_at_the_context_length(model):
    n_prompt = len(model.prompt_ids("hello"))
    old = model.config.llm.max_length
    model.config.llm.max_length = n_prompt + 3
    try:
        ev = list(model.generate_events(["hello"], max_new_tokens=50))[-1]
        assert ev.finish_reason == "length" and ev.completion_tokens == 3 and ev.prompt_tokens == n_prompt
        model.config.llm.max_length = n_prompt
        ev = list(model.generate_events(["hello"], max_new_tokens=50))[-1]
        assert ev.completion_tokens == 0 and ev.text == ""
    finally:
        model.config.llm.max_length = old


def test_repetition_penalty_in_the_loop_avoids_seen_tokens(model):
    prompt = "count with me please"
    run = model.generate_events([prompt], sampling=SamplingParams(max_new_tokens=30, repetition_penalty=100.0))
    list(run)
    ids = run.rows[0].ids
    assert len(ids) == 30 and len(set(ids)) == 30
    assert not set(ids) & set(model.prompt_ids(prompt))
    plain = model.generate_events([prompt], max_new_tokens=30)
    list(plain)
    assert len(set(plain.rows[0].ids)) < 30  # the tiny model repeats itself without the penalty


def test_conversation_prompt_carries_history_and_images_in_their_turn(model):
    im = _img(40, 30, 1)
    msgs = [
        {"role": "user", "content": "<image>\nWhat is it?"},
        {"role": "assistant", "content": "A cat."},
        {"role": "user", "content": "And its colour?"},
    ]
    ids = model.prompt_ids(msgs)
    reply_ids = model.tokenizer("A cat.", add_special_tokens=False)["input_ids"]
    at = [i for i in range(len(ids)) if ids[i : i + len(reply_ids)] == reply_ids]
    assert len(at) == 1  # the earlier reply is in the prompt
    assert ids.count(-200) == 1 and ids.index(-200) < at[0]  # the image sits in the first turn
    out = model.generate_text([msgs], [[im]], max_new_tokens=6)
    assert isinstance(out[0], str)
    with pytest.raises(ValueError, match="1 <image> placeholders but 0 images"):
        model.generate_text([msgs], [[]])


def test_math_sanity_top_p_probabilities():
    # the kept set renormalises: p=0.75 on (0.5, 0.3, 0.15, 0.05) gives (0.625, 0.375)
    lg = top_p_mask(torch.tensor([[0.5, 0.3, 0.15, 0.05]]).log(), torch.tensor([0.75]))
    assert torch.allclose(lg.softmax(-1), torch.tensor([[0.625, 0.375, 0.0, 0.0]]))
    assert math.isclose(0.5 / 0.8, 0.625)


# ---- continuous batching: rows joining a running batch ------------------------------------------------------


def _drive(run, joins):
    """Iterate ``run``; at step boundary k, join the runs ``joins[k]()`` returns. Returns {row: final event} and
    {row: deltas}."""
    finals, deltas, step = {}, {}, 0
    for ev in run:
        if ev.step:
            step += 1
            if step in joins:
                for other in joins[step]():
                    run.join(other)
            continue
        deltas.setdefault(ev.row, []).append(ev.delta)
        if ev.finished:
            finals[ev.row] = ev
    return finals, deltas


@pytest.fixture(scope="module")
def sensitive():
    from helpers import sensitive_tiny_model

    return sensitive_tiny_model()


def test_rows_joining_mid_run_get_their_solo_answers(sensitive):
    model = sensitive
    red, blue = _img(40, 30, 1), _img(30, 50, 2)
    first = (
        ["alpha", "<image>\nbeta"],
        [[], [red]],
        [SamplingParams(max_new_tokens=14), SamplingParams(max_new_tokens=6)],
    )
    later = (
        ["a much longer prompt than any of the first ones, to make the joined cache longer", "<image>\ndelta"],
        [[], [blue]],
        [SamplingParams(max_new_tokens=9), SamplingParams(temperature=1.0, seed=5, max_new_tokens=8)],
    )
    last = (["x"], [[]], [SamplingParams(max_new_tokens=4)])
    run = model.generate_events(first[0], first[1], sampling=first[2], stream=True, step_events=True)
    assert run.joinable()
    joins = {
        3: lambda: [
            model.generate_events(later[0], later[1], sampling=later[2], stream=[False, True], step_events=True)
        ],
        8: lambda: [model.generate_events(last[0], last[1], sampling=last[2], step_events=True)],
    }
    finals, deltas = _drive(run, joins)
    texts, ims, params = first[0] + later[0] + last[0], first[1] + later[1] + last[1], first[2] + later[2] + last[2]
    solo = [model.generate_text([t], [i], sampling=p)[0] for t, i, p in zip(texts, ims, params)]
    assert [finals[b].text for b in range(5)] == solo
    assert [finals[b].completion_tokens for b in range(5)] == [14, 6, 9, 8, 4]
    assert "".join(deltas[3]) == solo[3] and "".join(deltas[0]) == solo[0]
    assert len(set(solo)) == 5  # the answers differ, so a mixed-up row would show


def test_cache_is_trimmed_when_the_rows_that_needed_its_columns_leave(sensitive):
    model = sensitive
    masks = []
    h = model.llm.register_forward_pre_hook(lambda m, a, kw: masks.append(kw["attention_mask"].shape), with_kwargs=True)
    try:
        long_prompt = "a long prompt " * 12
        run = model.generate_events([long_prompt], sampling=SamplingParams(max_new_tokens=3), step_events=True)
        n_short = len(model.prompt_ids("hi"))
        finals, _ = _drive(
            run,
            {1: lambda: [model.generate_events(["hi"], sampling=SamplingParams(max_new_tokens=12), step_events=True)]},
        )
    finally:
        h.remove()
    assert finals[1].text == model.generate_text(["hi"], max_new_tokens=12)[0]
    # the last decode step of the short row: its own prompt + 11 fed tokens, none of the long row's columns left
    assert masks[-1] == (1, n_short + 11)


# ---- plug-ins of the decode loop: per-row processors, option likelihood -------------------------------------


class ForceTokens:
    """A ``RowProcessor`` that allows exactly one token per step (the next of ``ids``) and is complete after the
    last; every ``process_batch`` call is recorded with its row count (one call per step for all such rows)."""

    calls: list[int] = []

    def __init__(self, ids):
        self.ids, self.k = list(ids), 0

    def accept(self, token: int) -> bool:
        assert token == self.ids[self.k]
        self.k += 1
        return self.k == len(self.ids)

    @classmethod
    def process_batch(cls, logits, processors):
        cls.calls.append(logits.shape[0])
        mask = torch.full_like(logits, float("-inf"))  # one mask for the batch, filled row by row
        for j, p in enumerate(processors):
            mask[j, p.ids[p.k]] = 0.0
        return logits + mask


def test_row_processors_constrain_their_rows_only_and_end_them(sensitive):
    model = sensitive
    forced = [model.answer_ids(" forced answer"), model.answer_ids(" other text here")]
    assert isinstance(ForceTokens(forced[0]), RowProcessor)
    texts = ["alpha", "beta gamma", "<image>\ndelta"]
    images = [[], [], [_img(30, 30, 8)]]
    free = model.generate_text([texts[1]], max_new_tokens=10)[0]
    ForceTokens.calls = []
    run = model.generate_events(
        texts,
        images,
        sampling=[
            SamplingParams(max_new_tokens=10),
            SamplingParams(max_new_tokens=10),
            SamplingParams(max_new_tokens=2),
        ],
        processors=[ForceTokens(forced[0]), None, ForceTokens(forced[1])],
    )
    finals = {ev.row: ev for ev in run if ev.finished}
    assert finals[0].text == "forced answer" and finals[0].finish_reason == "stop"
    assert finals[0].completion_tokens == len(forced[0])
    assert finals[1].text == free  # the unconstrained row is untouched
    assert finals[2].finish_reason == "length" and finals[2].completion_tokens == 2  # budget before completion
    assert ForceTokens.calls[:2] == [2, 2] and set(ForceTokens.calls[2:]) == {1}  # one call per step, shared


def test_a_row_with_a_processor_can_join_a_running_batch(sensitive):
    model = sensitive
    forced = model.answer_ids(" joined late")
    run = model.generate_events(["alpha"], sampling=SamplingParams(max_new_tokens=12), step_events=True)
    finals, _ = _drive(
        run,
        {
            2: lambda: [
                model.generate_events(["x"], max_new_tokens=30, processors=[ForceTokens(forced)], step_events=True)
            ]
        },
    )
    assert finals[1].text == "joined late" and finals[1].finish_reason == "stop"
    assert finals[0].text == model.generate_text(["alpha"], max_new_tokens=12)[0]


class _BigramState:
    """A decoder state whose next-token distribution depends only on the token just fed: after token 1,
    P(2) = 1/2 and P(1) = 1/4; after any other token, P(1) = 1/2 and P(2) = 1/4; the rest share 1/4."""

    V = 8

    def __init__(self, rows: int):
        self.rows, self.selected = rows, []

    @classmethod
    def logits_after(cls, tok: int) -> torch.Tensor:
        p = torch.full((cls.V,), (1 / 4) / (cls.V - 2))
        p[1], p[2] = (1 / 4, 1 / 2) if tok == 1 else (1 / 2, 1 / 4)
        return p.log()

    def select(self, rows):
        self.selected.append(rows.tolist())

    def step(self, tok):
        return torch.stack([self.logits_after(int(t)) for t in tok])


def test_option_logprobs_are_the_hand_computed_bigram_values():
    from cambrian.models.generate.contract import Prefill
    from cambrian.models.generate.scoring import option_logprobs

    # two prompts, the first ending in token 3, the second in token 1
    state = _BigramState(2)
    prefill = Prefill(torch.stack([_BigramState.logits_after(3), _BigramState.logits_after(1)]), state, [], [])
    got = option_logprobs(prefill, [[[1], [1, 2], [2, 1, 1]], [[2], [1, 1]]])
    ln = math.log
    want = [
        [ln(1 / 2), ln(1 / 2) + ln(1 / 2), ln(1 / 4) + ln(1 / 2) + ln(1 / 4)],
        [ln(1 / 2), ln(1 / 4) + ln(1 / 4)],
    ]
    for g, w in zip(got, want):
        assert g == pytest.approx(w, abs=1e-6)
    assert state.selected == [[0, 0, 0, 1, 1]]  # the prompt's state forked once per option
    with pytest.raises(ValueError, match="2 prompts but 1 option lists"):
        option_logprobs(prefill, [[[1]]])


def _teacher_forced(model, prompt, option) -> float:
    """Sum of the option tokens' log-probabilities from one plain forward over prompt + option."""
    ids, opt = model.prompt_ids(prompt), model.answer_ids(option)
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids + opt])).logits[0].float().log_softmax(-1)
    return sum(float(logits[len(ids) - 1 + t, tok]) for t, tok in enumerate(opt))


@pytest.mark.parametrize("kind", ["cambrian", "toy"])
def test_score_options_equals_teacher_forced_likelihood_on_both_implementations(kind):
    from helpers import make_vlm

    model = make_vlm(kind).eval()
    options = ["yes", "no thanks", "a much longer option"]
    got = model.score_options(["hello there"], None, [options])[0]
    assert got == pytest.approx([_teacher_forced(model, "hello there", o) for o in options], abs=1e-4)
    # a batch of prompts with images and different option counts: each prompt's scores as alone
    texts, images = ["<image>\nWhat colour?", "plain"], [[_img(40, 30, 1)], []]
    opts = [["red", "blue"], ["x", "yy", "zzz"]]
    batched = model.score_options(texts, images, opts)
    solo = [model.score_options([t], [i], [o])[0] for t, i, o in zip(texts, images, opts)]
    assert [len(s) for s in batched] == [2, 3]
    for b, s in zip(batched, solo):
        assert b == pytest.approx(s, abs=1e-4)


def test_generation_and_long_tokenisation_do_not_print_library_noise(tmp_path):
    import logging
    import warnings

    from cambrian.models.cambrian_model import CambrianModel
    from cambrian.models.llm.tokenize import tokenize_conversation

    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record)

    h = Keep()
    tlog = logging.getLogger("transformers")
    tlog.addHandler(h)
    try:
        m = CambrianModel.load("tiny")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            m.generate_text(["<image>\nhi"], [[Image.new("RGB", (8, 8))]], max_new_tokens=3)
            tok = m.tokenizer
            tok.model_max_length = 8
            tok.deprecation_warnings.pop("sequence-length-is-longer-than-the-specified-maximum", None)
            msgs = [{"role": "user", "content": "red " * 40}, {"role": "assistant", "content": "blue " * 40}]
            ids = tokenize_conversation(msgs, m.template, tok, None)["input_ids"]
        assert len(ids) > 8
    finally:
        tlog.removeHandler(h)
    noisy = [str(w.message) for w in caught if "past_key_values" in str(w.message) or "cache_params" in str(w.message)]
    assert not noisy, noisy
    logged = [r.getMessage() for r in records]
    assert not [x for x in logged if "are deprecated" in x or "Token indices sequence length" in x], logged
