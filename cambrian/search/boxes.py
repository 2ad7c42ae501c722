"""Boxes in image pixels, ``(x0, y0, x1, y1)`` with ``x1``/``y1`` exclusive (PIL's crop convention): intersection over
union, V*'s memory crop around a box, normalised coordinates for the prompt, and conversion from V*Bench's
``[x, y, w, h]``."""

from __future__ import annotations

from collections.abc import Sequence

Box = tuple[float, float, float, float]


def from_xywh(b: Sequence[float]) -> Box:
    x, y, w, h = (float(v) for v in b)
    return (x, y, x + w, y + h)


def area(b: Box) -> float:
    return max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1])


def iou(a: Box, b: Box) -> float:
    inter = area((max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])))
    union = area(a) + area(b) - inter
    return inter / union if union > 0 else 0.0


def clip(b: Box, width: int, height: int) -> Box:
    return (max(0.0, b[0]), max(0.0, b[1]), min(float(width), b[2]), min(float(height), b[3]))


def around(b: Box, scale: float, minimum: float, width: int, height: int) -> tuple[int, int, int, int]:
    """Integer window of ``scale`` times ``b`` (each side at least ``minimum`` pixels, at most the image), centred on
    ``b`` and shifted inside the image rather than cut by its border (so the window keeps its size)."""
    cx, cy = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2
    w = min(float(width), max(minimum, scale * (b[2] - b[0]), 1.0))
    h = min(float(height), max(minimum, scale * (b[3] - b[1]), 1.0))
    x0 = min(max(0.0, cx - w / 2), width - w)
    y0 = min(max(0.0, cy - h / 2), height - h)
    x0, y0 = int(round(x0)), int(round(y0))
    return (x0, y0, min(width, x0 + max(1, int(round(w)))), min(height, y0 + max(1, int(round(h)))))


def normalized(b: Box, width: int, height: int, square: bool = True) -> Box:
    """``b`` as fractions of the image, V*'s way: in the frame of the image padded to a square (centred), clipped to
    [0, 1]. ``square=False``: fractions of the image itself."""
    if square:
        side = max(width, height)
        dx, dy = (side - width) / 2, (side - height) / 2
        vals = ((b[0] + dx) / side, (b[1] + dy) / side, (b[2] + dx) / side, (b[3] + dy) / side)
    else:
        vals = (b[0] / width, b[1] / height, b[2] / width, b[3] / height)
    return tuple(min(1.0, max(0.0, v)) for v in vals)  # type: ignore[return-value]


def fmt(b: Box) -> str:
    """``[0.120,0.400,0.150,0.450]`` (three decimals, as V*'s prompt)."""
    return "[" + ",".join(f"{v:.3f}" for v in b) + "]"
