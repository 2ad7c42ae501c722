"""Hardening (issue 10): an eval output directory only resumes its own run; scoring input errors are reported,
not silently scored; a benchmark row with a missing image does not abort the run."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from helpers import toy_train_config
from PIL import Image
from test_eval_benchmarks import pope
from test_eval_runner import FakeModel

from cambrian.cli.main import main
from cambrian.eval.api import get_benchmark
from cambrian.eval.runner import RunMismatch, model_identity, read_predictions, run_benchmarks


def _pope(tmp_path):
    data, _, _ = pope(tmp_path / "data")
    bench = get_benchmark("pope")
    return bench, bench.load(str(data))


def _run(model, bench, samples, out, **kw):
    return run_benchmarks(model, [bench], None, out, samples_by_bench={bench.name: samples}, progress=False, **kw)


def _one_error_line(capsys) -> str:
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


# --- 6. an output directory resumes only its own run ---------------------------------------------------------
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


def test_runner_checks_older_run_dirs_by_their_labels(tmp_path):
    """A run directory of an older version (no identity files): run.json's model label and vision decide."""
    bench, samples = _pope(tmp_path)
    out = tmp_path / "old"
    _run(FakeModel(), bench, samples[:2], out)
    (out / "pope" / "run_identity.json").unlink()
    info = json.loads((out / "run.json").read_text())
    del info["identity"]
    (out / "run.json").write_text(json.dumps(info))
    with pytest.raises(RunMismatch, match="vision"):
        _run(FakeModel(), bench, samples, out, vision="disabled")
    m = FakeModel()  # same label and vision: resumed as before
    _run(m, bench, samples, out)
    assert sum(m.batch_sizes) == len(samples) - 2


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

    def load(spec, device=None, name=None, **kw):  # towers=, quantize=: nothing to load here
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
        line = _one_error_line(capsys)
        assert str(out) in line and "--overwrite" in line
    assert len(fake_loader) == 2  # refused before the model was loaded
    os.utime(cks[0] / "model.safetensors", ns=(5, 5))  # retrained in place: other weights
    assert main(base + ["--model", str(cks[0])]) == 2
    assert "weights" in _one_error_line(capsys)
    assert main(base + ["--model", str(cks[1]), "--overwrite"]) == 0
    info = json.loads((out / "run.json").read_text())
    assert info["model"] == "b" and info["identity"]["model"] == str(cks[1].resolve())
    assert main(base + ["--model", str(cks[1])]) == 0  # and now b's run resumes


# --- 8. scoring input --------------------------------------------------------------------------------------------
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
    line = _one_error_line(capsys)
    assert "nope.jsonl" in line and "not found" in line


def test_cli_eval_merge_without_predictions_is_an_error(tmp_path, capsys):
    data = tmp_path / "data"
    pope(data)
    (tmp_path / "run" / "pope").mkdir(parents=True)
    assert main(["eval", "merge", str(tmp_path / "run"), "--bench", "pope", "--data-root", str(data)]) == 2
    assert "no predictions" in _one_error_line(capsys)


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


# --- 7. training counts every bad line, with the reader `cambrian data validate` uses ---------------------------
def _half_garbage(tmp_path, n=8):
    from cambrian.data.synthetic import make_synthetic_data

    data = make_synthetic_data(tmp_path / "d", n=n)
    good = data.read_text().splitlines()
    lines = []
    for i, g in enumerate(good):
        lines += [g, '{"id": "x", "conversations": [' if i % 2 else "[1, 2]"]
    data.write_text("\n".join(lines) + "\n")
    return data


def test_validate_and_train_share_the_reader_and_count_bad_lines(tmp_path, capsys):
    import yaml

    from cambrian.data.llava import LlavaSource

    data = _half_garbage(tmp_path)
    src = LlavaSource(data)
    assert len(src) == 8 and src.bad_by_reason == {"bad_record": 4, "bad_json": 4} and src.total == 16
    assert [ln for ln, _, _ in src.bad_examples] == [2, 4, 6, 8, 10, 12, 14, 16]
    assert [src.line_number(i) for i in range(3)] == [1, 3, 5]
    # validate: fails, names the reasons with line numbers
    assert main(["data", "validate", str(data), "--images", str(data.parent / "images")]) == 1
    out = capsys.readouterr().out
    assert "16 samples" in out and "8 bad" in out and "bad_json" in out and "line 4 " in out and "line 2 " in out
    # train: refuses before the first step, exit 2 (it trained with exit 0 before)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(toy_train_config(tmp_path, data).to_dict()))
    assert main(["train", str(recipe)]) == 2
    err = capsys.readouterr().err
    assert "8 of 16 data lines" in err and "bad_json=4" in err and "data.jsonl:2" in err, err
    assert not (tmp_path / "out" / "metrics.jsonl").exists()


