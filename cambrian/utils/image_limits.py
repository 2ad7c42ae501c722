"""Limits on an image's size, read from its header before it is decoded (image bombs: a 100000 x 1 PNG is 85 bytes but
its letterbox canvas would be 30 GB). Shared by every tower's ``load_image`` and by the server, which checks images
before the model sees them."""

from __future__ import annotations

from PIL import Image

from ..errors import InputError

MAX_ASPECT = 64.0  # longer side / shorter side accepted by load_image and the server (--max-image-aspect)


class ImageSizeError(InputError):
    """An image whose header asks for too many pixels or a too extreme aspect ratio (nothing was decoded)."""


def max_image_pixels() -> int:
    """PIL's decompression-bomb limit (``Image.MAX_IMAGE_PIXELS``, 89.5 M pixels unless changed), as a hard limit."""
    return int(Image.MAX_IMAGE_PIXELS or 1 << 62)


def check_image_size(w: int, h: int, max_pixels: int | None = None, max_aspect: float | None = MAX_ASPECT) -> None:
    """Raise :class:`ImageSizeError` for a ``w`` x ``h`` image over ``max_pixels`` (default: PIL's bomb limit) or whose
    longer side is more than ``max_aspect`` times its shorter side (None: any)."""
    limit = max_image_pixels() if max_pixels is None else max_pixels
    if w < 1 or h < 1:
        raise ImageSizeError(f"the image is {w}x{h}")
    if w * h > limit:
        raise ImageSizeError(f"the image is {w}x{h} = {w * h} pixels, more than the limit of {limit}")
    if max_aspect is not None and max(w, h) > max_aspect * min(w, h):
        raise ImageSizeError(
            f"the image is {w}x{h}: its aspect ratio {max(w, h) / min(w, h):.0f}:1 is over the limit of {max_aspect:g}:1"
        )
