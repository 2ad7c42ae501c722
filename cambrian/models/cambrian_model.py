"""CambrianModel: vision encoders + connector + a HF causal LM.

Forward path (docs/official-code.md#forward, docs/official-code.md#tokens, docs/official-code.md#in-llm):
1. every encoder turns the N images of the batch into a grid ``[N, s_k, s_k, C_k]`` (or cached ``features``);
2. the connector turns the grids into one block of LLM-space tokens per image (unpadded grid + newlines);
3. each ``IMAGE_TOKEN_INDEX`` placeholder in ``input_ids`` is replaced by its image's block (labels -100),
   padding is rebuilt on the requested side, positions are renumbered contiguously per row;
4. after the decoder layers listed in ``connector.in_llm_layers`` the connector re-aggregates the image
   positions (in-LLM SVA). The spans come from the token ids of *this* call — never from a constant
   ``image_position`` (official bug, docs/official-code.md#bugs B2) — and the hooks run in training too (the official GPU
   path silently skips them, docs/official-code.md#bugs B5) and in the generation prefill, never on decode steps. The context is
   replaced on every forward, so a text-only call can never see stale image features (docs/official-code.md#bugs B4).
"""

from __future__ import annotations

import contextlib
import copy
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from ..config import CambrianConfig
from ..constants import IGNORE_INDEX, IMAGE_TOKEN
from ..errors import InputError, UserError
from ..typed import ConfigError
from ..utils.quiet import quiet_cache_deprecation
from .connectors.base import ImageSpan, VisualTokens
from .generate import GenerationMixin, KVCacheState, Prefill
from .persistence import MODEL_FILES, WEIGHTS_NAME, resolve_checkpoint, save_model_dir
from .splice import SpliceResult, splice_images
from .training import adapter_parameters, split_off


