"""The CV-Bench row schema (HF ``nyu-visionx/CV-Bench``, docs/official-code.md#cvbench) and its validation.

One row per question. Columns, in the official order:

==================  ==========================================================================
idx                 global index (int; unique)
type                ``"2D"`` | ``"3D"``
task                ``"Count"`` | ``"Relation"`` | ``"Depth"`` | ``"Distance"``
image               the image: parquet = HF Image struct ``{"bytes", "path"}``; jsonl = path (may be absent,
                    then ``filename`` is used)
question            the question text
choices             list of option texts (2-6)
answer              the gold letter in parentheses, e.g. ``"(C)"``
prompt              question + ``" Select from the following choices."`` + ``"\\n(A) ..."`` lines
filename            path of the image inside the dataset, ``img/{2D|3D}/{task}/{source}_{n}.png``
source              ``ADE20K`` | ``COCO`` | ``Omni3D`` (real) ; ``Synth2D`` | ``Synth3D`` (CV-Bench-Synth)
source_dataset      finer source (e.g. ``Omni3D_SUNRGBD``); nullable
source_filename     file name in the source dataset; nullable
target_class        counted class (COCO rows in the real set); nullable
target_size         size of the target (COCO rows in the real set); nullable
bbox                boxes drawn on the image (Omni3D rows in the real set); nullable
==================  ==========================================================================

``validate_row`` raises :class:`SchemaError` whose message names the row (position and idx) and the field.
"""

from __future__ import annotations

import re
from typing import Any

from ..errors import InputError
from ..prompts import LETTER, LETTERS, SELECT_SUFFIX, letter, paren_option_lines, with_instruction  # noqa: F401

COLUMNS = [
    "idx",
    "type",
    "task",
    "image",
    "question",
    "choices",
    "answer",
    "prompt",
    "filename",
    "source",
    "source_dataset",
    "source_filename",
    "target_class",
    "target_size",
    "bbox",
]
REQUIRED = ["idx", "type", "task", "question", "choices", "answer", "prompt", "filename", "source"]
NULLABLE = ["image", "source_dataset", "source_filename", "target_class", "target_size", "bbox"]
TYPES = ("2D", "3D")
TASKS_2D = ("Count", "Relation")
TASKS_3D = ("Depth", "Distance")
TASKS = TASKS_2D + TASKS_3D

# the answer-format instruction, letters and option lines live in cambrian.prompts (re-exported here)
ANSWER_SUFFIX = LETTER
_ANSWER_RE = re.compile(r"^\(([A-Z])\)$")


class SchemaError(InputError):
    """A CV-Bench row does not follow the schema; the message names the row and the field."""


def answer_index(answer: str) -> int:
    """``"(C)"`` -> 2."""
    m = _ANSWER_RE.match(answer.strip())
    if not m:
        raise InputError(f"answer {answer!r} is not of the form '(A)'")
    return LETTERS.index(m.group(1))


def format_prompt(question: str, choices: list[str]) -> str:
    """The ``prompt`` column: question, the official 'Select from the following choices.' and one option per line."""
    return question.rstrip() + SELECT_SUFFIX + paren_option_lines(choices)


def model_prompt(row_prompt: str) -> str:
    """What the model is asked (CODE ``*_eval.py``): the row's prompt + ``"\\n"`` + the answer-format instruction."""
    return with_instruction(row_prompt, ANSWER_SUFFIX)


def _where(pos: int, row: dict) -> str:
    idx = row.get("idx", None) if isinstance(row, dict) else None
    return f"row {pos}" + (f" (idx={idx!r})" if idx is not None else "")


def _to_list(v: Any) -> Any:
    # pyarrow / numpy arrays -> python lists (recursively for bbox)
    if hasattr(v, "tolist") and not isinstance(v, (str, bytes)):
        v = v.tolist()
    if isinstance(v, tuple):
        v = list(v)
    if isinstance(v, list):
        return [_to_list(x) for x in v]
    return v


def validate_row(row: dict, pos: int, *, require_image: bool = False) -> dict:
    """Check one row and return a normalised copy (lists are python lists, missing nullable fields are None).

    Raises :class:`SchemaError` naming the row and the offending field.
    """
    if not isinstance(row, dict):
        raise SchemaError(f"row {pos}: expected an object, got {type(row).__name__}")
    where = _where(pos, row)
    out = {}
    for f in REQUIRED:
        if f not in row:
            raise SchemaError(f"{where}: missing field {f!r}")
        if row[f] is None:
            raise SchemaError(f"{where}: field {f!r} is null")
    for f in NULLABLE:
        out[f] = _to_list(row.get(f))
    if require_image and out["image"] is None:
        raise SchemaError(f"{where}: field 'image' is missing or null")

    idx = row["idx"]
    if isinstance(idx, bool) or not (isinstance(idx, str) or hasattr(idx, "__index__")):
        raise SchemaError(f"{where}: field 'idx' must be an int or str, got {type(idx).__name__}")
    out["idx"] = int(idx) if hasattr(idx, "__index__") else idx

    for f in ("type", "task", "question", "prompt", "filename", "source", "answer"):
        if not isinstance(row[f], str) or not row[f].strip():
            raise SchemaError(f"{where}: field {f!r} must be a non-empty string, got {row[f]!r}")
        out[f] = row[f]
    if out["type"] not in TYPES:
        raise SchemaError(f"{where}: field 'type' must be one of {TYPES}, got {out['type']!r}")
    if out["task"] not in TASKS:
        raise SchemaError(f"{where}: field 'task' must be one of {TASKS}, got {out['task']!r}")
    expected_type = "2D" if out["task"] in TASKS_2D else "3D"
    if out["type"] != expected_type:
        raise SchemaError(f"{where}: field 'type' is {out['type']!r} but task {out['task']!r} is {expected_type}")

    choices = _to_list(row["choices"])
    if not isinstance(choices, list) or len(choices) < 2:
        raise SchemaError(f"{where}: field 'choices' must be a list of at least 2 options, got {row['choices']!r}")
    if len(choices) > len(LETTERS):
        raise SchemaError(f"{where}: field 'choices' has {len(choices)} options (max {len(LETTERS)})")
    norm = []
    for c in choices:
        if isinstance(c, bool) or not isinstance(c, (str, int, float)):
            raise SchemaError(f"{where}: field 'choices' holds a non-text option {c!r}")
        norm.append(str(c))
    out["choices"] = norm

    try:
        k = answer_index(out["answer"])
    except ValueError:
        raise SchemaError(f"{where}: field 'answer' must look like '(A)', got {out['answer']!r}") from None
    if k >= len(norm):
        raise SchemaError(f"{where}: field 'answer' {out['answer']!r} is beyond the {len(norm)} choices")

    if out["bbox"] is not None and not isinstance(out["bbox"], list):
        raise SchemaError(f"{where}: field 'bbox' must be a list or null, got {type(out['bbox']).__name__}")
    ts = out["target_size"]
    if ts is not None and (isinstance(ts, bool) or not isinstance(ts, (int, float, str))):
        raise SchemaError(f"{where}: field 'target_size' must be a number or null, got {ts!r}")
    return out


def validate_rows(rows: list[dict], *, require_image: bool = False) -> list[dict]:
    """Validate every row and the uniqueness of ``idx``; returns normalised rows."""
    out, seen = [], {}
    for pos, r in enumerate(rows):
        v = validate_row(r, pos, require_image=require_image)
        if v["idx"] in seen:
            raise SchemaError(f"row {pos} (idx={v['idx']!r}): field 'idx' duplicates row {seen[v['idx']]}")
        seen[v["idx"]] = pos
        out.append(v)
    return out