def test_train_counts_bad_lines_by_reason_within_the_limit(tmp_path):
    from toy_vlm import ToyVLM

    from cambrian.data.synthetic import make_synthetic_data
    from cambrian.train.trainer import DataQualityError, Trainer

    data = make_synthetic_data(tmp_path / "d", n=8)
    data.write_text(data.read_text() + "not json\n\n")  # blank lines are no records and no bad lines
    s = Trainer(toy_train_config(tmp_path, data, max_bad_fraction=0.2), model=ToyVLM()).train()
    assert s["bad_counts"] == {"bad_json": 1}
    with pytest.raises(DataQualityError, match=r"1 of 9 data lines .*bad_json=1"):
        Trainer(
            toy_train_config(tmp_path, data, max_bad_fraction=0.05, output_dir=str(tmp_path / "o2")), model=ToyVLM()
        )


def test_empty_data_file_is_one_clear_error(tmp_path, capsys):
    import yaml

    data = tmp_path / "data.jsonl"
    data.write_text("\n  \n")
    assert main(["data", "validate", str(data)]) == 2
    assert _one_error_line(capsys) == f"error: {data}: no records"
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(toy_train_config(tmp_path, data).to_dict()))
    assert main(["train", str(recipe)]) == 2
    assert _one_error_line(capsys) == f"error: {data}: no records"


def test_json_array_bad_elements_have_line_numbers(tmp_path):
    from cambrian.data.llava import LlavaSource

    rec = {"id": 1, "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]}
    p = tmp_path / "d.json"
    p.write_text("[\n" + json.dumps(rec) + ',\n{"id": 2, "x": tru},\n' + json.dumps(rec) + "\n]\n")
    src = LlavaSource(p)
    assert len(src) == 2 and src.bad_by_reason == {"bad_json": 1}
    assert src.bad_examples[0][0] == 3 and [src.line_number(i) for i in range(2)] == [2, 4]


# --- 9. an output_dir holds one run: refused / --resume / --overwrite; resume checks settings; broken checkpoints
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
    line = _one_error_line(capsys)
    assert (
        "holds a previous run" in line and "--resume" in line and "--overwrite" in line and "checkpoint-0000002" in line
    )
    assert main(["train", recipe, "--overwrite"]) == 0
    assert "removed the previous run" in capsys.readouterr().out
    assert (out / "notes.txt").read_text() == "mine" and len((out / "metrics.jsonl").read_text().splitlines()) == 2
    assert main(["train", recipe, "--resume", "--overwrite"]) == 2
    assert "exclude each other" in _one_error_line(capsys)
    assert main(["train", recipe, "--resume"]) == 0


def test_resume_refuses_changed_settings_in_one_line(tmp_path, capsys):
    from cambrian.data.synthetic import make_synthetic_data

    data = make_synthetic_data(tmp_path / "d", n=8)
    recipe = _recipe(tmp_path, data, save_steps=1)
    assert main(["train", recipe]) == 0
    capsys.readouterr()
    assert main(["train", recipe, "lr=0.5", "micro_batch_size=2", "seed=3", "--resume"]) == 2
    line = _one_error_line(capsys)
    assert (
        "other settings" in line
        and "lr (0.01 -> 0.5)" in line
        and "micro_batch_size (4 -> 2)" in line
        and "seed" in line
    )
    assert "stage" not in line
    assert main(["train", recipe, "stage=1", "--resume"]) == 2
    assert "stage (2 -> 1)" in _one_error_line(capsys)
    assert main(["train", recipe, f"data=[{{path: {data}}}]", "--resume"]) == 2
    assert "data (" in _one_error_line(capsys)


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
        line = _one_error_line(capsys)
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


# --- 11. a user mistake is one `error:` line and exit 2 (the traceback only with --debug) --------------------
def test_user_mistakes_are_one_error_line(tmp_path, capsys):
    from cambrian.data.synthetic import make_synthetic_data

    data = make_synthetic_data(tmp_path / "d", n=4)
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("lr: [1, 2\nepochs: 1\n")
    typo = tmp_path / "typo.yaml"
    typo.write_text("model: toy\nlearning_rate: 0.1\n")
    arr = tmp_path / "trunc.json"
    arr.write_text('[{"id": 1, "conversations": []}, {"id": 2')
    cases = [
        (["info", "no-such-model"], "unknown model preset 'no-such-model'; valid presets:"),
        (["train", str(tmp_path / "missing.yaml")], "missing.yaml"),
        (["train", str(bad_yaml)], "bad.yaml"),
        (["train", str(typo)], "learning_rate"),
        (["train", str(typo), "notanoverride"], "is not key=value"),
        (["data", "validate", str(tmp_path / "nope.jsonl")], "nope.jsonl"),
        (["data", "validate", str(arr)], "truncated JSON array"),
        (
            ["eval", "score", "--bench", "no-such-bench", "--data", str(data), "--predictions", str(data)],
            "no-such-bench",
        ),
    ]
    for argv, needle in cases:
        assert main(argv) == 2, argv
        line = _one_error_line(capsys)
        assert needle in line, (argv, line)
    with pytest.raises(FileNotFoundError):
        main(["--debug", "train", str(tmp_path / "missing.yaml")])


def test_generation_and_long_tokenisation_do_not_print_library_noise(tmp_path):
    import logging
    import warnings

    from cambrian.models.cambrian_model import CambrianModel
    from cambrian.models.llm.tokenize import tokenize_conversation

    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record)

    h = Keep()
    tlog = logging.getLogger("transformers")
    tlog.addHandler(h)
    try:
        m = CambrianModel.load("tiny")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            m.generate_text(["<image>\nhi"], [[Image.new("RGB", (8, 8))]], max_new_tokens=3)
            tok = m.tokenizer
            tok.model_max_length = 8
            tok.deprecation_warnings.pop("sequence-length-is-longer-than-the-specified-maximum", None)
            msgs = [{"role": "user", "content": "red " * 40}, {"role": "assistant", "content": "blue " * 40}]
            ids = tokenize_conversation(msgs, m.template, tok, None)["input_ids"]
        assert len(ids) > 8
    finally:
        tlog.removeHandler(h)
    noisy = [str(w.message) for w in caught if "past_key_values" in str(w.message) or "cache_params" in str(w.message)]
    assert not noisy, noisy
    logged = [r.getMessage() for r in records]
    assert not [x for x in logged if "are deprecated" in x or "Token indices sequence length" in x], logged


