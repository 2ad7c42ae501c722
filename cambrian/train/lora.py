"""LoRA on the LLM (peft's ``inject_adapter_in_model``, names keep their ``llm.`` prefix), merged before saving."""

from __future__ import annotations

import torch.nn as nn


def inject_lora(model: nn.Module, lora: dict) -> int:
    """Add LoRA adapters to ``model.llm`` in place (peft ``inject_adapter_in_model``; names keep their
    ``llm.`` prefix). Returns the number of adapted modules."""
    try:
        from peft import LoraConfig, inject_adapter_in_model
    except ImportError as e:  # pragma: no cover
        raise RuntimeError("lora.enabled needs the 'peft' package") from e
    cfg = LoraConfig(
        r=int(lora.get("r", 16)),
        lora_alpha=int(lora.get("alpha", 32)),
        lora_dropout=float(lora.get("dropout", 0.0)),
        target_modules=list(lora.get("target_modules") or []),
    )
    inject_adapter_in_model(cfg, model.llm)
    from peft.tuners.tuners_utils import BaseTunerLayer

    return sum(isinstance(m, BaseTunerLayer) for m in model.llm.modules())


def merge_lora(model: nn.Module) -> None:
    """Fold LoRA weights into the base layers and remove the adapter modules (clean ``save_pretrained``)."""
    try:
        from peft.tuners.tuners_utils import BaseTunerLayer
    except ImportError:  # pragma: no cover
        return
    for name, mod in list(model.named_modules()):
        if isinstance(mod, BaseTunerLayer) and hasattr(mod, "get_base_layer"):
            mod.merge()
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, child, mod.get_base_layer())
