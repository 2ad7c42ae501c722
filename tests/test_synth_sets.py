"""synth-text and synth-chart: generators (hand-checked items, reproducibility, grounding cells) and scorers
(hand-checked predictions)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cambrian.data.synth.chart import render_chart
from cambrian.data.synth.split import cells_from_regions, grounding_records, qa_records, read_items, write_split
from cambrian.data.synth.text import NUMBERS, WORDS, render_sign
from cambrian.eval.api import EvalSample, get_benchmark


def test_sign_items_alternate_word_and_number_and_spread_the_words_evenly():
    rng = np.random.default_rng(0)
    items = [render_sign(rng, k)[1] for k in range(2 * len(WORDS))]
    assert [it["kind"] for it in items[:4]] == ["word", "number", "word", "number"]
    words = [it["text"] for it in items if it["kind"] == "word"]
    assert sorted(words) == sorted(WORDS)  # each word exactly once over 2 x 24 items
    for it in items:
        (q,) = it["questions"]
        if it["kind"] == "word":
            assert q == {
                "type": "word",
                "question": "What word is written on the sign?",
                "answer": it["text"],
                "choices": list(WORDS),
            }
        else:
            assert q["type"] == "number" and q["answer"] in NUMBERS and len(q["choices"]) == 90
            digits = [r["words"] for r in it["regions"][1:]]
            assert "".join(digits) == it["text"]  # one region per digit, left to right
            xs = [r["box"][0] for r in it["regions"][1:]]
            assert xs == sorted(xs)
        sign = it["regions"][0]["box"]
        for r in it["regions"][1:]:  # the text sits on the sign
            assert (
                sign[0] <= r["box"][0] and r["box"][2] <= sign[2] and sign[1] <= r["box"][1] and r["box"][3] <= sign[3]
            )


def test_sign_text_is_drawn_where_the_regions_say():
    im, it = render_sign(np.random.default_rng(3), 0)
    px = np.asarray(im).astype(int)
    x0, y0, x1, y1 = (int(round(v)) for v in it["regions"][1]["box"])
    sign_colour = px[it["regions"][0]["box"][1] + 4, it["regions"][0]["box"][0] + 4]
    inside = np.abs(px[y0:y1, x0:x1] - sign_colour).max(-1) > 60  # ink pixels differ from the sign colour
    assert inside.mean() > 0.1


def test_charts_answers_are_consistent_with_what_was_drawn():
    rng = np.random.default_rng(1)
    im, bar = render_chart(rng, 0)
    assert im.size == (256, 256) and bar["kind"] == "bar"
    vals, names = bar["values"], bar["colors"]
    q = {x["type"]: x for x in bar["questions"]}
    assert q["bar_max"]["answer"] == names[int(np.argmax(vals))]
    assert q["bar_min"]["answer"] == names[int(np.argmin(vals))]
    asked = q["bar_value"]["question"].split("of the ")[1].split(" bar")[0]
    assert q["bar_value"]["answer"] == str(vals[names.index(asked)])
    bars = [r for r in bar["regions"] if len(r["words"].split()) == 2]
    assert [r["words"] for r in bars] == [f"{c} {v}" for c, v in zip(names, vals)]
    heights = [r["box"][3] - r["box"][1] for r in bars]
    assert np.argsort(heights).tolist() == np.argsort(vals).tolist()  # taller box for the larger value
    _, line = render_chart(rng, 1)
    q = {x["type"]: x for x in line["questions"]}
    last = [s[-1] for s in line["series"]]
    assert q["line_max"]["answer"] == line["colors"][int(np.argmax(last))]
    asked = q["line_value"]["question"].split("of the ")[1].split(" line")[0]
    assert q["line_value"]["answer"] == str(last[line["colors"].index(asked)])


def test_splits_are_reproducible_and_train_differs_from_test(tmp_path):
    a = write_split(tmp_path / "a", 6, 0, render_sign, split="test")
    write_split(tmp_path / "b", 6, 0, render_sign, split="test")
    write_split(tmp_path / "c", 6, 0, render_sign, split="train")
    assert a == {"items": 6, "questions": 6}
    ia, ib, ic = (read_items(tmp_path / x) for x in "abc")
    strip = lambda items: [{k: v for k, v in it.items() if k not in ("id", "image")} for it in items]
    assert strip(ia) == strip(ib)
    assert (tmp_path / "a" / ia[0]["image"]).read_bytes() == (tmp_path / "b" / ib[0]["image"]).read_bytes()
    assert [it["regions"] for it in ia] != [it["regions"] for it in ic]


def test_grounding_cells_take_the_top_most_region_that_covers_enough():
    item = {
        "id": "x",
        "width": 40,
        "height": 40,
        "regions": [{"box": [0, 0, 20, 20], "words": "sign"}, {"box": [12, 0, 20, 10], "words": "4"}],
    }
    g = cells_from_regions(item, 4, min_cover=0.2)  # 10 px cells
    cells = np.array(g["cells"]).reshape(4, 4)
    # cell (0,1) is x 10-20, y 0-10: the digit covers 8x10 = 80% -> "4" although the sign covers all of it;
    # (1,1) y 10-20: the digit does not reach it -> "sign"; (0,0): sign only; right half: background
    assert cells.tolist() == [
        ["sign", "4", "background", "background"],
        ["sign", "sign", "background", "background"],
        ["background"] * 4,
        ["background"] * 4,
    ]
    assert g["weights"][:2] == [3.0, 3.0] and g["weights"][2] == 1.0


def test_training_records_from_a_split(tmp_path):
    write_split(tmp_path, 4, 0, render_chart, split="train")
    recs = grounding_records(tmp_path, 8, prefix="chart")
    assert len(recs) == 4 and all(len(r["grounding"]["cells"]) == 64 for r in recs)
    assert any("red" in c or "blue" in c or "green" in c for r in recs for c in r["grounding"]["cells"])
    qa, counts = qa_records(tmp_path, max_turns=6, prefix="chart")
    assert len(qa) == 4 and counts == {
        "chart_bar_value": 2,
        "chart_bar_max": 2,
        "chart_bar_min": 2,
        "chart_line_value": 2,
        "chart_line_max": 2,
    }
    conv = qa[0]["conversations"]
    assert conv[0]["value"].startswith("<image>\n") and conv[0]["value"].endswith("single word or phrase.")
    assert [t["from"] for t in conv] == ["human", "gpt"] * (len(conv) // 2)


# ---- scorers ---------------------------------------------------------------------------------------------------
def _s(typ, answer, choices=("a", "b")):
    return EvalSample(idx=0, prompt="", answer=answer, meta={"category": typ, "choices": list(choices)})


@pytest.mark.parametrize(
    ("typ", "answer", "prediction", "ok"),
    [
        ("word", "stop", "stop", True),
        ("word", "stop", "STOP.", True),
        ("word", "stop", "'Stop'", True),
        ("word", "stop", "stop sign", True),
        ("word", "stop", "The word is stop", False),
        ("word", "stop", "stops", False),
        ("number", "42", "42", True),
        ("number", "42", "It says 42.", True),
        ("number", "42", "4", False),
        ("number", "42", "424", False),
        ("number", "42", "forty-two", False),
    ],
)
def test_synth_text_scorer(typ, answer, prediction, ok):
    b = get_benchmark("synth-text")
    assert b.is_correct(_s(typ, answer), prediction) is ok


@pytest.mark.parametrize(
    ("typ", "answer", "prediction", "ok"),
    [
        ("bar_value", "7", "7", True),
        ("bar_value", "7", "seven", True),
        ("bar_value", "7", "7.0", True),
        ("bar_value", "7", "The value is 7", True),
        ("bar_value", "7", "17", False),
        ("line_value", "3", "three.", True),
        ("bar_max", "red", "Red.", True),
        ("bar_max", "red", "red bar", True),
        ("bar_max", "red", "the red one", False),
        ("line_max", "blue", "green", False),
    ],
)
def test_synth_chart_scorer(typ, answer, prediction, ok):
    b = get_benchmark("synth-chart")
    assert b.is_correct(_s(typ, answer), prediction) is ok


def test_benchmarks_build_load_and_score(tmp_path):
    from cambrian.eval.benchmarks.synth_chart import build_synth_chart
    from cambrian.eval.benchmarks.synth_text import build_synth_text

    info = build_synth_text(tmp_path / "t", 4)
    assert info == {"n": 4, "per_type": {"word": 2, "number": 2}}
    b = get_benchmark("synth-text")
    samples = b.load(str(tmp_path / "t"))
    assert samples[0].prompt.endswith("\nAnswer the question using a single word or phrase.")
    assert samples[0].load_images()[0].size == (256, 256)
    preds = {s.idx: s.answer for s in samples[:3]}  # 3 right, 1 missing
    m = b.score(samples, preds)
    assert m["accuracy"] == 0.75 and m["missing"] == 1
    assert m["chance"] == pytest.approx((1 / 24 + 1 / 90) / 2)
    assert b.question_scores(samples, preds) == [1.0, 1.0, 1.0, 0.0]
    info = build_synth_chart(tmp_path / "c", 2)
    assert info["n"] == 5  # a bar chart (3 questions) and a line chart (2)
    rows = [json.loads(x) for x in (tmp_path / "c" / "questions.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == list(range(5)) and {r["scene"] for r in rows} == {"test-00000", "test-00001"}
    c = get_benchmark("synth-chart")
    samples = c.load(str(tmp_path / "c"))
    assert c.score(samples, {s.idx: s.answer for s in samples})["accuracy"] == 1.0


def test_synth_attribute_keeps_its_scoring_on_the_shared_form(tmp_path):
    from cambrian.eval.benchmarks._synth import write_questions

    rows = [
        {
            "id": 0,
            "image": "x.png",
            "question": "What color is the sphere?",
            "answer": "red",
            "type": "color",
            "choices": ["red", "blue"],
        },
        {
            "id": 1,
            "image": "x.png",
            "question": "What shape is the red object?",
            "answer": "cube",
            "type": "shape",
            "choices": ["cube", "sphere", "cylinder"],
        },
    ]
    write_questions(tmp_path, rows)
    b = get_benchmark("synth-attribute")
    samples = b.load(str(tmp_path))
    m = b.score(samples, {0: "red sphere", 1: "sphere"})
    assert m["accuracy"] == 0.5 and m["per_type"] == {"color": 1.0, "shape": 0.0}
    assert m["chance"] == pytest.approx((1 / 2 + 1 / 3) / 2)
