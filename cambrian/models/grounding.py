"""Grounding objective: place each visual token on the LLM's input embeddings of the words for what its cell shows.

A low-compute warm start for the connector (towers and LLM frozen, no LLM forward): for every cell of the
connector's L x L query grid that has a target, the token the connector emits there is pulled towards the
(frozen) input-embedding vectors of the target words. The LLM then receives word-like visual tokens it can read,
instead of an image-independent soft prompt, which is what every answer-only recipe collapses to within the few
dozen optimizer steps a CPU affords (measured: the project's ``nano-vision`` notes and the README's demo section).
Related published work maps images into a frozen LLM's token-embedding space: SPAE (Yu et al., 2023) and LQAE
(Liu et al., 2023); here the targets come from annotations instead of a learned quantiser.

Objectives (``kind``):

- ``mse``: ``scale * mean_d (token - mean_w E[w])^2`` per cell (regression onto the mean embedding of the cell's
  words). ``scale`` 100 brings the loss of SmolLM2's embeddings (norm ~3) to O(1).
- ``ce``: classification over the whole vocabulary with logits ``token . E^T``; the target distribution is uniform
  over the cell's word tokens.
- ``mse+words`` (default): ``mse`` plus a classification of each cell among the batch's target words by distance
  (logits ``-|token - E[w]|^2 / tau``, uniform over the cell's words; ``tau`` = a fifth of the candidates' mean
  squared norm, about 1.3 for SmolLM2, so the term works at any embedding scale). Plain MSE weighs every embedding direction
  alike, and colour words sit close together in SmolLM2's table (red-blue 2.0 apart vs red-cube 3.3, norms ~2.3):
  measured on the demo's scenes, MSE alone decoded 36% of object cells to the right colour *on its training
  scenes* (shape 83%); the distance term is what makes the words separable.

Both are a weighted mean over cells (``weights``; 0 = no target), so a batch's loss does not depend on its size.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn as nn

from ..typed import ConfigError
from .connectors.base import VisualTokens
from .connectors.geometry import valid_region

KINDS = ("mse", "ce", "mse+words")


@dataclass
class GroundingTargets:
    """Targets of N images on the connector's L x L grid (padded-square frame, row-major cells).

    ``token_ids``: ``[N, L*L, W]`` long, the word tokens of each cell (-1 = padding);
    ``weights``: ``[N, L*L]`` float, per-cell loss weight (0 = no target)."""

    token_ids: torch.Tensor
    weights: torch.Tensor
    kind: str = "mse+words"
    scale: float = 100.0

    def to(self, device) -> GroundingTargets:
        return GroundingTargets(self.token_ids.to(device), self.weights.to(device), self.kind, self.scale)


def grid_tokens(
    visual: VisualTokens, image_sizes: Sequence[tuple[int, int]], side: int, unpad: bool, newline: bool
) -> list[tuple[torch.Tensor, tuple[int, int, int, int]]]:
    """Per image: the ``[h', w', D]`` grid tokens of its block (newline column dropped) and the valid region
    ``(top, bottom, left, right)`` of the L x L grid they cover."""
    out = []
    for block, (h, w), size in zip(visual.blocks, visual.grids, image_sizes):
        region = valid_region(size[0], size[1], side) if unpad else (0, side, 0, side)
        if (region[1] - region[0], region[3] - region[2]) != (h, w):
            raise ConfigError(
                f"grounding needs one token per grid cell; the connector's block layout is {h}x{w} "
                f"for a {region[1] - region[0]}x{region[3] - region[2]} valid grid (interleaved "
                f"connectors are not supported)"
            )
        cells = block.view(h, w + (1 if newline else 0), -1)[:, :w]
        out.append((cells, region))
    return out


def grounding_loss(
    visual: VisualTokens,
    targets: GroundingTargets,
    embedding: torch.Tensor,
    image_sizes: Sequence[tuple[int, int]],
    side: int,
    *,
    unpad: bool = True,
    newline: bool = True,
    kind: str = "mse+words",
    scale: float = 100.0,
) -> torch.Tensor:
    """Weighted mean grounding loss over the target cells of the batch (see the module docstring).
    ``embedding``: the LLM's input-embedding matrix ``[V, D]`` (treated as a constant)."""
    if kind not in KINDS:
        raise ConfigError(f"grounding objective must be one of {KINDS}, got {kind!r}")
    n = len(visual.blocks)
    if targets.token_ids.shape[:2] != (n, side * side):
        raise ConfigError(
            f"grounding targets have shape {tuple(targets.token_ids.shape)}, expected [{n}, {side * side}, W]"
        )
    emb = embedding.detach()
    toks, ids, wts = [], [], []
    for i, (cells, (top, bottom, left, right)) in enumerate(grid_tokens(visual, image_sizes, side, unpad, newline)):
        sel = torch.zeros(side, side, dtype=torch.bool, device=targets.weights.device)
        sel[top:bottom, left:right] = True
        sel = sel.flatten()
        toks.append(cells.reshape(-1, cells.shape[-1]))
        ids.append(targets.token_ids[i][sel])
        wts.append(targets.weights[i][sel])
    tok = torch.cat(toks).float()
    ids = torch.cat(ids).to(tok.device)
    w = torch.cat(wts).to(tok.device).float()
    valid = ids >= 0  # [M, W]
    w = torch.where(valid.any(-1), w, torch.zeros_like(w))
    total = w.sum()
    if float(total) <= 0:
        return tok.sum() * 0.0
    emb = emb.to(tok.device).float()
    if kind in ("mse", "mse+words"):
        e = emb[ids.clamp(min=0)] * valid[..., None]  # [M, W, D]
        target = e.sum(1) / valid.sum(1, keepdim=True).clamp(min=1)
        per_cell = scale * (tok - target).pow(2).mean(-1)
        if kind == "mse+words":
            cand, pos = torch.unique(ids[valid], return_inverse=True)  # the batch's target words
            where = torch.full_like(ids, -1)
            where[valid] = pos
            ec = emb[cand]
            tau = ec.pow(2).sum(-1).mean().clamp(min=1e-12) / 5.0  # temperature relative to the table's scale
            logp = torch.log_softmax(-torch.cdist(tok, ec).pow(2) / tau, dim=-1)  # [M, C]
            picked = logp.gather(1, where.clamp(min=0)) * valid
            per_cell = per_cell - picked.sum(1) / valid.sum(1).clamp(min=1)
    else:
        logp = torch.log_softmax(tok @ emb.T, dim=-1)  # [M, V]
        picked = logp.gather(1, ids.clamp(min=0)) * valid
        per_cell = -picked.sum(1) / valid.sum(1).clamp(min=1)
    return (per_cell * w).sum() / total


