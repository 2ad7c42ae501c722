"""The model's training declarations applied (docs/official-code.md#stages): which parameters train, and the
optimizer's parameter groups. The model says what belongs where (``trainable_parameters``, ``lr_groups``:
``cambrian.models.training``); nothing here reads a parameter name.

Learning rates per group (official ``create_optimizer``): ``sva`` uses ``sva_lr`` when set, ``vision`` uses
``vision_lr``, ``projector`` and ``llm`` use ``lr``. Each group is split into decay / no-decay: 1-D parameters
(biases, norm weights, the image newline) get no weight decay.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch.nn as nn

from ..models.training import LR_GROUPS, check_lr_groups


def apply_freeze(model: nn.Module, trainable: Iterable[nn.Parameter]) -> dict[str, int]:
    """``requires_grad`` on exactly the ``trainable`` parameters; returns parameter counts {trainable, frozen}."""
    on = {id(p) for p in trainable}
    n_train = n_frozen = 0
    for p in model.parameters():
        p.requires_grad_(id(p) in on)
        if id(p) in on:
            n_train += p.numel()
        else:
            n_frozen += p.numel()
    if n_train == 0:
        raise ValueError("this stage's freeze policy leaves no trainable parameter")
    return {"trainable": n_train, "frozen": n_frozen}


def param_groups(
    model: nn.Module, lr: float, sva_lr: float | None = None, vision_lr: float | None = None, weight_decay: float = 0.0
) -> list[dict]:
    """AdamW groups over the trainable parameters: one per (lr group, decay) that is non-empty, in the order of
    ``LR_GROUPS``. Each dict carries ``name`` (e.g. ``sva``, ``projector/no_decay``) and ``names`` (parameter names,
    for logs and tests)."""
    lrs = {
        "sva": sva_lr if sva_lr is not None else lr,
        "vision": vision_lr if vision_lr is not None else lr,
        "projector": lr,
        "llm": lr,
    }
    declared = model.lr_groups()
    check_lr_groups(model, declared)
    label = {id(p): n for n, p in model.named_parameters()}
    groups: dict[str, dict] = {}
    for g in LR_GROUPS:
        for p in declared.get(g, []):
            if not p.requires_grad:
                continue
            decay = weight_decay > 0 and p.ndim >= 2
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
            groups[key]["names"].append(label[id(p)])
    return list(groups.values())
