"""A second implementation of the ``VLM`` contract (``cambrian.models.vlm``) and of the generation contract
(``cambrian.models.generate``), deliberately unlike ``CambrianModel``: a character tokenizer and chat format, a conv
tower, a linear connector, a small ``nn.TransformerEncoder`` "LLM" without a KV cache (its decoder state re-runs the
whole sequence). The trainer tests run on it and on a tiny ``CambrianModel``, so the loop is shown to depend only on
the contract; the server is tested on it too. ``conftest.py`` registers it as the model source ``toy`` (``model: toy``
in a recipe, or a directory it saved).

Its parameter names are its own (``bridge.query``, ``bridge.mixer``, ...): it declares what trains in a stage, its
learning-rate groups and its FSDP units, and the trainer asks.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.nn as nn
import torch.nn.functional as F

from cambrian.constants import IGNORE_INDEX, IMAGE_TOKEN, IMAGE_TOKEN_INDEX
from cambrian.errors import InputError
from cambrian.models.generate import GenerationMixin, Prefill, PromptIds
from cambrian.models.training import adapter_parameters

PAD, BOS, EOS = 0, 1, 2


class CharTokenizer:
    pad_token_id, bos_token_id, eos_token_id = PAD, BOS, EOS
    vocab_size = 128

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return [min(ord(c), 127) if ord(c) >= 3 else 3 for c in text]

    def decode(self, ids, skip_special_tokens: bool = True) -> str:
        return "".join(chr(t) for t in ids if t >= 3 or not skip_special_tokens)


class ToyEncoder(nn.Module):
    def __init__(self, channels: int = 8, size: int = 8, grid: int = 2):
        super().__init__()
        self.config = SimpleNamespace(frozen=True, image_size=size, grid=grid, hidden_size=channels)
        self.size, self.grid = size, grid
        self.conv = nn.Conv2d(3, channels, kernel_size=size // grid, stride=size // grid)

    def preprocess(self, images) -> torch.Tensor:
        import numpy as np

        out = []
        for im in images:
            im = im.convert("RGB").resize((self.size, self.size))
            out.append(torch.from_numpy(np.asarray(im, dtype=np.float32) / 127.5 - 1.0).permute(2, 0, 1))
        return torch.stack(out)

    def forward(self, px: torch.Tensor) -> torch.Tensor:
        return self.conv(px).permute(0, 2, 3, 1)  # [N, g, g, C]


class ToyBridge(nn.Module):
    """The toy's connector: a learnt query and a mixer (its "SVA" part, declared as such), a projection and a
    row-end token."""

    def __init__(self, channels: int, hidden: int):
        super().__init__()
        self.query = nn.Parameter(torch.randn(1, channels) / channels**0.5)
        self.mixer = nn.Linear(channels, channels)
        self.proj = nn.Linear(channels, hidden)
        self.row_end = nn.Parameter(torch.randn(hidden) / hidden**0.5)

    def forward(self, feats: torch.Tensor) -> list[torch.Tensor]:
        x = self.mixer(feats + self.query).relu()
        x = self.proj(x)  # [N, g, g, D]
        N, g, _, D = x.shape
        nl = self.row_end.view(1, 1, 1, D).expand(N, g, 1, D)
        return list(torch.cat([x, nl], 2).reshape(N, g * (g + 1), D))


class ToyLLM(nn.Module):
    def __init__(self, vocab: int = 128, hidden: int = 32, layers: int = 1, max_len: int = 512):
        super().__init__()
        self.embed_tokens = nn.Embedding(vocab, hidden)
        self.pos = nn.Embedding(max_len, hidden)
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(hidden, 2, 2 * hidden, dropout=0.0, batch_first=True) for _ in range(layers)
        )
        self.norm = nn.LayerNorm(hidden)
        self.lm_head = nn.Linear(hidden, vocab, bias=False)

    def forward(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Right-padded ``[B, T, D]`` embeddings -> logits ``[B, T, V]``."""
        T = inputs_embeds.shape[1]
        h = inputs_embeds + self.pos(torch.arange(T, device=inputs_embeds.device))
        causal = torch.triu(torch.ones(T, T, dtype=torch.bool, device=h.device), 1)
        for layer in self.layers:
            h = layer(h, src_mask=causal, src_key_padding_mask=attention_mask == 0, is_causal=False)
        return self.lm_head(self.norm(h))


