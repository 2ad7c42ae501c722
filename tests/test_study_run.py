"""A whole study on the tiny random model: killed in the middle of a run, rerun, only the missing work done; the
report's structure; the equivalent commands; the command line's errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

TINY_STUDY = {
    "name": "tiny-study",
    "description": "the tiny random model, two tower sets",
    "model": "tiny",
    "data": "nano",
    "data_settings": {
        "train_scenes": 4,
        "test_scenes": 3,
        "ground_easyvqa_images": 4,
        "easyvqa_train_images": 4,
        "easyvqa_test_images": 2,
        "synth_text_train": 4,
        "synth_text_test": 4,
        "synth_chart_train": 4,
        "synth_chart_test": 2,
    },
    "benchmarks": {
        "easyvqa": {"max_images": 2},
        "synth-text": {},
        "synth-chart": {},
        "cvbench-synth": {},
        "synth-attribute": {},
    },
    "eval": {"batch_size": 16, "max_new_tokens": 2},
    "stages": [
        {
            "name": "ground",
            "adapter": True,
            "recipe": {
                "stage": "ground",
                "data": [{"path": "{data}/ground.jsonl"}],
                "micro_batch_size": 8,
                "epochs": 1,
                "feature_cache": "{cache}",
                "num_workers": 0,
                "save_steps": 0,
                "progress": False,
            },
        },
        {
            "name": "stage2",
            "recipe": {
                "stage": 2,
                "trainable": ["llm."],
                "data": [{"path": "{data}/stage2.jsonl"}],
                "micro_batch_size": 4,
                "max_steps": 1,
                "lr": 1e-4,
                "feature_cache": "{cache}",
                "num_workers": 0,
                "save_steps": 0,
                "progress": False,
            },
        },
    ],
    "towers": {
        "rnd": {
            "encoder": {"preset": "tiny-clip", "options": {"init": "random", "init_seed": 1}},
            "supervision": "none",
        },
        "clip": {"encoder": "tiny-clip", "label": "tiny CLIP"},
    },
    "axes": [{"towers": [["rnd"], ["clip"]], "connector": ["default"]}],
    "control": "rnd",
}


class Killed(BaseException):
    """Stands for a kill (not an Exception: nothing may catch it on the way up)."""


@pytest.mark.slow
def test_a_killed_study_finishes_only_the_missing_runs(tmp_path, monkeypatch):
    from cambrian.study.runner import run_study
    from cambrian.study.spec import StudySpec, expand
    from cambrian.train import trainer as trainer_mod
    from cambrian.typed import build

    spec = build(StudySpec, json.loads(json.dumps(TINY_STUDY)))
    out = tmp_path / "study"
    real_train = trainer_mod.Trainer.train
    trained: list[str] = []

    def killing_train(self):
        trained.append(str(Path(self.cfg.output_dir).relative_to(out / "runs")))
        if trained[-1].startswith("clip__") and trained[-1].endswith("stage2"):
            raise Killed  # the second run dies inside its last stage
        return real_train(self)

    monkeypatch.setattr(trainer_mod.Trainer, "train", killing_train)
    with pytest.raises(Killed):
        run_study(spec, out, progress=False)
    rnd, clip = sorted((out / "runs").iterdir(), key=lambda p: not p.name.startswith("rnd"))
    assert [t.split("/")[1] for t in trained] == ["ground", "stage2", "ground", "stage2"]
    assert (rnd / "eval" / "disabled" / "synth-text" / "metrics.json").exists()
    assert (clip / "ground" / "config.json").exists() and not (clip / "stage2" / "config.json").exists()
    done_weights = (rnd / "stage2" / "model.safetensors").stat().st_mtime_ns
    ground_weights = (clip / "ground" / "model.safetensors").stat().st_mtime_ns
    assert not (rnd / "ground" / "model.safetensors").exists()  # a complete run keeps its last stage's model only

    trained.clear()
    monkeypatch.setattr(
        trainer_mod.Trainer, "train", lambda self: (trained.append(self.cfg.output_dir), real_train(self))[1]
    )
    res = run_study(spec, out, progress=False)
    assert [Path(t).relative_to(out / "runs").as_posix() for t in trained] == [f"{clip.name}/stage2"]
    assert res["pending"] == [] and [d["id"] for d in res["done_now"]] == [clip.name]
    assert (rnd / "stage2" / "model.safetensors").stat().st_mtime_ns == done_weights
    assert not (clip / "ground" / "model.safetensors").exists()  # deleted once the run was complete
    assert ground_weights
    again = run_study(spec, out, progress=False)
    assert again["done_now"] == []  # nothing left: a rerun only tabulates

    # the report: one row per run, every column with an interval, the control named, the files a person reads
    data = json.loads((out / "study.json").read_text())
    assert [r["status"] for r in data["runs"]] == ["complete", "complete"]
    assert data["control"] == rnd.name and data["categories"] == ["General", "OCR & Chart", "Vision-Centric"]
    assert "Knowledge" in data["empty_categories"]
    row = data["runs"][1]
    labels = ["easy-VQA", "synth-text", "synth-chart", "CV-Bench-Synth-2D", "CV-Bench-Synth-3D", "synth-attribute"]
    for k in labels + ["General", "OCR & Chart", "Vision-Centric", "Average"]:
        c = row["results"]["enabled"][k]
        assert c["low"] <= c["value"] <= c["high"]
        assert k in row["vision_delta"]
        assert data["chance"][k] is not None
    assert row["wall_seconds"] > 0 and set(row["timings"]) >= {"train_ground", "train_stage2", "eval_enabled"}
    header = (out / "study.csv").read_text().splitlines()[0]
    assert header.startswith("run,towers,connector,frozen,adapter_data,seed,status,wall_seconds,easy-VQA,")
    md = (out / "report.md").read_text()
    assert "## What the intervals support" in md and "Knowledge" in md
    for png in ("categories.png", "vision.png", "ranking.png"):
        assert (out / png).stat().st_size > 10_000

    # the folder remembers its study: --report-only needs no study argument
    from cambrian.study.spec import load_resolved

    assert [r.id for r in expand(load_resolved(out))[0]] == [rnd.name, clip.name]

    # the same runs as commands: one line per run, then the tabulation; the recipes they name load as they are
    from cambrian.study.runner import print_commands
    from cambrian.train.config import TrainConfig

    lines = print_commands(spec, out, "tiny.yaml", progress=False)
    assert len(lines) == 3 and lines[-1].endswith("--report-only")
    assert lines[1].startswith(f"cambrian train {clip}/ground.yaml && cambrian train {clip}/stage2.yaml && ")
    assert (
        "--vision enabled" in lines[1]
        and "--vision disabled" in lines[1]
        and "--option easyvqa.max_images=2" in lines[1]
    )
    cfg = TrainConfig.load(clip / "stage2.yaml")
    assert cfg.model == str(clip / "ground") and cfg.output_dir == str(clip / "stage2")


def _cli(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "cambrian.cli.main", "study", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
    )


def test_cli_plan_and_one_line_errors(tmp_path):
    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump(TINY_STUDY))
    p = _cli(str(f), "--plan", "--out", str(tmp_path / "o"))
    assert p.returncode == 0, p.stderr
    assert [ln.split()[1].split("__")[0] for ln in p.stdout.splitlines()] == ["rnd", "clip"]
    bad = dict(TINY_STUDY, axes=[{"towers": [["rnd"], ["clpi"]]}])
    f.write_text(yaml.safe_dump(bad))
    p = _cli(str(f), "--plan")
    assert p.returncode == 2 and p.stderr.strip().startswith("error:") and "did you mean 'clip'" in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1
    p = _cli("--list")
    assert p.returncode == 0 and {"nano-encoders", "paper-encoders"} <= set(p.stdout.split())
