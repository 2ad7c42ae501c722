"""The training data checks without training (``cambrian data validate``, ``cambrian.cli.data_validate``): bad
samples by reason (missing / corrupt image, wrong roles, empty turns, ``<image>`` count != image count,
over-length, no supervised token). Exit status 1 when the bad share exceeds ``--max-bad-fraction``.

Without ``--model`` only the structural and image checks run (no tokenizer needed); with ``--model`` (a preset
or a saved model dir) every sample is also tokenised with the model's chat template and checked against
``--max-length`` with the model's visual-token counts, exactly as the trainer does.
"""

from __future__ import annotations

from collections import Counter

from .dataset import BAD_REASONS, BadSample, SupervisedDataset, normalize_conversation, open_images, record_image_paths
from .llava import LlavaSource


def validate(
    source: LlavaSource,
    dataset: SupervisedDataset | None = None,
    open_imgs: bool = True,
    limit: int | None = None,
    examples: int = 5,
) -> dict:
    """Counts by reason plus a few (index, id, detail) examples for each."""
    n = len(source) if limit is None else min(limit, len(source))
    bad: Counter = Counter()
    ex: dict[str, list] = {}
    for i in range(n):
        try:
            if dataset is not None:
                dataset.encode(i, load_pixels=False)
            else:
                rec = source[i]
                paths = record_image_paths(source, rec, i)
                normalize_conversation(rec, len(paths))
                if open_imgs:
                    open_images(paths)
        except BadSample as e:
            bad[e.reason] += 1
            if len(ex.setdefault(e.reason, [])) < examples:
                try:
                    rid = source[i].get("id")
                except Exception:  # noqa: BLE001 - a record too broken to have an id: the example shows none
                    rid = None
                ex[e.reason].append({"index": i, "line": source.line_number(i), "id": rid, "detail": e.detail})
    # lines that never became records (same parser as training: LlavaSource / parse_record)
    for reason, c in source.bad_by_reason.items():
        bad[reason] += c
    for ln, reason, detail in source.bad_examples:
        if len(ex.setdefault(reason, [])) < examples:
            ex[reason].append({"index": None, "line": ln, "id": None, "detail": detail})
    total = n + source.bad_lines
    return {
        "file": str(source.path),
        "samples": total,
        "bad": sum(bad.values()),
        "by_reason": dict(bad),
        "examples": ex,
        "text_only": int((source.lengths[:n] <= 0).sum()),
    }


def format_report(rep: dict) -> str:
    lines = [
        f"{rep['file']}: {rep['samples']} samples ({rep['text_only']} text-only), {rep['bad']} bad "
        f"({100 * rep['bad'] / max(rep['samples'], 1):.2f}%)"
    ]
    for r in BAD_REASONS:
        c = rep["by_reason"].get(r, 0)
        if c:
            lines.append(f"  {r:<22} {c}")
            for e in rep["examples"].get(r, []):
                where = f"line {e['line']}" if e.get("line") else f"#{e['index']}"
                rid = f" id={e['id']}" if e.get("id") is not None else ""
                lines.append(f"      {where}{rid} {e['detail']}")
    return "\n".join(lines)
