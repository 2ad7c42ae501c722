"""Lazy reading of LLaVA-format data (JSONL or a JSON array).

Record format (docs/official-code.md#data)::

    {"id": ..., "image": "rel/path.jpg" | ["a.jpg", "b.jpg"] | absent,
     "conversations": [{"from": "human", "value": "<image>\\nQ"}, {"from": "gpt", "value": "A"}, ...]}

A 7M-line file must not sit in memory as Python objects, so ``LlavaSource`` keeps only a NumPy array of byte
offsets (8 bytes per record) plus, for the length-grouped sampler, one int32 "modality length" per record;
``source[i]`` seeks and parses one record. (The official ``LazySupervisedDataset`` re-reads the file from the
top for every item, O(N) per sample; we index once.)

* JSONL: offsets are found by one pass over the lines.
* JSON array: one streaming pass over the bytes finds the span of every top-level object (a small scanner that
  tracks strings/escapes and brace depth, reading 4 MiB chunks), so the array is never ``json.load``-ed whole.
  It is slower than JSONL (pure-Python scan, roughly 50-100 MB/s); convert very large arrays to JSONL once.

The index (offsets + lengths) is cached next to nothing: pass ``index_cache`` (a directory) to keep it between
runs; it is keyed by the file's absolute path, size and mtime.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError

TEXT_ONLY_VALUES = ("", "None", "none", "nan")  # docs/official-code.md#data: these mean "no image"
_CHUNK = 4 << 20
MAX_RECORD_BYTES = 64 << 20  # one line / array element larger than this is counted (record_too_large), never read


def record_images(record: dict) -> list[str]:
    """Relative image paths of a record (``image`` may be a string, a list, or absent / a no-image marker)."""
    img = record.get("image", record.get("images"))
    if img is None:
        return []
    if isinstance(img, str):
        return [] if img in TEXT_ONLY_VALUES else [img]
    if isinstance(img, (list, tuple)):
        return [str(x) for x in img if x is not None and str(x) not in TEXT_ONLY_VALUES]
    return [str(img)]


def estimate_length(record: dict, image_tokens: int) -> int:
    """The official sampler length: whitespace words over all turns, plus ``image_tokens`` per image; negative for
    text-only samples (the sign carries the modality, docs/official-code.md#data/docs/official-code.md#sampler)."""
    words = 0
    conv = record.get("conversations")
    for turn in conv if isinstance(conv, list) else []:
        if isinstance(turn, dict):
            words += len(str(turn.get("value", "")).split())
    n_img = len(record_images(record))
    if n_img:
        return words + image_tokens * n_img
    return -max(words, 1)


def iter_jsonl_records(path: Path, max_bytes: int | None = None):
    """Yield ``(start, end, line number, raw bytes)`` of each non-blank line of a JSONL file; ``raw`` is None for a
    line over ``max_bytes`` (default ``MAX_RECORD_BYTES``), which is walked past in 1 MiB pieces and never held."""
    max_bytes = MAX_RECORD_BYTES if max_bytes is None else max_bytes
    with open(path, "rb", buffering=1 << 20) as f:
        readline = f.readline
        pos, ln = 0, 0
        while True:
            line = readline(max_bytes + 1)
            if not line:
                return
            ln += 1
            start, end = pos, pos + len(line)
            if len(line) > max_bytes and not line.endswith(b"\n"):
                while True:  # the rest of an over-long line
                    rest = readline(1 << 20)
                    end += len(rest)
                    if not rest or rest.endswith(b"\n"):
                        break
                line = None
            pos = end
            if line is None or not line.isspace():
                yield start, end, ln, line


def _scan_json_array(path: Path) -> list[tuple[int, int]]:
    """(start, end) byte spans of the top-level objects of a JSON array file, streaming."""
    return list(iter_json_array_spans(path))


def iter_json_array_spans(path: Path):
    """Yield the (start, end) byte spans of a JSON array file's top-level objects as the scan finds them (memory
    flat in the number of elements); a truncated / unbalanced file raises DataFileError when reached."""
    special = re.compile(rb'["\\{}\[\]]')
    depth = 0  # 0 = outside the array, 1 = inside the array, >=2 inside an element
    in_str = False
    escape = False
    start = -1
    pos = 0
    with open(path, "rb") as f:
        while True:
            chunk = f.read(_CHUNK)
            if not chunk:
                break
            i = 0
            if escape:  # an escape straddling the chunk boundary
                escape = False
                i = 1
            while True:
                m = special.search(chunk, i)
                if m is None:
                    break
                j = m.start()
                c = chunk[j : j + 1]
                i = j + 1
                if in_str:
                    if c == b"\\":
                        if j + 1 < len(chunk):
                            i = j + 2
                        else:
                            escape = True
                    elif c == b'"':
                        in_str = False
                    continue
                if c == b'"':
                    in_str = True
                elif c in (b"{", b"["):
                    if depth == 1:
                        if c != b"{":
                            raise DataFileError(f"{path}: top-level array elements must be objects (byte {pos + j})")
                        start = pos + j
                    depth += 1
                elif c in (b"}", b"]"):
                    depth -= 1
                    if depth == 1:
                        yield start, pos + j + 1
                    elif depth < 0:
                        raise DataFileError(f"{path}: unbalanced brackets at byte {pos + j}")
            pos += len(chunk)
    if depth != 0 or in_str:
        raise DataFileError(f"{path}: truncated JSON array")


class ImageOutsideRoot(InputError):
    """A record's image path (``../..``, absolute) points outside the source's image root."""

    def __init__(self, rel: str, root: Path):
        super().__init__(f"image path {rel!r} is outside the image root {str(root)!r}")
        self.rel = rel
        self.root = root


def inside_root(path: Path, root: Path) -> bool:
    """Whether ``path`` stays under ``root``. A path without ``..`` that lies under the root as written is inside
    (symlinks placed in the root by its owner are trusted); a path with ``..`` must also really resolve there."""
    root_abs = Path(os.path.abspath(root))
    if ".." not in path.parts and Path(os.path.abspath(path)).is_relative_to(root_abs):
        return True
    return Path(os.path.realpath(path)).is_relative_to(Path(os.path.realpath(root_abs)))


class DataFileError(InputError):
    """A data file that cannot be used at all (empty: no records)."""


_INDEX_VERSION = 2  # bump when the cached index layout changes
MAX_LINE_EXAMPLES = 20


def _line_of(path: Path, offset: int) -> int:
    """1-based line number of byte ``offset`` (counts newlines; used for the few bad-line examples of JSON arrays)."""
    n = 1
    with open(path, "rb") as f:
        left = offset
        while left > 0:
            chunk = f.read(min(_CHUNK, left))
            if not chunk:
                break
            n += chunk.count(b"\n")
            left -= len(chunk)
    return n


def parse_record(raw: bytes) -> tuple[dict | None, str | None, str]:
    """One JSONL line / JSON array element -> (record, None, "") or (None, reason, detail); reason is ``bad_json``
    (not valid JSON / not UTF-8) or ``bad_record`` (valid JSON that is not an object). The one parser shared by
    ``cambrian data validate`` and training."""
    try:
        rec = json.loads(raw)
    except (ValueError, RecursionError) as e:  # JSONDecodeError, UnicodeDecodeError, nesting too deep
        return None, "bad_json", f"not JSON ({type(e).__name__}: {str(e)[:80]})"
    if not isinstance(rec, dict):
        return None, "bad_record", f"a JSON {type(rec).__name__}, not an object"
    return rec, None, ""


class LlavaSource:
    """Random access to the records of one LLaVA JSON/JSONL file without holding them in memory.

    ``image_root``: directory the relative ``image`` paths are resolved against. When it is given, image paths of
    the records must stay under it (``../x`` or an absolute path elsewhere raise :class:`ImageOutsideRoot`, which
    the dataset counts as the bad reason ``image_outside_root``) unless ``allow_outside_root=True``. Without an
    image root, relative paths resolve against the file's directory and absolute paths are taken as they are.
    ``image_tokens``: visual tokens counted per image in :attr:`lengths` (sampler lengths only).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        image_root: str | os.PathLike | None = None,
        image_tokens: int = 576,
        index_cache: str | os.PathLike | None = None,
        name: str | None = None,
        allow_outside_root: bool = False,
    ):
        self.path = Path(path)
        self.image_root = Path(image_root) if image_root is not None else self.path.parent
        self.confine = image_root is not None and not allow_outside_root
        self.image_tokens = image_tokens
        self.name = name or self.path.stem
        self.format = "json" if self._is_json_array() else "jsonl"
        (self.offsets, self.ends, self.lengths, self.line_numbers, self.bad_by_reason, self.bad_examples) = (
            self._load_index(index_cache)
        )
        if len(self.offsets) == 0 and not self.bad_lines:
            raise DataFileError(f"{self.path}: no records")
        self._fh = None
        self._fh_pid = None

    # ---- indexing ----------------------------------------------------------------------------------------
    def _is_json_array(self) -> bool:
        """``.jsonl`` / ``.ndjson``: always JSON lines (a line may start with ``[``); else sniffed: ``[`` first."""
        if self.path.suffix.lower() in (".jsonl", ".ndjson"):
            return False
        with open(self.path, "rb") as f:
            head = f.read(4096).lstrip()
        if head.startswith(b"\xef\xbb\xbf"):
            head = head[3:].lstrip()
        return head.startswith(b"[")

    def _load_index(self, index_cache):
        """(offsets, ends, lengths, line numbers, bad lines by reason, bad-line examples [(line, reason, detail)])."""
        key = None
        if index_cache is not None:
            st = self.path.stat()
            h = hashlib.sha1(
                f"{self.path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{self.image_tokens}|v{_INDEX_VERSION}".encode()
            ).hexdigest()[:16]
            key = Path(index_cache) / f"{self.path.stem}-{h}.npz"
            if key.exists():
                try:
                    z = np.load(key)
                    meta = json.loads(str(z["meta"]))
                    return (
                        z["offsets"],
                        z["ends"],
                        z["lengths"],
                        z["line_numbers"],
                        dict(meta["bad_by_reason"]),
                        [tuple(x) for x in meta["bad_examples"]],
                    )
                except Exception:  # noqa: BLE001 - a stale / damaged cache is rebuilt
                    pass
        offsets, ends, lengths, line_nos = [], [], [], []
        bad: dict[str, int] = {}
        examples: list[tuple[int, str, str]] = []
        if self.format == "jsonl":
            records = iter_jsonl_records(self.path)
        else:
            records = ((s, e, None, None) for s, e in _scan_json_array(self.path))
        with open(self.path, "rb") as f:
            for s, e, ln, raw in records:
                if raw is None and e - s > MAX_RECORD_BYTES:
                    rec, reason, detail = None, "record_too_large", f"{e - s} bytes (limit {MAX_RECORD_BYTES})"
                else:
                    if raw is None:
                        f.seek(s)
                        raw = f.read(e - s)
                    rec, reason, detail = parse_record(raw)
                if rec is None:  # counted by reason, never served
                    bad[reason] = bad.get(reason, 0) + 1
                    if len(examples) < MAX_LINE_EXAMPLES:
                        examples.append((ln if ln is not None else _line_of(self.path, s), reason, detail))
                    continue
                offsets.append(s)
                ends.append(e)
                line_nos.append(ln if ln is not None else 0)
                lengths.append(estimate_length(rec, self.image_tokens))
        line_arr = np.asarray(line_nos, dtype=np.int64)
        if self.format == "json" and len(line_arr):  # line numbers of the array elements, one pass
            line_arr = _lines_of_offsets(self.path, np.asarray(offsets, dtype=np.int64))
        out = (
            np.asarray(offsets, dtype=np.int64),
            np.asarray(ends, dtype=np.int64),
            np.asarray(lengths, dtype=np.int32),
            line_arr,
            bad,
            examples,
        )
        if key is not None:
            key.parent.mkdir(parents=True, exist_ok=True)
            tmp = key.with_suffix(f".{os.getpid()}.tmp.npz")
            meta = json.dumps({"bad_by_reason": bad, "bad_examples": examples})
            np.savez(tmp, offsets=out[0], ends=out[1], lengths=out[2], line_numbers=out[3], meta=np.array(meta))
            os.replace(tmp, key)
        return out

    @property
    def bad_lines(self) -> int:
        """Lines / array elements that never became records (all reasons)."""
        return sum(self.bad_by_reason.values())

    @property
    def total(self) -> int:
        """Every non-blank line (JSONL) / array element: records + bad lines."""
        return len(self.offsets) + self.bad_lines

    def line_number(self, i: int) -> int:
        """1-based line of record ``i`` in the file."""
        return int(self.line_numbers[i])

    # ---- access ------------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.offsets)

    def _handle(self):
        # one handle per process (DataLoader workers fork after construction)
        if self._fh is None or self._fh_pid != os.getpid():
            self._fh = open(self.path, "rb")
            self._fh_pid = os.getpid()
        return self._fh

    def __getitem__(self, i: int) -> dict:
        if i < 0:
            i += len(self)
        f = self._handle()
        f.seek(int(self.offsets[i]))
        return json.loads(f.read(int(self.ends[i] - self.offsets[i])))

    def image_paths(self, record: dict) -> list[Path]:
        """Resolved image paths of a record; :class:`ImageOutsideRoot` when one leaves the image root."""
        return [self._resolve(p) for p in record_images(record)]

    def _resolve(self, rel: str) -> Path:
        p = Path(rel)
        full = p if p.is_absolute() else self.image_root / p
        if self.confine and not inside_root(full, self.image_root):
            raise ImageOutsideRoot(rel, self.image_root)
        return full

    def __getstate__(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["_fh"] = None
        d["_fh_pid"] = None
        return d


def _lines_of_offsets(path: Path, offsets: np.ndarray) -> np.ndarray:
    """1-based line numbers of sorted byte offsets, one streaming pass."""
    out = np.zeros(len(offsets), dtype=np.int64)
    k, line, pos = 0, 1, 0
    with open(path, "rb") as f:
        while k < len(offsets):
            chunk = f.read(_CHUNK)
            if not chunk:
                break
            end = pos + len(chunk)
            while k < len(offsets) and offsets[k] < end:
                out[k] = line + chunk.count(b"\n", 0, int(offsets[k]) - pos)
                k += 1
            line += chunk.count(b"\n")
            pos = end
    out[k:] = line
    return out
