"""Declarative freeze policy and optimizer parameter groups (docs/official-code.md#stages).

Parameters are selected by name prefixes of ``CambrianModel`` (``connector.``, ``llm.``, ``encoders.``):

* stage 1: ``connector.`` only (SVA, aux projectors, queries, newline, projector); LLM and towers frozen;
* stage 2: ``connector.`` + ``llm.`` (embeddings and lm_head included), plus ``encoders.`` with
  ``unfreeze_vision``;
* LoRA (stage 2 option): ``connector.`` + the LoRA adapter weights (names containing ``lora_``) instead of the
  whole LLM.

Learning-rate groups (official ``create_optimizer``): names containing ``vision_sampler`` or ``vision_query`` use
``sva_lr`` when set; ``encoders.`` use ``vision_lr``; everything else uses ``lr``. Each is split into decay /
no-decay (biases and 1-D norm weights get no weight decay).
"""

from __future__ import annotations

import torch.nn as nn

SVA_KEYS = ("vision_sampler", "vision_query")


def stage_policy(stage: int | str, unfreeze_vision: bool = False, lora: bool = False) -> list[str]:
    """Trainable name prefixes (or substrings starting with ``*``) for a stage (``"ground"``: the connector, like
    stage 1; only its pre-LLM path gets gradients)."""
    if stage in (1, "ground"):
        return ["connector."]
    out = ["connector.", "*lora_"] if lora else ["connector.", "llm."]
    if unfreeze_vision:
        out.append("encoders.")
    return out


def _matches(name: str, rule: str) -> bool:
    return rule[1:] in name if rule.startswith("*") else name.startswith(rule)


def apply_freeze(model: nn.Module, trainable: list[str]) -> dict[str, int]:
    """Set ``requires_grad`` from the rules; returns parameter counts {trainable, frozen}. Encoders have a
    ``frozen`` flag of their own (it disables autograd in their forward), kept in sync here."""
    n_train = n_frozen = 0
    for name, p in model.named_parameters():
        on = any(_matches(name, r) for r in trainable)
        p.requires_grad_(on)
        if on:
            n_train += p.numel()
        else:
            n_frozen += p.numel()
    for enc in getattr(model, "encoders", []) or []:
        if hasattr(enc, "config") and hasattr(enc.config, "frozen"):
            enc.config.frozen = not any(p.requires_grad for p in enc.parameters())
    if n_train == 0:
        raise ValueError(f"freeze policy {trainable} leaves no trainable parameter")
    return {"trainable": n_train, "frozen": n_frozen}


def lr_group_name(name: str) -> str:
    if name.startswith("encoders."):
        return "vision"
    if any(k in name for k in SVA_KEYS):
        return "sva"
    if name.startswith("connector."):
        return "projector"
    return "llm"


def param_groups(
    model: nn.Module, lr: float, sva_lr: float | None = None, vision_lr: float | None = None, weight_decay: float = 0.0
) -> list[dict]:
    """AdamW groups over the trainable parameters: one per (lr group, decay) that is non-empty. Each dict carries
    ``name`` (e.g. ``sva``, ``projector/no_decay``) and ``names`` (parameter names) for logging/tests."""
    lrs = {
        "sva": sva_lr if sva_lr is not None else lr,
        "vision": vision_lr if vision_lr is not None else lr,
        "projector": lr,
        "llm": lr,
    }
    no_decay_modules = set()
    for mname, mod in model.named_modules():
        if isinstance(mod, (nn.LayerNorm, nn.GroupNorm, nn.BatchNorm2d)) or "norm" in type(mod).__name__.lower():
            no_decay_modules.add(mname)
    groups: dict[str, dict] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        g = lr_group_name(name)
        mod = name.rsplit(".", 1)[0] if "." in name else ""
        decay = weight_decay > 0 and not (name.endswith("bias") or mod in no_decay_modules or p.ndim < 2)
        key = g if decay or weight_decay == 0 else f"{g}/no_decay"
        if key not in groups:
            groups[key] = {
                "name": key,
                "params": [],
                "names": [],
                "lr": lrs[g],
                "weight_decay": weight_decay if decay else 0.0,
            }
        groups[key]["params"].append(p)
        groups[key]["names"].append(name)
    return list(groups.values())