# --- fuzz: malformed / mutated LLaVA records and prediction lines -------------------------------------------
FUZZ_RECORDS = 2400
FUZZ_PREDICTION_LINES = 2400


def _fuzz_record_lines(rng, images: list[str], n: int) -> list[bytes]:
    import copy

    """``n`` non-blank JSONL lines: valid records, records with wrong types / roles / tags / paths, JSON that is not
    an object, truncated or byte-flipped JSON, invalid UTF-8, deep nesting."""
    weird = [
        None,
        True,
        0,
        -1,
        1.5,
        float("nan"),
        "",
        "None",
        "nan",
        [],
        {},
        [None],
        [1, [2]],
        {"a": 1},
        "x" * 5000,
        "\u202e\u0000\ud7ff",
        "<image>",
        "<image><image>",
        "../../etc/passwd",
        "/etc/passwd",
        "a\x00b.png",
        "images/../../x.png",
        " ",
        "\n\t",
        10**30,
    ]
    roles = ["human", "gpt", "user", "assistant", "system", "HUMAN", "bot", "", None, 3, ["human"]]

    def pick(seq):  # a fresh copy: shared weird containers would make records refer to themselves
        return copy.deepcopy(rng.choice(seq))

    def valid():
        k = rng.randint(0, 2)
        img = rng.sample(images + ["corrupt.png", "missing.png"] if rng.random() < 0.2 else images, k) if k else None
        q = "<image>\n" * k + rng.choice(["What colour?", "Q", "é漢字 🙂", "describe " * 50])
        rec = {
            "id": rng.randint(0, 10**6),
            "conversations": [
                {"from": "human", "value": q},
                {"from": "gpt", "value": rng.choice(["red", "A", "x" * 400])},
            ],
        }
        if img is not None:
            rec["image"] = img[0] if k == 1 and rng.random() < 0.5 else img
        return rec

    def mutate(rec):
        for _ in range(rng.randint(1, 3)):
            op = rng.randrange(10)
            conv = rec.get("conversations")
            if op == 0:
                rec.pop(rng.choice(["conversations", "image", "id"]), None)
            elif op == 1:
                rec["conversations"] = pick(weird)
            elif op == 2:
                rec["image"] = pick(weird + images + [[pick(weird)], "missing.png", "corrupt.png", "adir"])
            elif op == 3 and isinstance(conv, list) and conv:
                t = rng.randrange(len(conv))
                conv[t] = pick(weird) if rng.random() < 0.3 else dict(conv[t]) if isinstance(conv[t], dict) else {}
                if isinstance(conv[t], dict):
                    conv[t][rng.choice(["from", "value", "extra"])] = pick(weird + roles)
            elif op == 4 and isinstance(conv, list):
                rng.shuffle(conv)
                conv.extend(rng.choice([[], [{"from": "human", "value": "<image> again"}], conv[:1]]))
            elif op == 5 and isinstance(conv, list) and conv and isinstance(conv[0], dict):
                conv[0]["value"] = str(conv[0].get("value", "")) + "<image>" * rng.randint(1, 3)
            elif op == 6 and isinstance(conv, list) and conv and isinstance(conv[-1], dict):
                conv[-1]["value"] = "<image>"
            elif op == 7:
                rec["conversations"] = [{"from": "system", "value": "s"}] + (conv if isinstance(conv, list) else [])
            elif op == 8:
                rec[rng.choice(["images", "image", "conversations"])] = pick(weird)
            else:
                rec["id"] = pick(weird)
        return rec

    out = []
    for _ in range(n):
        kind = rng.random()
        if kind < 0.15:
            line = json.dumps(valid(), allow_nan=True).encode()
        elif kind < 0.65:
            line = json.dumps(mutate(valid()), allow_nan=True).encode()
        elif kind < 0.72:
            line = json.dumps(rng.choice([[1, 2], "text", 42, None, True, [{"conversations": []}]])).encode()
        elif kind < 0.82:
            raw = json.dumps(valid()).encode()
            line = raw[: rng.randrange(1, len(raw))]
        elif kind < 0.90:
            raw = bytearray(json.dumps(valid()).encode())
            for _ in range(rng.randint(1, 4)):
                raw[rng.randrange(len(raw))] = rng.randrange(256)
            line = bytes(raw)
        elif kind < 0.95:
            line = bytes(rng.randrange(256) for _ in range(rng.randint(1, 60)))
        else:
            d = rng.randint(10, 3000)
            line = ("[" * d + "]" * d if rng.random() < 0.5 else '{"a":' * d + "1" + "}" * d).encode()
        line = line.replace(b"\n", b" ")
        out.append(line if line.strip() else b"x")
    return out


