"""CV-Bench scoring with the official formula (docs/official-code.md#cvbench).

- per-source accuracy = micro accuracy inside the source;
- ``accuracy_2d`` = mean of the 2D sources' accuracies (ADE20K and COCO in the real set);
- ``accuracy_3d`` = mean of the 3D sources' accuracies (Omni3D in the real set);
- ``overall`` = mean(accuracy_2d, accuracy_3d) (when only one type is present, that type's accuracy);
- ``flat_accuracy`` = micro accuracy over all rows, a secondary figure (it is what lmms-eval reports; we do not
  use it as the headline).

Per-source keys are ``accuracy_{2d|3d}_{slug}``: the real sources keep the names fixed by the brief
(``accuracy_2d_ade``, ``accuracy_2d_coco``, ``accuracy_3d_omni``); any other source uses its lower-cased
alphanumeric name, so CV-Bench-Synth gives ``accuracy_2d_synth2d`` and ``accuracy_3d_synth3d``.

A prediction that cannot be parsed (see :mod:`cambrian.cvbench.extract`) or is missing counts as wrong; both are
counted (``parse_failure_rate``, ``n_parse_failures``, ``n_missing``) and the first few are listed.
All accuracies are fractions in [0, 1].
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Mapping

from ..errors import InputError
from .extract import extract_choice
from .schema import answer_index

SOURCE_SLUGS = {"ADE20K": "ade", "COCO": "coco", "Omni3D": "omni"}
MAX_LISTED_FAILURES = 20


def source_slug(source: str) -> str:
    return SOURCE_SLUGS.get(source) or re.sub(r"[^a-z0-9]+", "", source.lower()) or "unknown"


def _mean(xs: list[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def score_items(items: Iterable[Mapping], predictions: Mapping) -> dict:
    """Score predictions against CV-Bench items.

    ``items``: mappings with ``idx``, ``type`` ("2D"/"3D"), ``task``, ``source``, ``choices`` and ``answer``
    ("(C)"). ``predictions`` maps idx -> raw model text (missing idx = missing prediction).
    """
    per_source = defaultdict(lambda: [0, 0])  # source -> [correct, n]
    per_task = defaultdict(lambda: [0, 0])
    per_source_task = defaultdict(lambda: [0, 0])
    source_type: dict[str, str] = {}
    n = correct = n_fail = n_missing = 0
    failures = []
    for it in items:
        idx, src, task, typ = it["idx"], it["source"], it["task"], it["type"]
        if source_type.setdefault(src, typ) != typ:
            raise InputError(f"source {src!r} has both {source_type[src]} and {typ} rows (idx={idx!r})")
        gold = answer_index(it["answer"])
        if idx in predictions:
            pred_text = predictions[idx]
        elif str(idx) in predictions:
            pred_text = predictions[str(idx)]
        else:
            pred_text = None
            n_missing += 1
        k = extract_choice(pred_text, list(it["choices"])) if pred_text is not None else None
        if k is None and pred_text is not None:
            n_fail += 1
            if len(failures) < MAX_LISTED_FAILURES:
                failures.append({"idx": idx, "prediction": str(pred_text)[:200]})
        ok = int(k is not None and k == gold)
        n += 1
        correct += ok
        for d, key in ((per_source, src), (per_task, task), (per_source_task, f"{src}/{task}")):
            d[key][0] += ok
            d[key][1] += 1
    if n == 0:
        raise InputError("no CV-Bench items to score")

    acc = {s: c / m for s, (c, m) in per_source.items()}
    out: dict = {}
    for s in sorted(acc):
        out[f"accuracy_{source_type[s].lower()}_{source_slug(s)}"] = acc[s]
    a2 = _mean([acc[s] for s in sorted(acc) if source_type[s] == "2D"])
    a3 = _mean([acc[s] for s in sorted(acc) if source_type[s] == "3D"])
    out["accuracy_2d"] = a2
    out["accuracy_3d"] = a3
    out["overall"] = _mean([a for a in (a2, a3) if a is not None])
    out["flat_accuracy"] = correct / n
    out["per_task"] = {t: c / m for t, (c, m) in sorted(per_task.items())}
    out["per_source"] = {s: acc[s] for s in sorted(acc)}
    out["per_source_task"] = {k: c / m for k, (c, m) in sorted(per_source_task.items())}
    out["parse_failure_rate"] = n_fail / n
    out["n"] = n
    out["n_correct"] = correct
    out["n_parse_failures"] = n_fail
    out["n_missing"] = n_missing
    out["counts"] = {
        "per_task": {t: m for t, (_, m) in sorted(per_task.items())},
        "per_source": {s: m for s, (_, m) in sorted(per_source.items())},
    }
    out["parse_failures"] = failures
    return out
