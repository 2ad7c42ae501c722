"""Per-record work of curation, shared by the streaming pipeline and the Hugging Face ``datasets`` pipeline.

* :func:`iter_raw_records` streams a LLaVA JSONL / JSON-array file as raw bytes, one record at a time.
* :class:`RecordProcessor` ``.scan(raw)`` -> (bad reason | None, 64-bit dedup key, answer word counts);
  ``.transform(raw, ordinal)`` -> (output line, response-format instructions added, instructions already there).

Both are deterministic functions of the bytes, so both pipelines give the same output byte for byte.
"""

from __future__ import annotations

import hashlib
import json
import os
from bisect import bisect_right
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

from ..llava import MAX_RECORD_BYTES, TEXT_ONLY_VALUES, inside_root, iter_json_array_spans, iter_jsonl_records
from ..samples import BadSample, normalize_conversation
from .prompts import classify, has_instruction, with_instruction
from .recipe import CurateRecipe, PromptRule, SourceRecipe

try:  # orjson (the ``data`` extra) parses and writes JSON several times faster than the standard library
    import orjson

    loads = orjson.loads

    def dumps(obj) -> bytes:
        return orjson.dumps(obj)
except ImportError:  # pragma: no cover - exercised only without the extra
    loads = json.loads

    def dumps(obj) -> bytes:
        return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


IMAGE_CACHE_SIZE = 1 << 16  # image content digests remembered (LRU), so shared images are read once
QUESTION_ROLES = ("human", "user")
ANSWER_ROLES = ("gpt", "assistant")
BAD_REASONS = (
    "record_too_large",
    "bad_json",
    "bad_record",
    "bad_conversation",
    "wrong_roles",  # the structural checks of training and `data validate` (cambrian.data.samples)
    "empty_turn",
    "image_count_mismatch",
    "bad_image_path",
    "image_outside_root",
    "missing_image",
)
# answer-length histogram (words per assistant turn): bin i holds [EDGES[i], EDGES[i+1])
ANSWER_EDGES = (0, 1, 2, 3, 4, 6, 11, 21, 51, 101, 201)
ANSWER_LABELS = ("0", "1", "2", "3", "4-5", "6-10", "11-20", "21-50", "51-100", "101-200", ">200")


def answer_bin(words: int) -> int:
    return bisect_right(ANSWER_EDGES, words) - 1


def is_json_array(path: Path) -> bool:
    """``.jsonl`` / ``.ndjson`` are JSON lines; any other file is a JSON array when its first non-blank byte is ``[``."""
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        return False
    with open(path, "rb") as f:
        head = f.read(4096).lstrip()
    if head.startswith(b"\xef\xbb\xbf"):
        head = head[3:].lstrip()
    return head.startswith(b"[")


def iter_raw_records(path: str | os.PathLike, max_bytes: int = MAX_RECORD_BYTES) -> Iterator[bytes | None]:
    """Each record's raw bytes in file order (blank lines are not records); ``None`` for a record over
    ``max_bytes``, read past without holding it."""
    path = Path(path)
    if is_json_array(path):
        with open(path, "rb") as f:
            for start, end in iter_json_array_spans(path):
                if end - start > max_bytes:
                    yield None
                    continue
                f.seek(start)
                yield f.read(end - start)
        return
    for _, _, _, raw in iter_jsonl_records(path, max_bytes):
        yield raw


class _Bad(Exception):
    def __init__(self, reason: str):
        self.reason = reason


@lru_cache(maxsize=IMAGE_CACHE_SIZE)
def image_digest(path: str) -> bytes | None:
    """BLAKE2b-128 of a file's bytes (None: missing or unreadable); cached per path (LRU)."""
    try:
        with open(path, "rb") as f:
            return hashlib.file_digest(f, lambda: hashlib.blake2b(digest_size=16)).digest()
    except OSError:
        return None


