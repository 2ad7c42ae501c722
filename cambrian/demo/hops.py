"""Which hop of a worked CV-Bench-Synth answer fails? (demo runs with ``reasoning``)

A worked answer ("x: red cube two, blue sphere six. The answer is (A)", :mod:`cambrian.data.scenes.positions`) lays
its hops out in text, so each can be checked against the test scene separately:

- **lookup**: the position word the model wrote for each named object vs the object's true cell (exact, and within
  one cell) — does the model read where an object is from the visual tokens?
- **order**: whether the two looked-up values are in the true order (chance 50%) — the part of the lookup that
  decides the answer;
- **decide**: whether the final letter follows from the model's *own* looked-up values (Relation: the smaller
  column is left / the smaller row is above; Depth: the lower object is closer) — can it compare and map to a
  letter, right or wrong values aside?
- Count: the stated count vs the truth, and whether the letter names the stated count.

Read per condition (own image, another image, no image): a hop that uses the image scores higher with the own image.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from ..cvbench.extract import extract_choice
from ..cvbench.schema import answer_index
from ..data.scenes.positions import COLUMN_WORDS, ROW_WORDS, reasoned_answer
from ..data.scenes.render import read_scenes
from ..errors import InputError
from ..utils.io import read_jsonl

_ITEM = re.compile(r"^(.*) (\S+)$")
_COUNT = re.compile(r"So (\d+)\.")


def _value(word: str) -> int | None:
    for vocab in (COLUMN_WORDS, ROW_WORDS):
        if word in vocab:
            return vocab.index(word)
    return None


def _values(text: str) -> list[int | None] | None:
    """``"x: red cube two, blue sphere six. The answer is (A)"`` -> [2, 6]."""
    if ":" not in text:
        return None
    body = text.split(":", 1)[1].split(". The answer", 1)[0]
    items = [_ITEM.match(x.strip()) for x in body.split(",")]
    return [_value(m.group(2)) if m else None for m in items] if len(items) == 2 else None


def _implied(task: str, axis: str, values: list[int], choices: list) -> int | None:
    """The option the model's own two values imply."""
    if task == "Depth":
        return 0 if values[0] > values[1] else 1  # lower in the image (larger row) = closer
    word = (
        ("left" if values[0] < values[1] else "right")
        if axis == "x"
        else ("above" if values[0] < values[1] else "below")
    )
    return choices.index(word) if word in choices else None


def hop_scores(rows: list[dict], predictions: dict, scenes: dict, grid: int) -> dict:
    """Per task, counts of each hop (see the module doc). ``rows``: CV-Bench-Synth items; ``predictions``: idx ->
    text; ``scenes``: the test scenes by image file name."""
    out: dict[str, Counter] = {}
    for r in rows:
        task, pred = r["task"], str(predictions.get(r["idx"], ""))
        gold_k = answer_index(r["answer"])
        s = out.setdefault(task, Counter())
        k = extract_choice(pred, list(r["choices"]))
        s["n"] += 1
        s["correct"] += int(k == gold_k)
        s["worked"] += int("answer is" in pred)
        scene = scenes.get(r["source_filename"])
        gold = scene and reasoned_answer(task, r["question"], r["choices"], gold_k, scene, grid, r.get("target_class"))
        if task == "Count":
            m = _COUNT.search(pred)
            if m:
                s["count_stated"] += 1
                s["count_true"] += int(m.group(1) == str(r["choices"][gold_k]))
                s["count_letter_follows"] += int(k is not None and str(r["choices"][k]) == m.group(1))
            continue
        if not gold or task not in ("Relation", "Depth"):
            continue
        mine, true = _values(pred), _values(gold)
        if not mine or not true or None in mine or pred[:1] != gold[:1]:
            continue
        s["lookups"] += 2
        s["lookup_exact"] += sum(a == b for a, b in zip(mine, true))
        s["lookup_within_1"] += sum(abs(a - b) <= 1 for a, b in zip(mine, true))
        if mine[0] != mine[1] and true[0] != true[1]:
            s["ordered"] += 1
            s["order_right"] += int((mine[0] < mine[1]) == (true[0] < true[1]))
            if k is not None:
                s["decided"] += 1
                s["decide_follows"] += int(_implied(task, pred[:1], mine, list(r["choices"])) == k)
    return {t: dict(c) for t, c in out.items()}


def run_hops(run_dir: str | Path, grid: int = 8) -> dict:
    """``{condition: {task: counts}}`` for a demo run directory (its CV-Bench-Synth test set, test scenes and the
    predictions of each condition that exists)."""
    d = Path(run_dir)
    test = d / "data" / "cvbench-synth" / "test.jsonl"
    if not test.exists():
        raise InputError(f"{d}: not a demo output folder (no {test.relative_to(d)})")
    rows = list(read_jsonl(test))
    scenes = {Path(s["image"]).name: s for s in read_scenes(d / "data" / "scenes" / "test")}
    res = {}
    for cond in ("own", "other", "blind"):
        p = d / "eval" / cond / "cvbench-synth" / "predictions.jsonl"
        if p.exists():
            preds = {x["idx"]: x["prediction"] for x in read_jsonl(p)}
            res[cond] = hop_scores(rows, preds, scenes, grid)
    return res


def hops_table(res: dict) -> str:
    """A markdown table: each hop's rate per task and condition."""
    rates = [
        ("answer right", "correct", "n"),
        ("lookup exact", "lookup_exact", "lookups"),
        ("lookup within 1", "lookup_within_1", "lookups"),
        ("values in the true order", "order_right", "ordered"),
        ("letter follows own values", "decide_follows", "decided"),
        ("count stated right", "count_true", "count_stated"),
        ("letter names the stated count", "count_letter_follows", "count_stated"),
    ]
    conds = list(res)
    lines = ["| task | hop | " + " | ".join(conds) + " |", "|---|---|" + "---|" * len(conds)]
    for task in sorted({t for c in res.values() for t in c}):
        for label, num, den in rates:
            cells = []
            for c in conds:
                s = res[c].get(task, {})
                cells.append(f"{100 * s.get(num, 0) / s[den]:.1f} ({s[den]})" if s.get(den) else "–")
            if any(x != "–" for x in cells):
                lines.append(f"| {task} | {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
