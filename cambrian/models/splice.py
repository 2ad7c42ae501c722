"""Splicing image blocks into the text sequence: each ``<image>`` placeholder id (``IMAGE_TOKEN_INDEX``) is
replaced by its image's visual tokens (labels -100), padding is redone on the requested side and positions are
renumbered contiguously. Each image block's position is recorded (``ImageSpan``) from the ids themselves, never a
constant ``image_position`` (docs/official-code.md#bugs B2)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from ..constants import IGNORE_INDEX, IMAGE_TOKEN, IMAGE_TOKEN_INDEX
from ..errors import InputError
from .connectors.base import ImageSpan, VisualTokens


@dataclass
class SpliceResult:
    inputs_embeds: torch.Tensor
    attention_mask: torch.Tensor
    position_ids: torch.Tensor
    labels: torch.Tensor | None
    spans: list[ImageSpan]


def splice_images(
    embed: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None,
    labels: torch.Tensor | None,
    visual: VisualTokens | None,
    padding_side: str = "right",
    max_length: int | None = None,
) -> SpliceResult:
    """Replace every IMAGE_TOKEN_INDEX by its image block (images numbered in row-major order over the batch; text
    embedded with ``embed``), drop the old padding, re-pad on ``padding_side`` and renumber positions contiguously;
    a row longer than ``max_length`` (images included) is an error."""
    device = input_ids.device
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    attention_mask = attention_mask.bool()
    is_img = input_ids == IMAGE_TOKEN_INDEX
    n_img = int(is_img.sum())
    n_blocks = 0 if visual is None else len(visual.blocks)
    if n_img != n_blocks:
        raise ValueError(f"the batch has {n_img} {IMAGE_TOKEN} placeholders but {n_blocks} images")
    if bool((is_img & ~attention_mask).any()):
        raise ValueError(f"an {IMAGE_TOKEN} placeholder sits in a padded position")
    text_embeds = embed(input_ids.clamp(min=0).masked_fill(is_img, 0))

    rows_e, rows_l, spans = [], [], []
    img_i = 0
    for b in range(input_ids.shape[0]):
        keep = attention_mask[b]
        ids_b = input_ids[b][keep]
        emb_b = text_embeds[b][keep]
        lab_b = labels[b][keep] if labels is not None else None
        cuts = torch.nonzero(ids_b == IMAGE_TOKEN_INDEX).flatten().tolist()
        pieces_e, pieces_l, prev, length = [], [], 0, 0
        for c in cuts:
            pieces_e.append(emb_b[prev:c])
            length += c - prev
            block = visual.blocks[img_i]
            spans.append(ImageSpan(row=b, start=length, image=img_i))
            pieces_e.append(block.to(emb_b.dtype))
            if lab_b is not None:
                pieces_l += [
                    lab_b[prev:c],
                    torch.full((block.shape[0],), IGNORE_INDEX, dtype=lab_b.dtype, device=device),
                ]
            length += block.shape[0]
            prev = c + 1
            img_i += 1
        pieces_e.append(emb_b[prev:])
        if lab_b is not None:
            pieces_l.append(lab_b[prev:])
        rows_e.append(torch.cat(pieces_e))
        rows_l.append(torch.cat(pieces_l) if lab_b is not None else None)

    max_len = max(e.shape[0] for e in rows_e)
    if max_length and max_len > max_length:
        raise InputError(f"sequence of {max_len} positions (images included) exceeds llm.max_length={max_length}")
    B, D = len(rows_e), text_embeds.shape[-1]
    out_e = text_embeds.new_zeros(B, max_len, D)
    out_m = torch.zeros(B, max_len, dtype=torch.long, device=device)
    out_l = torch.full((B, max_len), IGNORE_INDEX, dtype=torch.long, device=device) if labels is not None else None
    for b, e in enumerate(rows_e):
        n = e.shape[0]
        off = max_len - n if padding_side == "left" else 0
        out_e[b, off : off + n] = e
        out_m[b, off : off + n] = 1
        if out_l is not None:
            out_l[b, off : off + n] = rows_l[b]
        if off:
            for s in spans:
                if s.row == b:
                    s.start += off
    position_ids = (out_m.cumsum(-1) - 1).clamp(min=0)
    return SpliceResult(out_e, out_m, position_ids, out_l, spans)
