"""Image preprocessing shared by every tower (docs/official-code.md#towers): letterbox to a square with the tower's mean colour,
resize to R x R (bicubic, PIL's default for RGB), scale to [0, 1], normalise.

The letterbox never builds the max(W, H)^2 canvas (:mod:`cambrian.utils.letterbox`), and :func:`load_image` checks an image's size
and aspect ratio from its header before decoding it (``cambrian.utils.image_limits``), so a tiny file cannot ask for gigabytes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from ...errors import InputError
from ...utils.image_limits import MAX_ASPECT, ImageSizeError, check_image_size
from ...utils.letterbox import expand2square, letterbox

__all__ = [
    "MAX_ASPECT",
    "ImageSizeError",
    "check_image_size",
    "default_pad_color",
    "expand2square",
    "letterbox",
    "load_image",
    "preprocess_images",
]


def default_pad_color(mean: Sequence[float]) -> tuple[int, int, int]:
    # The official code truncates: tuple(int(x * 255) for x in image_mean).
    return tuple(int(x * 255) for x in mean)  # type: ignore[return-value]


def load_image(img, max_pixels: int | None = None, max_aspect: float | None = MAX_ASPECT) -> Image.Image:
    """A PIL image, a path, or a numpy HxWx3 array -> RGB PIL image, with a clear error for bad files. A file's size
    and aspect ratio (:func:`check_image_size`) are checked before it is decoded; an image already in memory has its
    aspect ratio checked (its pixels are spent already)."""
    if isinstance(img, (Image.Image, np.ndarray)):
        im = img if isinstance(img, Image.Image) else Image.fromarray(img)
        check_image_size(*im.size, max_pixels or im.size[0] * im.size[1], max_aspect)
        return im.convert("RGB")
    try:
        with Image.open(img) as im:
            check_image_size(*im.size, max_pixels, max_aspect)
            return im.convert("RGB")
    except FileNotFoundError:
        raise FileNotFoundError(f"image file not found: {img}") from None
    except Exception as e:  # noqa: BLE001 - PIL.UnidentifiedImageError, truncated files, bombs, a bad size, ...
        raise InputError(f"cannot read image {img}: {e}") from None


def preprocess_images(images: Sequence, size: int, mean, std, pad_color=None) -> torch.Tensor:
    color = tuple(pad_color) if pad_color is not None else default_pad_color(mean)
    out = []
    mean_t = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
    for img in images:
        img = letterbox(load_image(img, max_aspect=None), size, color)
        arr = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)
        out.append((arr - mean_t) / std_t)
    return torch.stack(out) if out else torch.empty(0, 3, size, size)