def test_fuzz_llava_records_validate_dataset_and_train_counts_add_up(tmp_path):
    """Every generated line is counted exactly once (good + bad by reason = total) by `cambrian data validate`'s
    reader, by the training dataset + collator, and no input raises."""
    import random
    import time
    from collections import Counter

    from toy_vlm import ToyVLM

    from cambrian.data.collator import Collator
    from cambrian.data.dataset import BAD_REASONS, ImagePipeline, SupervisedDataset
    from cambrian.data.llava import LlavaSource
    from cambrian.data.validate import validate

    t0 = time.perf_counter()
    rng = random.Random(1234)
    root = tmp_path / "images"
    root.mkdir()
    names = []
    for i, size in enumerate([(8, 8), (16, 4), (1, 1)]):
        Image.new("RGB", size, (i * 80, 10, 10)).save(root / f"ok{i}.png")
        names.append(f"ok{i}.png")
    (root / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    (root / "adir").mkdir()
    lines = _fuzz_record_lines(rng, names, FUZZ_RECORDS)
    data = tmp_path / "fuzz.jsonl"
    data.write_bytes(b"\n".join(lines) + b"\n")

    src = LlavaSource(data, root)
    assert src.total == FUZZ_RECORDS and set(src.bad_by_reason) <= set(BAD_REASONS)
    assert len(src) + src.bad_lines == FUZZ_RECORDS
    rep = validate(src, None, open_imgs=True, examples=1)
    assert rep["samples"] == FUZZ_RECORDS and rep["bad"] == sum(rep["by_reason"].values())

    model = ToyVLM()
    ds = SupervisedDataset(
        [src], model.tokenize_conversation, model.visual_token_count, ImagePipeline.from_model(model), max_length=256
    )
    items = [ds[i] for i in range(len(ds))]
    good = sum("bad" not in x for x in items)
    by_reason = Counter(x["bad"] for x in items if "bad" in x) + Counter(src.bad_by_reason)
    assert good + sum(by_reason.values()) == FUZZ_RECORDS
    # validate with the dataset: the same checks, the same counts
    rep2 = validate(src, ds, examples=1)
    assert rep2["samples"] == FUZZ_RECORDS and rep2["by_reason"] == dict(by_reason)
    # the collator (what the trainer counts): every sample once, bad ones by reason
    col = Collator(0)
    seen, bad = 0, Counter()
    for k in range(0, len(items), 7):
        b = col(items[k : k + 7])
        seen += b["num_samples"]
        bad.update(b["bad_counts"])
        assert b["empty"] or b["input_ids"].shape[0] == len(b["indices"])
    assert seen == len(ds) and bad + Counter(src.bad_by_reason) == by_reason
    # the mix is broad: most reasons occur, and some records are good
    assert good > 50 and len(by_reason) >= 9, by_reason
    assert time.perf_counter() - t0 < 20


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


# --- 10. one typed config: types and ranges named by field, nested typos with a did-you-mean, recipe-relative data
@pytest.mark.parametrize(
    "override, needle",
    [
        ("micro_batch_size=four", "micro_batch_size must be a whole number, got 'four'"),
        ("epochs=1.5", "epochs must be a whole number, got 1.5"),
        ("micro_batch_size=0", "micro_batch_size must be a whole number >= 1, got 0"),
        ("betas=[0.9]", "betas must be two numbers"),
        ("betas=[0.9, 1.5]", "betas[1] must be >= 0 and < 1"),
        ("lr=fast", "lr must be a number, got 'fast'"),
        ("lr=-1", "lr must be > 0"),
        ("warmup_ratio=2", "warmup_ratio must be >= 0 and <= 1, got 2.0"),
        ("max_bad_fraction=1.5", "max_bad_fraction must be >= 0 and <= 1"),
        ("progress=maybe", "progress must be true or false"),
        ("scheduler=cosin", "did you mean 'cosine'"),
        ("lora.rank=8", "unknown lora keys ['rank'] (lora.rank) (did you mean 'r'?)"),
        ("lora.r=0", "lora.r must be a whole number >= 1"),
        ("grounding.scal=2", "(did you mean 'scale'?)"),
        ("grounding.scale=big", "grounding.scale must be a number"),
        ("stage=3", "stage must be one of 1, 2, 'ground', got 3"),
        ("micro_batchsize=4", "unknown TrainConfig keys ['micro_batchsize'] (did you mean 'micro_batch_size'?)"),
        (
            "data=[{path: x.jsonl, image: imgs}]",
            "unknown data[0] keys ['image'] (data[0].image) (did you mean 'images'?)",
        ),
        ("data=[{images: imgs}]", "data[0] needs a 'path'"),
        ("report_to=[1]", "report_to must be a list of strings"),
    ],
)
def test_config_mistakes_name_the_field(tmp_path, capsys, override, needle):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("model: toy\nstage: 2\nlr: 1e-3\n")
    assert main(["train", str(recipe), override]) == 2
    line = _one_error_line(capsys)
    assert needle in line and "recipe.yaml" in line, line


def test_config_numbers_from_yaml_and_recipe_relative_data(tmp_path, monkeypatch):
    from cambrian.train.config import ConfigError, TrainConfig

    sub = tmp_path / "recipes"
    sub.mkdir()
    (sub / "r.yaml").write_text(
        "lr: 1e-3\neps: 1e-6\nmax_steps: 4.0\n"
        "data:\n  - {path: d/x.jsonl, images: d/img}\n  - {path: /abs/y.jsonl}\n  - z.jsonl\n"
    )
    monkeypatch.chdir(tmp_path)
    cfg = TrainConfig.load("recipes/r.yaml")
    assert cfg.lr == 1e-3 and cfg.eps == 1e-6 and cfg.max_steps == 4 and isinstance(cfg.max_steps, int)
    assert cfg.data == [
        {"path": "recipes/d/x.jsonl", "images": "recipes/d/img"},
        {"path": "/abs/y.jsonl"},
        {"path": "recipes/z.jsonl"},
    ]
    # data given on the command line stays relative to the current dir
    assert TrainConfig.load("recipes/r.yaml", ["data=[{path: mine.jsonl}]"]).data == [{"path": "mine.jsonl"}]
    # the constructor checks too (the demo and tests build configs in code)
    with pytest.raises(ConfigError, match="micro_batch_size must be a whole number >= 1"):
        TrainConfig(micro_batch_size=0)
    assert TrainConfig(lr="2e-5").lr == 2e-5


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["--param", "count_maxx=5"], "--param: unknown BuildParams keys ['count_maxx'] (did you mean 'count_max'?)"),
        (["--param", "count_zero_prob=2"], "--param: count_zero_prob must be >= 0 and <= 1, got 2.0"),
        (
            ["--param", "max_per_image.Cout=1"],
            "unknown max_per_image keys ['Cout'] (max_per_image.Cout) (did you mean 'Count'?)",
        ),
        (["--param", "count_num_options=[4, five]"], "count_num_options[1] must be a whole number, got 'five'"),
        (["--param", "relation_boxes"], "--param 'relation_boxes' is not key=value"),
    ],
)
def test_cvbench_build_params_go_through_the_typed_loader(tmp_path, capsys, argv, needle):
    assert main(["cvbench", "build", "--scenes", str(tmp_path), "--out", str(tmp_path / "o"), *argv]) == 2
    line = _one_error_line(capsys)
    assert needle in line, line
    assert not (tmp_path / "o").exists()  # refused before any work


