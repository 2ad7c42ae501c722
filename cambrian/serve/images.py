"""Images of a request: base64 ``data:`` URLs, or (only when the server was started with a root directory) local
files under that root. Remote URLs are never fetched. The pixel count and the aspect ratio are read from the header and
checked before anything is decoded (image bombs: a 100000 x 1 PNG is 85 bytes), the request's share of the server's
pixel budget is the image's real cost (its pixels plus what letterboxing it takes, ``image_cost``), and only common
raster formats are opened (PIL's other plugins, e.g. EPS through Ghostscript, are never reached)."""

from __future__ import annotations

import base64
import binascii
import io
import threading
import warnings
from pathlib import Path

from PIL import Image

from ..utils.image_limits import ImageSizeError, check_image_size
from ..utils.letterbox import letterbox_pixels
from .errors import APIError, bad_request

FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP")


def image_cost(w: int, h: int, size: int) -> int:
    """Pixels a ``w`` x ``h`` image costs the server: decoded, plus the letterbox to ``size`` x ``size`` (the model's
    largest tower input)."""
    return w * h + letterbox_pixels(w, h, size)


class PixelBudget:
    """Image pixels held by requests in flight (queued or running), server-wide, each image counted at its real cost
    (:func:`image_cost`): the memory images take stays bounded however many requests come at once (3 bytes a pixel
    as RGB). When nothing else is held, one image is always admitted (its size is bounded by the per-image limits)."""

    def __init__(self, limit: int):
        self.limit = limit
        self.used = 0
        self._lock = threading.Lock()

    def take(self, n: int) -> bool:
        with self._lock:
            if self.used and self.used + n > self.limit:
                return False
            self.used += n
            return True

    def give(self, n: int) -> None:
        with self._lock:
            self.used -= n


class PixelReservation:
    """One request's share of the budget: ``reservation(w, h)`` before an image is decoded takes ``cost(w, h)`` pixels
    (a 429 when the server holds too many already), ``release()`` when the request is done (idempotent)."""

    def __init__(self, budget: PixelBudget, cost=lambda w, h: w * h):
        self.budget = budget
        self.cost = cost
        self.pixels = 0
        self._lock = threading.Lock()

    def __call__(self, w: int, h: int, param: str | None = None) -> None:
        n = self.cost(w, h)
        if not self.budget.take(n):
            raise APIError(
                429,
                f"Server busy: images of other requests fill the decoded-pixel budget "
                f"({self.budget.limit} pixels); retry later.",
                param=param,
                type="rate_limit_exceeded",
                code="rate_limit_exceeded",
            )
        with self._lock:
            self.pixels += n

    def release(self) -> None:
        with self._lock:
            n, self.pixels = self.pixels, 0
        if n:
            self.budget.give(n)


def decode_image(
    raw: bytes, max_pixels: int, param: str | None = None, reserve=None, max_aspect: float | None = None
) -> Image.Image:
    """Bytes -> RGB PIL image; a 400 for anything unreadable, larger than ``max_pixels`` or longer than ``max_aspect``
    times its width (or height). ``reserve(w, h, param)`` is called with the header's size before anything is
    decoded."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(raw), formats=FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):  # PIL's own, looser limit
        raise _too_large("the image is too large;", max_pixels, param) from None
    except Exception:  # noqa: BLE001 - untrusted bytes: any decoding failure is the client's 400
        raise bad_request(
            f"image_url: not a readable image ({', '.join(FORMATS)})", param=param, code="invalid_image"
        ) from None
    w, h = im.size
    if w < 1 or h < 1 or w * h > max_pixels:
        raise _too_large(f"the image is {w}x{h} = {w * h} pixels;", max_pixels, param)
    try:
        check_image_size(w, h, max_pixels, max_aspect)
    except ImageSizeError as e:
        raise bad_request(
            f"image_url: {e} (this server's --max-image-aspect)", param=param, code="image_aspect_ratio"
        ) from None
    if reserve is not None:
        reserve(w, h, param)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return im.convert("RGB")
    except Exception:  # noqa: BLE001 - untrusted bytes: any decoding failure is the client's 400
        raise bad_request(
            "image_url: the image data is corrupt or truncated", param=param, code="invalid_image"
        ) from None


def _too_large(what: str, max_pixels: int, param) -> APIError:
    return bad_request(
        f"image_url: {what} this server accepts at most {max_pixels} pixels", param=param, code="image_too_large"
    )


def load_image_url(
    url: str,
    max_pixels: int,
    max_bytes: int,
    local_root: Path | None = None,
    param: str | None = None,
    reserve=None,
    max_aspect: float | None = None,
) -> Image.Image:
    if url.startswith("data:"):
        header, sep, payload = url.partition(",")
        if not sep or not header.endswith(";base64"):
            raise bad_request(
                "image_url: expected a base64 data URL (data:image/png;base64,...)", param=param, code="invalid_image"
            )
        try:
            raw = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            raise bad_request("image_url: the base64 payload is not valid", param=param, code="invalid_image") from None
        return decode_image(raw, max_pixels, param, reserve, max_aspect)
    if url.startswith(("http://", "https://")):
        raise bad_request(
            "image_url: this server does not fetch remote URLs; send the image as a base64 data: URL",
            param=param,
            code="invalid_image",
        )
    if local_root is None:
        raise bad_request(
            "image_url: local file paths are off (start the server with --allow-local-images ROOT); "
            "send the image as a base64 data: URL",
            param=param,
            code="invalid_image",
        )
    return decode_image(read_local(url, local_root, max_bytes, param), max_pixels, param, reserve, max_aspect)


def read_local(url: str, root: Path, max_bytes: int, param: str | None = None) -> bytes:
    """A ``file://`` URL or a path (relative paths are relative to ``root``) that resolves, symlinks included, to a
    file under ``root``."""
    path = url[len("file://") :] if url.startswith("file://") else url
    try:
        p = Path(path)
        p = (p if p.is_absolute() else root / p).resolve()
        inside, is_file = p.is_relative_to(root), p.is_file()
    except (OSError, ValueError, RuntimeError):  # a NUL byte, a name too long, a symlink loop
        raise bad_request("image_url: not a usable file path", param=param, code="invalid_image") from None
    if not inside:
        raise bad_request("image_url: the path is outside the server's image root", param=param, code="invalid_image")
    if not is_file:
        shown = path if len(path) <= 200 else path[:200] + "..."
        raise bad_request(f"image_url: no such file under the image root: {shown}", param=param, code="invalid_image")
    try:
        with open(p, "rb") as f:
            data = f.read(max_bytes + 1)
    except OSError as e:
        raise bad_request(
            f"image_url: cannot read the file ({e.strerror})", param=param, code="invalid_image"
        ) from None
    if len(data) > max_bytes:
        raise APIError(
            413, f"image_url: the file is larger than {max_bytes} bytes", param=param, code="request_too_large"
        )
    return data
