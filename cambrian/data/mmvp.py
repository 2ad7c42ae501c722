"""MMVP's "CLIP-blind pairs" with any two registered encoders (Tong et al. 2024, the background of Cambrian-1).

Embed a pool of images with encoder A and encoder B; a pair (i, j) is **A-blind** when A sees the two images as
the same (``cos_A >= tau_A``) while B sees them as different (``cos_B <= tau_B``). MMVP used CLIP (A) and DINOv2
(B) with tau_A = 0.95, tau_B = 0.6; the pairs that survive are ranked by margin ``cos_A - cos_B`` and the top k
reported. Embeddings are the mean of each tower's ``[s, s, C]`` feature grid (for EfficientNet this is exactly
the classifier's pooled feature), L2-normalised.

Encoders have different cosine scales (a ReLU CNN's pooled features are all positive, so every pair is at
cos > 0.5), so a threshold may be given as a percentile of that encoder's pair cosines: ``"p99"`` = the 99th
percentile over all pairs (estimated from up to 200k random pairs). ``pairs.json`` reports the quantiles either
way.

Memory: the pair search runs in row blocks (``block x N`` similarities at a time), so thousands of images need
no ``N x N`` matrix.
"""

from __future__ import annotations

import heapq
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..utils.io import atomic_save_figure, atomic_write_json
from ..utils.progress import progress_bar

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif")
MAX_PIXELS = 40_000_000
QUANTILES = (0.5, 0.9, 0.99, 0.999)


@dataclass
class Pair:
    i: int
    j: int
    cos_a: float
    cos_b: float

    @property
    def margin(self) -> float:
        return self.cos_a - self.cos_b


def list_images(root: str | os.PathLike, limit: int | None = None) -> list[Path]:
    """Image files under ``root`` (recursive, sorted), or the paths listed in a text file (one per line,
    relative to the file's folder)."""
    root = Path(root)
    if root.is_file():
        base = root.parent
        paths = [
            base / ln.strip()
            for ln in root.read_text(encoding="utf-8").splitlines()
            if ln.strip() and not ln.startswith("#")
        ]
    elif root.is_dir():
        paths = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTS and p.is_file())
    else:
        raise FileNotFoundError(f"{root}: no such folder or list file")
    if limit is not None:
        paths = paths[:limit]
    if len(paths) < 2:
        raise InputError(f"{root}: need at least two images, found {len(paths)}")
    return paths


def open_image(path: Path, max_pixels: int = MAX_PIXELS):
    from PIL import Image

    im = Image.open(path)
    if im.size[0] * im.size[1] > max_pixels:
        raise InputError(f"{im.size[0]}x{im.size[1]} > {max_pixels} pixels")
    return im.convert("RGB")


def embed_images(
    encoder, paths: Sequence[Path], batch_size: int = 16, progress: bool = True, desc: str = "embed"
) -> tuple[np.ndarray, list[tuple[int, str]]]:
    """(``[N, C]`` float32 L2-normalised mean-pooled features, [(index, reason)] of images that could not be read;
    their rows are NaN)."""
    import torch

    encoder.eval()
    out = None
    bad: list[tuple[int, str]] = []
    bar = progress_bar(total=len(paths), desc=desc, unit="img", enabled=progress, leave=False)
    for s in range(0, len(paths), batch_size):
        ims, idx = [], []
        for k in range(s, min(s + batch_size, len(paths))):
            try:
                ims.append(open_image(paths[k]))
                idx.append(k)
            except (OSError, ValueError, SyntaxError) as e:
                bad.append((k, f"{type(e).__name__}: {str(e)[:80]}"))
        if ims:
            with torch.no_grad():
                grid = encoder(encoder.preprocess(ims).to(encoder.param_dtype))
            feats = grid.float().mean(dim=(1, 2))
            feats = torch.nn.functional.normalize(feats, dim=-1).cpu().numpy()
            if out is None:
                out = np.full((len(paths), feats.shape[1]), np.nan, dtype=np.float32)
            out[idx] = feats
        bar.update(min(batch_size, len(paths) - s))
    bar.close()
    if out is None:
        raise InputError("no image could be read")
    return out, bad


