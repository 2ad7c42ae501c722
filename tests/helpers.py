"""Small builders shared by several test modules (import as ``from helpers import ...``; pytest puts tests/ on
sys.path)."""

from __future__ import annotations


def toy_train_config(tmp_path, data, **kw):
    """A ``TrainConfig`` for the toy model on a synthetic LLaVA file ``data`` (images in ``data.parent/images``):
    one epoch, micro-batch 4, no warmup, no periodic checkpoints, no loggers; ``kw`` overrides any field."""
    from cambrian.train.config import TrainConfig

    base = dict(model="toy", stage=2, data=[{"path": str(data), "images": str(data.parent / "images")}],
                output_dir=str(tmp_path / "out"), micro_batch_size=4, grad_accum=1, epochs=1, lr=1e-2,
                warmup_ratio=0.0, num_workers=0, save_steps=0, save_total_limit=1, report_to=[], progress=False,
                bad_check_after=0, sampler="random")
    base.update(kw)
    return TrainConfig(**base)


def sensitive_tiny_model():
    """The random ``tiny`` preset with large random LLM and connector weights, so that the prompt and the image change
    the greedy answer (at its default init the tiny model answers the same whatever it is shown): serving and
    adapter tests can then tell a lost image or a mixed-up request from a right one."""
    import torch

    from cambrian.config import load_preset
    from cambrian.models.cambrian_model import CambrianModel

    torch.manual_seed(0)
    model = CambrianModel.from_config(load_preset("tiny")).eval()
    with torch.no_grad():
        for _, p in model.llm.named_parameters():
            if p.dim() == 2:
                p.normal_(0, 0.15)
        for name, p in model.connector.named_parameters():
            if p.dim() >= 2 or "newline" in name:
                p.normal_(0, 0.5)
    return model