class CambrianModel(GenerationMixin, nn.Module):
    def __init__(
        self, config: CambrianConfig, encoders: Sequence[nn.Module], connector: nn.Module, llm: nn.Module, tokenizer
    ):
        super().__init__()
        from .llm.templates import TEMPLATES

        self.config = config
        self.encoders = nn.ModuleList(encoders)
        self.connector = connector
        self.llm = llm
        self.tokenizer = tokenizer
        self.template = TEMPLATES.get(config.llm.template)
        self._sva_ctx: tuple[list[ImageSpan], Any] | None = None
        self._feature_provider = None  # set only inside ``with model.features_from(fn)``
        # False for a model built from a config/preset (pretrained towers and LLM, connector at its random init);
        # True once weights are loaded from a checkpoint (from_pretrained)
        self.connector_trained = False
        self._hooks = []
        self._register_hooks()

    # ------------------------------------------------------------------------------------------------------
    # construction / persistence
    # ------------------------------------------------------------------------------------------------------
    @classmethod
    def from_config(
        cls, config: CambrianConfig, load_weights: bool = True, dtype: torch.dtype | None = None, force: bool = False
    ) -> CambrianModel:
        """Build the model; refused up front (``ResourceError``) when its parameters would not fit in the available
        memory, estimated on the meta device (``force=True`` or ``CAMBRIAN_SKIP_MEMORY_CHECK=1`` skips the check)."""
        from .builder import build_components, check_model_fits

        config = copy.deepcopy(config)
        check_model_fits(config, force=force)
        encoders, connector, llm, tokenizer = build_components(config, load_weights=load_weights)
        model = cls(config, encoders, connector, llm, tokenizer)
        if dtype is not None:
            model.to(dtype)
        return model

    @classmethod
    def from_pretrained(
        cls, path: str | os.PathLike, dtype: torch.dtype | None = None, force: bool = False, towers=None
    ) -> CambrianModel:
        """Load a directory written by ``save_pretrained`` (or a hub repo id holding one), or a released Cambrian-1
        checkpoint (``nyu-visionx/cambrian-8b`` or its local copy: ``cambrian.models.official``). No pickle. The memory
        check of ``from_config`` runs first (``force`` skips it). ``towers``: a ``TowerMap`` (``--tower``) pointing a
        release's tower names at other presets or local weights."""
        from safetensors.torch import load_model

        from .official import load_release, resolve_release

        release = resolve_release(path)
        if release is not None:
            return load_release(
                release,
                towers=towers.presets if towers else None,
                tower_weights=towers.dirs if towers else None,
                dtype=dtype,
                force=force,
            )
        if towers:
            from .official.tower_map import FLAG

            raise UserError(f"{FLAG} applies to released-format checkpoints only; {path} is not one")
        path = resolve_checkpoint(path)
        config = CambrianConfig.load(path / "config.json")
        config.llm.tokenizer = str(path)
        model = cls.from_config(config, load_weights=False, force=force)
        missing, unexpected = load_model(model, str(path / WEIGHTS_NAME), strict=False)
        if unexpected:
            raise InputError(f"{path / WEIGHTS_NAME}: unexpected tensors {sorted(unexpected)[:5]}...")
        if missing:
            raise InputError(f"{path / WEIGHTS_NAME}: missing tensors {sorted(missing)[:5]}...")
        model.connector_trained = True
        if dtype is not None:
            model.to(dtype)
        return model

    @classmethod
    def load(
        cls, spec: str | os.PathLike, load_weights: bool = True, force: bool = False, towers=None
    ) -> CambrianModel:
        """What every ``--model`` argument accepts: a checkpoint directory (``from_pretrained``), a model preset
        name or a YAML/JSON config file (``from_config``), or a hub repo id holding a saved checkpoint. ``towers``
        (``--tower``): see :meth:`from_pretrained`."""
        from ..hub import looks_like_repo_id
        from ..presets.models import resolve_model_config

        p = Path(spec)
        if p.is_dir():
            return cls.from_pretrained(p, force=force, towers=towers)
        if p.exists() or not looks_like_repo_id(str(spec)):  # a config file, or a preset name (unknown ones list them)
            if towers:
                from .official.tower_map import FLAG

                raise UserError(f"{FLAG} applies to released-format checkpoints only; {spec} is not one")
            return cls.from_config(resolve_model_config(str(spec)), load_weights=load_weights, force=force)
        return cls.from_pretrained(spec, force=force, towers=towers)

    saved_files = MODEL_FILES  # what save_pretrained writes that identifies the model; config.json (last) marks it

    def save_pretrained(self, path: str | os.PathLike) -> None:
        """Write config.json + model.safetensors + tokenizer files into ``path``, each replaced atomically, other
        files left alone (``persistence.save_model_dir``). The config records which towers were trained."""
        for enc in self.encoders:
            enc.config.frozen = enc.frozen
        save_model_dir(self, path)

    # ------------------------------------------------------------------------------------------------------
    # helpers
    # ------------------------------------------------------------------------------------------------------
    def _decoder_layers(self) -> nn.ModuleList:
        decoder = self.llm.get_decoder() if hasattr(self.llm, "get_decoder") else self.llm.model
        layers = getattr(decoder, "layers", None)
        if layers is None:
            raise TypeError(
                f"cannot find decoder layers in {type(self.llm).__name__}; in-LLM aggregation needs `.layers`"
            )
        return layers

    def _register_hooks(self) -> None:
        """One forward hook per LLM layer listed in ``connector.in_llm_layers``."""
        layers = self._decoder_layers()
        for idx in getattr(self.connector, "in_llm_layers", []):
            if idx >= len(layers):
                raise ConfigError(
                    f"connector wants in-LLM aggregation after layer {idx} but the LLM has {len(layers)} layers"
                )
            self._hooks.append(layers[idx].register_forward_hook(self._make_hook(idx)))

    def _make_hook(self, layer_idx: int):
        def hook(module, args, output):
            if self._sva_ctx is None:
                return None
            spans, state = self._sva_ctx
            hidden = output[0] if isinstance(output, tuple) else output
            new = self.connector.apply_in_llm(layer_idx, hidden, spans, state)
            return (new, *output[1:]) if isinstance(output, tuple) else new

        return hook

    @property
    def device(self) -> torch.device:
        return next(self.llm.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return self.llm.get_input_embeddings().weight.dtype

    def visual_token_count(self, image_size: tuple[int, int]) -> int:
        """LLM positions an image of original size (W, H) occupies (unpadded grid + newline tokens)."""
        return self.connector.num_tokens(image_size)

    @property
    def max_length(self) -> int:
        """The LLM context the training datasets truncate to (``config.llm.max_length``)."""
        return int(self.config.llm.max_length)

    @property
    def grounding_grid(self) -> int | None:
        """L of the L x L one-token-per-cell grid ``stage: ground`` trains (the connector's output grid)."""
        return self.connector.config.grid

    def tokenize_conversation(self, messages: list[dict]) -> dict:
        """A LLaVA conversation -> ``{"input_ids", "labels"}`` with this model's chat template; the config's
        ``llm.system_prompt`` is used when the conversation has no system turn. No truncation (the dataset cuts
        image-aware with the real per-image token counts)."""
        from .llm.tokenize import tokenize_conversation

        system = self.config.llm.system_prompt
        if system is not None and not any(m["role"] == "system" for m in messages):
            return tokenize_conversation(messages, self.template, self.tokenizer, None, system=system)
        return tokenize_conversation(messages, self.template, self.tokenizer, None)

    # ------------------------------------------------------------------------------------------------------
    # training declarations (cambrian.models.training; docs/official-code.md#stages)
    # ------------------------------------------------------------------------------------------------------
    def trainable_parameters(self, stage: int | str, unfreeze_vision: bool = False, lora: bool = False) -> list:
        """Stage 1 and ``ground``: the connector (only its pre-LLM path gets gradients in ``ground``); stage 2: the
        connector and the LLM (its LoRA adapters instead with ``lora``), plus the towers with ``unfreeze_vision``."""
        params = list(self.connector.parameters())
        if stage in (1, "ground"):
            return params
        params += adapter_parameters(self.llm) if lora else list(self.llm.parameters())
        if unfreeze_vision:
            params += list(self.encoders.parameters())
        return params

    def lr_groups(self) -> dict[str, list]:
        sva = self.connector.sva_parameters()
        return {
            "sva": sva,
            "projector": split_off(self.connector.parameters(), sva),
            "llm": list(self.llm.parameters()),
            "vision": list(self.encoders.parameters()),
        }

    def fsdp_units(self) -> list[nn.Module]:
        """The LLM's decoder layers (the towers are not sharded: frozen, or small next to the LLM)."""
        return list(self._decoder_layers())

    # ------------------------------------------------------------------------------------------------------
    # vision
    # ------------------------------------------------------------------------------------------------------
    def encode_images(self, images: Sequence) -> tuple[list[torch.Tensor], list[tuple[int, int]]]:
        """PIL images (or paths) -> per-encoder pixel tensors and original sizes (W, H). Any aspect ratio: the letterbox
        is linear in the image (front ends such as ``chat`` and the server limit it)."""
        from .encoders.preprocess import load_image

        pil = [load_image(im, max_aspect=None) for im in images]
        pixels = [enc.preprocess(pil) for enc in self.encoders]
        return pixels, [im.size for im in pil]

    @contextlib.contextmanager
    def features_from(self, provider):
        """Inside the block, tower features come from ``provider(pixel_values, compute) -> list[[n, s, s, C]]``
        (``compute`` is the towers' own forward), e.g. a memo that runs each tower once per distinct image during an
        evaluation. Outside it the towers run as usual; nothing is patched on the object."""
        if self._feature_provider is not None:
            raise RuntimeError("features_from blocks do not nest")
        self._feature_provider = provider
        try:
            yield self
        finally:
            self._feature_provider = None

    def image_features(self, pixel_values: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        if self._feature_provider is not None:
            return self._feature_provider(pixel_values, self._tower_features)
        return self._tower_features(pixel_values)

    def _tower_features(self, pixel_values: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        if len(pixel_values) != len(self.encoders):
            raise ValueError(f"got pixel values for {len(pixel_values)} encoders, the model has {len(self.encoders)}")
        feats = []
        for enc, px in zip(self.encoders, pixel_values):
            p = next(enc.parameters(), None)
            px = px.to(device=p.device if p is not None else px.device, dtype=p.dtype if p is not None else px.dtype)
            feats.append(enc(px))
        return feats

    def visual_tokens(self, features: Sequence[torch.Tensor], image_sizes: Sequence[tuple[int, int]]) -> VisualTokens:
        dtype = self.dtype
        return self.connector([f.to(device=self.device, dtype=dtype) for f in features], list(image_sizes))

    # ------------------------------------------------------------------------------------------------------
    # splicing image blocks into the text sequence
    # ------------------------------------------------------------------------------------------------------
    def splice(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None,
        labels: torch.Tensor | None,
        visual: VisualTokens | None,
        padding_side: str = "right",
    ) -> SpliceResult:
        """The text embedded by the LLM with every image placeholder replaced by its block (``splice.py``)."""
        return splice_images(
            self.llm.get_input_embeddings(),
            input_ids,
            attention_mask,
            labels,
            visual,
            padding_side,
            self.config.llm.max_length,
        )

    # ------------------------------------------------------------------------------------------------------
    # forward
    # ------------------------------------------------------------------------------------------------------
    def _visual(self, pixel_values, image_sizes, features) -> VisualTokens | None:
        if features is None and pixel_values is None:
            return None
        if features is None:
            features = self.image_features(pixel_values)
        if image_sizes is None:
            raise ValueError("image_sizes (original W, H of every image) are required with images")
        if features[0].shape[0] == 0:
            return None
        return self.visual_tokens(features, image_sizes)

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        pixel_values: Sequence[torch.Tensor] | None = None,
        image_sizes: Sequence[tuple[int, int]] | None = None,
        features: Sequence[torch.Tensor] | None = None,
        padding_side: str = "right",
        grounding=None,
        **llm_kwargs,
    ):
        """LM loss with ``labels``; with ``grounding`` (:class:`~cambrian.models.grounding.GroundingTargets`) and no
        ``input_ids``, the grounding loss of the visual tokens (the LLM does not run)."""
        if grounding is not None:
            return self._grounding_loss(pixel_values, image_sizes, features, grounding)
        if input_ids is None:
            raise ValueError("forward needs input_ids (or grounding targets, for the grounding loss)")
        visual = self._visual(pixel_values, image_sizes, features)
        sp = self.splice(input_ids, attention_mask, labels, visual, padding_side=padding_side)
        # The in-LLM aggregation hooks read (spans, state) while the LLM runs; outside this call it is None, so a
        # later direct ``model.llm(...)`` call never aggregates stale images. One exception, bounded: under gradient
        # checkpointing the decoder layers are recomputed during backward, so the state lives until backward
        # reaches the spliced input embeddings (every layer has been recomputed by then).
        ctx = (sp.spans, visual.state) if (visual is not None and sp.spans) else None
        recompute = ctx is not None and self.training and torch.is_grad_enabled() and self._llm_checkpointing()
        self._sva_ctx = ctx
        try:
            if sp.labels is not None and not llm_kwargs and self._fast_loss_ok():
                out = self._supervised_loss(sp)
            else:
                out = self.llm(
                    inputs_embeds=sp.inputs_embeds,
                    attention_mask=sp.attention_mask,
                    position_ids=sp.position_ids,
                    labels=sp.labels,
                    **llm_kwargs,
                )
        finally:
            if not recompute:
                self._sva_ctx = None
        if recompute and sp.inputs_embeds.requires_grad:
            sp.inputs_embeds.register_hook(self._end_recompute)
        # (embeddings without gradient, e.g. LoRA on a frozen connector: the layers are still recomputed, so the
        # state stays until the next forward replaces it)
        return out

    def _llm_checkpointing(self) -> bool:
        """Whether the HF LLM recomputes its layers in backward (transformers 5 renamed the flag)."""
        for name in ("is_activation_checkpointing", "is_gradient_checkpointing"):
            if name in type(self.llm).__dict__ or any(name in vars(c) for c in type(self.llm).__mro__):
                return bool(getattr(self.llm, name))
        return False

    def _end_recompute(self, grad):
        self._sva_ctx = None
        return grad

    def _grounding_loss(self, pixel_values, image_sizes, features, targets):
        from transformers.modeling_outputs import CausalLMOutputWithPast

        from .grounding import connector_geometry, grounding_loss

        visual = self._visual(pixel_values, image_sizes, features)
        if visual is None:
            raise ValueError("grounding needs images")
        loss = grounding_loss(
            visual,
            targets.to(self.device),
            self.llm.get_input_embeddings().weight,
            image_sizes,
            kind=targets.kind,
            scale=targets.scale,
            **connector_geometry(self.connector),
        )
        return CausalLMOutputWithPast(loss=loss, logits=None)

    def _fast_loss_ok(self) -> bool:
        """The LM head can be applied to selected positions only when logits are a plain ``lm_head(hidden)``
        (no soft-capping or scaling, which some families apply inside their forward)."""
        c = self.llm.config
        return (
            hasattr(self.llm, "get_output_embeddings")
            and self.llm.get_output_embeddings() is not None
            and not getattr(c, "final_logit_softcapping", None)
            and getattr(c, "logit_scale", None) in (None, 1.0)
            and not self.config.llm.options.get("full_logits", False)
        )

    def _decoder_hidden(self, sp: SpliceResult, use_cache: bool):
        """The LLM's decoder (no LM head) over a spliced batch."""
        return self.llm.get_decoder()(
            inputs_embeds=sp.inputs_embeds,
            attention_mask=sp.attention_mask,
            position_ids=sp.position_ids,
            use_cache=use_cache,
        )

    def _supervised_loss(self, sp: SpliceResult):
        """Next-token cross-entropy (mean over supervised tokens, as HF computes it) with the LM head applied
        only where the next token carries a label: on short-answer data the vocabulary projection over every
        position is a large share of the step."""
        from transformers.modeling_outputs import CausalLMOutputWithPast

        hidden = self._decoder_hidden(sp, use_cache=False).last_hidden_state
        target = sp.labels[:, 1:]
        sel = target != IGNORE_INDEX
        logits = self.llm.get_output_embeddings()(hidden[:, :-1][sel]).float()
        if logits.shape[0] == 0:  # nothing supervised: a zero loss that still depends on the graph
            return CausalLMOutputWithPast(loss=hidden.sum() * 0.0, logits=None)
        loss = nn.functional.cross_entropy(logits, target[sel])
        return CausalLMOutputWithPast(loss=loss, logits=None)

    # ------------------------------------------------------------------------------------------------------
    # the generation contract's model side (the decode engine is cambrian.models.generate)
    # ------------------------------------------------------------------------------------------------------
    @property
    def context_length(self) -> int | None:
        """Positions a prompt plus its answer may take (``config.llm.max_length``; 0 = no limit)."""
        return int(self.config.llm.max_length) or None

    @property
    def stop_token_ids(self) -> list[int]:
        return self.template.stop_token_ids(self.tokenizer)

    def prompt_ids(self, text: str | Sequence[dict], system: str | None = None) -> list[int]:
        """Prompt ids of one user turn (a string) or a conversation (``[{"role", "content"}, ...]`` ending with a
        user turn; ``<image>`` tags in the turns that carry the images); a ``PromptIds`` is already tokenised."""
        from .generate import PromptIds
        from .llm.tokenize import tokenize_prompt

        if isinstance(text, PromptIds):
            return list(text)
        return tokenize_prompt(
            text if isinstance(text, str) else list(text), self.template, self.tokenizer, system=system
        )

    @torch.no_grad()
    def prefill(
        self,
        texts: Sequence[str | Sequence[dict]],
        images: Sequence[Sequence] | None = None,
        system: str | None = None,
        use_cache: bool = True,
    ) -> Prefill:
        """Left-padded batch of prompts (each ending with the template's generation prompt) through the LLM, in-LLM
        aggregation included: the logits at each prompt's last position and, with ``use_cache``, the KV cache as a
        :class:`~cambrian.models.generate.KVCacheState` for the decode loop."""
        images = [list(x) for x in (images or [[] for _ in texts])]
        if len(images) != len(texts):
            raise ValueError(f"{len(texts)} prompts but {len(images)} image lists")
        for i, (t, ims) in enumerate(zip(texts, images)):
            n_tags = _count_image_tags(t)
            if n_tags != len(ims):
                raise InputError(f"prompt {i} has {n_tags} {IMAGE_TOKEN} placeholders but {len(ims)} images")
        seqs = [self.prompt_ids(t, system) for t in texts]
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        T = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), T), pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for b, s in enumerate(seqs):
            ids[b, T - len(s) :] = torch.tensor(s, dtype=torch.long)
            mask[b, T - len(s) :] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        flat = [im for ims in images for im in ims]
        visual = None
        if flat:
            pixels, sizes = self.encode_images(flat)
            visual = self._visual(pixels, sizes, None)
        sp = self.splice(ids, mask, None, visual, padding_side="left")
        self._sva_ctx = (sp.spans, visual.state) if (visual is not None and sp.spans) else None
        try:
            with quiet_cache_deprecation():  # the KV cache is read as past_key_values (works on all versions)
                if self._fast_loss_ok():
                    # logits are needed at the last position only: the vocabulary projection of every prompt
                    # position would cost about a tenth of the prefill for a small LLM with a large vocabulary
                    dec = self._decoder_hidden(sp, use_cache)
                    logits = self.llm.get_output_embeddings()(dec.last_hidden_state[:, -1])
                else:
                    dec = self.llm(
                        inputs_embeds=sp.inputs_embeds,
                        attention_mask=sp.attention_mask,
                        position_ids=sp.position_ids,
                        use_cache=use_cache,
                    )
                    logits = dec.logits[:, -1]
                past = dec.past_key_values if use_cache else None
        finally:
            self._sva_ctx = None  # decode steps never re-run the in-LLM aggregation
        state = KVCacheState(self.llm, past, sp.attention_mask, sp.position_ids) if use_cache else None
        return Prefill(logits, state, seqs, [int(n) for n in sp.attention_mask.sum(-1).tolist()])


def _count_image_tags(prompt) -> int:
    from .generate import PromptIds

    if isinstance(prompt, PromptIds):
        return prompt.num_images
    if isinstance(prompt, str):
        return prompt.count(IMAGE_TOKEN)
    return sum(
        m.get("content", m.get("value")).count(IMAGE_TOKEN)
        for m in prompt
        if isinstance(m, dict) and isinstance(m.get("content", m.get("value")), str)
    )


@contextlib.contextmanager
def no_in_llm_aggregation(model: CambrianModel):
    """Temporarily disable in-LLM aggregation (ablations)."""
    for h in model._hooks:
        h.remove()
    model._hooks = []
    try:
        yield model
    finally:
        model._register_hooks()
