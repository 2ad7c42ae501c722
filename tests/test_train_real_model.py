"""The trainer on the real CambrianModel (tiny random towers + SVA with in-LLM layers + tiny random LLM):
stage 1 -> stage 2 from the stage-1 output directory, the feature cache, and a loss that falls."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import tiny_cambrian

from cambrian.data.synthetic import make_synthetic_data
from cambrian.models.vlm import load_vlm as load_model
from cambrian.train.config import TrainConfig
from cambrian.train.trainer import Trainer


def _tiny_model():
    return tiny_cambrian(0)


def _cfg(tmp_path, data, out, **kw):
    base = dict(
        model="unused",
        data=[{"path": str(data), "images": str(tmp_path / "images")}],
        output_dir=str(out),
        micro_batch_size=4,
        epochs=1,
        num_workers=0,
        report_to=[],
        progress=False,
        warmup_ratio=0.0,
    )
    base.update(kw)
    return TrainConfig(**base)


@pytest.mark.slow
def test_stage1_then_stage2_from_output_dir(tmp_path):
    data = make_synthetic_data(tmp_path, n=8, text_only=4, image_size=32)
    m = _tiny_model()
    s1 = tmp_path / "s1"
    tr = Trainer(_cfg(tmp_path, data, s1, stage=1, lr=1e-3, sva_lr=1e-4), model=m)
    assert {n.split(".")[0] for n, p in m.named_parameters() if p.requires_grad} == {"connector"}
    names = {g["name"]: g["names"] for g in tr.groups}
    assert all("vision_sampler" in n or "vision_query" in n for n in names["sva"])
    assert "connector.image_newline" in names["projector"]
    tr.train()
    assert (s1 / "config.json").exists() and (s1 / "checkpoint-0000003").is_dir() and (s1 / "metrics.jsonl").exists()
    m2 = load_model(str(s1))  # stage 2 starts from the stage-1 output
    for k, v in m.state_dict().items():
        assert torch.equal(v, m2.state_dict()[k]), k
    out = Trainer(_cfg(tmp_path, data, tmp_path / "s2", stage=2, lr=4e-5), model=m2).train()
    assert out["step"] == 3 and torch.isfinite(torch.tensor(out["loss"]))


@pytest.mark.slow
def test_feature_cache_and_loss_falls(tmp_path):
    data = make_synthetic_data(tmp_path, n=8, image_size=32)
    m = _tiny_model()
    out = tmp_path / "o"
    Trainer(
        _cfg(
            tmp_path,
            data,
            out,
            stage=2,
            lr=3e-3,
            micro_batch_size=8,
            epochs=25,
            scheduler="constant",
            feature_cache=str(tmp_path / "cache"),
            save_steps=0,
        ),
        model=m,
    ).train()
    assert len(list((tmp_path / "cache").rglob("*.safetensors"))) == 8
    losses = [json.loads(ln)["loss"] for ln in (out / "metrics.jsonl").read_text().splitlines()]
    assert losses[-1] < 0.5 * losses[0], losses
