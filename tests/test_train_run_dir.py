"""A training output_dir holds one run: a second run is refused unless --resume / --overwrite; a resume with other
settings is refused in one line; a corrupt latest checkpoint falls back to the previous one with a warning."""

from __future__ import annotations

import pytest
from helpers import one_error_line, toy_train_config

from cambrian.cli.main import main


def _recipe(tmp_path, data, **kw):
    import yaml

    p = tmp_path / "recipe.yaml"
    p.write_text(yaml.safe_dump(toy_train_config(tmp_path, data, **kw).to_dict()))
    return str(p)


def test_output_dir_with_a_previous_run_is_refused_unless_resume_or_overwrite(tmp_path, capsys):
    from cambrian.data.synthetic import make_synthetic_data

    data = make_synthetic_data(tmp_path / "d", n=8)
    recipe = _recipe(tmp_path, data, save_steps=1)
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")  # an existing dir without run files is fine
    assert main(["train", recipe]) == 0
    capsys.readouterr()
    assert main(["train", recipe]) == 2
    line = one_error_line(capsys)
    assert (
        "holds a previous run" in line and "--resume" in line and "--overwrite" in line and "checkpoint-0000002" in line
    )
    assert main(["train", recipe, "--overwrite"]) == 0
    assert "removed the previous run" in capsys.readouterr().out
    assert (out / "notes.txt").read_text() == "mine" and len((out / "metrics.jsonl").read_text().splitlines()) == 2
    assert main(["train", recipe, "--resume", "--overwrite"]) == 2
    assert "exclude each other" in one_error_line(capsys)
    assert main(["train", recipe, "--resume"]) == 0


def test_resume_refuses_changed_settings_in_one_line(tmp_path, capsys):
    from cambrian.data.synthetic import make_synthetic_data

    data = make_synthetic_data(tmp_path / "d", n=8)
    recipe = _recipe(tmp_path, data, save_steps=1)
    assert main(["train", recipe]) == 0
    capsys.readouterr()
    assert main(["train", recipe, "lr=0.5", "micro_batch_size=2", "seed=3", "--resume"]) == 2
    line = one_error_line(capsys)
    assert (
        "other settings" in line
        and "lr (0.01 -> 0.5)" in line
        and "micro_batch_size (4 -> 2)" in line
        and "seed" in line
    )
    assert "stage" not in line
    assert main(["train", recipe, "stage=1", "--resume"]) == 2
    assert "stage (2 -> 1)" in one_error_line(capsys)
    assert main(["train", recipe, f"data=[{{path: {data}}}]", "--resume"]) == 2
    assert "data (" in one_error_line(capsys)


@pytest.mark.parametrize("damage", ["truncate_weights", "drop_state", "garble_state"])
def test_corrupt_latest_checkpoint_falls_back_with_a_warning(tmp_path, capsys, damage):
    from toy_vlm import ToyVLM

    from cambrian.data.synthetic import make_synthetic_data
    from cambrian.train.trainer import Trainer

    data = make_synthetic_data(tmp_path / "d", n=16)
    cfg = dict(save_steps=1, save_total_limit=3)
    tr = Trainer(toy_train_config(tmp_path, data, **cfg), model=ToyVLM())
    from cambrian.train.callbacks import StopAfter

    tr.callbacks.append(StopAfter(3))
    tr.train()
    ck = tmp_path / "out" / "checkpoint-0000003"
    if damage == "truncate_weights":
        w = ck / "trainable.safetensors"
        w.write_bytes(w.read_bytes()[:20])
    elif damage == "drop_state":
        (ck / "trainer_state.json").unlink()
    else:
        (ck / "trainer_state.json").write_text('{"step": 3, "epo')
    capsys.readouterr()
    tr2 = Trainer(toy_train_config(tmp_path, data, resume="auto", **cfg), model=ToyVLM())
    assert tr2.state["step"] == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and err[0].startswith("warning: skipping checkpoint checkpoint-0000003"), err


def test_epochs_and_max_steps_ranges_are_config_errors(tmp_path, capsys):
    from cambrian.data.synthetic import make_synthetic_data

    data = make_synthetic_data(tmp_path / "d", n=8)
    recipe = _recipe(tmp_path, data)
    for ov, field in (("epochs=0", "epochs"), ("epochs=-2", "epochs"), ("max_steps=-1", "max_steps")):
        assert main(["train", recipe, ov]) == 2
        line = one_error_line(capsys)
        assert f"{field} must be" in line and "recipe.yaml" in line, line


def test_demo_style_trainer_in_a_fresh_dir_is_not_refused(tmp_path):
    """The demo passes the model in memory (model: "(in memory)") and writes each stage into a fresh dir."""
    from toy_vlm import ToyVLM

    from cambrian.data.synthetic import make_synthetic_data
    from cambrian.train.config import TrainConfig
    from cambrian.train.trainer import Trainer

    data = make_synthetic_data(tmp_path / "d", n=8)
    cfg = toy_train_config(tmp_path, data, output_dir=str(tmp_path / "demo" / "stage1")).to_dict()
    cfg["model"] = "(in memory)"
    s = Trainer(TrainConfig.from_dict(cfg), model=ToyVLM()).train()
    assert s["step"] == 2
