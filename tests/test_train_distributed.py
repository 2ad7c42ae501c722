"""2 gloo processes (DDP) give the same losses and weights as 1 process with the same global batch."""

from __future__ import annotations

import json
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp
from helpers import VLM_KINDS, make_vlm

from cambrian.data.synthetic import make_synthetic_data
from cambrian.train.config import TrainConfig
from cambrian.train.trainer import Trainer

TOL = 1e-5  # losses are token means over the same global batch; only the float summation order differs
# Adam's eps: with the default 1e-8, parameters whose true gradient is exactly zero (the key bias of attention is
# softmax-invariant) get rounding noise of ~1e-10 normalised into +-lr steps that differ between any two summation
# orders; 1e-6 keeps such noise from being amplified so the comparison tests the data/gradient path.
EPS = 1e-6


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cfg(root, out, micro, accum, strategy):
    return TrainConfig(
        model="toy",
        stage=2,
        data=[{"path": str(root / "data.jsonl"), "images": str(root / "images")}],
        output_dir=str(out),
        micro_batch_size=micro,
        grad_accum=accum,
        epochs=2,
        lr=1e-2,
        warmup_ratio=0.0,
        num_workers=0,
        save_steps=0,
        report_to=[],
        progress=False,
        distributed=strategy,
        sampler="modality_length",
        eps=EPS,
    )


def _worker(rank, world, port, root, strategy, kind="toy"):
    os.environ.update(
        RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
    )
    torch.set_num_threads(1)
    model = make_vlm(kind, 0)
    from pathlib import Path

    root = Path(root)
    tr = Trainer(_cfg(root, root / f"dist-{strategy}", 4, 1, strategy), model=model)
    tr.train()
    if rank == 0:
        from safetensors.torch import save_file

        save_file(
            {k: v.contiguous() for k, v in model.state_dict().items()}, str(root / f"dist-{strategy}.safetensors")
        )
    torch.distributed.destroy_process_group()


def _losses(out):
    return [json.loads(ln)["loss"] for ln in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
@pytest.mark.parametrize("kind", VLM_KINDS)
def test_two_gloo_processes_match_one(tmp_path, kind):
    make_synthetic_data(tmp_path, n=16, text_only=8)
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path), "ddp", kind), nprocs=2, join=True)
    single = make_vlm(kind, 0)
    Trainer(_cfg(tmp_path, tmp_path / "single", 8, 1, "none"), model=single).train()
    l1, l2 = _losses(tmp_path / "single"), _losses(tmp_path / "dist-ddp")
    assert len(l1) == len(l2) == 6
    diff = max(abs(a - b) for a, b in zip(l1, l2))
    print(f"max loss gap, 2 processes vs 1: {diff:.2e}")
    assert diff < TOL, (l1, l2)
    from safetensors.torch import load_file

    w2 = load_file(str(tmp_path / "dist-ddp.safetensors"))
    for k, v in single.state_dict().items():
        torch.testing.assert_close(v, w2[k], atol=2e-5, rtol=1e-4)


def test_fsdp_wraps_exactly_the_units_the_8b_shaped_model_declares():
    """The released tower set as tiny towers (SigLIP, CLIP, DINOv2, ConvNeXt) with SVA inside the LLM: FSDP's units
    are exactly ``model.fsdp_units()`` (the LLM's decoder layers), and no tower module becomes one, not even blocks
    named like timm's ``ConvNeXtBlock`` (the 8B's open_clip tower), which a class-name rule would wrap. One gloo
    process on CPU; a training step runs through the wrapped model."""
    import torch.distributed as dist
    from test_official_release import tiny_config
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

    from cambrian.models.cambrian_model import CambrianModel
    from cambrian.train.distributed import DistEnv
    from cambrian.train.freeze import apply_freeze
    from cambrian.train.strategies import FSDPFullShard

    model = CambrianModel.from_config(tiny_config("llama_3", num_llm_layers=2, start=0, stride=2, llm_layers=3))
    for mod in list(model.encoders[3].modules()):  # the ConvNeXt tower's blocks, renamed as timm names them
        if type(mod).__name__ == "ConvNextLayer":
            mod.__class__ = type("ConvNeXtBlock", (type(mod),), {})
    assert sum(type(m).__name__.endswith("Block") for m in model.encoders.modules()) == 4
    apply_freeze(model, model.trainable_parameters(2))
    declared = model.fsdp_units()
    assert [type(u).__name__ for u in declared] == ["LlamaDecoderLayer"] * 3
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        engine = FSDPFullShard(DistEnv()).wrap(model)
        units = [f.module for f in FSDP.fsdp_modules(engine) if f is not engine]
        assert {id(u) for u in units} == {id(u) for u in declared} and len(units) == len(declared)
        tower_modules = {id(m) for m in model.encoders.modules()}
        assert not any(id(u) in tower_modules for u in units)
        ids = torch.tensor([[5, 6, 7, 8, 9]])
        loss = engine(input_ids=ids, attention_mask=torch.ones_like(ids), labels=ids).loss
        loss.backward()
        assert torch.isfinite(loss)
    finally:
        dist.destroy_process_group()


def test_the_recipe_choices_are_the_registered_strategies():
    """train/config.py lists the strategies without importing torch (the config layer stays light); they must be
    exactly the registry's (plus auto)."""
    from cambrian.train.config import DISTRIBUTED
    from cambrian.train.strategies import STRATEGIES

    assert set(DISTRIBUTED) == {"auto", *STRATEGIES.names()}
