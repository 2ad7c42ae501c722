"""Trainer: overfitting, gradient accumulation equivalence, exact resume, bad-sample stop, freeze policy,
lr groups and schedule (CPU, fp32). The loop depends on the VLM contract only: the strongest checks (gradient
accumulation, exact resume) run on both implementations, the toy stand-in and a tiny real CambrianModel."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import VLM_KINDS, make_vlm, toy_train_config

from cambrian.data.synthetic import make_synthetic_data
from cambrian.train.config import TrainConfig, apply_overrides
from cambrian.train.freeze import apply_freeze, param_groups
from cambrian.train.schedule import lr_lambda
from cambrian.train.trainer import DataQualityError, Trainer

_cfg = toy_train_config  # the toy-model recipe shared with the security / robustness tests


def _model(seed=0, kind="toy"):
    return make_vlm(kind, seed)


def _weights(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_overfits_fixed_batch(tmp_path):
    data = make_synthetic_data(tmp_path, n=8)
    cfg = _cfg(tmp_path, data, micro_batch_size=8, epochs=60, lr=1e-2, scheduler="constant", save_steps=0)
    tr = Trainer(cfg, model=_model())
    out = tr.train()
    # start: ~ln(128)=4.85 nats/token; the 8 answers + EOS are memorised
    assert out["loss"] < 0.3, out
    assert (tmp_path / "out" / "model.safetensors").exists()
    assert (tmp_path / "out" / "metrics.jsonl").read_text().count("\n") == 60


def _losses(out_dir):
    import json

    return [json.loads(ln)["loss"] for ln in (out_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("kind", VLM_KINDS)
def test_grad_accum_4x2_equals_batch_8(tmp_path, kind):
    data = make_synthetic_data(tmp_path, n=16, text_only=8)
    runs = []
    for micro, accum in ((8, 1), (2, 4)):
        m = _model(kind=kind)
        out = tmp_path / f"o{micro}"
        cfg = _cfg(tmp_path, data, micro_batch_size=micro, grad_accum=accum, output_dir=str(out), epochs=2, eps=1e-6)
        Trainer(cfg, model=m).train()
        runs.append((_losses(out), _weights(m)))
    (l1, w1), (l2, w2) = runs
    assert len(l1) == 6
    assert max(abs(a - b) for a, b in zip(l1, l2)) < 1e-5
    # eps=1e-6: with 1e-8, parameters whose true gradient is exactly zero (the attention key bias is softmax
    # invariant) turn ~1e-10 rounding noise into +-lr Adam steps that differ between any two summation orders.
    for k in w1:
        torch.testing.assert_close(w1[k], w2[k], atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("kind", VLM_KINDS)
def test_resume_is_exact(tmp_path, kind):
    data = make_synthetic_data(tmp_path, n=16, text_only=8)
    kw = dict(
        micro_batch_size=4,
        grad_accum=2,
        epochs=3,
        warmup_ratio=0.2,
        sampler="modality_length",
        save_steps=4,
        save_total_limit=2,
    )
    # straight: 9 steps (3 per epoch x 3 epochs)
    m1 = _model(kind=kind)
    Trainer(_cfg(tmp_path, data, output_dir=str(tmp_path / "a"), **kw), model=m1).train()
    # 4 steps, "killed" right after the step-4 checkpoint, then resumed in a fresh trainer and model
    m2 = _model(kind=kind)
    tr = Trainer(_cfg(tmp_path, data, output_dir=str(tmp_path / "b"), **kw), model=m2)
    from cambrian.train.callbacks import StopAfter

    tr.callbacks.append(StopAfter(4))
    tr.train()
    assert (tmp_path / "b" / "checkpoint-0000004").is_dir()
    m3 = _model(
        kind=kind
    )  # frozen towers come from the same (pretrained) source; trainable weights are scrambled so the
    with torch.no_grad():  # checkpoint has to restore them
        for p in m3.trainable_parameters(1):
            p.add_(torch.randn_like(p))
    tr3 = Trainer(_cfg(tmp_path, data, output_dir=str(tmp_path / "b"), resume="auto", **kw), model=m3)
    assert tr3.state["step"] == 4 and tr3.state["epoch"] == 1 and tr3.state["step_in_epoch"] == 1
    tr3.train()
    w1, w3 = _weights(m1), _weights(m3)
    trainable = {n for n, p in m3.named_parameters() if p.requires_grad}
    for k in trainable:
        assert torch.equal(w1[k], w3[k]), k
    # keep-last-K rotation: checkpoints 4 and 8 kept (limit 2), final 9 saved -> 8, 9
    names = sorted(p.name for p in (tmp_path / "b").glob("checkpoint-*"))
    assert names == ["checkpoint-0000008", "checkpoint-0000009"]
    assert not list((tmp_path / "b").glob(".tmp-*"))


def test_bad_samples_counted_and_run_stops(tmp_path):
    data = make_synthetic_data(tmp_path, n=14, bad={"missing_image": 1, "corrupt_image": 1})
    # checked once bad_check_after samples were seen, and always at the end of the run
    with pytest.raises(DataQualityError, match=r"2 of 16 samples \(12.50%\) were bad.*max_bad_fraction=0.01"):
        Trainer(_cfg(tmp_path, data, max_bad_fraction=0.01, bad_check_after=1000), model=_model()).train()
    with pytest.raises(DataQualityError, match=r"1 of 4 samples \(25.00%\)"):
        Trainer(
            _cfg(tmp_path, data, max_bad_fraction=0.01, bad_check_after=4, output_dir=str(tmp_path / "early")),
            model=_model(),
        ).train()  # a fresh dir: the first run's output_dir now holds a previous run
    s = Trainer(
        _cfg(tmp_path, data, max_bad_fraction=0.2, bad_check_after=1000, output_dir=str(tmp_path / "ok")),
        model=_model(),
    ).train()
    assert s["bad_counts"] == {"missing_image": 1, "corrupt_image": 1}


def test_stage1_freezes_all_but_connector_and_lr_groups():
    """The toy declares its stages and groups with its own parameter names (``bridge.*``); the trainer applies them."""
    m = _model()
    counts = apply_freeze(m, m.trainable_parameters(1))
    trainable = {n for n, p in m.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("bridge.") for n in trainable)
    assert counts["trainable"] == sum(p.numel() for p in m.bridge.parameters())
    groups = {g["name"]: g for g in param_groups(m, lr=1e-3, sva_lr=1e-4)}
    assert groups["sva"]["lr"] == 1e-4 and groups["projector"]["lr"] == 1e-3
    assert set(groups["sva"]["names"]) == {"bridge.query", "bridge.mixer.weight", "bridge.mixer.bias"}
    assert set(groups["projector"]["names"]) == {"bridge.proj.weight", "bridge.proj.bias", "bridge.row_end"}
    # stage 2: LLM too, towers only with unfreeze_vision; weight decay splits off biases / norms / 1-D params
    apply_freeze(m, m.trainable_parameters(2, unfreeze_vision=True))
    groups = {g["name"]: g for g in param_groups(m, lr=4e-5, vision_lr=2e-6, weight_decay=0.1)}
    assert groups["vision"]["lr"] == 2e-6 and "encoders.0.conv.weight" in groups["vision"]["names"]
    assert "llm.norm.weight" in groups["llm/no_decay"]["names"] and groups["llm/no_decay"]["weight_decay"] == 0.0
    assert "llm.lm_head.weight" in groups["llm"]["names"] and groups["llm"]["weight_decay"] == 0.1
    apply_freeze(m, m.trainable_parameters(2))
    assert not any(p.requires_grad for p in m.encoders.parameters())


def test_cambrian_model_declares_the_official_stages_and_groups():
    """docs/official-code.md#stages on the real model: stage 1 the connector; ``sva_lr`` for the SVA samplers and
    queries (pre-LLM and in-LLM), ``lr`` for the rest of the connector; stage 2 adds the LLM (its LoRA adapters
    instead with ``lora``) and, with ``unfreeze_vision``, the towers (which then run with autograd)."""
    from cambrian.train.lora import inject_lora

    m = make_vlm("cambrian")
    names = {id(p): n for n, p in m.named_parameters()}
    apply_freeze(m, m.trainable_parameters(1))
    on = {n for n, p in m.named_parameters() if p.requires_grad}
    assert on == {n for n in names.values() if n.startswith("connector.")}
    groups = {g["name"]: set(g["names"]) for g in param_groups(m, lr=1e-3, sva_lr=1e-4)}
    assert groups["sva"] == {n for n in on if "vision_sampler" in n or "vision_query" in n}
    assert any("vision_sampler_layers" in n for n in groups["sva"]) and "connector.vision_query" in groups["sva"]
    assert groups["projector"] == on - groups["sva"] and "connector.image_newline" in groups["projector"]
    apply_freeze(m, m.trainable_parameters(2, unfreeze_vision=True))
    assert all(p.requires_grad for p in m.parameters()) and not any(e.frozen for e in m.encoders)
    assert inject_lora(m, {"r": 2, "alpha": 4, "target_modules": ["q_proj", "v_proj"]}) == 2 * len(m.fsdp_units())
    apply_freeze(m, m.trainable_parameters(2, lora=True))
    on = {n for n, p in m.named_parameters() if p.requires_grad}
    adapters = {n for n, _ in m.named_parameters() if "lora_" in n}
    assert adapters and {n for n in on if not n.startswith("connector.")} == adapters
    assert all(e.frozen for e in m.encoders)


def test_a_recipe_can_name_its_trainable_parameters(tmp_path):
    """``trainable:`` in a recipe overrides the model's stage policy with name prefixes of that model."""
    data = make_synthetic_data(tmp_path, n=4)
    m = _model()
    tr = Trainer(_cfg(tmp_path, data, trainable=["bridge.proj", "*row_end"], epochs=1), model=m)
    assert {n for n, p in m.named_parameters() if p.requires_grad} == {
        "bridge.proj.weight",
        "bridge.proj.bias",
        "bridge.row_end",
    }
    assert {g["name"] for g in tr.groups} == {"projector"}


