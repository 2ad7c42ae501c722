"""``cambrian eval run --search``: the evaluation harness's model contract (``cambrian.eval.api``) answered through
:class:`~cambrian.search.guided.GuidedSearch`, and the search's own scores.

:class:`SearchEvalModel` has ``generate(requests, options)`` (generated answers, the official protocol) and
``score_options(requests, candidates)`` (``--mc likelihood``): each request with one image is a question for the
search; others (no image: the blind condition; several images) are answered as the plain model would. A
benchmark sample's two likelihood readings (letters, option texts) share one search per target.

With ``log_dir``, every question's search goes to ``log_dir/<bench>/search.jsonl`` (targets, visited patches,
found boxes, the memory prompt, the choice with and without search) and the first ``png_items`` searched questions
of each benchmark to ``log_dir/<bench>/<idx>.png`` (ground-truth boxes in green when the benchmark has them).
:func:`search_metrics` then scores the search itself against those boxes: Top-1 (the found box has IoU > 0.5 with
the target's box, V*'s ``visual_search.py`` measure) and the mean path length of the found ones.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from ..errors import InputError
from ..utils.io import append_jsonl, atomic_write_json
from .boxes import iou
from .guided import GuidedSearch, Question
from .settings import SearchSettings

LOG = "search.jsonl"
METRICS = "search_metrics.json"


def truth_of(samples) -> dict:
    """``{idx: [(name, box), ...]}`` from samples whose meta has ``targets`` (``[{"name", "box"}]``)."""
    return {s.idx: [(t["name"], tuple(t["box"])) for t in s.meta.get("targets", [])] for s in samples}


def _file_name(idx) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(idx))[:120] or "item"


class SearchEvalModel:
    """``truth``: ``{bench: {idx: [(name, box)]}}`` (drawn in the PNGs; with ``settings.targets == "annotated"``
    also the names searched for)."""

    def __init__(
        self,
        model,
        settings: SearchSettings | None = None,
        name: str = "model",
        log_dir=None,
        truth: dict | None = None,
        png_items: int = 8,
        system: str | None = None,
        localiser=None,
        batch_size: int = 8,
    ):
        self.model = model
        self.settings = settings or SearchSettings()
        self.name = name
        self.system = system
        self.search = GuidedSearch(model, self.settings, localiser=localiser, system=system, batch_size=batch_size)
        self.log_dir = Path(log_dir) if log_dir else None
        self.truth = truth or {}
        self.png_items = png_items
        self._cache: dict = {}
        self._drawn: set = set()
        self._pngs: dict = defaultdict(int)

    # ---- the eval contract --------------------------------------------------------------------------------------
    def generate(self, requests, options) -> list[str]:
        from ..eval.adapters import CambrianEvalModel, apply_stop

        if options.temperature and options.temperature > 0:
            raise InputError("search answers are greedy; temperature > 0 is not supported")
        searchable = [i for i, r in enumerate(requests) if len(r.images) == 1]
        out: list = [None] * len(requests)
        plain = [i for i in range(len(requests)) if i not in set(searchable)]
        if plain:
            answers = CambrianEvalModel(self.model, system=self.system).generate([requests[i] for i in plain], options)
            for i, a in zip(plain, answers):
                out[i] = a
        if searchable:
            outcomes = self._run([requests[i] for i in searchable], None, max_new_tokens=options.max_new_tokens)
            for i, o in zip(searchable, outcomes):
                out[i] = apply_stop(o.answer, options.stop).strip()
        return out

    def score_options(self, requests, candidates: Sequence[Sequence[str]]) -> list:
        from ..eval.adapters import CambrianEvalModel

        searchable = [i for i, r in enumerate(requests) if len(r.images) == 1]
        out: list = [None] * len(requests)
        plain = [i for i in range(len(requests)) if i not in set(searchable)]
        if plain:
            scores = CambrianEvalModel(self.model, system=self.system).score_options(
                [requests[i] for i in plain], [candidates[i] for i in plain]
            )
            for i, s in zip(plain, scores):
                out[i] = s
        if searchable:
            outcomes = self._run([requests[i] for i in searchable], [candidates[i] for i in searchable])
            for i, o in zip(searchable, outcomes):
                out[i] = o.option_scores
        return out

    # ---- search, logs, pictures ---------------------------------------------------------------------------------
    def _run(self, requests, candidates, max_new_tokens: int | None = None):
        questions = []
        for k, r in enumerate(requests):
            bench, idx = r.origin if r.origin else (None, None)
            given = None
            if self.settings.targets == "annotated":
                given = [name for name, _ in self.truth.get(bench, {}).get(idx, [])] or None
            questions.append(
                Question(
                    text=r.prompt,
                    image=r.images[0],
                    options=list(candidates[k]) if candidates is not None else None,
                    targets=given,
                    key=r.origin,
                )
            )
        outcomes = self.search.run(questions, cache=self._cache, max_new_tokens=max_new_tokens)
        if self.log_dir is not None:
            for r, o in zip(requests, outcomes):
                self._log(r.origin, o)
        return outcomes

    def _log(self, origin, outcome) -> None:
        from .draw import save_png

        bench, idx = origin if origin else ("unknown", None)
        bdir = self.log_dir / str(bench)
        bdir.mkdir(parents=True, exist_ok=True)
        with open(bdir / LOG, "a", encoding="utf-8") as f:  # a second reading of the same sample: its last line wins
            append_jsonl(f, {"bench": bench, "idx": idx, **outcome.to_dict()})
        if outcome.results and self._pngs[bench] < self.png_items and (bench, str(idx)) not in self._drawn:
            self._drawn.add((bench, str(idx)))
            self._pngs[bench] += 1
            truth = self.truth.get(bench, {}).get(idx, [])
            save_png(outcome, bdir / f"{_file_name(idx)}.png", truth=truth, title=f"{bench} #{idx}")


def search_metrics(log_dir, bench: str, truth: dict) -> dict:
    """Score the logged searches of ``bench`` against ``truth`` (``{idx: [(name, box)]}``) and write
    ``log_dir/<bench>/search_metrics.json``. A ground-truth target counts as found when a search for a target of
    the same name (case-insensitive) returned a box with IoU > 0.5; ``top1`` is over every target of every question,
    ``top1_searched`` over the questions that were searched."""
    path = Path(log_dir) / bench / LOG
    records: dict = {}
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                r = json.loads(line)
                records[str(r["idx"])] = r  # a rerun's line wins
    hits, hits_searched, n_targets, n_searched_targets, lengths, ious = 0, 0, 0, 0, [], []
    searched = sum(1 for r in records.values() if r.get("searches"))
    for idx, targets in truth.items():
        rec = records.get(str(idx))
        by_name = {s["target"].lower(): s for s in (rec or {}).get("searches", [])}
        for name, box in targets:
            n_targets += 1
            s = by_name.get(name.lower())
            if rec and rec.get("searches"):
                n_searched_targets += 1
            if s is None or not s["found"] or s["box"] is None:
                continue
            v = iou(tuple(s["box"]), tuple(box))
            ious.append(v)
            if v > 0.5:
                hits += 1
                hits_searched += 1
                lengths.append(s["path_length"])
    seconds = [sum(r.get("seconds", {}).values()) for r in records.values()]
    out = {
        "questions": len(truth),
        "logged": len(records),
        "searched": searched,
        "targets": n_targets,
        "top1": hits / n_targets if n_targets else None,
        "top1_searched": hits_searched / n_searched_targets if n_searched_targets else None,
        "mean_iou_found": sum(ious) / len(ious) if ious else None,
        "mean_path_length": sum(lengths) / len(lengths) if lengths else None,
        "seconds_per_question": sum(seconds) / len(seconds) if seconds else None,
    }
    atomic_write_json(Path(log_dir) / bench / METRICS, out)
    return out
