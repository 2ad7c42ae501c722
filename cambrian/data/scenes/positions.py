"""Where an object sits on the connector's query grid, as words a small LLM can read and compare, and worked
answers that read them.

Positions are the cell of the object's 2D box centre on a ``grid`` x ``grid`` grid over the image letterboxed to a
square (as the towers see it): the column as a number word (``"zero"`` left … ``"seven"`` right on an 8x8 grid)
and the row as an ordinal (``"first"`` top … ``"eighth"`` bottom). Two vocabularies, because a grounding target is
the *mean* of its words' embeddings: "two five" and "five two" would be the same vector, "two sixth" and "six
third" are not. Every one of these words is a single SmolLM2 token; digits are not (" 2" is the tokens " " and
"2", so digit targets would all share the space token's embedding).

On the demo's scenes (camera above a flat floor) the lower object in the image is the closer one: on 93 Depth
questions from 80 train scenes the lower box centre was the closer object every time, and the row words differed
for 91 of them. So a worked Depth answer compares rows.

``reasoned_answer`` writes a CV-Bench-style answer that first looks each named object up and then decides, ending in
"The answer is (X)" (the form the official scorer reads after its last "answer is"):

    Relation (left/right):  "x: red cube two, blue sphere six. The answer is (A)"
    Relation (above/below): "y: red cube second, blue sphere fifth. The answer is (B)"
    Depth:                  "y: red cube sixth, blue sphere third. The answer is (A)"   (lower = closer)
    Count:                  "cubes: red two fifth, blue six second. So 2. The answer is (C)"   (left to right)
                            "red spheres: none. So 0. The answer is (A)"

Distance questions have no worked form here (``None``: answer with the letter).
"""

from __future__ import annotations

import re

from ...prompts import letter
from .attributes import NUMBER_WORDS

COLUMN_WORDS = ("zero", *NUMBER_WORDS[1:8])
ROW_WORDS = ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth")
_RELATION = re.compile(r"^Considering the relative positions of the (.+?) and the (.+?) in the image provided")


def check_grid(grid: int) -> None:
    if grid > len(ROW_WORDS):
        raise ValueError(f"position words exist for grids up to {len(ROW_WORDS)}, not {grid}")


def place_words(column: int, row: int) -> str:
    """``"two fifth"``: a grid cell's column word and row ordinal."""
    return f"{COLUMN_WORDS[column]} {ROW_WORDS[row]}"


def grid_cell(obj: dict, width: int, height: int, grid: int) -> tuple[int, int]:
    """(column, row) of the centre of ``obj["bbox"]`` (COCO xywh, pixels) on the letterboxed square's grid."""
    check_grid(grid)
    s = max(width, height)
    x, y, w, h = obj["bbox"]
    cx = (x + w / 2 + (s - width) / 2) / s
    cy = (y + h / 2 + (s - height) / 2) / s
    return min(grid - 1, max(0, int(cx * grid))), min(grid - 1, max(0, int(cy * grid)))


def position_words(obj: dict, width: int, height: int, grid: int) -> str:
    """``"two fifth"``: the column word and the row ordinal of the object's centre."""
    return place_words(*grid_cell(obj, width, height, grid))


def find_object(scene: dict, name: str) -> dict | None:
    """The scene's only object called ``name`` (its category "red cube", or its shape "cube"), else None."""
    objs = scene["objects"]
    for key in ("category", "shape"):
        hits = [o for o in objs if o.get(key) == name]
        if hits:
            return hits[0] if len(hits) == 1 else None
    return None


def _names(task: str, question: str, choices: list) -> list[str] | None:
    if task == "Depth":
        return [str(c) for c in choices]
    if task == "Relation":
        m = _RELATION.match(question)
        return [m.group(1).replace(" (annotated by the red box)", ""), m.group(2)] if m else None
    return None


def _count(name: str, choices: list, answer_index: int, scene: dict, grid: int) -> str | None:
    objs = [o for o in scene["objects"] if name in (o.get("category"), o.get("shape"))]
    if str(len(objs)) != str(choices[answer_index]):  # e.g. an object the builder left out (too small)
        return None
    W, H = scene["camera"]["width"], scene["camera"]["height"]
    cells = sorted(((grid_cell(o, W, H, grid), o) for o in objs), key=lambda c: c[0])  # stable on ties
    shape_level = " " not in name  # "cubes": say each one's colour; "red cubes": the name says it
    items = [
        " ".join(([o["color"]] if shape_level else []) + [COLUMN_WORDS[col], ROW_WORDS[row]]) for (col, row), o in cells
    ]
    return f"{name}s: {', '.join(items) or 'none'}. So {len(objs)}. The answer is ({letter(answer_index)})"


def reasoned_answer(
    task: str,
    question: str,
    choices: list,
    answer_index: int,
    scene: dict,
    grid: int,
    target: str | None = None,
) -> str | None:
    """The worked answer of one CV-Bench-style question about ``scene`` (see the module doc), or None when the
    task has no worked form or a named object is not unique in the scene. ``target``: what a Count question
    counts (the builder's ``target_class``, "cube" or "red cube")."""
    if task == "Count":
        return _count(target, choices, answer_index, scene, grid) if target else None
    names = _names(task, question, choices)
    if not names:
        return None
    objs = [find_object(scene, n) for n in names]
    if any(o is None for o in objs):
        return None
    W, H = scene["camera"]["width"], scene["camera"]["height"]
    cells = [grid_cell(o, W, H, grid) for o in objs]
    if task == "Relation" and set(map(str, choices)) == {"left", "right"}:
        axis, values = "x", [COLUMN_WORDS[c[0]] for c in cells]
    else:
        axis, values = "y", [ROW_WORDS[c[1]] for c in cells]
    looked_up = ", ".join(f"{n} {v}" for n, v in zip(names, values))
    return f"{axis}: {looked_up}. The answer is ({letter(answer_index)})"


def position_questions(scene: dict, grid: int) -> list[dict]:
    """Direct lookups of where each uniquely named object is, answered with one position word: ``{"question",
    "answer", "type"}`` with type ``"column"`` ("In which column of the image, zero (left) to seven (right), is the
    red cube?" -> "three") or ``"row"`` (... "first (top) to eighth (bottom)" -> "fifth"), the object's centre cell
    as in the worked answers. Objects whose colour and shape another object shares are left out."""
    check_grid(grid)
    W, H = scene["camera"]["width"], scene["camera"]["height"]
    axes = (("column", COLUMN_WORDS, "left", "right"), ("row", ROW_WORDS, "top", "bottom"))
    out = []
    for o in scene["objects"]:
        name = o["category"]
        if find_object(scene, name) is not o:
            continue
        for k, (axis, words, low, high) in enumerate(axes):
            out.append(
                {
                    "question": f"In which {axis} of the image, {words[0]} ({low}) to {words[grid - 1]} ({high}), "
                    f"is the {name}?",
                    "answer": words[grid_cell(o, W, H, grid)[k]],
                    "type": axis,
                }
            )
    return out
