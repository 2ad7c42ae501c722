"""Training checkpoints hold no pickle: RNG states as JSON + safetensors, the optimizer through
``torch.load(weights_only=True)``; a planted pickle is ignored or refused in one line, never run."""

from __future__ import annotations

import json
import os
import random
import shlex

import numpy as np
import pytest
import torch
from helpers import toy_train_config
from toy_vlm import ToyVLM

from cambrian.data.synthetic import make_synthetic_data
from cambrian.train.checkpoint import CheckpointError, load_rng_state, save_rng_state, set_rng_state
from cambrian.train.trainer import Trainer


class _Payload:
    """Unpickling this runs a shell command that creates ``path``."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (os.system, (f"touch {shlex.quote(self.path)}",))


def _plant(path, sentinel):
    torch.save({"state": _Payload(sentinel)}, path)


def _draws():
    return random.random(), random.gauss(0, 1), np.random.rand(3).tolist(), np.random.randn(), torch.rand(4).tolist()


def test_rng_state_roundtrip_without_pickle(tmp_path):
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    random.gauss(0, 1)  # leaves a cached gaussian in python's state
    np.random.randn()  # ... and numpy's
    save_rng_state(tmp_path, 0)
    expected = _draws()
    random.seed(99)
    np.random.seed(99)
    torch.manual_seed(99)
    set_rng_state(load_rng_state(tmp_path, 0))
    assert _draws() == expected
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rng_state_rank0.json", "rng_state_rank0.safetensors"]
    json.loads((tmp_path / "rng_state_rank0.json").read_text())  # plain JSON
    assert load_rng_state(tmp_path, 1) is None


def test_rng_state_malformed_is_a_clear_error(tmp_path):
    save_rng_state(tmp_path, 0)
    (tmp_path / "rng_state_rank0.json").write_text('{"python": 1}')
    with pytest.raises(CheckpointError, match="unreadable RNG state for rank 0"):
        load_rng_state(tmp_path, 0)


def _train_cfg(tmp_path, data, **kw):
    return toy_train_config(tmp_path, data, **{"save_steps": 1, **kw})  # a checkpoint every step


@pytest.fixture
def checkpoint(tmp_path):
    data = make_synthetic_data(tmp_path, n=8)
    torch.manual_seed(0)
    tr = Trainer(_train_cfg(tmp_path, data), model=ToyVLM())
    from cambrian.train.callbacks import StopAfter

    tr.callbacks.append(StopAfter(1))
    tr.train()
    ck = tmp_path / "out" / "checkpoint-0000001"
    assert ck.is_dir()
    assert sorted(p.name for p in ck.glob("*.pt")) == ["optimizer.pt"]  # the RNG state is no pickle any more
    return data, ck


def test_payload_is_live(tmp_path):
    """The planted file really runs code when unpickled (so the tests below are not vacuous)."""
    sentinel = tmp_path / "pwned"
    _plant(tmp_path / "x.pt", sentinel)
    torch.load(tmp_path / "x.pt", weights_only=False)
    assert sentinel.exists()


def test_resume_ignores_planted_pickle_rng_file(tmp_path, checkpoint):
    data, ck = checkpoint
    sentinel = tmp_path / "pwned"
    for p in ck.glob("rng_state_rank0.*"):
        p.unlink()
    _plant(ck / "rng_state_rank0.pt", sentinel)  # an old-format / crafted RNG file
    torch.manual_seed(0)
    with pytest.warns(UserWarning, match=r"ignoring rng_state_rank0.pt"):
        tr = Trainer(_train_cfg(tmp_path, data, resume="auto"), model=ToyVLM())
    assert tr.state["step"] == 1
    assert not sentinel.exists()


def test_resume_refuses_planted_pickle_optimizer(tmp_path, checkpoint):
    data, ck = checkpoint
    sentinel = tmp_path / "pwned"
    _plant(ck / "optimizer.pt", sentinel)
    with pytest.raises(CheckpointError, match=r"optimizer.pt: refused to load"):
        Trainer(_train_cfg(tmp_path, data, resume="auto"), model=ToyVLM())
    assert not sentinel.exists()


def test_train_cli_reports_bad_checkpoint_in_one_line(tmp_path, checkpoint, capsys):
    import yaml

    from cambrian.cli.main import main

    data, ck = checkpoint
    sentinel = tmp_path / "pwned"
    _plant(ck / "optimizer.pt", sentinel)
    cfg = _train_cfg(tmp_path, data).to_dict()
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["train", str(tmp_path / "recipe.yaml"), "--resume"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "optimizer.pt" in err[0], err
    assert not sentinel.exists()
