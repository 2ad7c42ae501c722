"""Letterbox an image to a square R x R without building the max(W, H)^2 canvas (docs/official-code.md#letterbox).

The official preprocessing pastes the image centred on a ``max(W, H)``-sided canvas of the background colour
(``expand2square``) and then resizes the canvas to R x R (PIL bicubic). The canvas is what an aspect-ratio image bomb
exploits: a 100000 x 1 PNG of 85 bytes asks for a 10^10-pixel canvas (30 GB) although it decodes to 10^5 pixels.

:func:`letterbox` gives the same R x R result from work and memory linear in the image: PIL's bicubic resize is
separable (a horizontal pass, then a vertical pass over the rows the output needs), and along the padded axis only the
few output rows (or columns) whose filter window reaches the image differ from the background. So

- a wide image (W > H): the horizontal pass of the canvas rows holding the image is the horizontal pass of the image
  itself (``resize((R, H))``); the vertical pass runs on a strip of the canvas just tall enough for the filter windows
  of the output rows that reach the image (PIL's ``box`` argument keeps the canvas' sampling positions), and every
  other output row is background;
- a tall image (H > W): the horizontal pass runs on such a strip, a band of rows at a time, for the output columns
  that reach the image; the vertical pass resizes those columns only.

Pixels equal the official ``expand2square -> resize`` up to one grey level (floating-point rounding of PIL's
filter positions; checked in tests/test_preprocess_letterbox.py). A canvas of at most ``DIRECT_CANVAS_PIXELS``
(side 2048) is simply built, so ordinary photos are bit-identical to the official pipeline.
"""

from __future__ import annotations

import math

from PIL import Image

DIRECT_CANVAS_PIXELS = 1 << 22  # canvases up to this size (2048 x 2048, 12 MB as RGB) are built as the official code
BAND_PIXELS = 1 << 22  # tall images: strip pixels resized per band of rows
_SUPPORT = 2.0  # PIL's bicubic filter support (in output pixels when downscaling)


def expand2square(img: Image.Image, color: tuple[int, int, int]) -> Image.Image:
    """The official letterbox: ``img`` centred on a max(W, H)-sided canvas of ``color`` (offsets (S-W)//2, (S-H)//2).
    Builds the whole canvas: use :func:`letterbox` on images you did not make yourself."""
    w, h = img.size
    if w == h:
        return img
    side = max(w, h)
    canvas = Image.new(img.mode, (side, side), color)
    canvas.paste(img, ((side - w) // 2, (side - h) // 2))
    return canvas


def _window(offset: int, length: int, side: int, size: int) -> tuple[int, int, int, int, float]:
    """Resizing ``side`` -> ``size`` pixels along one axis, where only source pixels ``[offset, offset + length)`` are
    not background: ``(o0, o1, s0, s1, scale)``, the output pixels ``[o0, o1)`` whose bicubic window reaches them
    (every other output pixel is background) and the source pixels ``[s0, s1)`` those windows read, with a margin."""
    scale = side / size
    support = _SUPPORT * max(scale, 1.0)
    o0 = max(0, math.floor((offset - support) / scale - 0.5) - 1)
    o1 = min(size, math.ceil((offset + length + support) / scale + 0.5) + 1)
    s0 = max(0, math.floor(o0 * scale - support) - 2)
    s1 = min(side, math.ceil(o1 * scale + support) + 2)
    return o0, o1, s0, s1, scale


def letterbox(img: Image.Image, size: int, color: tuple[int, int, int], direct_limit: int = DIRECT_CANVAS_PIXELS):
    """``expand2square(img, color).resize((size, size), BICUBIC)`` without the square canvas (see the module
    docstring); ``direct_limit``: canvases up to this many pixels are built (exact), larger ones are not."""
    w, h = img.size
    side = max(w, h)
    if w == h or side * side <= direct_limit:
        return expand2square(img, color).resize((size, size), Image.BICUBIC)
    out = Image.new(img.mode, (size, size), color)
    if w > h:
        top = (side - h) // 2
        rows = img.resize((size, h), Image.BICUBIC)  # the canvas' horizontal pass, on the rows that hold the image
        o0, o1, s0, s1, scale = _window(top, h, side, size)
        strip = Image.new(img.mode, (size, s1 - s0), color)
        strip.paste(rows, (0, top - s0))
        del rows
        part = strip.resize((size, o1 - o0), Image.BICUBIC, box=(0, o0 * scale - s0, size, o1 * scale - s0))
        out.paste(part, (0, o0))
        return out
    left = (side - w) // 2
    o0, o1, s0, s1, scale = _window(left, w, side, size)
    box = (o0 * scale - s0, 0, o1 * scale - s0)
    band = max(1, BAND_PIXELS // (s1 - s0))
    cols = Image.new(img.mode, (o1 - o0, h))  # the canvas' horizontal pass, on the columns that reach the image
    for y in range(0, h, band):
        y1 = min(h, y + band)
        strip = Image.new(img.mode, (s1 - s0, y1 - y), color)
        strip.paste(img.crop((0, y, w, y1)), (left - s0, 0))
        cols.paste(strip.resize((o1 - o0, y1 - y), Image.BICUBIC, box=(*box, y1 - y)), (0, y))
    del strip
    out.paste(cols.resize((o1 - o0, size), Image.BICUBIC), (o0, 0))
    return out


def letterbox_pixels(w: int, h: int, size: int, direct_limit: int = DIRECT_CANVAS_PIXELS) -> int:
    """An upper bound of the pixels :func:`letterbox` holds at once for a ``w`` x ``h`` image (besides the image)."""
    side = max(w, h)
    if w == h or side * side <= direct_limit:
        return (side * side if w != h else 0) + size * size
    short = min(w, h)
    return size * size + 3 * size * short + 24 * side + BAND_PIXELS
