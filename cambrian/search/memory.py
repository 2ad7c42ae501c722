"""Visual working memory: the crops a search found, re-encoded by the model's own towers as extra images of the
prompt, each named with its box.

Layouts (``SearchSettings.layout``):

- ``vstar`` (V*'s): the whole image first, then ``"Additional visual information to focus on: {name} <image> at
  location [x0,y0,x1,y1]; ... ."``, a newline, the question. Boxes are fractions of the image padded to a square,
  three decimals (as ``vstar_bench_eval.py`` prints them).
- ``focus``: V*'s focus line with the crops and their boxes, then the question, without the whole image;
- ``crops``: the crops alone, one ``<image>`` each, then the question, for models that were only ever trained on one
  image per question (the whole image is what the question could not be answered from).

A crop is ``crop_scale`` x the found box (V*: 1.2), at least ``crop_min`` pixels on a side, kept inside the image.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..constants import IMAGE_TOKEN
from ..errors import InputError
from .boxes import Box, around, fmt, normalized
from .settings import SearchSettings

FOCUS = "Additional visual information to focus on: "


@dataclass
class MemoryItem:
    name: str
    box: Box  # the found box, image pixels
    window: tuple[int, int, int, int]  # the crop's box, image pixels
    crop: Any  # PIL image

    def to_dict(self) -> dict:
        return {"name": self.name, "box": [round(v, 1) for v in self.box], "window": list(self.window)}


def memory_items(image, found: Sequence[tuple[str, Box]], settings: SearchSettings) -> list[MemoryItem]:
    W, H = image.size
    out = []
    for name, box in found:
        window = around(box, settings.crop_scale, settings.crop_min, W, H)
        out.append(MemoryItem(name, box, window, image.crop(window)))
    return out


def focus_text(items: Sequence[MemoryItem], size: tuple[int, int]) -> str:
    """``Additional visual information to focus on: sphere <image> at location [0.120,...]; cube <image> at ...``."""
    parts = [f"{m.name} {IMAGE_TOKEN} at location {fmt(normalized(m.box, *size))}" for m in items]
    return FOCUS + "; ".join(parts) + "."


def memory_prompt(question: str, image, items: Sequence[MemoryItem], layout: str = "vstar") -> tuple[str, list]:
    """(prompt text with its ``<image>`` tags, the images in tag order) for ``question`` about ``image``."""
    if not items:
        return f"{IMAGE_TOKEN}\n{question}", [image]
    if layout == "vstar":
        return f"{IMAGE_TOKEN}\n{focus_text(items, image.size)}\n{question}", [image, *[m.crop for m in items]]
    if layout == "focus":
        return f"{focus_text(items, image.size)}\n{question}", [m.crop for m in items]
    if layout == "crops":
        return f"{IMAGE_TOKEN}\n" * len(items) + question, [m.crop for m in items]
    raise InputError(f"unknown memory layout {layout!r} (vstar, focus, crops)")
