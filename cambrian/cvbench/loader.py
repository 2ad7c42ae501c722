"""Read CV-Bench (or CV-Bench-Synth) in the official layout.

Accepted ``path``:

- a directory holding ``test_2d.parquet`` and/or ``test_3d.parquet`` (or ``test.parquet``), images embedded
  as HF Image structs ``{"bytes", "path"}``;
- a directory holding ``test.jsonl`` (or ``test_2d.jsonl`` / ``test_3d.jsonl``) and ``img/``; each row's image is
  ``<dir>/<filename>`` (or ``<dir>/<image>`` when ``image`` is a relative path);
- one ``.parquet`` or ``.jsonl`` file;
- the hub id ``nyu-visionx/CV-Bench`` when online: ``datasets`` is used if installed, else
  ``huggingface_hub.snapshot_download`` of the two parquet files. Neither is imported for local paths.

Rows are validated (:mod:`cambrian.cvbench.schema`); images are decoded lazily (:meth:`CVBenchRow.image`).
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError
from .schema import SchemaError, validate_rows

HUB_ID = "nyu-visionx/CV-Bench"
PARQUET_NAMES = ("test_2d.parquet", "test_3d.parquet")
JSONL_NAMES = ("test.jsonl",)
JSONL_SPLIT_NAMES = ("test_2d.jsonl", "test_3d.jsonl")


def _decode_image(img, root: Path | None, filename: str):
    from PIL import Image

    if isinstance(img, dict):
        if img.get("bytes"):
            return Image.open(io.BytesIO(img["bytes"])).convert("RGB")
        img = img.get("path")
    if isinstance(img, (bytes, bytearray)):
        return Image.open(io.BytesIO(img)).convert("RGB")
    if hasattr(img, "convert"):  # already a PIL image (datasets)
        return img.convert("RGB")
    candidates = []
    if isinstance(img, str) and img:
        candidates.append(Path(img) if os.path.isabs(img) or root is None else root / img)
    if root is not None:
        candidates.append(root / filename)
    for c in candidates:
        if c.is_file():
            return Image.open(c).convert("RGB")
    raise FileNotFoundError(f"image for {filename!r} not found (tried {', '.join(map(str, candidates)) or 'nothing'})")


@dataclass
class CVBenchRow:
    """One validated row; ``fields`` holds the schema columns except the raw image."""

    fields: dict
    _image: object
    _root: Path | None

    def __getitem__(self, k):
        return self.fields[k]

    def get(self, k, default=None):
        return self.fields.get(k, default)

    def image(self):
        return _decode_image(self._image, self._root, self.fields["filename"])


def _read_parquet(path: Path) -> list[dict]:
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pylist()


def _read_jsonl(path: Path) -> list[dict]:
    rows = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise SchemaError(f"{path}:{lineno}: invalid JSON ({e.msg})") from None
    return rows


def _rows_from_local(p: Path) -> tuple[list[dict], Path, bool]:
    """(raw rows, image root, images embedded?)"""
    if p.is_file():
        if p.suffix == ".parquet":
            return _read_parquet(p), p.parent, True
        if p.suffix in (".jsonl", ".json"):
            return _read_jsonl(p), p.parent, False
        raise InputError(f"{p}: expected a .parquet or .jsonl file")
    if not p.is_dir():
        raise FileNotFoundError(f"CV-Bench path {p} does not exist")
    pq_files = [p / n for n in PARQUET_NAMES if (p / n).is_file()]
    if not pq_files and (p / "test.parquet").is_file():
        pq_files = [p / "test.parquet"]
    if pq_files:
        rows = []
        for f in pq_files:
            rows += _read_parquet(f)
        return rows, p, True
    for names in (JSONL_NAMES, JSONL_SPLIT_NAMES):
        files = [p / n for n in names if (p / n).is_file()]
        if files:
            rows = []
            for f in files:
                rows += _read_jsonl(f)
            return rows, p, False
    raise FileNotFoundError(
        f"{p}: no CV-Bench files found (expected test_2d.parquet/test_3d.parquet, or test.jsonl with img/)"
    )


def _rows_from_hub(hub_id: str) -> tuple[list[dict], Path | None, bool]:
    try:
        import datasets  # optional
    except ImportError:
        datasets = None
    if datasets is not None:
        ds = datasets.load_dataset(hub_id, split="test")
        return [dict(r) for r in ds], None, True
    try:
        from huggingface_hub import snapshot_download
    except ImportError as e:
        raise ImportError(f"loading {hub_id!r} from the hub needs `datasets` or `huggingface_hub`") from e
    local = snapshot_download(hub_id, repo_type="dataset", allow_patterns=list(PARQUET_NAMES))
    return _rows_from_local(Path(local))


def load_cvbench(
    path: str | os.PathLike | None = None, *, types: tuple[str, ...] | None = None, limit: int | None = None
) -> list[CVBenchRow]:
    """Load and validate CV-Bench rows from ``path`` (see module doc). ``types`` keeps only "2D"/"3D" rows."""
    path = HUB_ID if path is None else path
    p = Path(path)
    if p.exists():
        raw, root, embedded = _rows_from_local(p)
    elif str(path).count("/") == 1 and not str(path).startswith((".", "/")):
        raw, root, embedded = _rows_from_hub(str(path))
    else:
        raise FileNotFoundError(f"CV-Bench path {path} does not exist")
    rows = validate_rows(raw, require_image=embedded)
    out = []
    for r in rows:
        if types and r["type"] not in types:
            continue
        img = r.pop("image")
        out.append(CVBenchRow(r, img, root))
        if limit is not None and len(out) >= limit:
            break
    return out
