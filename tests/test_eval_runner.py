"""Runner: batch == single, resume after a kill (a real SIGKILL and a torn last line), sharding + merge,
vision disabled, run directory layout; one test with the real tiny model when it can be built."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_eval_benchmarks import mme, pope  # fixture builders (public schema)

from cambrian.eval.api import GenerationOptions, GenerationRequest, get_benchmark
from cambrian.eval.predictions import merge_shards, read_predictions, shard_range
from cambrian.eval.runner import run_benchmarks

HERE = Path(__file__).parent


class FakeModel:
    """Deterministic: the answer is a function of the prompt and the image pixels only, so any mix-up of the
    runner's batching / reordering shows up as different answers."""

    name = "fake"

    def __init__(self, delay: float = 0.0, fail_after: int | None = None):
        self.calls, self.batch_sizes, self.images_seen, self.delay, self.fail_after = 0, [], [], delay, fail_after

    @staticmethod
    def answer(req: GenerationRequest) -> str:
        h = hashlib.sha1(req.prompt.encode())
        for im in req.images:
            h.update(im.tobytes())
        d = h.digest()
        return ["Yes", "No", "yes, it is", "no."][d[0] % 4] + f" #{d[1]}"

    def generate(self, requests, options: GenerationOptions):
        assert options.max_new_tokens > 0
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise KeyboardInterrupt("simulated kill")
        self.batch_sizes.append(len(requests))
        self.images_seen += [len(r.images) for r in requests]
        time.sleep(self.delay * len(requests))
        return [self.answer(r) for r in requests]


def _load(tmp_path, builder=mme):
    data, _, _ = builder(tmp_path / "data")
    bench = get_benchmark(builder.__name__)
    return bench, bench.load(str(data))


def test_shard_ranges_are_contiguous_and_cover():
    assert [list(shard_range(10, i, 3)) for i in range(3)] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert [len(shard_range(2, i, 4)) for i in range(4)] == [1, 1, 0, 0]


def test_batch_equals_single(tmp_path):
    bench, samples = _load(tmp_path)
    out = {}
    for bs in (1, 3, 8):
        m = FakeModel()
        run_benchmarks(
            m, [bench], None, tmp_path / f"bs{bs}", batch_size=bs, samples_by_bench={"mme": samples}, progress=False
        )
        out[bs] = read_predictions(tmp_path / f"bs{bs}" / "mme" / "predictions.jsonl")
        assert max(m.batch_sizes) == min(bs, len(samples))
    assert out[1] == out[3] == out[8]
    texts = {bs: (tmp_path / f"bs{bs}" / "mme" / "predictions.jsonl").read_text() for bs in (1, 3, 8)}
    assert texts[1] == texts[3] == texts[8]  # rewritten in sample order once complete
    assert len(out[1]) == len(samples)
    m1 = json.loads((tmp_path / "bs1" / "mme" / "metrics.json").read_text())
    m3 = json.loads((tmp_path / "bs3" / "mme" / "metrics.json").read_text())
    assert m1["metrics"] == m3["metrics"]


def test_resume_after_failure_and_torn_line(tmp_path):
    bench, samples = _load(tmp_path)
    ref = tmp_path / "ref"
    run_benchmarks(FakeModel(), [bench], None, ref, batch_size=2, samples_by_bench={"mme": samples}, progress=False)
    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        run_benchmarks(
            FakeModel(fail_after=2), [bench], None, run, batch_size=2, samples_by_bench={"mme": samples}, progress=False
        )
    pred = run / "mme" / "predictions.jsonl"
    assert len(read_predictions(pred)) == 4
    with open(pred, "a") as f:
        f.write('{"idx": 7, "predic')  # torn write from a kill
    m = FakeModel()
    run_benchmarks(m, [bench], None, run, batch_size=2, samples_by_bench={"mme": samples}, progress=False)
    assert sum(m.batch_sizes) == len(samples) - 4  # only the missing ones were generated
    assert read_predictions(pred) == read_predictions(ref / "mme" / "predictions.jsonl")
    assert all(json.loads(line) for line in pred.read_text().splitlines())
    run_json = json.loads((run / "run.json").read_text())
    assert run_json["benchmarks"]["mme"]["resumed"] == 4


KILL_SCRIPT = r"""
import sys, time
sys.path.insert(0, {tests!r})
from test_eval_runner import FakeModel, _load
from cambrian.eval.runner import run_benchmarks
from pathlib import Path
tmp = Path({tmp!r})
bench, samples = _load(tmp)
run_benchmarks(FakeModel(delay=0.4), [bench], None, tmp / "run", batch_size=1, samples_by_bench={{"mme": samples}},
               progress=False)
"""


