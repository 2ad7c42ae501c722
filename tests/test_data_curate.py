"""`cambrian data curate`: recipe checks, dedup, cap / ratio counts by hand, response-format instructions,
provenance, reports, and the datasets pipeline giving the streaming pipeline's output byte for byte."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cambrian.data.curate import curate, load_recipe, recipe_from_dict
from cambrian.data.curate.dedup import DigestSpool, duplicate_indices
from cambrian.data.curate.pipeline import selection
from cambrian.data.curate.prompts import RESPONSE_FORMATS, classify, has_instruction, has_options
from cambrian.data.curate.records import answer_bin, iter_raw_records
from cambrian.typed import ConfigError

WORD = RESPONSE_FORMATS["word_or_phrase"]
LETTER = RESPONSE_FORMATS["option_letter"]
NUMBER = RESPONSE_FORMATS["number_or_phrase"]


def qa(q, a, image=None, rid=None):
    r = {"conversations": [{"from": "human", "value": q}, {"from": "gpt", "value": a}]}
    if image is not None:
        r["image"] = image
    if rid is not None:
        r["id"] = rid
    return r


def write_jsonl(path: Path, recs, extra_lines=()):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for r in recs:
            f.write(json.dumps(r) + "\n")
        for line in extra_lines:
            f.write(line + "\n")
    return path


def png(path: Path, color):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (4, 4), color).save(path)
    return path


def read_out(out: Path):
    return [json.loads(x) for x in (out / "data.jsonl").read_text().splitlines()]


def run(tmp_path, recipe: dict, name="out", **kw):
    rec = recipe_from_dict(recipe, folder=tmp_path)
    stats = curate(rec, tmp_path / name, progress=False, plots=kw.pop("plots", False), **kw)
    return stats, read_out(tmp_path / name)


# ---- recipe ----------------------------------------------------------------------------------------------------
def test_recipe_paths_relative_to_recipe_file_and_defaults(tmp_path):
    write_jsonl(tmp_path / "d" / "a.jsonl", [qa("q", "a")])
    (tmp_path / "d" / "r.yaml").write_text("sources:\n  - {path: a.jsonl, images: imgs}\nratios: {general: 1}\n")
    r = load_recipe(tmp_path / "d" / "r.yaml")
    s = r.sources[0]
    assert s.path == tmp_path / "d" / "a.jsonl" and s.images == tmp_path / "d" / "imgs"
    assert (s.name, s.category, r.cap, r.dedup, r.system_prompts, r.short_answer_words, r.seed) == (
        "a",
        "general",
        350_000,
        "content",
        True,
        3,
        0,
    )


@pytest.mark.parametrize(
    "recipe, message",
    [
        ({"sources": [{"path": "a.jsonl"}], "capp": 3}, "unknown CurationRecipe keys ['capp'] (did you mean 'cap'?)"),
        ({"sources": [{"path": "a.jsonl", "imgs": "x"}]}, "(did you mean 'images'?)"),
        (
            {"sources": [{"path": "a.jsonl"}], "ratios": "cambrian-7n"},
            "unknown preset 'cambrian-7n' (did you mean 'cambrian-7m'?)",
        ),
        (
            {"sources": [{"path": "a.jsonl", "category": "genral"}], "ratios": {"general": 1}},
            "category 'genral' has no ratio, so the source would be dropped whole (did you mean 'general'?)",
        ),
        (
            {"sources": [{"path": "a.jsonl"}], "ratios": "cambrian-7m"},
            "ratios give weight to categories without a source: code",
        ),
        ({"sources": [{"path": "a.jsonl"}], "total": 5}, "total needs ratios"),
        ({"sources": [{"path": "a.jsonl"}], "cap": 0}, "cap must be a whole number >= 1 or null (no cap), got 0"),
        ({"sources": [{"path": "a.jsonl"}, {"path": "a.jsonl"}]}, "'a' is used twice"),
        ({"sources": [{"path": "nope.jsonl"}]}, "sources[0].path: no such file"),
        ({"sources": [{"path": "a.jsonl", "system_prompt": "wordorphrase"}]}, "(did you mean 'word_or_phrase'?)"),
        (
            {"sources": [{"path": "a.jsonl", "system_prompt": {"prompt": "letter", "when": "sometimes"}}]},
            "when must be one of 'short', 'always'",
        ),
        ({"sources": [{"path": "a.jsonl", "images": "elsewhere"}], "image_root": "root"}, "is outside image_root"),
        ({"sources": []}, "sources must be a non-empty list"),
        ({"sources": [{"path": "a.jsonl"}], "dedup": "fuzzy"}, "dedup must be one of 'content', 'path', 'off'"),
        ({"sources": [{"path": "a.jsonl"}], "ratios": {"general": "x"}}, "ratios.general must be a number, got 'x'"),
        ({"sources": [{"path": "a.jsonl"}], "seed": -1}, "seed must be a whole number >= 0, got -1"),
        ({}, "CurationRecipe needs a 'sources'"),
    ],
)
def test_recipe_errors_name_the_field(tmp_path, recipe, message):
    write_jsonl(tmp_path / "a.jsonl", [qa("q", "a")])
    with pytest.raises(ConfigError) as e:
        recipe_from_dict(recipe, folder=tmp_path, where="r.yaml")
    assert message in str(e.value) and str(e.value).startswith("r.yaml: ")


def test_cli_reports_one_error_line(tmp_path, capsys):
    from cambrian.cli.main import main

    write_jsonl(tmp_path / "a.jsonl", [qa("q", "a")])
    (tmp_path / "r.yaml").write_text("sources: [{path: a.jsonl}]\nseeed: 1\n")
    assert main(["data", "curate", str(tmp_path / "r.yaml"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {tmp_path / 'r.yaml'}: unknown CurationRecipe keys ['seeed'] (did you mean 'seed'?)"]


# ---- response-format instructions ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "question, answer, prompt",
    [
        ("<image>\nWhich animal?\nA. cat\nB. dog\nC. cow", "B", "option_letter"),
        ("<image>\nWhich animal? (A) cat (B) dog", "(A)", "option_letter"),
        ("<image>\nWhich letter marks the heart?", "C", "letter"),
        ("How many cars?", "12", "number_or_phrase"),
        ("What was the revenue?", "1,250.5", "number_or_phrase"),
        ("What share?", "45%", "number_or_phrase"),
        ("What colour is the bus?", "red", "word_or_phrase"),
        ("Where is it?", "on the table", "word_or_phrase"),
        ("Is it raining?", "Yes", "word_or_phrase"),
        ("Plan B: what next?", "B", "letter"),  # one option-like item is no option list
    ],
)
def test_question_types(question, answer, prompt):
    assert classify(question, answer).prompt == prompt


def test_option_and_instruction_detection():
    assert has_options("Pick one:\nA. x\nB. y") and not has_options("Option B. only")
    assert has_instruction("What?\nAnswer the question using a single word or phrase.")
    assert has_instruction("What?\nanswer with the option's letter from the given choices directly.")
    assert has_instruction("Answer the question with a single word.")
    assert not has_instruction("What is the answer to life?")


def test_instructions_added_by_rule_once_and_counted(tmp_path):
    recs = [
        qa("<image>\nWhich?\nA. cat\nB. dog", "A", "x.png"),  # option_letter
        qa("<image>\nHow many?", "3", "x.png"),  # number_or_phrase
        qa("<image>\nColour?", "dark red", "x.png"),  # word_or_phrase (2 words <= 3)
        qa("<image>\nDescribe it.", "A cat sits on a mat by the door.", "x.png"),  # long: nothing
        qa(f"<image>\nColour?\n{WORD}", "red", "x.png"),  # already there: not added again
        {
            "image": "x.png",
            "conversations": [  # multi-turn: per turn
                {"from": "human", "value": "<image>\nWhat is it?"},
                {"from": "gpt", "value": "A dog"},
                {"from": "human", "value": "Why is it running so fast?"},
                {"from": "gpt", "value": "It chases a ball that rolled away."},
                {"from": "human", "value": "Count the balls."},
                {"from": "gpt", "value": "2"},
            ],
        },
    ]
    png(tmp_path / "x.png", (1, 2, 3))
    write_jsonl(tmp_path / "a.jsonl", recs)
    stats, out = run(tmp_path, {"sources": [{"path": "a.jsonl"}]})
    qs = [[t["value"] for t in r["conversations"] if t["from"] == "human"] for r in out]
    assert qs[0] == [f"<image>\nWhich?\nA. cat\nB. dog\n{LETTER}"]
    assert qs[1] == [f"<image>\nHow many?\n{NUMBER}"]
    assert qs[2] == [f"<image>\nColour?\n{WORD}"]
    assert qs[3] == ["<image>\nDescribe it."]
    assert qs[4] == [f"<image>\nColour?\n{WORD}"]  # exactly one instruction
    assert qs[5] == [f"<image>\nWhat is it?\n{WORD}", "Why is it running so fast?", f"Count the balls.\n{NUMBER}"]
    sp = stats["sources"]["a"]["system_prompts"]
    assert sp == {
        "records": 4,
        "share": round(100 * 4 / 6, 2),
        "already_present": 1,
        "turns": {"number_or_phrase": 2, "option_letter": 1, "word_or_phrase": 2},
    }
    # answers are never touched
    assert [r["conversations"][1]["value"] for r in out][:3] == ["A", "3", "dark red"]


def test_instruction_rules_per_source_and_switch(tmp_path):
    write_jsonl(
        tmp_path / "a.jsonl", [qa("What is the value?", "7"), qa("Prove it.", "Because x > 1 implies x^2 > 1.")]
    )
    base = [
        {"path": "a.jsonl", "name": "fixed", "system_prompt": "short_direct"},
        {"path": "a.jsonl", "name": "always", "system_prompt": {"prompt": "reasoning", "when": "always"}},
        {"path": "a.jsonl", "name": "off", "system_prompt": "off"},
    ]
    stats, out = run(tmp_path, {"sources": base, "dedup": "off"})
    by = {}
    for r in out:
        by.setdefault(r["source"], []).append(r["conversations"][0]["value"])
    assert by["fixed"] == ["What is the value?\n" + RESPONSE_FORMATS["short_direct"], "Prove it."]
    assert by["always"] == [
        "What is the value?\n" + RESPONSE_FORMATS["reasoning"],
        "Prove it.\n" + RESPONSE_FORMATS["reasoning"],
    ]
    assert by["off"] == ["What is the value?", "Prove it."]
    _, out2 = run(tmp_path, {"sources": base, "dedup": "off", "system_prompts": False}, name="out2")
    assert all("\n" not in r["conversations"][0]["value"] for r in out2)
    _, out3 = run(tmp_path, {"sources": [{"path": "a.jsonl"}], "short_answer_words": 10}, name="out3")
    assert out3[1]["conversations"][0]["value"] == "Prove it.\n" + WORD  # 9 words is "short" at 10


# ---- dedup -----------------------------------------------------------------------------------------------------
def test_dedup_by_conversation_and_image_content(tmp_path):
    png(tmp_path / "img" / "a.png", (255, 0, 0))
    png(tmp_path / "img" / "sub" / "a_copy.png", (255, 0, 0))  # same bytes, other path
    png(tmp_path / "img" / "b.png", (0, 0, 255))
    recs = [
        qa("<image>\nColour?", "red", "a.png", rid="keep-first"),
        qa("<image>\nColour?", "red", "sub/a_copy.png", rid="dup-by-content"),
        qa("<image>\nColour?", "red", "b.png", rid="other-image"),
        qa("<image>\nShape?", "square", "a.png", rid="shares-image"),
        qa("<image>\nColour?", "red", "a.png", rid="dup-exact"),
        qa("Tell me a joke.", "No."),
        qa("Tell me a joke.", "No."),  # text-only duplicate
        {
            "image": ["a.png", "b.png"],
            "conversations": [{"from": "human", "value": "<image><image>\nSame?"}, {"from": "gpt", "value": "no"}],
        },
        {
            "image": ["b.png", "a.png"],
            "conversations": [{"from": "human", "value": "<image><image>\nSame?"}, {"from": "gpt", "value": "no"}],
        },
    ]
    write_jsonl(tmp_path / "a.jsonl", recs)
    stats, out = run(tmp_path, {"sources": [{"path": "a.jsonl", "images": "img"}], "system_prompts": False})
    assert [r["source_index"] for r in out] == [0, 2, 3, 5, 7, 8]  # image order matters for multi-image records
    assert stats["sources"]["a"]["duplicates"] == 3
    # path mode: the copy under another path is not a duplicate any more
    stats, out = run(tmp_path, {"sources": [{"path": "a.jsonl", "images": "img"}], "dedup": "path"}, name="p")
    assert stats["sources"]["a"]["duplicates"] == 2 and 1 in [r["source_index"] for r in out]
    stats, out = run(tmp_path, {"sources": [{"path": "a.jsonl", "images": "img"}], "dedup": "off"}, name="o")
    assert stats["sources"]["a"]["duplicates"] == 0 and len(out) == 9


def test_dedup_across_sources_keeps_the_first_in_recipe_order(tmp_path):
    write_jsonl(tmp_path / "a.jsonl", [qa("q1", "a1"), qa("q2", "a2")])
    write_jsonl(tmp_path / "b.jsonl", [qa("q2", "a2"), qa("q3", "a3"), qa("q1", "a1")])
    stats, out = run(tmp_path, {"sources": [{"path": "a.jsonl"}, {"path": "b.jsonl"}]})
    assert [(r["source"], r["source_index"]) for r in out] == [("a", 0), ("a", 1), ("b", 1)]
    assert (stats["sources"]["a"]["duplicates"], stats["sources"]["b"]["duplicates"]) == (0, 2)


def test_duplicate_indices_by_hand():
    keys = np.array([5, 3, 5, 9, 3, 5], dtype=np.uint64)
    # stable sort by key: 3@11, 3@14, 5@10, 5@12, 5@15, 9@13 -> the later copies 14, 12, 15 are duplicates
    assert sorted(duplicate_indices(keys, np.arange(10, 16, dtype=np.uint64)).tolist()) == [12, 14, 15]


def test_spool_matches_an_in_memory_set_across_chunks_and_buckets(tmp_path):
    rng = np.random.default_rng(0)
    uniq = rng.integers(0, 2**63, size=3000, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    keys = uniq[rng.integers(0, len(uniq), size=5000)]
    seen, expect = set(), []
    for i, k in enumerate(keys.tolist()):
        if k in seen:
            expect.append(i)
        seen.add(k)
    with DigestSpool(tmp_path, buckets=16, chunk=700) as sp:
        for i, k in enumerate(keys.tolist()):
            sp.add(k, i)
        got = sp.duplicates()
        assert len(list(sp.dir.glob("*.bin"))) == 16
    assert got.tolist() == expect and not any(tmp_path.iterdir())  # temp buckets removed


# ---- cap and ratios --------------------------------------------------------------------------------------------
def test_cap_and_ratio_counts_by_hand(tmp_path):
    # sizes 10, 6 (general) and 8 (ocr); cap 7 -> 7, 6, 7.  ratios general:ocr = 2:1 -> the largest total is
    # min(13 * 3/2, 7 * 3/1) = 19.5 -> 19; general 19*2/3 = 12.67, ocr 6.33 -> largest remainder 13 / 6;
    # general's 13 split 7:6 by capped size -> 7, 6.
    for name, n in (("g1", 10), ("g2", 6), ("o1", 8)):
        write_jsonl(tmp_path / f"{name}.jsonl", [qa(f"{name} question {i}", f"answer {i}") for i in range(n)])
    src = [{"path": "g1.jsonl"}, {"path": "g2.jsonl"}, {"path": "o1.jsonl", "category": "ocr"}]
    stats, out = run(tmp_path, {"sources": src, "cap": 7, "ratios": {"general": 2, "ocr": 1}, "seed": 3})
    s = stats["sources"]
    assert [s[k]["capped"] for k in ("g1", "g2", "o1")] == [7, 6, 7]
    assert [s[k]["selected"] for k in ("g1", "g2", "o1")] == [7, 6, 6]
    assert Counter(r["source"] for r in out) == {"g1": 7, "g2": 6, "o1": 6}
    c = stats["categories"]
    assert (c["general"]["selected"], c["ocr"]["selected"]) == (13, 6)
    assert c["general"]["target_share"] == pytest.approx(66.67) and c["ocr"]["share_selected"] == pytest.approx(31.58)
    # output order: recipe order, then file order; the subset depends on the seed
    idx = [r["source_index"] for r in out if r["source"] == "g1"]
    assert idx == sorted(idx) and len(set(idx)) == 7
    _, again = run(tmp_path, {"sources": src, "cap": 7, "ratios": {"general": 2, "ocr": 1}, "seed": 3}, name="again")
    assert again == out
    # explicit total: 9 at 2:1 -> 6 general (split 7:6 -> 3.23, 2.77 -> 3, 3) and 3 ocr
    stats, _ = run(tmp_path, {"sources": src, "cap": 7, "ratios": {"general": 2, "ocr": 1}, "total": 9}, name="t9")
    assert [stats["sources"][k]["selected"] for k in ("g1", "g2", "o1")] == [3, 3, 3]
    # no cap, no ratios: everything
    stats, _ = run(tmp_path, {"sources": src, "cap": None}, name="all")
    assert stats["totals"]["selected"] == 24
    with pytest.raises(Exception, match="exceeds what the capped sources can serve"):
        run(tmp_path, {"sources": src, "cap": 7, "ratios": {"general": 2, "ocr": 1}, "total": 20}, name="t20")


def test_selection_is_exact_and_uniform():
    for n, k in ((10, 0), (10, 10), (7, 3)):
        assert sum(selection(n, k, 0, "s")) == k
    counts = np.zeros(10)
    for seed in range(2000):
        counts += np.fromiter(selection(10, 3, seed, "s"), dtype=bool)
    assert np.allclose(counts / 2000, 0.3, atol=0.04)  # each record kept with probability k/n
    assert list(selection(50, 5, 1, "a")) == list(selection(50, 5, 1, "a")) != list(selection(50, 5, 1, "b"))


# ---- records, provenance, reports ------------------------------------------------------------------------------
def test_bad_records_counted_by_reason_and_provenance(tmp_path):
    png(tmp_path / "root" / "a" / "x.png", (1, 1, 1))
    recs = [
        qa("<image>\nq", "a", "x.png", rid=17),
        qa("<image>\nq2", "b", "../../secret.png"),
        qa("<image>\nq3", "c", "missing.png"),
        {"conversations": "nope"},
        [1, 2],
        {"id": 5, "source": "vqav2", **qa("q4", "an answer that is long enough to skip")},
    ]
    write_jsonl(tmp_path / "a.jsonl", recs, extra_lines=['{"id": 1,', "", "   "])
    stats, out = run(tmp_path, {"sources": [{"path": "a.jsonl", "images": "root/a"}], "image_root": "root"})
    assert stats["sources"]["a"]["bad_by_reason"] == {
        "bad_json": 1,
        "bad_record": 1,
        "bad_conversation": 1,
        "image_outside_root": 1,
        "missing_image": 1,
    }
    assert stats["sources"]["a"]["records"] == 7  # blank lines are not records
    assert out[0]["id"] == "a/0" and out[0]["source_id"] == 17 and out[0]["source_index"] == 0
    assert out[0]["image"] == "a/x.png"  # relative to image_root
    assert out[1]["source"] == "a" and out[1]["source_origin"] == "vqav2" and out[1]["source_id"] == 5
    assert stats["image_root"] == str(tmp_path / "root")


def test_json_array_sources_and_oversized_records(tmp_path):
    (tmp_path / "arr.json").write_text(json.dumps([qa("q1", "x"), qa("q2", "y"), qa("q3" * 100, "z")]))
    assert [r is None for r in iter_raw_records(tmp_path / "arr.json", max_bytes=200)] == [False, False, True]
    write_jsonl(tmp_path / "l.jsonl", [qa("q1", "x"), qa("q3" * 100, "z"), qa("q2", "y")])
    assert [r is None for r in iter_raw_records(tmp_path / "l.jsonl", max_bytes=200)] == [False, True, False]
    stats, out = run(tmp_path, {"sources": [{"path": "arr.json"}]})
    assert [r["conversations"][1]["value"] for r in out] == ["x", "y", "z"]


def test_reports_and_answer_histogram(tmp_path):
    write_jsonl(tmp_path / "a.jsonl", [qa("q", "one"), qa("q2", "two words"), qa("q3", " ".join(["w"] * 12))])
    stats, _ = run(tmp_path, {"sources": [{"path": "a.jsonl", "category": "ocr"}]}, plots=True)
    out = tmp_path / "out"
    for f in ("stats.json", "report.md", "categories.png", "sources.png", "answer_length.png"):
        assert (out / f).exists(), f
    for f in ("categories.png", "sources.png", "answer_length.png"):
        assert Image.open(out / f).size[0] > 300
    assert [answer_bin(w) for w in (0, 1, 2, 3, 4, 5, 6, 10, 11, 250)] == [0, 1, 2, 3, 4, 4, 5, 5, 6, 10]
    a = stats["answer_words"]
    assert a["input"] == a["output"] == [0, 1, 1, 0, 0, 0, 1, 0, 0, 0, 0]
    md = (out / "report.md").read_text()
    assert "| a | ocr | 3 | 0 | 0 | 3 | 3 | 3 | 2 (66.67%) |" in md
    assert json.loads((out / "stats.json").read_text())["totals"]["selected"] == 3
    with pytest.raises(Exception, match="already holds a curation"):
        run(tmp_path, {"sources": [{"path": "a.jsonl"}]})


def test_datasets_pipeline_gives_identical_output(tmp_path):
    pytest.importorskip("datasets")
    from cambrian.data.curate import curate_with_datasets

    png(tmp_path / "img" / "g" / "a.png", (255, 0, 0))
    png(tmp_path / "img" / "g" / "a2.png", (255, 0, 0))
    png(tmp_path / "img" / "o" / "b.png", (0, 255, 0))
    g = [
        qa(
            f"<image>\nWhat colour is thing {i % 40}?",
            ["red", "12", "B", "a long answer of many words here"][i % 4],
            ["a.png", "a2.png"][i % 2],
            rid=i,
        )
        for i in range(90)
    ]
    o = [qa(f"<image>\nRead line {i}\nA. x\nB. y", "AB"[i % 2], "b.png") for i in range(50)]
    write_jsonl(tmp_path / "g.jsonl", g, extra_lines=["{broken"])
    (tmp_path / "o.json").write_text(json.dumps(o))
    recipe = {
        "sources": [{"path": "g.jsonl", "images": "img/g"}, {"path": "o.json", "images": "img/o", "category": "ocr"}],
        "cap": 30,
        "ratios": {"general": 3, "ocr": 1},
        "seed": 7,
    }
    stats_s, out_s = run(tmp_path, recipe, name="stream")
    r = recipe_from_dict(recipe, folder=tmp_path)
    stats_h = curate_with_datasets(r, tmp_path / "hf", num_proc=2, progress=False, plots=False)
    assert (tmp_path / "hf" / "data.jsonl").read_bytes() == (tmp_path / "stream" / "data.jsonl").read_bytes()
    for k in ("sources", "categories", "totals", "answer_words", "bad_by_reason"):
        assert stats_h[k] == stats_s[k], k
    assert stats_s["sources"]["g"]["duplicates"] == 50  # 40 distinct questions, a.png == a2.png in content
    assert not [p for p in (tmp_path / "hf").iterdir() if p.name.startswith(".")]  # Arrow temp files removed
