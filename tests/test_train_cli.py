"""`cambrian train` end to end (toy stand-in model), stage 1 -> stage 2 bridge, recipes carry the official
hyper-parameters."""

from __future__ import annotations

import json

from cambrian.data.synthetic import make_synthetic_data
from cambrian.presets.models import RECIPE_DIR as RECIPES
from cambrian.train.config import TrainConfig


def test_recipes_load_with_official_hyperparameters():
    names = sorted(p.stem for p in RECIPES.glob("*.yaml"))
    for n in ("tiny", "nano-stage1", "nano-stage2"):
        assert n in names
    for m, gb, lr2 in (("8b", 512, 4e-5), ("13b", 512, 4e-5), ("34b", 1024, 2e-5)):
        s1 = TrainConfig.load(RECIPES / f"cambrian-{m}-stage1.yaml")
        s2 = TrainConfig.load(RECIPES / f"cambrian-{m}-stage2.yaml")
        assert (s1.stage, s1.lr, s1.sva_lr, s1.warmup_ratio, s1.global_batch_size) == (1, 1e-3, 1e-4, 0.06, gb)
        assert (s2.stage, s2.lr, s2.sva_lr, s2.warmup_ratio, s2.global_batch_size) == (2, lr2, None, 0.03, gb)
        assert s2.model == s1.output_dir  # stage 2 starts from the stage-1 output
        for c in (s1, s2):
            assert (c.epochs, c.max_length, c.weight_decay, c.scheduler, c.micro_batch_size) == (
                1,
                2048,
                0.0,
                "cosine",
                8,
            )
        assert s2.sampler == "modality_length"


def test_cli_stage1_then_stage2_then_resume(tmp_path, capsys):
    from cambrian.cli.main import main

    data = make_synthetic_data(tmp_path, n=8, text_only=4)
    common = [
        f"data=[{{path: {data}, images: {tmp_path / 'images'}}}]",
        "report_to=[]",
        "progress=false",
        "micro_batch_size=4",
    ]
    s1 = tmp_path / "s1"
    assert (
        main(
            [
                "train",
                str(RECIPES / "tiny.yaml"),
                "model=toy",
                "stage=1",
                "sva_lr=1e-4",
                f"output_dir={s1}",
                "epochs=1",
                *common,
            ]
        )
        == 0
    )
    assert (s1 / "model.safetensors").exists() and (s1 / "checkpoint-0000003" / "trainable.safetensors").exists()
    saved = TrainConfig.load(s1 / "train_config.yaml")
    assert saved.stage == 1 and saved.sva_lr == 1e-4
    lr0 = json.loads((s1 / "metrics.jsonl").read_text().splitlines()[1])["lr"]
    assert set(lr0) == {"sva", "projector"}  # stage 1: connector groups only
    s2 = tmp_path / "s2"
    assert (
        main(
            ["train", str(RECIPES / "tiny.yaml"), f"model={s1}", "stage=2", f"output_dir={s2}", "save_steps=3", *common]
        )
        == 0
    )
    assert (s2 / "model.safetensors").exists()
    # --resume on a finished run: nothing left to do, same weights
    assert (
        main(["train", str(RECIPES / "tiny.yaml"), f"model={s1}", "stage=2", f"output_dir={s2}", *common, "--resume"])
        == 0
    )
    assert "resumed from" in capsys.readouterr().out


def test_cli_reports_bad_data(tmp_path, capsys):
    from cambrian.cli.main import main

    data = make_synthetic_data(tmp_path, n=6, bad={"missing_image": 2})
    rc = main(
        [
            "train",
            str(RECIPES / "tiny.yaml"),
            "model=toy",
            f"data=[{{path: {data}, images: {tmp_path / 'images'}}}]",
            f"output_dir={tmp_path / 'o'}",
            "report_to=[]",
            "progress=false",
            "micro_batch_size=4",
            "epochs=1",
        ]
    )
    assert rc == 2
    assert "missing_image=2" in capsys.readouterr().err


def test_shipped_recipe_by_name_from_any_directory(tmp_path, monkeypatch, capsys):
    """The README's first run: `cambrian data synthetic runs/tiny-data` then `cambrian train tiny`; a shipped
    recipe's relative paths are relative to the current directory (the package dir may be read-only)."""
    from cambrian.cli.main import main

    monkeypatch.chdir(tmp_path)
    assert main(["data", "synthetic", "runs/tiny-data", "--n", "8", "--text-only", "2"]) == 0
    assert main(["train", "tiny", "epochs=1", "save_steps=0", "num_workers=0", "progress=false"]) == 0
    assert (tmp_path / "runs" / "tiny" / "model.safetensors").is_file()
    assert main(["train", "tiny-typo"]) == 2
    err = capsys.readouterr().err
    assert "not a shipped recipe name (shipped: " in err and "nano-stage1" in err