def test_resume_after_sigkill(tmp_path):
    script = tmp_path / "kill_me.py"
    script.write_text(KILL_SCRIPT.format(tests=str(HERE), tmp=str(tmp_path)))
    env = {**os.environ, "PYTHONPATH": str(HERE.parent)}
    proc = subprocess.Popen([sys.executable, str(script)], env=env, cwd=str(HERE.parent))
    pred = tmp_path / "run" / "mme" / "predictions.jsonl"
    deadline = time.time() + 60
    try:
        while time.time() < deadline:
            if pred.exists() and len(pred.read_text().splitlines()) >= 2:
                break
            if proc.poll() is not None:
                pytest.fail("the child finished before it could be killed")
            time.sleep(0.05)
        else:
            pytest.fail("no predictions written within 60 s")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    n_done = len(read_predictions(pred))
    bench, samples = _load(tmp_path)
    assert 2 <= n_done < len(samples)
    assert not (tmp_path / "run" / "mme" / "metrics.json").exists()
    m = FakeModel()
    run_benchmarks(m, [bench], None, tmp_path / "run", batch_size=4, samples_by_bench={"mme": samples}, progress=False)
    assert sum(m.batch_sizes) == len(samples) - n_done
    got = read_predictions(pred)
    assert got == {s.idx: FakeModel.answer(GenerationRequest(s.prompt, s.load_images())) for s in samples}
    assert (tmp_path / "run" / "mme" / "metrics.json").exists()


def test_shards_merge_to_the_unsharded_run(tmp_path):
    bench, samples = _load(tmp_path)
    run_benchmarks(
        FakeModel(), [bench], None, tmp_path / "one", batch_size=2, samples_by_bench={"mme": samples}, progress=False
    )
    run = tmp_path / "sharded"
    for i in (2, 1):  # non-zero shards first: they only write their file and a .done marker
        assert run_benchmarks(
            FakeModel(), [bench], None, run, shard=(i, 3), samples_by_bench={"mme": samples}, progress=False
        ) == {"mme": None}
    assert not (run / "mme" / "metrics.json").exists()
    res = run_benchmarks(
        FakeModel(), [bench], None, run, shard=(0, 3), samples_by_bench={"mme": samples}, progress=False
    )
    one = tmp_path / "one" / "mme" / "predictions.jsonl"
    merged = run / "mme" / "predictions.jsonl"
    assert merged.read_text() == one.read_text()  # same lines, same (sample) order
    assert res["mme"] == json.loads((tmp_path / "one" / "mme" / "metrics.json").read_text())["metrics"]
    assert sorted(p.name for p in (run / "mme").glob("predictions.shard*.jsonl")) == [
        f"predictions.shard{i}of3.jsonl" for i in range(3)
    ]
    # merge on its own (the `cambrian eval merge` path) is idempotent
    merged.unlink()
    merge_shards(run / "mme", samples)
    assert merged.read_text() == one.read_text()


def test_torchrun_env_selects_the_shard(tmp_path, monkeypatch):
    bench, samples = _load(tmp_path, pope)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    run_benchmarks(FakeModel(), [bench], None, tmp_path / "r", samples_by_bench={"pope": samples}, progress=False)
    got = read_predictions(tmp_path / "r" / "pope" / "predictions.shard1of2.jsonl")
    assert list(got) == [s.idx for s in samples[2:]]


def test_vision_disabled_sends_no_images_and_records_setting(tmp_path):
    bench, samples = _load(tmp_path, pope)
    m = FakeModel()
    run_benchmarks(
        m,
        [bench],
        None,
        tmp_path / "off",
        vision="disabled",
        batch_size=2,
        samples_by_bench={"pope": samples},
        progress=False,
    )
    assert m.images_seen == [0] * len(samples)
    info = json.loads((tmp_path / "off" / "run.json").read_text())
    assert info["vision"] == "disabled" and info["model"] == "fake" and info["batch_size"] == 2
    assert info["benchmarks"]["pope"]["n"] == len(samples)
    with pytest.raises(ValueError):
        run_benchmarks(
            m, [bench], None, tmp_path / "x", vision="off", samples_by_bench={"pope": samples}, progress=False
        )


def test_real_tiny_model_batch_equals_single(tmp_path):
    from cambrian.eval.adapters import CambrianEvalModel
    from cambrian.models.cambrian_model import CambrianModel
    from cambrian.presets.models import resolve_model_config

    model = CambrianModel.from_config(resolve_model_config("tiny"), load_weights=False).eval()
    bench, samples = _load(tmp_path, pope)
    em = CambrianEvalModel(model, name="tiny")
    outs = {}
    for bs in (1, 4):
        run_benchmarks(
            em,
            [bench],
            None,
            tmp_path / f"t{bs}",
            batch_size=bs,
            max_new_tokens=4,
            samples_by_bench={"pope": samples},
            progress=False,
        )
        outs[bs] = read_predictions(tmp_path / f"t{bs}" / "pope" / "predictions.jsonl")
    assert outs[1] == outs[4]
