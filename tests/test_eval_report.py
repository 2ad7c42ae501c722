"""Report: paper-style table (markdown + CSV) from fake runs against hand-computed numbers, and the plots."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from cambrian.eval.plots import correlation_and_pca
from cambrian.eval.report import write_report

ON = {
    "mme": {"perception": 1500.0},
    "mmbench": {"circular_accuracy": 0.70},
    "seed": {"accuracy": 0.65},
    "gqa": {"accuracy": 0.60},
    "scienceqa": {"accuracy": 0.80},
    "mmmu": {"accuracy": 0.40},
    "mathvista": {"accuracy": 0.30},
    "ai2d": {"accuracy": 0.70},
    "chartqa": {"accuracy": 0.50},
    "ocrbench": {"accuracy": 0.45},
    "textvqa": {"accuracy": 0.55},
    "docvqa": {"anls": 0.70},
    "mmvp": {"accuracy": 0.40},
    "realworldqa": {"accuracy": 0.55},
    "cvbench": {"overall": 0.6, "accuracy_2d": 0.62, "accuracy_3d": 0.58},
    "pope": {"accuracy": 0.86},
}
OFF = {
    "mme": {"perception": 700.0},
    "mmbench": {"circular_accuracy": 0.30},
    "seed": {"accuracy": 0.35},
    "gqa": {"accuracy": 0.40},
    "scienceqa": {"accuracy": 0.76},
    "mmmu": {"accuracy": 0.38},
    "mathvista": {"accuracy": 0.27},
    "ai2d": {"accuracy": 0.66},
    "chartqa": {"accuracy": 0.20},
    "ocrbench": {"accuracy": 0.05},
    "textvqa": {"accuracy": 0.25},
    "mmvp": {"accuracy": 0.10},
    "realworldqa": {"accuracy": 0.35},
    "cvbench": {"overall": 0.4, "accuracy_2d": 0.42, "accuracy_3d": 0.38},
    "pope": {"accuracy": 0.50},
}


def make_run(root: Path, model: str, vision: str, metrics: dict) -> Path:
    root.mkdir(parents=True)
    (root / "run.json").write_text(json.dumps({"model": model, "vision": vision}))
    for b, m in metrics.items():
        (root / b).mkdir()
        (root / b / "metrics.json").write_text(json.dumps({"benchmark": b, "metrics": m}))
    return root


def test_two_fake_runs_table_and_plots(tmp_path):
    a = make_run(tmp_path / "a", "fake-8b", "enabled", ON)
    b = make_run(tmp_path / "b", "fake-8b", "disabled", OFF)
    out = write_report([a, b], tmp_path / "rep")
    rows = list(csv.DictReader(open(out["csv"])))
    assert [r["Model"] for r in rows] == ["fake-8b", "fake-8b (vision disabled)"]
    on, off = rows
    assert float(on["MME-P"]) == 1500.0 and float(on["General Avg"]) == pytest.approx((75 + 70 + 65 + 60) / 4)
    assert float(on["Knowledge Avg"]) == pytest.approx((80 + 40 + 30 + 70) / 4)
    assert float(on["OCR & Chart Avg"]) == pytest.approx((50 + 45 + 55 + 70) / 4)
    assert float(on["Vision-Centric Avg"]) == pytest.approx((40 + 55 + 62 + 58) / 4)
    assert float(on["CV-Bench-2D"]) == pytest.approx(62.0) and float(on["POPE"]) == pytest.approx(86.0)
    assert off["DocVQA"] == "" and float(off["OCR & Chart Avg"]) == pytest.approx((20 + 5 + 25) / 3, abs=1e-4)
    md = Path(out["markdown"]).read_text()
    assert "| fake-8b | 67.5 | 1500.0 | 70.0 |" in md
    assert "| 16.7* |" in md  # partial OCR & Chart average of the vision-disabled run is marked
    for key in ("vision_png", "clustering_png"):
        p = Path(out[key])
        assert p.stat().st_size > 10_000 and p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_single_run_has_no_pair_or_clustering_plots(tmp_path):
    a = make_run(tmp_path / "a", "m", "enabled", {"pope": {"accuracy": 0.5}, "gqa": {"accuracy": 0.25}})
    out = write_report([a], tmp_path / "rep")
    assert "vision_png" not in out and "clustering_png" not in out
    assert "| m | 25.0* |" in Path(out["markdown"]).read_text()


def test_report_rejects_a_non_run_dir(tmp_path):
    with pytest.raises(FileNotFoundError):
        write_report([tmp_path], tmp_path / "rep", plots=False)


def test_correlation_and_pca_by_hand():
    values = np.array([[1.0, 2.0, 3.0, 5.0], [2.0, 4.0, 2.0, 5.0], [3.0, 6.0, 1.0, 5.0]])  # runs x benchmarks
    corr, coords, ratio = correlation_and_pca(values)
    assert corr[0, 1] == pytest.approx(1.0) and corr[0, 2] == pytest.approx(-1.0)
    assert np.isnan(corr[3, 3])  # a constant benchmark has no correlation
    # benchmarks 0 and 1 coincide after z-scoring, 2 is their mirror, 3 sits at the centre offset
    assert np.allclose(coords[0], coords[1]) and ratio.sum() == pytest.approx(1.0)
    assert np.linalg.norm(coords[0] - coords[2]) > 1.0
