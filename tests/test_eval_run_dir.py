"""Eval run directories: an output directory resumes only its own run (model, weights, vision, options, data);
scoring input errors are reported, not silently scored; a sample with a missing image is skipped, counted and
scored wrong; shards of an earlier run are never merged; fuzzed prediction lines are counted, never fatal."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from helpers import one_error_line
from PIL import Image
from test_eval_benchmarks import pope
from test_eval_runner import FakeModel

from cambrian.cli.main import main
from cambrian.eval.api import get_benchmark
from cambrian.eval.identity import RunMismatch, model_identity
from cambrian.eval.predictions import read_predictions
from cambrian.eval.runner import run_benchmarks


def _pope(tmp_path):
    data, _, _ = pope(tmp_path / "data")
    bench = get_benchmark("pope")
    return bench, bench.load(str(data))


def _run(model, bench, samples, out, **kw):
    return run_benchmarks(model, [bench], None, out, samples_by_bench={bench.name: samples}, progress=False, **kw)


def test_runner_refuses_other_model_vision_data_and_resumes_identical(tmp_path):
    bench, samples = _pope(tmp_path)
    out = tmp_path / "run"
    a = {"model": "/ckpt/a", "weights": "1111"}
    _run(FakeModel(), bench, samples, out, identity=a)
    ident = json.loads((out / "pope" / "run_identity.json").read_text())
    assert ident["model"] == "/ckpt/a" and ident["vision"] == "enabled" and ident["benchmark"] == "pope"
    assert ident["data"].startswith(f"{len(samples)}:") and ident["max_new_tokens"] == bench.max_new_tokens
    before = (out / "pope" / "predictions.jsonl").read_text()
    # identical rerun: resumes, generates nothing
    m = FakeModel()
    _run(m, bench, samples, out, identity=a)
    assert m.calls == 0 and json.loads((out / "run.json").read_text())["benchmarks"]["pope"]["resumed"] == len(samples)
    for kw, what in (
        (dict(identity={"model": "/ckpt/b", "weights": "2222"}), "model"),
        (dict(identity={**a, "weights": "9999"}), "weights"),
        (dict(identity=a, vision="disabled"), "vision"),
        (dict(identity=a, max_new_tokens=3), "max_new_tokens"),
    ):
        m = FakeModel()
        with pytest.raises(RunMismatch, match=what):
            _run(m, bench, samples, out, **kw)
        assert m.calls == 0
    # other data under the same benchmark name
    changed = [
        type(s)(idx=s.idx, prompt=s.prompt + " Really?", images=s.images, answer=s.answer, meta=s.meta) for s in samples
    ]
    with pytest.raises(RunMismatch, match="data"):
        _run(FakeModel(), bench, changed, out, identity=a)
    # nothing was touched by the refused runs
    assert (out / "pope" / "predictions.jsonl").read_text() == before
    assert json.loads((out / "run.json").read_text())["identity"] == {**a, "vision": "enabled"}
    # --overwrite replaces that benchmark's outputs and the run's identity
    m = FakeModel()
    _run(m, bench, samples, out, identity={"model": "/ckpt/b"}, vision="disabled", overwrite=True)
    assert sum(m.batch_sizes) == len(samples) and m.images_seen == [0] * len(samples)
    info = json.loads((out / "run.json").read_text())
    assert info["vision"] == "disabled" and info["identity"] == {"model": "/ckpt/b", "vision": "disabled"}
    assert info["benchmarks"]["pope"]["resumed"] == 0
    assert json.loads((out / "pope" / "run_identity.json").read_text())["vision"] == "disabled"


def test_runner_refuses_outputs_without_a_run_identity(tmp_path):
    """Predictions or a run.json without their identity record come from an unknown run: refused, never resumed
    (there is no older format to read); --overwrite starts anew."""
    bench, samples = _pope(tmp_path)
    out = tmp_path / "unknown"
    _run(FakeModel(), bench, samples[:2], out)
    (out / "pope" / "run_identity.json").unlink()
    with pytest.raises(RunMismatch, match="run_identity.json 'missing' there"):
        _run(FakeModel(), bench, samples, out)
    info = json.loads((out / "run.json").read_text())
    del info["identity"]
    (out / "run.json").write_text(json.dumps(info))
    with pytest.raises(RunMismatch, match="without a run identity"):
        _run(FakeModel(), bench, samples, out)
    m = FakeModel()
    _run(m, bench, samples, out, overwrite=True)
    assert sum(m.batch_sizes) == len(samples)
    assert json.loads((out / "pope" / "run_identity.json").read_text())["benchmark"] == "pope"


def test_model_identity_of_a_checkpoint_dir_follows_its_weights(tmp_path):
    ck = tmp_path / "ck"
    ck.mkdir()
    (ck / "model.safetensors").write_bytes(b"x" * 10)
    (ck / "config.json").write_text("{}")
    a = model_identity(str(ck))
    assert a["model"] == str(ck.resolve()) and a == model_identity(str(tmp_path / "." / "ck"))
    os.utime(ck / "model.safetensors", ns=(1, 1))
    assert model_identity(str(ck))["weights"] != a["weights"]
    assert model_identity("openai:http://h/v1#m") == {"model": "openai:http://h/v1#m"}


@pytest.fixture
def fake_loader(monkeypatch):
    """``cambrian eval run`` with a FakeModel whatever --model names (no weights to load)."""
    loaded = []

    def load(spec, device=None, name=None, towers=None):
        loaded.append(spec)
        m = FakeModel()
        m.name = name or Path(spec).name
        return m

    monkeypatch.setattr("cambrian.eval.adapters.load_eval_model", load)
    return loaded


def test_cli_eval_run_refuses_a_different_run_in_one_line(tmp_path, capsys, fake_loader):
    data = tmp_path / "data"
    pope(data)
    cks = []
    for name in ("a", "b"):
        ck = tmp_path / name
        ck.mkdir()
        (ck / "model.safetensors").write_bytes(name.encode() * 10)
        (ck / "config.json").write_text("{}")
        cks.append(ck)
    out = tmp_path / "run"
    base = ["eval", "run", "--bench", "pope", "--data-root", str(data), "--out", str(out), "--no-progress"]
    assert main(base + ["--model", str(cks[0])]) == 0
    capsys.readouterr()
    assert main(base + ["--model", str(cks[0])]) == 0  # identical: resumes
    assert len(fake_loader) == 2
    capsys.readouterr()
    for extra in (["--model", str(cks[1])], ["--model", str(cks[0]), "--vision", "disabled"]):
        assert main(base + extra) == 2
        line = one_error_line(capsys)
        assert str(out) in line and "--overwrite" in line
    assert len(fake_loader) == 2  # refused before the model was loaded
    os.utime(cks[0] / "model.safetensors", ns=(5, 5))  # retrained in place: other weights
    assert main(base + ["--model", str(cks[0])]) == 2
    assert "weights" in one_error_line(capsys)
    assert main(base + ["--model", str(cks[1]), "--overwrite"]) == 0
    info = json.loads((out / "run.json").read_text())
    assert info["model"] == "b" and info["identity"]["model"] == str(cks[1].resolve())
    assert main(base + ["--model", str(cks[1])]) == 0  # and now b's run resumes


# ---- scoring input: missing files, bad lines, missing images, shards ------------------------------------------


def test_cli_score_missing_predictions_file_is_an_error(tmp_path, capsys):
    data = tmp_path / "data"
    pope(data)
    assert (
        main(
            [
                "eval",
                "score",
                "--bench",
                "pope",
                "--data",
                str(data / "pope"),
                "--predictions",
                str(tmp_path / "nope.jsonl"),
            ]
        )
        == 2
    )
    line = one_error_line(capsys)
    assert "nope.jsonl" in line and "not found" in line


def test_cli_eval_merge_without_predictions_is_an_error(tmp_path, capsys):
    data = tmp_path / "data"
    pope(data)
    (tmp_path / "run" / "pope").mkdir(parents=True)
    assert main(["eval", "merge", str(tmp_path / "run"), "--bench", "pope", "--data-root", str(data)]) == 2
    assert "no predictions" in one_error_line(capsys)


def test_cli_score_counts_bad_lines(tmp_path, capsys):
    data = tmp_path / "data"
    pope(data)
    good = [
        json.dumps({"idx": s.idx, "prediction": "Yes" if s.answer == "yes" else "No"})
        for s in get_benchmark("pope").load(str(data / "pope"))
    ]
    pred = tmp_path / "p.jsonl"
    pred.write_text(
        "\n".join(good + ["[1, 2]", '"text"', '{"prediction": "no idx"}', "{not json", "42", "null"]) + "\n"
    )
    args = ["eval", "score", "--bench", "pope", "--data", str(data / "pope"), "--predictions", str(pred)]
    assert main(args + ["--json"]) == 2
    cap = capsys.readouterr()
    err = [ln for ln in cap.err.splitlines() if ln.strip()]
    assert len(err) == 1 and err[0].startswith("error: 6 of 10 lines") and "line 5" in err[0], err
    out = json.loads(cap.out)
    assert out["bad_prediction_lines"] == 6 and out["metrics"]["accuracy"] == 1.0  # the good lines still scored
    # below the threshold: a warning, exit 0
    assert main(args + ["--max-bad-fraction", "0.7"]) == 0
    assert capsys.readouterr().err.startswith("warning: 6 of 10 lines")
    rp = read_predictions(pred)
    assert (rp.lines, rp.bad_lines, rp.first_bad, len(rp)) == (10, 6, 5, 4)


def _pope_with_paths(tmp_path, missing: int = 1):
    """POPE rows whose images are files next to the data; the first ``missing`` files are absent."""
    d = tmp_path / "paths" / "pope"
    (d / "imgs").mkdir(parents=True)
    rows = []
    for i, (q, a) in enumerate([("dog", "yes"), ("cat", "no"), ("car", "no"), ("bus", "yes")]):
        if i >= missing:
            Image.new("RGB", (8, 8), (i * 40, 0, 0)).save(d / "imgs" / f"{i}.png")
        rows.append(
            {
                "question_id": str(i),
                "question": f"Is there a {q} in the image?",
                "answer": a,
                "category": "random",
                "image": f"imgs/{i}.png",
            }
        )
    (d / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return d


class AlwaysRight(FakeModel):
    def generate(self, requests, options):
        super().generate(requests, options)
        return ["Yes" if ("dog" in r.prompt or "bus" in r.prompt) else "No" for r in requests]


def test_missing_image_is_skipped_counted_and_scored_wrong(tmp_path, capsys):
    d = _pope_with_paths(tmp_path, missing=1)
    bench = get_benchmark("pope")
    out = tmp_path / "run"
    m = AlwaysRight()
    res = run_benchmarks(m, [bench], str(d.parent), out, batch_size=2, progress=False)
    assert sum(m.batch_sizes) == 3  # the other samples of the batch still ran
    assert res["pope"]["missing_images"] == 1 and res["pope"]["accuracy"] == 0.75
    saved = json.loads((out / "pope" / "metrics.json").read_text())
    assert saved["missing_images"] == 1 and saved["metrics"]["missing_images"] == 1
    record = json.loads((out / "pope" / "missing_images.json").read_text())["missing_images"]
    assert [r["idx"] for r in record] == ["0"] or [r["idx"] for r in record] == [0]
    assert "unreadable image" in capsys.readouterr().err
    # the image shows up: an identical rerun retries only that sample
    Image.new("RGB", (8, 8)).save(d / "imgs" / "0.png")
    m = AlwaysRight()
    res = run_benchmarks(m, [bench], str(d.parent), out, batch_size=2, progress=False)
    assert sum(m.batch_sizes) == 1 and res["pope"]["accuracy"] == 1.0 and "missing_images" not in res["pope"]
    assert not (out / "pope" / "missing_images.json").exists()


def test_cli_run_reports_missing_images(tmp_path, capsys, fake_loader):
    d = _pope_with_paths(tmp_path, missing=2)
    assert (
        main(
            [
                "eval",
                "run",
                "--model",
                "m",
                "--bench",
                "pope",
                "--data-root",
                str(d.parent),
                "--out",
                str(tmp_path / "run"),
                "--no-progress",
            ]
        )
        == 0
    )
    assert "2 samples with unreadable images scored wrong" in capsys.readouterr().out


def test_sharded_overwrite_never_merges_the_previous_runs_shards(tmp_path):
    bench, samples = _pope(tmp_path)
    out = tmp_path / "run"
    for ident, vision in (({"model": "a"}, "enabled"), ({"model": "b"}, "disabled")):
        for k in (1, 2, 0):  # shard 0 last: it waits for the others' markers of *this* run, then merges
            _run(
                FakeModel(),
                bench,
                samples,
                out,
                identity=ident,
                vision=vision,
                shard=(k, 3),
                overwrite=True,
                merge_timeout_s=2,
            )
        marks = {p.read_text().strip() for p in (out / "pope").glob("*.done")}
        assert len(marks) == 1  # all three markers carry this run's token
    preds = read_predictions(out / "pope" / "predictions.jsonl")
    assert len(preds) == len(samples) and all("#" in v for v in preds.values())
    # b's run is vision-disabled: a stale shard of a would have come from image-seeing answers
    ref = tmp_path / "ref"
    _run(FakeModel(), bench, samples, ref, identity={"model": "b"}, vision="disabled")
    assert read_predictions(ref / "pope" / "predictions.jsonl") == preds
    # shard 0 of a different run does not take the existing markers for its own
    with pytest.raises(TimeoutError):
        _run(FakeModel(), bench, samples, out, identity={"model": "c"}, shard=(0, 3), overwrite=True, merge_timeout_s=1)


FUZZ_PREDICTION_LINES = 2400


def test_fuzz_prediction_lines_through_eval_score(tmp_path, capsys):
    import random
    import time

    t0 = time.perf_counter()
    rng = random.Random(99)
    data = tmp_path / "data"
    pope(data)
    samples = get_benchmark("pope").load(str(data / "pope"))
    idxs = [s.idx for s in samples]
    values = [None, 1, 1.5, True, [], {}, "", "Yes", "no", "yes.", "\u0000", "é" * 3, "x" * 3000, {"a": [1]}]
    total = 0
    for f in range(12):
        lines = []
        for _ in range(FUZZ_PREDICTION_LINES // 12):
            kind = rng.random()
            rec = {
                "idx": rng.choice(idxs + [str(rng.choice(idxs)), -1, 10**20, None, 1.25, "zz"]),
                "prediction": rng.choice(values),
            }
            if kind < 0.4:
                line = json.dumps(rec).encode()
            elif kind < 0.55:
                rec.pop(rng.choice(["idx", "prediction"]))
                rec["idx" if rng.random() < 0.2 else "other"] = rng.choice(values)
                line = json.dumps(rec).encode()
            elif kind < 0.7:
                line = json.dumps(rng.choice([[1], "s", 3, None, [rec]])).encode()
            elif kind < 0.85:
                raw = json.dumps(rec).encode()
                line = raw[: rng.randrange(1, len(raw))]
            else:
                line = bytes(rng.randrange(256) for _ in range(rng.randint(1, 40)))
            line = line.replace(b"\n", b" ").replace(b"\r", b" ")
            lines.append(line if line.strip() else b"x")
        pred = tmp_path / f"p{f}.jsonl"
        pred.write_bytes(b"\n".join(lines) + b"\n")
        total += len(lines)
        rp = read_predictions(pred)
        assert rp.lines == len(lines) and rp.good_lines + rp.bad_lines == rp.lines
        assert (
            main(
                [
                    "eval",
                    "score",
                    "--bench",
                    "pope",
                    "--data",
                    str(data / "pope"),
                    "--predictions",
                    str(pred),
                    "--json",
                    "--max-bad-fraction",
                    "1",
                ]
            )
            == 0
        )
        out = json.loads(capsys.readouterr().out)
        assert out["prediction_lines"] == len(lines) and out["bad_prediction_lines"] == rp.bad_lines
    assert total >= 2000
    assert time.perf_counter() - t0 < 20
