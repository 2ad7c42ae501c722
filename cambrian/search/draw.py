"""A search a person can look at: one PNG per question with the visited patches numbered in visiting order
(blue, lighter for later steps), the found boxes (red, with the target's name), the ground-truth boxes when known
(green), and beside the image the memory crops the answer was given, the question and the answer."""

from __future__ import annotations

import os
import textwrap
from collections.abc import Sequence
from pathlib import Path

from ..utils.io import temp_file_beside

MAX_SIDE = 1024
PANEL = 300


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def render(outcome, truth: Sequence[tuple[str, Sequence[float]]] = (), title: str | None = None):
    """The picture of one :class:`~cambrian.search.guided.SearchOutcome` as a PIL image. ``truth``: ``(name, box)``
    ground-truth boxes in image pixels."""
    from PIL import Image, ImageDraw

    image = outcome.question.image.convert("RGB")
    scale = min(1.0, MAX_SIDE / max(image.size))
    shown = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))))
    W, H = shown.size
    canvas = Image.new("RGB", (W + PANEL, max(H, 520)), "white")
    canvas.paste(shown, (0, 0))
    draw = ImageDraw.Draw(canvas)
    font, small = _font(16), _font(13)

    def sc(b):
        return [v * scale for v in b]

    for r in outcome.results:
        n = max(1, len(r.path))
        for k, step in enumerate(r.path):
            shade = int(40 + 170 * k / n)
            colour = (shade // 3, shade // 2, 255)
            x0, y0, x1, y1 = sc(step["patch"])
            draw.rectangle([x0 + 1, y0 + 1, x1 - 2, y1 - 2], outline=colour, width=3)
            # nested patches share corners: each level writes its step number a little further right
            dx = 6 + 22 * (step["level"] - 1)
            draw.text((x0 + dx, y0 + 4), str(k + 1), fill=colour, font=font, stroke_width=2, stroke_fill="white")
    for name, box in truth:
        x0, y0, x1, y1 = sc(box)
        draw.rectangle([x0, y0, x1, y1], outline=(0, 170, 0), width=3)
        draw.text((x0, y1 + 2), f"gt: {name}", fill=(0, 140, 0), font=small, stroke_width=2, stroke_fill="white")
    for r in outcome.results:
        if r.found and r.box is not None:
            x0, y0, x1, y1 = sc(r.box)
            draw.rectangle([x0, y0, x1, y1], outline=(230, 0, 0), width=3)
            draw.text((x0, max(0, y0 - 18)), r.target, fill=(230, 0, 0), font=font, stroke_width=2, stroke_fill="white")

    # the panel: question, memory crops, answer
    x, y = W + 10, 8
    lines = [title] if title else []
    lines += textwrap.wrap("Q: " + outcome.question.text.splitlines()[0], 38)
    for r in outcome.results:
        state = f"found ({r.confidence:.2f})" if r.found else f"not found (best {r.confidence:.2f})"
        lines.append(f"{r.target}: {state}, {len(r.path)} visited, {r.scored} scored")
    if not outcome.results:
        lines.append("no search" + (f" (margin {outcome.margin:.2f})" if outcome.margin is not None else ""))
    for line in lines:
        for part in textwrap.wrap(line, 40) or [""]:
            draw.text((x, y), part, fill="black", font=small)
            y += 16
    y += 6
    for m in outcome.memory:
        crop = m.crop.convert("RGB")
        side = PANEL - 20
        thumb = crop.resize((side, max(1, round(side * crop.height / max(1, crop.width)))))
        if thumb.height > 180:
            thumb = crop.resize((max(1, round(180 * crop.width / max(1, crop.height))), 180))
        if y + thumb.height + 40 > canvas.height:
            break
        draw.text((x, y), f"memory: {m.name}", fill=(230, 0, 0), font=small)
        canvas.paste(thumb, (x, y + 16))
        y += thumb.height + 24
    answer = f"A: {outcome.answer}"
    if outcome.plain_choice is not None and outcome.question.options:
        answer += f"  (without search: {outcome.question.options[outcome.plain_choice]})"
    for part in textwrap.wrap(answer, 40):
        draw.text((x, y), part, fill="black", font=small)
        y += 16
    return canvas


def save_png(outcome, path: str | os.PathLike, truth=(), title: str | None = None) -> Path:
    """Write :func:`render`'s picture to ``path`` (through a temp file: never a half-written PNG)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_file_beside(path)
    try:
        render(outcome, truth, title).save(tmp, format="PNG")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
