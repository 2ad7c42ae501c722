"""Images of a request: base64 ``data:`` URLs, or (only when the server was started with a root directory) local
files under that root. Remote URLs are never fetched. The pixel count is read from the header and checked before
anything is decoded (image bombs), and only common raster formats are opened (PIL's other plugins, e.g. EPS through
Ghostscript, are never reached)."""

from __future__ import annotations

import base64
import binascii
import io
import threading
import warnings
from pathlib import Path

from PIL import Image

from .errors import APIError, bad_request

FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP")


class PixelBudget:
    """Decoded image pixels held by requests in flight (queued or running), server-wide: the memory images take
    stays bounded however many requests come at once (3 bytes a pixel as RGB)."""

    def __init__(self, limit: int):
        self.limit = limit
        self.used = 0
        self._lock = threading.Lock()

    def take(self, n: int) -> bool:
        with self._lock:
            if self.used + n > self.limit:
                return False
            self.used += n
            return True

    def give(self, n: int) -> None:
        with self._lock:
            self.used -= n


class PixelReservation:
    """One request's share of the budget: ``reservation(n)`` before an image is decoded (a 429 when the server holds
    too many already), ``release()`` when the request is done (idempotent)."""

    def __init__(self, budget: PixelBudget):
        self.budget = budget
        self.pixels = 0
        self._lock = threading.Lock()

    def __call__(self, n: int, param: str | None = None) -> None:
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


def decode_image(raw: bytes, max_pixels: int, param: str | None = None, reserve=None) -> Image.Image:
    """Bytes -> RGB PIL image; a 400 for anything unreadable or larger than ``max_pixels``. ``reserve(pixels,
    param)`` is called with the header's pixel count before anything is decoded."""
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
    if reserve is not None:
        reserve(w * h, param)
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
    url: str, max_pixels: int, max_bytes: int, local_root: Path | None = None, param: str | None = None, reserve=None
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
        return decode_image(raw, max_pixels, param, reserve)
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
    return decode_image(read_local(url, local_root, max_bytes, param), max_pixels, param, reserve)


def read_local(url: str, root: Path, max_bytes: int, param: str | None = None) -> bytes:
    """A ``file://`` URL or a path (relative paths are relative to ``root``) that resolves, symlinks included, to a
    file under ``root``."""
    path = url[len("file://") :] if url.startswith("file://") else url
    p = Path(path)
    p = (p if p.is_absolute() else root / p).resolve()
    if not p.is_relative_to(root):
        raise bad_request("image_url: the path is outside the server's image root", param=param, code="invalid_image")
    if not p.is_file():
        raise bad_request(f"image_url: no such file under the image root: {path}", param=param, code="invalid_image")
    if p.stat().st_size > max_bytes:
        raise APIError(
            413, f"image_url: the file is larger than {max_bytes} bytes", param=param, code="request_too_large"
        )
    return p.read_bytes()
