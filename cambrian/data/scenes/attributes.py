"""Attribute questions about a rendered scene that a model answers by looking one word up: the colour of the only
object of a shape, the shape of the only object of a colour (one home for these templates: the stage-2 export
and the ``synth-attribute`` benchmark both use them)."""

from __future__ import annotations

from collections import Counter

NUMBER_WORDS = ["no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]

COLOR_Q = "What color is the {shape}?"
SHAPE_Q = "What shape is the {color} object?"
TYPES = ("color", "shape")


def attribute_questions(
    scene: dict, colors: tuple[str, ...] | None = None, shapes: tuple[str, ...] | None = None
) -> list[dict]:
    """``[{"type", "question", "answer", "choices", "instance_id"}]`` for one scene record (its visible objects).
    ``choices``: the possible answers of the type (the scene world's colours / shapes; defaults: the engine's)."""
    from .engine import COLORS, SHAPES

    colors = tuple(colors or COLORS)
    shapes = tuple(shapes or SHAPES[:3])
    objs = scene["objects"]
    n_shape = Counter(o["shape"] for o in objs)
    n_color = Counter(o["color"] for o in objs)
    out = []
    for o in objs:
        if n_shape[o["shape"]] == 1:
            out.append(
                {
                    "type": "color",
                    "question": COLOR_Q.format(shape=o["shape"]),
                    "answer": o["color"],
                    "choices": list(colors),
                    "instance_id": o.get("instance_id"),
                }
            )
        if n_color[o["color"]] == 1:
            out.append(
                {
                    "type": "shape",
                    "question": SHAPE_Q.format(color=o["color"]),
                    "answer": o["shape"],
                    "choices": list(shapes),
                    "instance_id": o.get("instance_id"),
                }
            )
    return out