@torch.no_grad()
def cell_distances(
    visual: VisualTokens,
    image_sizes: Sequence[tuple[int, int]],
    side: int,
    embedding: torch.Tensor,
    candidates: torch.Tensor,
    *,
    unpad: bool = True,
    newline: bool = True,
) -> list[torch.Tensor]:
    """Per image, ``[L*L, C]`` euclidean distances from every cell's visual token to ``embedding[candidates]`` (row-major
    cells; ``inf`` outside the valid region)."""
    cand = embedding[candidates].float()
    out = []
    for cells, (top, bottom, left, right) in grid_tokens(visual, image_sizes, side, unpad, newline):
        d = torch.cdist(cells.reshape(-1, cells.shape[-1]).float(), cand.to(cells.device)).cpu()
        full = torch.full((side, side, len(cand)), float("inf"))
        full[top:bottom, left:right] = d.view(bottom - top, right - left, -1)
        out.append(full.view(side * side, -1))
    return out


def nearest(dist: torch.Tensor, side: int) -> torch.Tensor:
    """``[L*L, C]`` distances -> ``[L, L]`` index of the nearest candidate (-1 outside the valid region)."""
    idx = dist.argmin(-1)
    idx[torch.isinf(dist[:, 0])] = -1
    return idx.view(side, side)


def decode_cells(
    visual: VisualTokens,
    image_sizes: Sequence[tuple[int, int]],
    side: int,
    embedding: torch.Tensor,
    candidates: torch.Tensor,
    *,
    unpad: bool = True,
    newline: bool = True,
) -> list[torch.Tensor]:
    """For every valid cell, the index of the nearest (euclidean) row of ``embedding[candidates]``; per image an
    ``[L, L]`` long tensor (-1 outside the valid region). A probe of what the grounded tokens say."""
    return [
        nearest(d, side)
        for d in cell_distances(visual, image_sizes, side, embedding, candidates, unpad=unpad, newline=newline)
    ]


def connector_geometry(connector: nn.Module) -> dict:
    """``side``, ``unpad``, ``newline`` of a connector's token grid (its config)."""
    c = connector.config
    return {"side": c.grid, "unpad": bool(c.unpad), "newline": bool(c.newline)}


@torch.no_grad()
def cell_tokens(model, images: Sequence) -> list[tuple[torch.Tensor, tuple[int, int, int, int]]]:
    """Per image (PIL), its grid tokens ``[h', w', D]`` (newline column dropped) and their valid region of the
    connector's L x L grid (:func:`grid_tokens`): what each cell of a grounded model's visual block says. Needs a
    ``CambrianModel`` (its towers, connector and letterbox geometry)."""
    pixels, sizes = model.encode_images(list(images))
    visual = model.visual_tokens(model.image_features(pixels), sizes)
    geo = connector_geometry(model.connector)
    return grid_tokens(visual, sizes, geo["side"], geo["unpad"], geo["newline"])
