"""Data tools on hostile or broken input (issue 25, item 8): ``curate`` refuses to write an empty dataset, drops
what training and ``validate`` would drop, cleans up after a ``kill -9``; ``validate`` and training read a line of
any length in bounded memory."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from peak_memory import PeakRSS

from cambrian.cli.main import main
from cambrian.data import llava


def _rec(q="What is it?", a="A cat.", image=None, **kw):
    r = {"conversations": [{"from": "human", "value": q}, {"from": "gpt", "value": a}], **kw}
    if image is not None:
        r["image"] = image
    return r


def _recipe(tmp_path: Path, records: list[dict], **extra) -> Path:
    data = tmp_path / "src.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in records))
    recipe = tmp_path / "recipe.yaml"
    lines = ["sources:", "  - {name: src, path: src.jsonl, category: general}", "system_prompts: false"]
    lines += [f"{k}: {v}" for k, v in extra.items()]
    recipe.write_text("\n".join(lines) + "\n")
    return recipe


def test_curate_refuses_to_write_an_empty_dataset(tmp_path, capsys):
    recipe = _recipe(tmp_path, [{"conversations": []}, {"no": "conversation"}, _rec(q="")])
    out = tmp_path / "out"
    assert main(["data", "curate", str(recipe), "--out", str(out), "--no-progress", "--no-plots"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no record to write: 3 read, 3 bad (bad_conversation 2, empty_turn 1)" in err[0], err
    assert not (out / "data.jsonl").exists()


def test_curate_drops_what_validate_and_training_drop(tmp_path, capsys):
    (tmp_path / "img.png").write_bytes(b"\x89PNG")  # content only matters for dedup
    good = [_rec(q=f"Question {i}?", a=f"Answer {i}.") for i in range(4)] + [_rec(q="<image>\nWhat?", image="img.png")]
    bad = [
        {"conversations": [{"from": "gpt", "value": "a"}, {"from": "human", "value": "q"}]},  # wrong_roles
        {"conversations": [{"from": "human", "value": "q"}]},  # wrong_roles (no answer)
        {"conversations": [{"from": "robot", "value": "q"}, {"from": "gpt", "value": "a"}]},  # wrong_roles
        _rec(a="   "),  # empty_turn
        _rec(q="What?", image="img.png"),  # one image, no <image> tag: image_count_mismatch
        _rec(q="<image> <image> What?", image="img.png"),  # image_count_mismatch
        _rec(a="<image> here"),  # image_count_mismatch: a tag outside a user turn, no image
    ]
    recipe = _recipe(tmp_path, good + bad)
    out = tmp_path / "out"
    assert main(["data", "curate", str(recipe), "--out", str(out), "--no-progress", "--no-plots"]) == 0
    stats = json.loads((out / "stats.json").read_text())["sources"]["src"]
    assert stats["bad_by_reason"] == {"wrong_roles": 3, "empty_turn": 1, "image_count_mismatch": 3}
    assert stats["selected"] == 5
    capsys.readouterr()
    rc = main(["data", "validate", str(out / "data.jsonl"), "--images", str(tmp_path), "--no-images"])
    assert rc == 0 and " 0 bad " in capsys.readouterr().out


def test_curate_cleans_up_after_a_kill_9(tmp_path):
    n = 150_000
    recipe = _recipe(tmp_path, [_rec(q=f"Question number {i}?", a=f"Answer {i}.") for i in range(n)], dedup="content")
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "cambrian.cli.main", "data", "curate", str(recipe), "--out", str(out), "--no-plots"]
    proc = subprocess.Popen([*cmd, "--no-progress"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        t0 = time.monotonic()
        while not any(out.glob("cambrian-dedup-*")) and not any(out.glob(".data.jsonl.*.tmp")):
            assert proc.poll() is None, "the curation finished before it could be killed"
            assert time.monotonic() - t0 < 120
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)  # no cleanup handler can run
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    left = sorted(p.name for p in out.iterdir())
    assert left and all(p.startswith(("cambrian-dedup-", ".data.jsonl.")) for p in left), left
    assert main(["data", "curate", str(recipe), "--out", str(out), "--no-progress", "--no-plots"]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert not any(p.startswith(("cambrian-dedup-", ".data.jsonl.", ".hf-")) for p in names), names
    assert sum(1 for _ in open(out / "data.jsonl")) == n


def test_validate_reads_a_line_of_any_length_in_bounded_memory(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(llava, "MAX_RECORD_BYTES", 1 << 20)
    data = tmp_path / "d.jsonl"
    with open(data, "w") as f:
        f.write(json.dumps(_rec()) + "\n")
        f.write('{"conversations": [{"from": "human", "value": "')
        for _ in range(48):
            f.write("x" * (1 << 20))  # a 48 MB line
        f.write('"}, {"from": "gpt", "value": "a"}]}\n')
        f.write(json.dumps(_rec()) + "\n")
    with PeakRSS() as peak:
        rc = main(
            [
                "data",
                "validate",
                str(data),
                "--no-images",
                "--max-bad-fraction",
                "0.5",
                "--json",
                str(tmp_path / "r.json"),
            ]
        )
    assert rc == 0
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["samples"] == 3 and rep["by_reason"] == {"record_too_large": 1}
    assert rep["examples"]["record_too_large"][0]["line"] == 2
    assert peak.delta < 24 << 20, f"{peak.delta / 2**20:.0f} MiB"
    assert "record_too_large" in capsys.readouterr().out


@pytest.mark.parametrize("fmt", ["jsonl", "json"])
def test_training_sources_count_an_over_long_record(tmp_path, monkeypatch, fmt):
    monkeypatch.setattr(llava, "MAX_RECORD_BYTES", 4096)
    recs = [_rec(), _rec(q="x" * 10_000), _rec()]
    path = tmp_path / f"d.{fmt}"
    path.write_text(json.dumps(recs) if fmt == "json" else "".join(json.dumps(r) + "\n" for r in recs))
    src = llava.LlavaSource(path)
    assert len(src) == 2 and src.bad_by_reason == {"record_too_large": 1}