class RecordProcessor:
    """The scan / transform functions for one source of a recipe (picklable, for ``datasets.map(num_proc=...)``)."""

    def __init__(self, source: SourceRecipe, recipe: CurateRecipe):
        self.name = source.name
        self.root = os.path.abspath(source.images)
        self.confine = not source.allow_outside_root
        self.dedup = recipe.dedup
        self.rule = source.system_prompt if recipe.system_prompts else PromptRule("off")
        self.short_words = recipe.short_answer_words
        out_root = os.path.abspath(recipe.output_image_root())
        self.out_root = out_root
        # relative image paths of this source become prefix + path in the output
        if self.root == out_root:
            self.out_prefix: str | None = ""
        elif self.root.startswith(out_root.rstrip(os.sep) + os.sep):
            self.out_prefix = self.root[len(out_root.rstrip(os.sep)) + 1 :].replace(os.sep, "/") + "/"
        else:
            self.out_prefix = None  # images outside the output root: absolute paths

    # -- images ------------------------------------------------------------------------------------------
    def _image_paths(self, rec: dict) -> list[tuple[str, str]] | None:
        """[(path as written, absolute path)] of the record's images; raises _Bad for a bad / escaping path."""
        img = rec.get("image", rec.get("images"))
        if img is None:
            return None
        items = [img] if isinstance(img, str) else img
        if not isinstance(items, list):
            raise _Bad("bad_image_path")
        out = []
        for rel in items:
            if rel is None or (isinstance(rel, str) and rel in TEXT_ONLY_VALUES):
                continue
            if not isinstance(rel, str) or "\x00" in rel:
                raise _Bad("bad_image_path")
            if rel.startswith("/") or ".." in rel:
                p = Path(rel) if rel.startswith("/") else Path(self.root) / rel
                if self.confine and not inside_root(p, Path(self.root)):
                    raise _Bad("image_outside_root")
                out.append((rel, os.path.abspath(p)))
            else:
                out.append((rel, self.root + os.sep + rel))
        return out

    # -- pass 1 ------------------------------------------------------------------------------------------
    def scan(self, raw: bytes | None) -> tuple[str | None, int, list[int]]:
        """(bad reason or None, 64-bit dedup key (0 when dedup is off), words of each assistant turn)."""
        if raw is None:
            return "record_too_large", 0, []
        try:
            rec = loads(raw)
        except (ValueError, RecursionError):
            return "bad_json", 0, []
        if type(rec) is not dict:
            return "bad_record", 0, []
        conv = rec.get("conversations")
        if type(conv) is not list or not conv:
            return "bad_conversation", 0, []
        pairs = []
        words = []
        for t in conv:
            if type(t) is not dict:
                return "bad_conversation", 0, []
            f = t.get("from")
            v = t.get("value")
            if type(f) is not str or type(v) is not str:
                return "bad_conversation", 0, []
            pairs.append((f, v))
            if f in ANSWER_ROLES:
                words.append(len(v.split()))
        try:
            images = self._image_paths(rec)
        except _Bad as e:
            return e.reason, 0, []
        try:  # what training would drop is not curated either
            normalize_conversation(rec, len(images or ()))
        except BadSample as e:
            return ("bad_conversation" if e.reason == "bad_record" else e.reason), 0, []
        if self.dedup == "off":
            return None, 0, words
        h = hashlib.blake2b(dumps(pairs), digest_size=8)
        if images:
            for _rel, path in images:
                if self.dedup == "content":
                    d = image_digest(path)
                    if d is None:
                        return "missing_image", 0, []
                    h.update(d)
                else:
                    h.update(hashlib.blake2b(path.encode("utf-8", "surrogatepass"), digest_size=16).digest())
        return None, int.from_bytes(h.digest(), "little"), words

    # -- pass 2 ------------------------------------------------------------------------------------------
    def transform(self, raw: bytes, ordinal: int) -> tuple[bytes, list[str], int, list[int]]:
        """(output line, instruction names added, turns that already had one, words of each assistant turn);
        ``raw`` is a record that passed :meth:`scan`."""
        rec = loads(raw)
        conv = rec["conversations"]
        added: list[str] = []
        present = 0
        words = [len(t["value"].split()) for t in conv if t["from"] in ANSWER_ROLES]
        rule = self.rule
        if rule.mode != "off":
            for i in range(len(conv) - 1):
                q, a = conv[i], conv[i + 1]
                if q["from"] not in QUESTION_ROLES or a["from"] not in ANSWER_ROLES:
                    continue
                qv, av = q["value"], a["value"]
                always = rule.mode == "fixed" and rule.when == "always"
                if not always and len(av.split()) > self.short_words:
                    continue
                if has_instruction(qv):
                    present += 1
                    continue
                name = rule.prompt if rule.mode == "fixed" else classify(qv, av).prompt
                q["value"] = with_instruction(qv, name)
                added.append(name)
        key = "image" if "image" in rec else ("images" if "images" in rec else None)
        if key is not None:
            images = self._image_paths(rec) or []
            new = [self._out_path(rel, path) for rel, path in images]
            if isinstance(rec[key], str):
                rec[key] = new[0] if new else rec[key]
            else:
                rec[key] = new
        old_source = rec.get("source")
        if old_source is not None and old_source != self.name:
            rec["source_origin"] = old_source
        orig_id = rec.get("id")
        rec["id"] = f"{self.name}/{ordinal}"
        rec["source"] = self.name
        rec["source_id"] = orig_id
        rec["source_index"] = ordinal
        return dumps(rec) + b"\n", added, present, words

    def _out_path(self, rel: str, path: str) -> str:
        if self.out_prefix is not None and not (rel.startswith("/") or ".." in rel):
            return self.out_prefix + rel
        r = os.path.relpath(path, self.out_root)
        return path if r.startswith("..") else r.replace(os.sep, "/")
