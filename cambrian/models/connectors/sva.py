"""Spatial Vision Aggregator (SVA) connector (docs/official-code.md#forward, docs/official-code.md#in-llm, docs/official-code.md#init; state-dict layout docs/official-code.md#release).

Module tree and parameter names follow the released checkpoints, so a Cambrian-1 connector state dict (with the
``model.`` prefix stripped) loads with ``strict=True``:

```
mm_projector_aux_{k}      Sequential(Linear(C_k, d), GELU, Linear(d, d), LayerNorm(d))    per encoder k
vision_sampler_{g}        VisionTokenSampler(q_dim=d, context=d, r_k = s_k / L_g, depth layers)  per query group g
vision_sampler_layers.{j} VisionTokenSampler(q_dim=D, context=d, r_k = s_k / L, 1 layer)    in-LLM, j < num_llm_layers
mm_projector              Sequential(Linear(d*G, D), GELU, Linear(D, D))
vision_query              (G, d)     one learnable query per group, broadcast to every grid cell
image_newline             (D,)
```
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...config import ConnectorConfig
from ...typed import ConfigError
from .base import CONNECTORS, Connector, ImageSpan, VisualTokens
from .geometry import assemble_blocks, resize_grid, to_windows, valid_mask, window_masks

__all__ = [
    "MLP",
    "MultiKVCrossAttention",
    "VisionCrossAttentionLayer",
    "VisionTokenSampler",
    "SVAConnector",
    "SVAState",
]


class MLP(nn.Module):
    """``linear_2(GELU(linear_1(x)))`` without biases (the SVA layer's ``proj_out``)."""

    def __init__(self, d_in: int, d_hidden: int, d_out: int):
        super().__init__()
        self.linear_1 = nn.Linear(d_in, d_hidden, bias=False)
        self.act = nn.GELU()
        self.linear_2 = nn.Linear(d_hidden, d_out, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_2(self.act(self.linear_1(x)))


def _ln_linear(d_in: int, d_out: int) -> nn.Sequential:
    return nn.Sequential(nn.LayerNorm(d_in), nn.Linear(d_in, d_out, bias=False))


class MultiKVCrossAttention(nn.Module):
    """Queries attend to the keys/values of K towers at once: each tower has its own LayerNorm+Linear key and
    value projections (``k_proj_{k}``, ``v_proj_{k}``); keys of all towers are concatenated along the token axis
    and a single softmax runs over them. No biases in the Linears."""

    def __init__(self, q_dim: int, kv_dims: Sequence[int], hidden_dim: int, num_heads: int):
        super().__init__()
        if num_heads <= 0 or hidden_dim % num_heads != 0:
            raise ConfigError(f"SVA hidden size {hidden_dim} must be divisible by num_heads={num_heads}")
        self.hidden_dim = hidden_dim
        self.num_heads = num_heads
        self.head_dim = hidden_dim // num_heads
        self.num_kvs = len(kv_dims)
        self.q_proj = _ln_linear(q_dim, hidden_dim)
        for k, kv_dim in enumerate(kv_dims):
            setattr(self, f"k_proj_{k}", _ln_linear(kv_dim, hidden_dim))
            setattr(self, f"v_proj_{k}", _ln_linear(kv_dim, hidden_dim))
        self.o_proj = nn.Linear(hidden_dim, q_dim, bias=False)

    def forward(
        self, queries: torch.Tensor, latents: Sequence[torch.Tensor], masks: Sequence[torch.Tensor | None]
    ) -> torch.Tensor:
        """``queries`` ``[M, q, q_dim]``; ``latents[k]`` ``[M, n_k, kv_dim_k]``; ``masks[k]`` bool ``[M, n_k]`` (True =
        attend) or None. Returns ``[M, q, q_dim]``."""
        m, q_len, _ = queries.shape
        q = self.q_proj(queries)
        k = torch.cat([getattr(self, f"k_proj_{i}")(x) for i, x in enumerate(latents)], dim=1)
        v = torch.cat([getattr(self, f"v_proj_{i}")(x) for i, x in enumerate(latents)], dim=1)
        n = k.shape[1]
        heads, hd = self.num_heads, self.head_dim
        q = q.view(m, q_len, heads, hd).transpose(1, 2)
        k = k.view(m, n, heads, hd).transpose(1, 2)
        v = v.view(m, n, heads, hd).transpose(1, 2)
        attn_mask = None
        if any(mk is not None for mk in masks):
            parts = [
                mk.to(torch.bool) if mk is not None else torch.ones(m, x.shape[1], dtype=torch.bool, device=x.device)
                for mk, x in zip(masks, latents)
            ]
            attn_mask = torch.cat(parts, dim=-1).view(m, 1, 1, n)
            if q.device.type == "cuda":  # memory-efficient SDPA kernels want contiguous inputs with a custom mask
                q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        out = out.transpose(1, 2).reshape(m, q_len, self.hidden_dim)
        return self.o_proj(out)


class VisionCrossAttentionLayer(nn.Module):
    """One SVA layer (docs/official-code.md#sva-layer)::

    h   = proj_in([q ; proj_context(c)])
    a   = cross_attn(h, X_k + pos_embed_k, masks)         # all towers, one softmax
    out = proj_out(norm(h + a)) + q                        # residual adds the *original* query
    """

    def __init__(
        self,
        q_dim: int,
        context_dim: int,
        kv_dims: Sequence[int],
        kv_sizes: Sequence[int],
        hidden_dim: int = 1024,
        num_heads: int = 16,
    ):
        super().__init__()
        if len(kv_dims) != len(kv_sizes):
            raise ValueError(f"kv_dims {list(kv_dims)} and kv_sizes {list(kv_sizes)} differ in length")
        self.q_dim = q_dim
        self.hidden_dim = hidden_dim
        self.kv_sizes = [int(r) for r in kv_sizes]
        self.num_kvs = len(kv_dims)
        self.proj_context = nn.Linear(context_dim, hidden_dim, bias=False)
        self.proj_in = nn.Linear(q_dim + hidden_dim, hidden_dim, bias=False)
        self.proj_out = MLP(hidden_dim, hidden_dim, q_dim)
        self.norm = nn.LayerNorm(hidden_dim)
        self.cross_attn = MultiKVCrossAttention(hidden_dim, kv_dims, hidden_dim, num_heads)
        for k, r in enumerate(self.kv_sizes):
            if r < 1:
                raise ValueError(f"kv size r_{k} must be >= 1, got {r}")
            if r > 1:  # N(0, 1), unscaled (docs/official-code.md#init)
                setattr(self, f"pos_embed_{k}", nn.Parameter(torch.randn(r * r, hidden_dim)))

    def forward(
        self,
        queries: torch.Tensor,
        context: torch.Tensor,
        windows: Sequence[torch.Tensor],
        masks: Sequence[torch.Tensor | None] | None = None,
    ) -> torch.Tensor:
        """``queries`` ``[M, 1, q_dim]``, ``context`` ``[M, 1, context_dim]``, ``windows[k]`` ``[M, r_k^2, kv_dim_k]``,
        ``masks[k]`` bool ``[M, r_k^2]`` (True = attend; no all-False rows) -> ``[M, 1, q_dim]``."""
        if len(windows) != self.num_kvs:
            raise ValueError(f"SVA layer expects {self.num_kvs} windows, got {len(windows)}")
        masks = list(masks) if masks is not None else [None] * self.num_kvs
        if len(masks) != self.num_kvs:
            raise ValueError(f"SVA layer expects {self.num_kvs} masks, got {len(masks)}")
        m = queries.shape[0]
        for k, (x, r) in enumerate(zip(windows, self.kv_sizes)):
            if x.shape[0] != m or x.shape[1] != r * r:
                raise ValueError(f"window {k} has shape {tuple(x.shape)}, expected [{m}, {r * r}, C]")
            if masks[k] is not None and tuple(masks[k].shape) != (m, r * r):
                raise ValueError(f"mask {k} has shape {tuple(masks[k].shape)}, expected ({m}, {r * r})")
        residual = queries
        h = self.proj_in(torch.cat([queries, self.proj_context(context)], dim=-1))
        latents = [
            x + getattr(self, f"pos_embed_{k}")[None].to(x.dtype) if r > 1 else x
            for k, (x, r) in enumerate(zip(windows, self.kv_sizes))
        ]
        h = self.norm(h + self.cross_attn(h, latents, masks))
        return self.proj_out(h) + residual


class VisionTokenSampler(nn.Module):
    """``num_layers`` SVA layers applied in sequence; every layer sees the same context, windows and masks."""

    def __init__(
        self,
        q_dim: int,
        context_dim: int,
        kv_dims: Sequence[int],
        kv_sizes: Sequence[int],
        hidden_dim: int = 1024,
        num_layers: int = 1,
        num_heads: int = 16,
    ):
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"VisionTokenSampler needs at least one layer, got {num_layers}")
        self.layers = nn.ModuleList(
            VisionCrossAttentionLayer(q_dim, context_dim, kv_dims, kv_sizes, hidden_dim, num_heads)
            for _ in range(num_layers)
        )

    def forward(self, queries, context, windows, masks=None):
        for layer in self.layers:
            queries = layer(queries, context, windows, masks)
        return queries


@dataclass
class SVAState:
    """What ``apply_in_llm`` needs, built once per forward (docs/official-code.md#forward step 6).

    ``windows[k]`` ``[M, r_k^2, d]`` and ``masks[k]`` ``[M, r_k^2]`` hold, image after image, the windows of the
    *kept* (unpadded) cells of each image's L×L query grid, row-major (r_k = s_k / L). ``offsets[i]`` is image i's
    first row; ``grids[i] = (h', w')`` its valid query grid; ``context`` ``[N, d]`` the per-image global context.
    """

    windows: list[torch.Tensor]
    masks: list[torch.Tensor]
    context: torch.Tensor
    grids: list[tuple[int, int]]
    offsets: list[int]
    newline: bool


def _square_side(n: int, what: str) -> int:
    side = math.isqrt(int(n))
    if side * side != n or side <= 0:
        raise ConfigError(f"{what}={n} is not a positive square number")
    return side


@CONNECTORS.register("sva")
class SVAConnector(Connector):
    """Cambrian-1's SVA connector: per-group learnable queries aggregate local windows of every encoder (pre-LLM),
    optionally re-aggregated inside the LLM after decoder layers ``start + t*stride``."""

    def __init__(self, config: ConnectorConfig, encoder_dims, encoder_grids, llm_hidden: int):
        super().__init__(config, encoder_dims, encoder_grids, llm_hidden)
        if len(self.encoder_dims) == 0 or len(self.encoder_dims) != len(self.encoder_grids):
            raise ConfigError(
                f"SVA needs one (dim, grid) per encoder, got dims {self.encoder_dims} grids {self.encoder_grids}"
            )
        d, D, heads = int(config.hidden_size), int(llm_hidden), int(config.num_heads)
        if heads <= 0 or d % heads != 0:
            raise ConfigError(f"connector.hidden_size={d} must be divisible by connector.num_heads={heads}")
        if not config.query_num_list:
            raise ConfigError("connector.query_num_list must name at least one query group")
        if config.depth < 1:
            raise ConfigError(f"connector.depth must be >= 1, got {config.depth}")
        if config.num_llm_layers < 0 or config.llm_start < 0 or config.llm_stride < 1:
            raise ConfigError("connector.num_llm_layers/llm_start must be >= 0 and llm_stride >= 1")
        self.final_side = config.grid
        self.group_sides = [
            _square_side(q, f"connector.query_num_list[{g}]") for g, q in enumerate(config.query_num_list)
        ]
        K, G = len(self.encoder_dims), len(self.group_sides)

        def reductions(side: int, where: str) -> list[int]:
            out = []
            for k, s in enumerate(self.encoder_grids):
                if s % side != 0:
                    raise ConfigError(
                        f"{where}: encoder {k} grid {s} is not an integer multiple of the query grid side {side} "
                        f"(SVA windows need s_k / L to be an integer)"
                    )
                out.append(s // side)
            return out

        for k, c in enumerate(self.encoder_dims):
            setattr(
                self,
                f"mm_projector_aux_{k}",
                nn.Sequential(nn.Linear(c, d), nn.GELU(), nn.Linear(d, d), nn.LayerNorm(d)),
            )
        for g, side in enumerate(self.group_sides):
            sizes = reductions(side, f"query group {g} (L_g={side})")
            setattr(self, f"vision_sampler_{g}", VisionTokenSampler(d, d, [d] * K, sizes, d, config.depth, heads))
        if config.num_llm_layers > 0:
            sizes = reductions(self.final_side, f"in-LLM SVA (L={self.final_side})")
            self.vision_sampler_layers = nn.ModuleList(
                VisionTokenSampler(D, d, [d] * K, sizes, d, 1, heads) for _ in range(config.num_llm_layers)
            )
        self.mm_projector = nn.Sequential(nn.Linear(d * G, D), nn.GELU(), nn.Linear(D, D))
        # docs/official-code.md#init: vision_query ~ N(0,1)/sqrt(d), image_newline ~ N(0,1)/sqrt(D)
        self.vision_query = nn.Parameter(torch.randn(G, d) / math.sqrt(d))
        self.image_newline = nn.Parameter(torch.randn(D) / math.sqrt(D))

    # ---- helpers ---------------------------------------------------------------------------------------------
    @property
    def in_llm_layers(self) -> list[int]:
        c = self.config
        return [c.llm_start + t * c.llm_stride for t in range(c.num_llm_layers)]

    def sva_parameters(self) -> list[nn.Parameter]:
        """The query samplers (pre-LLM per group, and in-LLM) and their learnable queries (official
        ``mm_vision_sampler_lr``: ``vision_sampler*`` and ``vision_query``, docs/official-code.md#stages)."""
        samplers = [getattr(self, f"vision_sampler_{g}") for g in range(len(self.group_sides))]
        if self.config.num_llm_layers > 0:
            samplers.append(self.vision_sampler_layers)
        return [p for m in samplers for p in m.parameters()] + [self.vision_query]

    # ---- pre-LLM ---------------------------------------------------------------------------------------------
    def forward(self, features: list[torch.Tensor], image_sizes) -> VisualTokens:
        n = self._check_inputs(features, image_sizes)
        image_sizes = [tuple(int(v) for v in s) for s in image_sizes]
        if n == 0:
            return VisualTokens(blocks=[], grids=[], state=None)
        dtype = self.mm_projector[0].weight.dtype
        d, L = self.config.hidden_size, self.final_side
        projected = [getattr(self, f"mm_projector_aux_{k}")(f.to(dtype)) for k, f in enumerate(features)]  # [N,s,s,d]
        # global context: mean over *all* tokens (padding included) of the first encoder (docs/official-code.md#forward step 3)
        context = projected[0].flatten(1, 2).mean(dim=1)  # [N, d]
        device = context.device
        groups = []
        for g, side in enumerate(self.group_sides):
            per_image = side * side
            m = n * per_image
            queries = self.vision_query[g].view(1, 1, d).expand(m, 1, d)
            ctx = context[:, None, None, :].expand(n, per_image, 1, d).reshape(m, 1, d)
            windows = [to_windows(p, side) for p in projected]
            masks = [window_masks(image_sizes, s, side, device=device) for s in self.encoder_grids]
            out = getattr(self, f"vision_sampler_{g}")(queries, ctx, windows, masks).view(n, side, side, d)
            groups.append(resize_grid(out, L))
        grid = self.mm_projector(torch.cat(groups, dim=-1))  # [N, L, L, D]
        newline = self.image_newline if self.config.newline else None
        blocks, grids = assemble_blocks(grid, image_sizes, newline, self.config.unpad)
        state = self._build_state(projected, context, image_sizes) if self.config.num_llm_layers > 0 else None
        return VisualTokens(blocks=blocks, grids=grids, state=state)

    def _build_state(self, projected, context, image_sizes) -> SVAState:
        L = self.final_side
        n = context.shape[0]
        if self.config.unpad:
            keep = valid_mask(image_sizes, L, device=context.device)  # [N, L, L]
        else:
            keep = torch.ones(n, L, L, dtype=torch.bool, device=context.device)
        windows = [to_windows(p, L, keep_grid=True)[keep] for p in projected]
        masks = [
            window_masks(image_sizes, s, L, device=context.device, keep_grid=True)[keep] for s in self.encoder_grids
        ]
        counts = keep.flatten(1).sum(dim=1).tolist()
        rows = keep.any(dim=2).sum(dim=1).tolist()
        grids = [(h, c // h) for h, c in zip(rows, counts)]
        offsets = [0]
        for c in counts[:-1]:
            offsets.append(offsets[-1] + c)
        return SVAState(
            windows=windows,
            masks=masks,
            context=context,
            grids=grids,
            offsets=offsets,
            newline=bool(self.config.newline),
        )

    # ---- in-LLM ----------------------------------------------------------------------------------------------
    def apply_in_llm(self, layer_idx: int, hidden: torch.Tensor, spans: Sequence[ImageSpan], state) -> torch.Tensor:
        """Re-aggregate the image tokens after decoder layer ``layer_idx`` (docs/official-code.md#in-llm).

        Each span's block starts at ``span.start`` of row ``span.row`` (computed by the model from the token ids,
        not the reference's constant ``image_position``, docs/official-code.md#bugs B2); its ``h'*w'`` grid tokens are the queries
        of ``vision_sampler_layers[(layer_idx - start) // stride]``, the newline column is left unchanged. All
        spans of the batch run in one call; the result is written back out of place (autograd-safe).

        Unlike the reference GPU path, which silently skips the in-LLM SVA in training (docs/official-code.md#bugs B5), this runs
        in every forward the model calls it for (training and generation prefill).
        """
        layers = self.in_llm_layers
        if layer_idx not in layers:
            raise ValueError(f"apply_in_llm called for layer {layer_idx}; in-LLM SVA layers are {layers}")
        spans = list(spans)
        if not spans:
            return hidden
        if not isinstance(state, SVAState):
            raise ValueError(
                "apply_in_llm needs the SVAState returned by this connector's forward (VisualTokens.state)"
            )
        sampler = self.vision_sampler_layers[(layer_idx - self.config.llm_start) // self.config.llm_stride]
        b, t, dim = hidden.shape
        dev = hidden.device
        n_images = len(state.grids)
        flat_pos, win_rows, img_of = [], [], []
        for sp in spans:
            if not (0 <= sp.image < n_images):
                raise ValueError(f"span {sp} names image {sp.image}, but the state holds {n_images} images")
            if not (0 <= sp.row < b):
                raise ValueError(f"span {sp} names row {sp.row}, but hidden has {b} rows")
            h, w = state.grids[sp.image]
            row_len = w + (1 if state.newline else 0)
            if sp.start < 0 or sp.start + h * row_len > t:
                raise ValueError(f"span {sp}: block of {h * row_len} tokens does not fit in a sequence of length {t}")
            a = torch.arange(h * w, device=dev)
            flat_pos.append(sp.row * t + sp.start + (a // w) * row_len + (a % w))
            win_rows.append(a + state.offsets[sp.image])
            img_of.append(torch.full((h * w,), sp.image, dtype=torch.long, device=dev))
        flat_pos = torch.cat(flat_pos)
        if torch.unique(flat_pos).numel() != flat_pos.numel():
            raise ValueError("image spans overlap")
        win_rows = torch.cat(win_rows).to(state.windows[0].device)
        img_of = torch.cat(img_of).to(state.context.device)
        m = flat_pos.numel()
        total = state.windows[0].shape[0]
        if m == total and torch.equal(win_rows, torch.arange(total, device=win_rows.device)):
            windows, masks = list(state.windows), list(state.masks)
        else:
            windows = [x.index_select(0, win_rows) for x in state.windows]
            masks = [x.index_select(0, win_rows) for x in state.masks]
        wdtype = sampler.layers[0].proj_in.weight.dtype
        flat_hidden = hidden.reshape(b * t, dim)
        queries = flat_hidden.index_select(0, flat_pos).to(wdtype).unsqueeze(1)  # [M, 1, D]
        ctx = state.context.index_select(0, img_of).to(wdtype).unsqueeze(1)  # [M, 1, d]
        windows = [x.to(wdtype) for x in windows]
        out = sampler(queries, ctx, windows, masks).squeeze(1).to(hidden.dtype)
        return flat_hidden.index_copy(0, flat_pos, out).view(b, t, dim)
