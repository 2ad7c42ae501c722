"""Image bytes -> a bounded RGB PNG (docs/official-code.md#data-engine step 5: the official code writes everything as ``.png``).

* Raster formats Pillow reads (JPEG, PNG, GIF, WebP, BMP, TIFF, ...): the first frame, transparency composited
  on white (the official GIF rule, applied to every format with alpha), converted to RGB, downscaled so the
  longer side is at most ``max_side``. Pixel counts above ``max_pixels`` are refused before decoding. (The
  official code saves unknown formats as raw bytes under a ``.png`` name; we decode or refuse.)
* SVG: rasterised on white by ``resvg`` (the ``resvg-py`` wheel, no system libraries) at its own size, or 800 px
  wide when it has none (the official default), within the same limits. Without ``resvg-py`` an SVG is skipped
  with the reason ``svg_no_rasteriser``. SVGs that reference other files or URLs are refused
  (``svg_external_reference``): a rasteriser must not read local files on a page's behalf.
"""

from __future__ import annotations

import io
import re
import warnings

MAX_PIXELS = 40_000_000
MAX_SIDE = 1536
MIN_SIDE = 16
SVG_DEFAULT_WIDTH = 800


class ImageSkip(Exception):
    """An image that is not used; ``reason`` is counted."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


_SVG_HEAD = re.compile(rb"^\s*(?:<\?xml[^>]*>\s*)?(?:<!--.*?-->\s*)*(?:<!DOCTYPE[^>]*>\s*)?<svg\b", re.S | re.I)
_SVG_TAG = re.compile(r"<svg\b[^>]*>", re.S | re.I)
_EXTERNAL = re.compile(
    r"""(?:href\s*=\s*["']\s*(?!#|data:)[^"'\s])|(?:url\(\s*["']?\s*(?!#)[^)\s])|(?:@import)|(?:<!ENTITY)""", re.I
)
_LENGTH = re.compile(r"^\s*([0-9.]+)\s*(px)?\s*$")


def is_svg(data: bytes) -> bool:
    return _SVG_HEAD.match(data[:4096]) is not None


def _attr(tag: str, name: str) -> str | None:
    m = re.search(rf"""\s{name}\s*=\s*["']([^"']*)["']""", tag, re.I)
    return m.group(1) if m else None


def svg_size(svg: str) -> tuple[float, float] | None:
    """(width, height) in px from the root element's width/height (plain or px numbers) or its viewBox."""
    m = _SVG_TAG.search(svg)
    if not m:
        return None
    tag = m.group(0)
    w, h = _attr(tag, "width"), _attr(tag, "height")
    mw, mh = (_LENGTH.match(w) if w else None), (_LENGTH.match(h) if h else None)
    if mw and mh:
        return float(mw.group(1)), float(mh.group(1))
    vb = _attr(tag, "viewBox")
    if vb:
        parts = vb.replace(",", " ").split()
        if len(parts) == 4:
            try:
                return float(parts[2]), float(parts[3])
            except ValueError:
                return None
    return None


def rasterise_svg(data: bytes, max_pixels: int = MAX_PIXELS, max_side: int = MAX_SIDE) -> bytes:
    try:
        import resvg_py
    except ImportError:
        raise ImageSkip("svg_no_rasteriser", "install resvg-py (pip install 'cambrian[data]')") from None
    try:
        svg = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ImageSkip("image_undecodable", "SVG is not UTF-8") from None
    if _EXTERNAL.search(svg):
        raise ImageSkip("svg_external_reference", "references another file or URL")
    size = svg_size(svg)
    w, h = size if size and size[0] > 0 and size[1] > 0 else (SVG_DEFAULT_WIDTH, SVG_DEFAULT_WIDTH * 0.75)
    scale = min(1.0, max_side / max(w, h), (max_pixels / (w * h)) ** 0.5)
    try:
        return bytes(
            resvg_py.svg_to_bytes(
                svg_string=svg,
                background="#ffffff",
                width=max(1, int(round(w * scale))),
                height=max(1, int(round(h * scale))),
            )
        )
    except (ValueError, RuntimeError) as e:
        raise ImageSkip("image_undecodable", f"SVG: {str(e)[:100]}") from None


def normalize_image(
    data: bytes, max_pixels: int = MAX_PIXELS, max_side: int = MAX_SIDE, min_side: int = MIN_SIDE
) -> tuple[bytes, tuple[int, int], str]:
    """(PNG bytes, (width, height), source format) or :class:`ImageSkip`."""
    from PIL import Image, UnidentifiedImageError

    fmt = "svg" if is_svg(data) else None
    if fmt == "svg":
        data = rasterise_svg(data, max_pixels, max_side)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
            fmt = fmt or (im.format or "unknown").lower()
            w, h = im.size
            if w * h > max_pixels:
                raise ImageSkip("image_too_many_pixels", f"{w}x{h} > {max_pixels} pixels")
            if min(w, h) < min_side:
                raise ImageSkip("image_too_small", f"{w}x{h}")
            im.seek(0)
            im.load()
    except ImageSkip:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageSkip("image_undecodable", str(e)[:100]) from None
    except (OSError, ValueError, SyntaxError, EOFError) as e:  # truncated / corrupt files
        raise ImageSkip("image_undecodable", str(e)[:100]) from None
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        im = Image.alpha_composite(bg, rgba)
    im = im.convert("RGB")
    if max(im.size) > max_side:
        im.thumbnail((max_side, max_side), Image.LANCZOS)
    buf = io.BytesIO()
    im.save(buf, format="PNG", optimize=False)
    return buf.getvalue(), im.size, fmt


def original_image_url(url: str) -> str:
    """A Wikimedia thumbnail URL -> the original file's URL (drop ``/thumb/`` and the ``NNNpx-name`` tail);
    protocol-relative URLs get ``https:``. Other URLs are returned unchanged (docs/official-code.md#data-engine step 5)."""
    if url.startswith("//"):
        url = "https:" + url
    if "/thumb/" in url:
        head, tail = url.split("/thumb/", 1)
        parts = tail.split("/")
        if len(parts) >= 2 and re.match(r"^(?:lossy-|lossless-)?(?:page\d+-)?\d+px-", parts[-1]):
            url = head + "/" + "/".join(parts[:-1])
    return url
