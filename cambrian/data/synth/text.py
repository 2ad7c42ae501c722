"""``synth-text`` images: one sign with a word or a two-digit number on it, drawn with PIL in DejaVu Sans Bold
(the font file matplotlib ships).

- Even items carry a word of :data:`WORDS` (24 short words, each one SmolLM2 token; item ``2j`` takes word
  ``j mod 24``, so every word occurs equally often); odd items a number 10-99 (uniform).
- The sign is a coloured rectangle with a dark border at a random place and size; the text is upper case, 26-44 px
  high, black or white (whichever contrasts with the sign); the background is a random light colour with noise.
- Questions: "What word is written on the sign?" (type ``word``, chance 1/24) or "What number is written on the
  sign?" (type ``number``, chance 1/90); the answer is the word in lower case or the number's digits.
- Regions for grounding: the sign ("sign"), then the word's box (the word) or each digit's box (the digit), so a
  grounded token over a digit reads that digit and the number reads left to right along the grid.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

WORDS = (
    "stop open exit sale park bank bus milk book fish gold rain star tree door king road shop food time home city "
    "farm ship"
).split()
NUMBERS = [str(i) for i in range(10, 100)]
SIGN_COLORS = {
    "red": (200, 40, 40),
    "blue": (40, 70, 190),
    "green": (40, 140, 60),
    "yellow": (235, 200, 40),
    "orange": (235, 130, 30),
    "white": (245, 245, 245),
}
WORD_Q = "What word is written on the sign?"
NUMBER_Q = "What number is written on the sign?"


@cache
def font(size: int) -> ImageFont.FreeTypeFont:
    import matplotlib

    path = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans-Bold.ttf"
    return ImageFont.truetype(str(path), size)


def render_sign(rng: np.random.Generator, k: int, size: int = 256) -> tuple[Image.Image, dict]:
    """Item ``k`` of a split: (image, {"questions", "regions", "text", "kind"})."""
    kind = "word" if k % 2 == 0 else "number"
    text = WORDS[(k // 2) % len(WORDS)] if kind == "word" else NUMBERS[int(rng.integers(len(NUMBERS)))]
    bg = tuple(int(v) for v in rng.integers(170, 246, size=3))
    px = np.clip(np.array(bg)[None, None, :] + rng.normal(0, 6, size=(size, size, 3)), 0, 255).astype(np.uint8)
    im = Image.fromarray(px, "RGB")
    draw = ImageDraw.Draw(im)
    f = font(int(rng.integers(26, 45)))
    shown = text.upper()
    left, top, right, bottom = draw.textbbox((0, 0), shown, font=f)
    tw, th = right - left, bottom - top
    pad_x, pad_y = int(rng.integers(8, 20)), int(rng.integers(8, 18))
    sw, sh = tw + 2 * pad_x, th + 2 * pad_y
    x0 = int(rng.integers(4, max(5, size - sw - 4)))
    y0 = int(rng.integers(4, max(5, size - sh - 4)))
    name = list(SIGN_COLORS)[int(rng.integers(len(SIGN_COLORS)))]
    fill = SIGN_COLORS[name]
    ink = (0, 0, 0) if sum(fill) > 450 else (255, 255, 255)
    draw.rectangle([x0, y0, x0 + sw, y0 + sh], fill=fill, outline=(30, 30, 30), width=3)
    tx, ty = x0 + pad_x - left, y0 + pad_y - top
    draw.text((tx, ty), shown, font=f, fill=ink)
    regions = [{"box": [x0, y0, x0 + sw + 1, y0 + sh + 1], "words": "sign"}]
    if kind == "word":
        regions.append({"box": [x0 + pad_x, y0 + pad_y, x0 + pad_x + tw, y0 + pad_y + th], "words": text})
        q = {"type": "word", "question": WORD_Q, "answer": text, "choices": list(WORDS)}
    else:
        for i, ch in enumerate(shown):
            a = draw.textlength(shown[:i], font=f)
            b = a + draw.textlength(ch, font=f)
            regions.append({"box": [tx + a, y0 + pad_y, tx + b, y0 + pad_y + th], "words": ch})
        q = {"type": "number", "question": NUMBER_Q, "answer": text, "choices": list(NUMBERS)}
    return im, {"kind": kind, "text": text, "sign_color": name, "questions": [q], "regions": regions}