def pair_cosine_quantiles(emb: np.ndarray, qs=QUANTILES, max_pairs: int = 200_000, seed: int = 0) -> dict[str, float]:
    """Quantiles of cos over all pairs i < j (exact when there are at most ``max_pairs``, else a random sample)."""
    n = len(emb)
    total = n * (n - 1) // 2
    if total <= max_pairs:
        iu = np.triu_indices(n, 1)
        vals = np.einsum("ij,ij->i", emb[iu[0]], emb[iu[1]])
    else:
        rng = np.random.default_rng(seed)
        i = rng.integers(0, n, size=max_pairs)
        j = rng.integers(0, n - 1, size=max_pairs)
        j = j + (j >= i)
        vals = np.einsum("ij,ij->i", emb[i], emb[j])
    vals = vals[np.isfinite(vals)]
    return {f"p{100 * q:g}": float(np.quantile(vals, q)) for q in qs}


def resolve_threshold(spec: float | str, emb: np.ndarray) -> float:
    """A number, or ``"pXX"`` = the XX-th percentile of the encoder's pair cosines."""
    if isinstance(spec, str):
        s = spec.strip().lower()
        if s.startswith("p"):
            try:
                q = float(s[1:])
            except ValueError:
                raise InputError(f"threshold {spec!r}: expected a number or pXX (a percentile)") from None
            if not 0 <= q <= 100:
                raise InputError(f"threshold {spec!r}: the percentile must be within 0..100")
            return pair_cosine_quantiles(emb, qs=(q / 100,))[f"p{q:g}"]
        try:
            spec = float(s)
        except ValueError:
            raise InputError(f"threshold {spec!r}: expected a number or pXX (a percentile)") from None
    if not -1.0 <= float(spec) <= 1.0:
        raise InputError(f"threshold {spec}: a cosine is within -1..1")
    return float(spec)


def mine_pairs(
    emb_a: np.ndarray, emb_b: np.ndarray, tau_a: float, tau_b: float, top_k: int | None = 20, block: int = 512
) -> tuple[list[Pair], dict]:
    """Pairs i < j with cos_A >= tau_a and cos_B <= tau_b, best margin first (ties: i, j); ``top_k`` None: all.
    Returns (pairs, counts: images, usable_images, pairs_total, a_similar, selected)."""
    if emb_a.shape[0] != emb_b.shape[0]:
        raise ValueError(f"{emb_a.shape[0]} vs {emb_b.shape[0]} embeddings")
    n = emb_a.shape[0]
    ok = np.isfinite(emb_a).all(1) & np.isfinite(emb_b).all(1)
    a = np.where(ok[:, None], emb_a, 0).astype(np.float32)
    b = np.where(ok[:, None], emb_b, 0).astype(np.float32)
    heap: list[tuple[float, int, int, float, float]] = []
    found: list[Pair] = []
    a_similar = selected = 0
    cols = np.arange(n)
    for s in range(0, n, block):
        e = min(n, s + block)
        sa = a[s:e] @ a.T  # [block, n]
        rows = np.arange(s, e)[:, None]
        cand = (sa >= tau_a) & (cols[None, :] > rows) & ok[s:e, None] & ok[None, :]
        ri, cj = np.nonzero(cand)
        a_similar += len(ri)
        if not len(ri):
            continue
        gi = ri + s
        cb = np.einsum("ij,ij->i", b[gi], b[cj])
        keep = cb <= tau_b
        selected += int(keep.sum())
        for i, j, ca, cbv in zip(
            gi[keep].tolist(), cj[keep].tolist(), sa[ri[keep], cj[keep]].tolist(), cb[keep].tolist()
        ):
            if top_k is None:
                found.append(Pair(i, j, ca, cbv))
                continue
            # min-heap of the best k by (margin to 1e-6, then lower indices): float noise does not break ties
            item = (round(ca - cbv, 6), -i, -j, ca, cbv)
            if len(heap) < top_k:
                heapq.heappush(heap, item)
            elif item > heap[0]:
                heapq.heapreplace(heap, item)
    if top_k is not None:
        found = [Pair(-ni, -nj, ca, cbv) for _, ni, nj, ca, cbv in heap]
    found.sort(key=lambda p: (-round(p.margin, 6), p.i, p.j))
    return found, {
        "images": n,
        "usable_images": int(ok.sum()),
        "pairs_total": int(ok.sum()) * (int(ok.sum()) - 1) // 2,
        "a_similar": int(a_similar),
        "selected": int(selected),
    }