@dataclass
class ToyConfig:
    channels: int = 8
    hidden: int = 32
    layers: int = 1
    image_size: int = 8
    grid: int = 2
    max_length: int = 256

    def save(self, path) -> None:
        Path(path).write_text(json.dumps(asdict(self)))


class ToyVLM(GenerationMixin, nn.Module):
    def __init__(self, **config):
        super().__init__()
        self.config = c = ToyConfig(**config)
        self.tokenizer = CharTokenizer()
        self.template = "toy"
        self.encoders = nn.ModuleList([ToyEncoder(c.channels, c.image_size, c.grid)])
        self.encoders.requires_grad_(False)
        self.bridge = ToyBridge(c.channels, c.hidden)
        self.llm = ToyLLM(self.tokenizer.vocab_size, c.hidden, c.layers)

    def visual_token_count(self, size) -> int:
        g = self.config.grid
        return g * (g + 1)

    @property
    def max_length(self) -> int:
        return self.config.max_length

    grounding_grid = None  # its bridge adds row-end tokens: no one-token-per-cell grid to ground

    # ---- training declarations (its own structure, its own names) -----------------------------------------
    def trainable_parameters(self, stage, unfreeze_vision=False, lora=False) -> list:
        params = list(self.bridge.parameters())
        if stage in (1, "ground"):
            return params
        params += adapter_parameters(self.llm) if lora else list(self.llm.parameters())
        return params + (list(self.encoders.parameters()) if unfreeze_vision else [])

    def lr_groups(self) -> dict[str, list]:
        b = self.bridge
        return {
            "sva": [b.query, *b.mixer.parameters()],
            "projector": [*b.proj.parameters(), b.row_end],
            "llm": list(self.llm.parameters()),
            "vision": list(self.encoders.parameters()),
        }

    def fsdp_units(self) -> list:
        return list(self.llm.layers)

    # ---- the generation contract's model side (GenerationMixin builds the rest) ----------------------------
    @property
    def context_length(self) -> int:
        return self.config.max_length

    stop_token_ids = (EOS,)

    def prompt_ids(self, text, system=None) -> list[int]:
        if isinstance(text, PromptIds):  # tokenised already (the contract)
            return list(text)
        msgs = [{"role": "user", "content": text}] if isinstance(text, str) else list(text)
        if system is not None and not any(m["role"] == "system" for m in msgs):
            msgs = [{"role": "system", "content": system}, *msgs]
        return self.tokenize_conversation(msgs)["input_ids"] + self.tokenizer.encode("A:")

    @torch.no_grad()
    def prefill(self, texts, images=None, system=None, use_cache=True) -> Prefill:
        """No KV cache: the decoder state keeps each row's embedded sequence (images spliced in) and runs the whole
        toy LLM again each step."""
        images = [list(x) for x in (images or [[] for _ in texts])]
        ids = [self.prompt_ids(t, system) for t in texts]
        flat = [im for ims in images for im in ims]
        n_tags = sum(t == IMAGE_TOKEN_INDEX for s in ids for t in s)
        if n_tags != len(flat):
            raise InputError(f"{n_tags} {IMAGE_TOKEN} placeholders but {len(flat)} images")
        features = [enc(enc.preprocess(flat)) for enc in self.encoders] if flat else None
        rows, _ = self._embed_rows([torch.tensor(s) for s in ids], None, features)
        state = ToyDecoderState(self.llm, rows)
        return Prefill(state.logits(), state if use_cache else None, ids, [len(r) for r in rows])

    def tokenize_conversation(self, messages: list[dict]) -> dict:
        ids, labels = [BOS], [IGNORE_INDEX]
        for m in messages:
            if m["role"] == "assistant":
                t = self.tokenizer.encode("A:")
                body = self.tokenizer.encode(m["content"]) + [EOS]
                ids += t + body
                labels += [IGNORE_INDEX] * len(t) + body
            else:
                head = "S:" if m["role"] == "system" else "U:"
                parts = m["content"].split(IMAGE_TOKEN)
                seq = self.tokenizer.encode(head)
                for k, p in enumerate(parts):
                    if k:
                        seq.append(IMAGE_TOKEN_INDEX)
                    seq += self.tokenizer.encode(p)
                ids += seq
                labels += [IGNORE_INDEX] * len(seq)
        return {"input_ids": ids, "labels": labels}

    def _embed_rows(self, ids_rows, label_rows, features):
        """Per row: the token embeddings with each image placeholder replaced by its block, and the labels."""
        blocks = self.bridge(features[0]) if features is not None else []
        emb = self.llm.embed_tokens
        rows_e, rows_l, k = [], [], 0
        for b, ids in enumerate(ids_rows):
            lab = label_rows[b] if label_rows is not None else torch.full_like(ids, IGNORE_INDEX)
            pieces_e, pieces_l = [], []
            start = 0
            for pos in (ids == IMAGE_TOKEN_INDEX).nonzero().flatten().tolist():
                pieces_e += [emb(ids[start:pos]), blocks[k]]
                pieces_l += [
                    lab[start:pos],
                    torch.full((blocks[k].shape[0],), IGNORE_INDEX, dtype=lab.dtype, device=lab.device),
                ]
                k += 1
                start = pos + 1
            pieces_e.append(emb(ids[start:]))
            pieces_l.append(lab[start:])
            rows_e.append(torch.cat(pieces_e))
            rows_l.append(torch.cat(pieces_l))
        return rows_e, rows_l

    def forward(self, input_ids, attention_mask=None, labels=None, pixel_values=None, image_sizes=None, features=None):
        if features is None and pixel_values is not None:
            features = [enc(px) for enc, px in zip(self.encoders, pixel_values)]
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        keep = [attention_mask[b].bool() for b in range(input_ids.shape[0])]
        rows_e, rows_l = self._embed_rows(
            [input_ids[b][k] for b, k in enumerate(keep)],
            [labels[b][k] for b, k in enumerate(keep)] if labels is not None else None,
            features,
        )
        x, m = _right_pad(rows_e)
        y = torch.full(m.shape, IGNORE_INDEX, dtype=torch.long, device=input_ids.device)
        for b, lab in enumerate(rows_l):
            y[b, : lab.shape[0]] = lab
        logits = self.llm(x, m)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(
                logits[:, :-1].reshape(-1, logits.shape[-1]).float(), y[:, 1:].reshape(-1), ignore_index=IGNORE_INDEX
            )
        return SimpleNamespace(loss=loss, logits=logits)

    # ---- persistence --------------------------------------------------------------------------------------
    saved_files = ("model.safetensors", "toy_config.json")

    def save_pretrained(self, out) -> None:
        from safetensors.torch import save_file

        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        save_file(
            {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}, str(out / "model.safetensors")
        )
        self.config.save(out / "toy_config.json")

    @classmethod
    def from_pretrained(cls, d) -> ToyVLM:
        from safetensors.torch import load_file

        d = Path(d)
        m = cls(**json.loads((d / "toy_config.json").read_text()))
        m.load_state_dict(load_file(str(d / "model.safetensors")))
        return m


