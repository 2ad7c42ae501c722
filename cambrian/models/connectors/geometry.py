"""Letterbox geometry shared by every connector (docs/official-code.md#windows, docs/official-code.md#letterbox).

Images are letterboxed to a square before the towers see them (``expand2square``), so every S×S grid derived
from an image (a tower's s_k×s_k feature map, the connector's L×L token grid) carries padding rows (landscape
images) or columns (portrait images). This module computes, bit-for-bit like the reference:

* ``valid_region(W, H, S)``: the rows/columns of an S×S grid that hold image content;
* ``valid_mask``: the same as a boolean ``[N, S, S]`` grid (the letterbox attention masks of docs/official-code.md#windows);
* ``to_windows``: ``[N, L*r, L*r, ...] -> [N*L*L, r*r, ...]`` non-overlapping r×r windows, row-major inside the
  window (so window index ``i*r + j`` is also the ``pos_embed`` row);
* ``fill_empty_windows``: all-False window masks become all-True (SDPA never sees a fully masked row);
* ``assemble_blocks``: crop each image's L×L token grid to its valid region and append the newline column
  (the one function every connector uses to build its per-image blocks).

Everything is vectorised over images and tokens; the only Python loops run over images.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = [
    "valid_region",
    "valid_regions",
    "valid_mask",
    "to_windows",
    "fill_empty_windows",
    "window_masks",
    "unpad_grid",
    "assemble_blocks",
    "resize_grid",
]


def valid_region(width: int, height: int, side: int) -> tuple[int, int, int, int]:
    """``(top, bottom, left, right)``: rows ``[top, bottom)`` and columns ``[left, right)`` of a ``side``×``side``
    grid that hold image content for an original image of ``width``×``height`` pixels.

    Reference arithmetic (``unpad_image`` / ``unmask_attention_mask``), including its floating-point order:
    landscape (``W/H > 1``): ``new_h = int(H * (S / W))``, ``pad = (S - new_h) // 2``, rows ``[pad, S - pad)``;
    portrait or square: the same on columns with ``new_w = int(W * (S / H))``. The reference multiplies by the
    scale factor ``S / W`` rather than computing ``H * S / W``; the two differ for some sizes (88×55 on S=24 gives
    new_h 14, not 15), and we follow the reference. Padding is symmetric, so an odd ``S - new_h`` keeps one extra
    row.

    Deviation (degenerate inputs only): where the reference would keep zero rows/columns (``new_h == 0`` with an
    even ``S``, i.e. an aspect ratio above ``S``) we keep what ``new_h = 1`` keeps instead of an empty block.
    """
    width, height, side = int(width), int(height), int(side)
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got (W, H) = ({width}, {height})")
    if side <= 0:
        raise ValueError(f"grid side must be positive, got {side}")
    if width / height > 1.0:  # current aspect ratio of the square grid is 1
        new_h = int(height * (side / width))
        pad = (side - new_h) // 2
        if side - 2 * pad < 1:
            pad = (side - 1) // 2
        return pad, side - pad, 0, side
    new_w = int(width * (side / height))
    pad = (side - new_w) // 2
    if side - 2 * pad < 1:
        pad = (side - 1) // 2
    return 0, side, pad, side - pad


def valid_regions(image_sizes: Sequence[tuple[int, int]], side: int) -> list[tuple[int, int, int, int]]:
    return [valid_region(w, h, side) for (w, h) in image_sizes]


def valid_mask(image_sizes: Sequence[tuple[int, int]], side: int, device=None) -> torch.Tensor:
    """Boolean ``[N, side, side]``: True on image content, False on letterbox padding (one entry per image)."""
    regions = torch.tensor(valid_regions(image_sizes, side), dtype=torch.long, device=device).view(-1, 4)
    idx = torch.arange(side, device=device)
    rows = (idx[None, :] >= regions[:, 0:1]) & (idx[None, :] < regions[:, 1:2])  # [N, S]
    cols = (idx[None, :] >= regions[:, 2:3]) & (idx[None, :] < regions[:, 3:4])  # [N, S]
    return rows[:, :, None] & cols[:, None, :]


def _reduction(side: int, query_side: int, what: str = "grid") -> int:
    if query_side <= 0 or side % query_side != 0:
        raise ValueError(
            f"{what} side {side} is not an integer multiple of the query-grid side {query_side}; "
            f"SVA windows need s_k / L to be an integer (use an encoder grid_size that is a multiple of {query_side})"
        )
    return side // query_side


def to_windows(x: torch.Tensor, query_side: int, *, keep_grid: bool = False) -> torch.Tensor:
    """``[N, L*r, L*r, *rest] -> [N*L*L, r*r, *rest]``: query cell (u, v) gets rows ``u*r .. u*r+r-1`` and columns
    ``v*r .. v*r+r-1``, flattened row-major (index ``i*r + j``). With ``keep_grid`` the result is
    ``[N, L, L, r*r, *rest]`` instead (for cropping the query grid before flattening)."""
    if x.dim() < 3 or x.shape[1] != x.shape[2]:
        raise ValueError(f"expected a square grid [N, S, S, ...], got shape {tuple(x.shape)}")
    n, side = x.shape[0], x.shape[1]
    rest = tuple(x.shape[3:])
    r = _reduction(side, query_side)
    L = query_side
    y = x.reshape(n, L, r, L, r, *rest)
    perm = (0, 1, 3, 2, 4) + tuple(range(5, 5 + len(rest)))
    y = y.permute(*perm)
    if keep_grid:
        return y.reshape(n, L, L, r * r, *rest)
    return y.reshape(n * L * L, r * r, *rest)


def fill_empty_windows(masks: torch.Tensor) -> torch.Tensor:
    """Windows (last dim) whose mask is entirely False become entirely True (out of place)."""
    empty = ~masks.any(dim=-1, keepdim=True)
    return masks | empty


def window_masks(
    image_sizes: Sequence[tuple[int, int]], side: int, query_side: int, device=None, *, keep_grid: bool = False
) -> torch.Tensor:
    """Letterbox attention masks of one tower (grid ``side`` = s_k) arranged in windows for an L×L query grid:
    ``[N*L*L, r*r]`` (or ``[N, L, L, r*r]`` with ``keep_grid``), all-False windows already reset to True."""
    m = to_windows(valid_mask(image_sizes, side, device=device), query_side, keep_grid=keep_grid)
    return fill_empty_windows(m)


def unpad_grid(x: torch.Tensor, image_sizes: Sequence[tuple[int, int]]) -> torch.Tensor:
    """Keep only the valid query cells of ``x`` ``[N, L, L, *rest]``: returns ``[sum_i h'_i*w'_i, *rest]``, images in
    order, cells row-major (the reference ``unpad_image`` on ``[1, L, L, ...]`` followed by flatten)."""
    keep = valid_mask(image_sizes, x.shape[1], device=x.device)
    if x.shape[1] != x.shape[2] or keep.shape[0] != x.shape[0]:
        raise ValueError(f"expected [N={len(image_sizes)}, L, L, ...], got {tuple(x.shape)}")
    return x[keep]


def assemble_blocks(
    grid: torch.Tensor,
    image_sizes: Sequence[tuple[int, int]],
    newline: torch.Tensor | None,
    unpad: bool = True,
) -> tuple[list[torch.Tensor], list[tuple[int, int]]]:
    """Per-image token blocks from a token grid, shared by every connector.

    ``grid``: ``[N, L, L, D]`` (one token per cell) or ``[N, L, L, K, D]`` (K consecutive tokens per cell, the
    interleaved layout). Each image's grid is cropped to its valid region (``unpad``), its cells are laid out
    row-major with the K tokens of a cell consecutive, and ``newline`` (``[D]``, or None for no newline) is appended
    after each grid row. Returns ``(blocks, grids)`` with ``blocks[i]`` of shape ``[h' * (K*w' + 1), D]`` (no
    newline: ``[h' * K*w', D]``) and ``grids[i] = (h', K*w')``, i.e. the token layout of the block, so that
    ``n_i = h' * (w + 1)`` holds for ``(h', w) = grids[i]``.
    """
    if grid.dim() == 4:
        grid = grid.unsqueeze(3)
    if grid.dim() != 5 or grid.shape[1] != grid.shape[2]:
        raise ValueError(f"expected a token grid [N, L, L, (K,) D], got shape {tuple(grid.shape)}")
    n, side, _, k, dim = grid.shape
    if len(image_sizes) != n:
        raise ValueError(f"{len(image_sizes)} image sizes for {n} images")
    regions = valid_regions(image_sizes, side) if unpad else [(0, side, 0, side)] * n
    blocks, grids = [], []
    for i, (top, bottom, left, right) in enumerate(regions):
        h, w = bottom - top, right - left
        cells = grid[i, top:bottom, left:right].reshape(h, w * k, dim)
        if newline is not None:
            nl = newline.to(cells.dtype).view(1, 1, dim).expand(h, 1, dim)
            cells = torch.cat([cells, nl], dim=1)
        blocks.append(cells.reshape(-1, dim))
        grids.append((h, w * k))
    return blocks, grids


def resize_grid(x: torch.Tensor, side: int) -> torch.Tensor:
    """Bilinear resize of ``[N, s, s, C]`` to ``[N, side, side, C]`` (fp32 compute, ``align_corners=False``, result
    cast back), the reference's interpolation for query groups and towers; a no-op when ``s == side``."""
    if x.shape[1] == side and x.shape[2] == side:
        return x
    y = torch.nn.functional.interpolate(
        x.permute(0, 3, 1, 2).float(), size=(side, side), mode="bilinear", align_corners=False
    )
    return y.permute(0, 2, 3, 1).to(x.dtype)