def test_a_broken_lr_group_declaration_is_a_bug_not_a_user_error():
    m = _model()
    groups = m.lr_groups()
    m.lr_groups = lambda: {**groups, "projector": groups["projector"][:-1]}
    with pytest.raises(TypeError, match="1 parameters are in no group"):
        param_groups(m, lr=1e-3)
    m.lr_groups = lambda: {**groups, "sva": groups["sva"] + groups["projector"][:1]}
    with pytest.raises(TypeError, match="in both 'sva' and 'projector'"):
        param_groups(m, lr=1e-3)
    m.lr_groups = lambda: {**groups, "adapter": []}
    with pytest.raises(TypeError, match="unknown groups \\['adapter'\\]"):
        param_groups(m, lr=1e-3)


def test_lr_schedule_matches_hand_values():
    f = lr_lambda(total=10, warmup=2, kind="cosine")
    assert [f(0), f(1), f(2)] == [0.0, 0.5, 1.0]
    assert f(6) == pytest.approx(0.5 * (1 + math.cos(math.pi * 4 / 8)))  # = 0.5
    assert f(10) == pytest.approx(0.0)
    assert lr_lambda(10, 0, "linear")(5) == pytest.approx(0.5)


def test_config_overrides_and_roundtrip(tmp_path):
    p = tmp_path / "r.yaml"
    p.write_text("model: tiny\nstage: 1\nlr: 1e-3\nsva_lr: 1e-4\nlora: {r: 4}\ndata: [x.jsonl]\n")
    cfg = TrainConfig.load(p, ["lr=2e-5", "lora.enabled=true", "stage=2", "betas=[0.9,0.95]"])
    assert cfg.lr == 2e-5 and cfg.sva_lr == 1e-4 and cfg.stage == 2 and cfg.betas == (0.9, 0.95)
    assert cfg.lora["enabled"] is True and cfg.lora["r"] == 4 and "q_proj" in cfg.lora["target_modules"]
    assert cfg.data == [{"path": str(tmp_path / "x.jsonl")}]  # a recipe's data paths are relative to the recipe
    cfg.save(tmp_path / "s.yaml")
    assert TrainConfig.load(tmp_path / "s.yaml") == cfg
    with pytest.raises(ValueError, match="unknown TrainConfig keys"):
        TrainConfig.load(p, ["learning_rate=1"])
    assert apply_overrides({"a": {"b": 1}}, ["a.c=2"]) == {"a": {"b": 1, "c": 2}}


def test_global_batch_sets_accumulation(tmp_path):
    data = make_synthetic_data(tmp_path, n=16)
    tr = Trainer(_cfg(tmp_path, data, micro_batch_size=2, global_batch_size=8), model=_model())
    assert tr.grad_accum == 4 and tr.steps_per_epoch == 2
    with pytest.raises(ValueError, match="multiple"):
        Trainer(_cfg(tmp_path, data, micro_batch_size=3, global_batch_size=8), model=_model())