def _right_pad(rows: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """``[L_i, D]`` rows -> a right-padded ``[B, T, D]`` batch and its ``[B, T]`` mask."""
    T, D = max(r.shape[0] for r in rows), rows[0].shape[1]
    x = rows[0].new_zeros(len(rows), T, D)
    m = torch.zeros(len(rows), T, dtype=torch.long, device=rows[0].device)
    for b, r in enumerate(rows):
        x[b, : r.shape[0]] = r
        m[b, : r.shape[0]] = 1
    return x, m


class ToyDecoderState:
    """The toy's ``DecoderState``: every row's embedded sequence; a step appends one token per row and runs the
    whole toy LLM again (correct, not fast). Rows can be dropped, repeated and merged."""

    can_select = True

    def __init__(self, llm: ToyLLM, rows: list[torch.Tensor]):
        self.llm, self.rows = llm, rows

    def logits(self) -> torch.Tensor:
        x, m = _right_pad(self.rows)
        out = self.llm(x, m)
        last = torch.tensor([r.shape[0] - 1 for r in self.rows])
        return out[torch.arange(len(self.rows)), last]

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        emb = self.llm.embed_tokens(tokens)
        self.rows = [torch.cat([r, e[None]]) for r, e in zip(self.rows, emb)]
        return self.logits()

    def select(self, rows: torch.Tensor) -> None:
        self.rows = [self.rows[i] for i in rows.tolist()]

    def can_merge(self, other=None) -> bool:
        return other is None or isinstance(other, ToyDecoderState)

    def merge(self, other: ToyDecoderState) -> None:
        self.rows = self.rows + other.rows