@pytest.mark.parametrize(
    "data, needle",
    [
        (
            {"encoders": [{"preset": "tiny-clip", "image_size": "big"}]},
            "encoder preset 'tiny-clip': image_size must be a whole number, got 'big'",
        ),
        ({"connector": {"depht": 2}}, "unknown connector keys ['depht'] (connector.depht) (did you mean 'depth'?)"),
        ({"llm": {"max_length": 0}}, "llm.max_length must be a whole number >= 1, got 0"),
        ({"dtype": "fp8"}, "dtype must be one of 'float32', 'bfloat16', 'float16', got 'fp8'"),
        (
            {"connector": {"query_num_list": [16, -1]}},
            "connector.query_num_list[1] must be a whole number >= 1, got -1",
        ),
    ],
)
def test_model_configs_go_through_the_typed_loader(tmp_path, capsys, data, needle):
    import yaml

    cfg = tmp_path / "model.yaml"
    cfg.write_text(yaml.safe_dump({"name": "m", "encoders": ["tiny-clip"], **data}))
    assert main(["info", str(cfg)]) == 2
    line = _one_error_line(capsys)
    assert needle in line and "model.yaml" in line, line


@pytest.mark.parametrize(
    "option, needle",
    [
        ("textvqa.ocr_token=false", "benchmark 'textvqa': unknown option 'ocr_token' (did you mean 'ocr_tokens'?)"),
        ("textvqa.ocr_tokens=maybe", "benchmark 'textvqa': option ocr_tokens must be true or false, got 'maybe'"),
        ("easyvqa.max_images=0", "benchmark 'easyvqa': option max_images must be a whole number >= 1 or null, got 0"),
        ("pope.anything=1", "benchmark 'pope': unknown option 'anything' (it has no options)"),
        ("textvqa=1", "--option expects BENCH.KEY=VALUE"),
    ],
)
def test_benchmark_options_go_through_the_typed_loader(tmp_path, capsys, option, needle):
    pred = tmp_path / "p.jsonl"
    pred.write_text('{"idx": 0, "prediction": "yes"}\n')
    bench = option.split(".")[0].split("=")[0]
    assert (
        main(
            ["eval", "score", "--bench", bench, "--data", str(tmp_path), "--predictions", str(pred), "--option", option]
        )
        == 2
    )
    line = _one_error_line(capsys)
    assert needle in line, line


def test_an_override_that_is_not_yaml_is_an_error_not_a_string(tmp_path, capsys):
    """``data=[{path: x`` once became a data path named "[{path: x"; now it is one error line naming the override."""
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("model: toy\nstage: 2\n")
    assert main(["train", str(recipe), "data=[{path: x.jsonl"]) == 2
    line = _one_error_line(capsys)
    assert "override data: '[{path: x.jsonl' is not a valid YAML value" in line, line


def test_a_recipe_without_a_model_is_a_config_error(tmp_path):
    from cambrian.train.config import ConfigError, TrainConfig
    from cambrian.train.trainer import Trainer

    cfg = TrainConfig(model=None, data=[{"path": str(tmp_path / "x.jsonl")}], output_dir=str(tmp_path / "o"))
    with pytest.raises(ConfigError, match="no model: set model:"):
        Trainer(cfg)
