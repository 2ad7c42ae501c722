"""The shared form of the synthetic short-answer benchmarks (``synth-attribute``, ``synth-text``, ``synth-chart``):
a directory with ``questions.jsonl`` (``{"id", "image", "question", "answer", "type", "choices"[, "scene"]}``,
``image`` relative to the file) and the images. Prompt: ``question + "\\nAnswer the question using a single word
or phrase."``. Each benchmark decides what counts as correct (:meth:`SynthQA.is_correct`). Scored per question
type, with ``chance`` = mean of 1 / len(choices) (guessing uniformly among the answers of the question's type).
These sets are reported next to the paper's benchmarks, never mixed into its table."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from ...errors import InputError
from ...prompts import SHORT
from ...utils.io import atomic_write_text, read_jsonl
from ..api import Benchmark, EvalSample, MCOptions
from ._common import lazy_image, mean

QUESTIONS = "questions.jsonl"
NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")


def normalize(text: str | None) -> str:
    return (text or "").strip().lower().rstrip(".").strip()


def first_word(text: str | None) -> str:
    """The first word of an answer, without surrounding quotes or punctuation ("'Stop'." -> "stop")."""
    words = normalize(text).split()
    return words[0].strip("\"'`.,:;!?()[]") if words else ""


def first_number(text: str | None) -> str | None:
    """The first integer written in digits, or as a number word as the first word ("seven" -> "7")."""
    m = re.search(r"-?\d+", normalize(text))
    if m:
        return str(int(m.group(0)))
    w = first_word(text)
    return str(NUMBER_WORDS.index(w)) if w in NUMBER_WORDS else None


def write_questions(out_dir: str | Path, rows: Sequence[dict]) -> Path:
    import json

    path = Path(out_dir) / QUESTIONS
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in rows))
    return path


class SynthQA(Benchmark):
    """A synthetic short-answer benchmark read from ``questions.jsonl`` (see the module docstring)."""

    max_new_tokens = 8
    primary_metric = "accuracy"
    chance = None  # depends on the questions loaded: score() reports it

    def load(self, path: str | None) -> list[EvalSample]:
        if path is None:
            raise FileNotFoundError(f"{self.name}: give the directory written by its builder (no hub copy)")
        root = Path(path)
        f = root / QUESTIONS
        if not f.is_file():
            raise FileNotFoundError(f"{self.name}: {f} not found")
        out = []
        for k, r in enumerate(read_jsonl(f)):
            missing = [x for x in ("id", "image", "question", "answer", "type", "choices") if x not in r]
            if missing:
                raise InputError(f"{self.name}: {f} line {k + 1} lacks {missing}")
            out.append(
                EvalSample(
                    idx=r["id"],
                    prompt=f"{r['question']}\n{SHORT}",
                    images=[lazy_image(r["image"], root)],
                    answer=str(r["answer"]),
                    meta={"category": r["type"], "choices": r["choices"], "scene": r.get("scene")},
                )
            )
        if not out:
            raise InputError(f"{self.name}: no questions in {f}")
        return out

    def extract(self, sample: EvalSample, prediction: str):
        return normalize(prediction)

    def mc_options(self, sample: EvalSample) -> MCOptions:
        """The answers of the question's type (``choices``), for ``--mc likelihood``."""
        return MCOptions(tuple(str(c) for c in sample.meta["choices"]))

    def is_correct(self, sample: EvalSample, prediction: str | None) -> bool:
        p, a = normalize(prediction), normalize(sample.answer)
        return p == a or first_word(prediction) == a

    def question_scores(self, samples: Sequence[EvalSample], predictions: dict) -> list[float]:
        return [float(self.is_correct(s, predictions.get(s.idx))) if s.idx in predictions else 0.0 for s in samples]

    def question_chance(self, sample: EvalSample) -> float:
        return 1.0 / len(sample.meta["choices"])

    def score(self, samples: Sequence[EvalSample], predictions: dict) -> dict:
        scores, by = self.question_scores(samples, predictions), defaultdict(list)
        for s, ok in zip(samples, scores):
            by[s.meta["category"]].append(ok)
        return {
            "accuracy": mean(scores),
            "per_type": {k: mean(v) for k, v in sorted(by.items())},
            "chance": mean([self.question_chance(s) for s in samples]),
            "chance_per_type": {
                k: mean([self.question_chance(s) for s in samples if s.meta["category"] == k]) for k in sorted(by)
            },
            "n_per_type": {k: len(v) for k, v in sorted(by.items())},
            "n": len(samples),
            "missing": sum(s.idx not in predictions for s in samples),
        }