def contact_sheet(
    pairs: Sequence[Pair],
    paths: Sequence[Path],
    out_png: str | os.PathLike,
    thumb: int = 160,
    per_row: int = 2,
    labels: Sequence[str] | None = None,
    root: Path | None = None,
) -> Path:
    """One cell per pair (image i | image j, and a caption line with the cosines); ``per_row`` cells a row."""
    from PIL import Image, ImageDraw, ImageFont

    try:
        font = ImageFont.load_default(size=12)
    except TypeError:  # Pillow < 10.1
        font = ImageFont.load_default()
    pad, text_h = 6, 34
    cell_w, cell_h = 2 * thumb + 3 * pad, thumb + text_h + 2 * pad
    rows = max(1, math.ceil(len(pairs) / per_row))
    sheet = Image.new("RGB", (per_row * cell_w, rows * cell_h), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    if not pairs:
        draw.text((pad, pad), "no pair passed the thresholds", fill=(0, 0, 0), font=font)
    for k, p in enumerate(pairs):
        x0, y0 = (k % per_row) * cell_w, (k // per_row) * cell_h
        for m, idx in enumerate((p.i, p.j)):
            try:
                im = open_image(paths[idx])
                sc = thumb / max(im.size)  # small images are enlarged too, pixels kept sharp
                im = im.resize(
                    (max(1, round(im.size[0] * sc)), max(1, round(im.size[1] * sc))),
                    Image.NEAREST if sc > 1 else Image.LANCZOS,
                )
            except (OSError, ValueError):
                im = Image.new("RGB", (thumb, thumb), (200, 200, 200))
            sheet.paste(im, (x0 + pad + m * (thumb + pad), y0 + pad))
        names = [_rel(paths[i], root) for i in (p.i, p.j)]
        line1 = f"#{k + 1}  cosA {p.cos_a:.3f}  cosB {p.cos_b:.3f}  margin {p.margin:.3f}"
        line2 = labels[k] if labels else f"{names[0]}  |  {names[1]}"
        draw.text((x0 + pad, y0 + pad + thumb + 3), line1, fill=(0, 0, 0), font=font)
        draw.text((x0 + pad, y0 + pad + thumb + 18), line2[:60], fill=(90, 90, 90), font=font)
        draw.rectangle([x0, y0, x0 + cell_w - 1, y0 + cell_h - 1], outline=(220, 220, 220))
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_png.with_name(f".{out_png.name}.tmp")
    sheet.save(tmp, format="PNG")
    os.replace(tmp, out_png)
    return out_png


def _rel(p: Path, root: Path | None) -> str:
    if root is not None:
        try:
            return p.relative_to(root).as_posix()
        except ValueError:
            pass
    return p.name


def similarity_plot(
    emb_a,
    emb_b,
    pairs: Sequence[Pair],
    tau_a: float,
    tau_b: float,
    out_png,
    names=("A", "B"),
    max_points: int = 20_000,
    seed: int = 0,
) -> None:
    """Scatter of cos_A vs cos_B over (a sample of) all pairs, the thresholds, and the reported pairs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(emb_a)
    rng = np.random.default_rng(seed)
    total = n * (n - 1) // 2
    if total <= max_points:
        i, j = np.triu_indices(n, 1)
    else:
        i = rng.integers(0, n, size=max_points)
        j = rng.integers(0, n - 1, size=max_points)
        j = j + (j >= i)
    ca = np.einsum("ij,ij->i", emb_a[i], emb_a[j])
    cb = np.einsum("ij,ij->i", emb_b[i], emb_b[j])
    fig, ax = plt.subplots(figsize=(5.6, 4.8))
    ax.scatter(ca, cb, s=3, alpha=0.35, color="#888888", label="pairs" + (" (sample)" if total > max_points else ""))
    if pairs:
        ax.scatter([p.cos_a for p in pairs], [p.cos_b for p in pairs], s=16, color="#d62728", label="reported pairs")
    ax.axvline(tau_a, color="#1f77b4", ls="--", lw=1, label=f"tau_A = {tau_a:.3f}")
    ax.axhline(tau_b, color="#2ca02c", ls="--", lw=1, label=f"tau_B = {tau_b:.3f}")
    ax.set_xlabel(f"cos A ({names[0]})")
    ax.set_ylabel(f"cos B ({names[1]})")
    ax.set_title("A-blind pairs: right of tau_A, below tau_B")
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    atomic_save_figure(fig, out_png)


def center(emb: np.ndarray) -> np.ndarray:
    """Subtract the pool's mean embedding and re-normalise (rows that are NaN stay NaN). Pooled CNN / ViT
    features share a large common direction, which squeezes every cosine towards 1; centring removes it."""
    ok = np.isfinite(emb).all(1)
    out = emb.copy()
    x = emb[ok] - emb[ok].mean(0, keepdims=True)
    out[ok] = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    return out


def mine_mmvp_pairs(
    paths: Sequence[Path],
    encoder_a,
    encoder_b,
    out_dir: str | os.PathLike,
    *,
    tau_a: float | str = 0.95,
    tau_b: float | str = 0.6,
    top_k: int = 20,
    batch_size: int = 16,
    names: tuple[str, str] = ("A", "B"),
    root: Path | None = None,
    progress: bool = True,
    labels: Callable[[Pair], str] | None = None,
    centered: bool = False,
) -> dict:
    """Embed, mine, write ``pairs.json``, ``contact_sheet.png`` and ``similarity.png``; returns the summary.
    ``centered``: cosines of pool-centred embeddings (:func:`center`)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    emb_a, bad_a = embed_images(encoder_a, paths, batch_size, progress, desc=f"embed {names[0]}")
    emb_b, bad_b = embed_images(encoder_b, paths, batch_size, progress, desc=f"embed {names[1]}")
    if centered:
        emb_a, emb_b = center(emb_a), center(emb_b)
    ok = np.isfinite(emb_a).all(1) & np.isfinite(emb_b).all(1)
    ta, tb = resolve_threshold(tau_a, emb_a[ok]), resolve_threshold(tau_b, emb_b[ok])
    pairs, counts = mine_pairs(emb_a, emb_b, ta, tb, top_k)
    summary = {
        "encoder_a": names[0],
        "encoder_b": names[1],
        "tau_a": ta,
        "tau_b": tb,
        "tau_a_spec": str(tau_a),
        "tau_b_spec": str(tau_b),
        "top_k": top_k,
        "centered": centered,
        **counts,
        "cos_quantiles": {"a": pair_cosine_quantiles(emb_a[ok]), "b": pair_cosine_quantiles(emb_b[ok])},
        "skipped_images": [{"image": _rel(paths[i], root), "reason": r} for i, r in dict(bad_a + bad_b).items()],
        "pairs": [
            {"rank": k + 1, "a": _rel(paths[p.i], root), "b": _rel(paths[p.j], root), **asdict(p), "margin": p.margin}
            | ({"label": labels(p)} if labels else {})
            for k, p in enumerate(pairs)
        ],
    }
    atomic_write_json(out / "pairs.json", summary)
    contact_sheet(
        pairs, paths, out / "contact_sheet.png", root=root, labels=[labels(p) for p in pairs] if labels else None
    )
    similarity_plot(emb_a[ok], emb_b[ok], pairs, ta, tb, out / "similarity.png", names=names)
    return summary


def load_encoder(spec: str, image_size: int | None = None):
    """A registered encoder preset id (or ``preset@size``), built with its weights."""
    from ..models.encoders import build_encoder, expand_encoder_entry

    entry = {"preset": spec} if image_size is None else {"preset": spec, "image_size": image_size}
    return build_encoder(expand_encoder_entry(entry), load_weights=True)
