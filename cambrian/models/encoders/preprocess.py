"""Image preprocessing shared by every tower (docs/official-code.md#towers): letterbox to a square with the tower's mean colour,
resize to R x R (bicubic, PIL's default for RGB), scale to [0, 1], normalise."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from ...errors import InputError


def default_pad_color(mean: Sequence[float]) -> tuple[int, int, int]:
    # The official code truncates: tuple(int(x * 255) for x in image_mean).
    return tuple(int(x * 255) for x in mean)  # type: ignore[return-value]


def expand2square(img: Image.Image, color: tuple[int, int, int]) -> Image.Image:
    w, h = img.size
    if w == h:
        return img
    side = max(w, h)
    canvas = Image.new(img.mode, (side, side), color)
    canvas.paste(img, ((side - w) // 2, (side - h) // 2))
    return canvas


def load_image(img) -> Image.Image:
    """A PIL image, a path, or a numpy HxWx3 array -> RGB PIL image, with a clear error for bad files."""
    if isinstance(img, Image.Image):
        return img.convert("RGB")
    if isinstance(img, np.ndarray):
        return Image.fromarray(img).convert("RGB")
    try:
        with Image.open(img) as im:
            return im.convert("RGB")
    except FileNotFoundError:
        raise FileNotFoundError(f"image file not found: {img}") from None
    except Exception as e:  # noqa: BLE001 - PIL.UnidentifiedImageError, truncated files, ...
        raise InputError(f"cannot read image {img}: {e}") from None


def preprocess_images(images: Sequence, size: int, mean, std, pad_color=None) -> torch.Tensor:
    color = tuple(pad_color) if pad_color is not None else default_pad_color(mean)
    out = []
    mean_t = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
    for img in images:
        img = expand2square(load_image(img), color).resize((size, size), Image.BICUBIC)
        arr = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)
        out.append((arr - mean_t) / std_t)
    return torch.stack(out) if out else torch.empty(0, 3, size, size)
