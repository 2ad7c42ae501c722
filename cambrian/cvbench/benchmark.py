"""CV-Bench as a benchmark of the evaluation harness (``cambrian eval score --bench cvbench --data PATH ...``).

- prompt: the row's ``prompt`` + ``"\\n"`` + "Answer with the option's letter from the given choices directly."
  (the official protocol; the model adapter adds ``<image>\\n`` in front);
- ``max_new_tokens`` 512 (official);
- extract: :func:`cambrian.cvbench.extract.extract_letter` (``"(B)"`` or ``None`` = parse failure);
- score: :func:`cambrian.cvbench.score.score_items` (official 2D/3D/overall formula, flat accuracy secondary).

``cvbench-synth`` is the same benchmark without a hub id, for CV-Bench-Synth directories made by
``cambrian data scenes`` (sources ``Synth2D`` / ``Synth3D``).
"""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import InputError
from ..eval.api import Benchmark, EvalSample, MCOptions, register_benchmark
from ..prompts import letters
from .extract import extract_letter
from .loader import HUB_ID, load_cvbench
from .schema import model_prompt
from .score import score_items

META_KEYS = ("type", "task", "source", "source_dataset", "source_filename", "choices", "filename", "question")


def row_to_sample(row) -> EvalSample:
    return EvalSample(
        idx=row["idx"],
        prompt=model_prompt(row["prompt"]),
        images=[row.image],  # lazy decode
        answer=row["answer"],
        meta={k: row.get(k) for k in META_KEYS},
    )


@register_benchmark("cvbench")
class CVBench(Benchmark):
    category = "Vision-Centric"
    max_new_tokens = 512
    primary_metric = "overall"
    hub_id = HUB_ID

    def load(self, path: str | None) -> list[EvalSample]:
        if path is None and self.hub_id is None:
            raise InputError(f"{self.name}: a local path is required")
        return [row_to_sample(r) for r in load_cvbench(path if path is not None else self.hub_id)]

    def extract(self, sample: EvalSample, prediction: str):
        return extract_letter(prediction, sample.meta["choices"])

    def mc_options(self, sample: EvalSample) -> MCOptions:
        choices = tuple(str(c) for c in sample.meta["choices"])
        return MCOptions(choices, tuple(letters(len(choices))))

    def score(self, samples: Sequence[EvalSample], predictions: dict) -> dict:
        items = [
            {"idx": s.idx, "answer": s.answer, **{k: s.meta[k] for k in ("type", "task", "source", "choices")}}
            for s in samples
        ]
        return score_items(items, predictions)


@register_benchmark("cvbench-synth")
class CVBenchSynth(CVBench):
    hub_id = None
