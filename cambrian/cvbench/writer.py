"""CV-Bench files in the official layout: ``test_2d.parquet`` / ``test_3d.parquet`` (images embedded),
``test.jsonl`` / ``test_2d.jsonl`` / ``test_3d.jsonl`` (image = path), ``img/{2D|3D}/{task}/{source}_{n}.png``
with the questions' boxes drawn, and ``build_report.json``."""

from __future__ import annotations

import io
import json
import os
import re
from collections import Counter, defaultdict
from pathlib import Path

from ..utils.io import atomic_write_json, atomic_write_text
from ..utils.progress import progress_bar
from .schema import COLUMNS, TASKS, format_prompt, validate_rows

BOX_RGB = {"red": (255, 0, 0), "blue": (0, 0, 255), "green": (0, 255, 0)}


def draw_boxes(image, boxes: list, width: int | None = None):
    """Copy of ``image`` with each ``([x1, y1, x2, y2], colour)`` outlined."""
    from PIL import ImageDraw

    im = image.convert("RGB").copy()
    if not boxes:
        return im
    w = width or max(2, round(min(im.size) / 100))
    d = ImageDraw.Draw(im)
    for (x1, y1, x2, y2), colour in boxes:
        d.rectangle([x1 - w / 2, y1 - w / 2, x2 + w / 2 - 1, y2 + w / 2 - 1], outline=BOX_RGB[colour], width=w)
    return im


def _slug(s: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", s.lower()).strip("_") or "src"


def letter_balance(rows: list[dict]) -> dict:
    """{task: {letter: count}} of the gold answers."""
    out: dict = defaultdict(Counter)
    for r in rows:
        out[r["task"]][r["answer"][1]] += 1
    return {t: dict(sorted(c.items())) for t, c in sorted(out.items())}


def write_cvbench(
    questions: list,
    out_dir: str | os.PathLike,
    *,
    box_width: int | None = None,
    extra_report: dict | None = None,
    progress: bool = False,
) -> dict:
    """Write the questions (``builder.Question``) as rows in the official schema; boxes ``box_width`` pixels wide.
    Returns the build report (also written to ``build_report.json``; ``extra_report`` is appended to it)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from PIL import Image

    out = Path(out_dir)
    qs = sorted(questions, key=lambda q: TASKS.index(q.task))  # stable: keeps generation order inside a task
    counters: Counter = Counter()
    rows, blobs = [], []
    it = progress_bar(qs, desc="cvbench rows", unit="q", enabled=progress)
    cache: dict = {}
    for idx, q in enumerate(it):
        src_slug = _slug(q.source_dataset or q.source)
        n = counters[(q.type, q.task, src_slug)]
        counters[(q.type, q.task, src_slug)] += 1
        filename = f"img/{q.type}/{q.task.lower()}/{src_slug}_{n}.png"
        if q.image not in cache:
            cache.clear()
            cache[q.image] = Image.open(q.image).convert("RGB")
        im = draw_boxes(cache[q.image], q.boxes, box_width)
        (out / filename).parent.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        im.save(buf, format="PNG", compress_level=1)
        data = buf.getvalue()
        (out / filename).write_bytes(data)
        rows.append(
            {
                "idx": idx,
                "type": q.type,
                "task": q.task,
                "image": filename,
                "question": q.question,
                "choices": [str(c) for c in q.choices],
                "answer": q.answer,
                "prompt": format_prompt(q.question, q.choices),
                "filename": filename,
                "source": q.source,
                "source_dataset": q.source_dataset,
                "source_filename": q.source_filename,
                "target_class": q.target_class,
                "target_size": q.target_size,
                "bbox": [[float(v) for v in b] for b, _ in q.boxes] if q.boxes else None,
            }
        )
        blobs.append(data)
    validate_rows(rows)  # what we write must load

    schema = pa.schema(
        [
            ("idx", pa.int64()),
            ("type", pa.string()),
            ("task", pa.string()),
            ("image", pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
            ("question", pa.string()),
            ("choices", pa.list_(pa.string())),
            ("answer", pa.string()),
            ("prompt", pa.string()),
            ("filename", pa.string()),
            ("source", pa.string()),
            ("source_dataset", pa.string()),
            ("source_filename", pa.string()),
            ("target_class", pa.string()),
            ("target_size", pa.float64()),
            ("bbox", pa.list_(pa.list_(pa.float64()))),
        ]
    )
    out.mkdir(parents=True, exist_ok=True)
    for typ in ("2D", "3D"):
        sel = [i for i, r in enumerate(rows) if r["type"] == typ]
        recs = [{**rows[i], "image": {"bytes": blobs[i], "path": rows[i]["filename"]}} for i in sel]
        table = pa.Table.from_pylist(recs, schema=schema) if recs else schema.empty_table()
        tmp = out / f".test_{typ.lower()}.parquet.tmp"
        pq.write_table(table, tmp)
        os.replace(tmp, out / f"test_{typ.lower()}.parquet")
        atomic_write_text(
            out / f"test_{typ.lower()}.jsonl", "".join(json.dumps({k: rows[i][k] for k in COLUMNS}) + "\n" for i in sel)
        )
    atomic_write_text(out / "test.jsonl", "".join(json.dumps({k: r[k] for k in COLUMNS}) + "\n" for r in rows))

    report = {
        "n": len(rows),
        "per_task": dict(Counter(r["task"] for r in rows)),
        "per_source": dict(Counter(r["source"] for r in rows)),
        "per_source_task": dict(Counter(f"{r['source']}/{r['task']}" for r in rows)),
        "letter_balance": letter_balance(rows),
        "num_options": dict(Counter(str(len(r["choices"])) for r in rows)),
        "count_truths": dict(sorted(Counter(str(q.truth) for q in qs if q.task == "Count").items())),
        "relation_truths": dict(Counter(str(q.truth) for q in qs if q.task == "Relation")),
        **(extra_report or {}),
    }
    atomic_write_json(out / "build_report.json", report)
    return report
