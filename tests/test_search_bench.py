"""The V*Bench loader on a fixture in the released layout, the synth-vstar builder, the ``other`` image condition, and
guided search through the evaluation harness (``SearchEvalModel``: predictions, likelihood, logs, pictures, the
search's own Top-1) and the command line (``eval run --search``, ``chat --search``)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers import make_vlm, set_context_length
from PIL import Image, ImageDraw

from cambrian.eval.api import EvalSample, GenerationOptions, GenerationRequest, get_benchmark
from cambrian.eval.benchmarks.vstar import option_order

FIXTURE = Path(__file__).parent / "fixtures" / "vstar_bench"


# ---- V*Bench -----------------------------------------------------------------------------------------------------
def test_vstar_loader_reads_the_released_layout():
    bench = get_benchmark("vstar")
    samples = bench.load(str(FIXTURE))
    assert [s.idx for s in samples] == [
        "direct_attributes/sa_101",
        "direct_attributes/sa_102",
        "relative_position/sa_201",
    ]
    s = samples[0]
    assert [x.meta["category"] for x in samples] == ["attribute", "attribute", "spatial"]
    # options shown in a per-question order; the answer letter points at the stored first option
    order = option_order("direct_attributes/sa_101", 4)
    assert s.meta["options"] == [["red", "blue", "green", "white"][k] for k in order]
    assert s.meta["options"][ord(s.answer) - ord("a")] == "red"
    assert s.prompt.startswith("What is the color of the cup?\n(A) ")
    assert s.prompt.endswith("Answer with the option's letter from the given choices directly.")
    assert s.meta["targets"] == [{"name": "cup", "box": [250.0, 30.0, 262.0, 40.0]}]
    assert s.load_images()[0].size == (320, 240)
    assert samples[1].load_images()[0].size == (240, 320)  # a .png beside its JSON
    assert [t["name"] for t in samples[2].meta["targets"]] == ["dog", "motorcycle"]
    mc = bench.mc_options(s)
    assert mc.texts == tuple(s.meta["options"]) and mc.letters == ("A", "B", "C", "D")


def test_vstar_scorer_attribute_spatial_overall():
    bench = get_benchmark("vstar")
    samples = bench.load(str(FIXTURE))
    right = {s.idx: f"({s.answer.upper()})" for s in samples}
    m = bench.score(samples, right)
    assert (m["accuracy"], m["attribute"], m["spatial"], m["n"]) == (1.0, 1.0, 1.0, 3)
    wrong = dict(right)
    wrong["relative_position/sa_201"] = "Z"
    m = bench.score(samples, wrong)
    assert m["accuracy"] == pytest.approx(2 / 3) and m["attribute"] == 1.0 and m["spatial"] == 0.0
    assert m["chance"] == pytest.approx((0.25 + 0.25 + 0.5) / 3)
    m = bench.score(samples, {})
    assert m["accuracy"] == 0.0 and m["missing"] == 3


def test_vstar_loader_errors_name_the_file(tmp_path):
    root = tmp_path / "vstar"
    shutil.copytree(FIXTURE, root)
    (root / "direct_attributes" / "sa_101.jpg").unlink()
    with pytest.raises(ValueError, match=r"sa_101\.json: no image"):
        get_benchmark("vstar").load(str(root))
    shutil.rmtree(root)
    shutil.copytree(FIXTURE, root)
    ann = json.loads((root / "relative_position" / "sa_201.json").read_text())
    del ann["options"]
    (root / "relative_position" / "sa_201.json").write_text(json.dumps(ann))
    with pytest.raises(ValueError, match=r"sa_201\.json lacks \['options'\]"):
        get_benchmark("vstar").load(str(root))
    with pytest.raises(FileNotFoundError, match="neither direct_attributes"):
        get_benchmark("vstar").load(str(tmp_path))


# ---- synth-vstar -------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def synth_vstar(tmp_path_factory):
    import os

    from cambrian.eval.benchmarks.synth_vstar import build_synth_vstar

    root = tmp_path_factory.mktemp("sv")
    old = os.environ.get("CAMBRIAN_CACHE")
    os.environ["CAMBRIAN_CACHE"] = str(root / "cache")
    try:
        summary = build_synth_vstar(root / "bench", 4, size=256, progress=False)
        again = build_synth_vstar(root / "bench2", 4, size=256, progress=False)  # from the cache
    finally:
        if old is None:
            del os.environ["CAMBRIAN_CACHE"]
        else:
            os.environ["CAMBRIAN_CACHE"] = old
    assert summary == again
    return root / "bench", summary


def test_synth_vstar_questions_are_answerable_from_their_boxes(synth_vstar):
    root, summary = synth_vstar
    rows = [json.loads(line) for line in (root / "questions.jsonl").read_text().splitlines()]
    assert summary["n"] == len(rows) and summary["per_type"]["color"] == 2 and summary["per_type"]["shape"] == 2
    for r in rows:
        assert r["answer"] in r["choices"] and (root / r["image"]).is_file()
        if r["type"] == "spatial":
            (a, b) = r["targets"]
            ca, cb = (a["box"][0] + a["box"][2]) / 2, (b["box"][0] + b["box"][2]) / 2
            assert r["answer"] == ("left" if ca < cb else "right")
            assert r["question"] == f"Is the {a['name']} on the left or right side of the {b['name']}?"
        elif r["type"] == "color":
            assert r["question"] == f"What color is the {r['targets'][0]['name']}?"
        else:
            assert r["question"] == f"What shape is the {r['targets'][0]['name']}?"
    # the target is small: a few percent of the image side
    sizes = [t["box"][2] - t["box"][0] for r in rows if r["type"] != "spatial" for t in r["targets"]]
    assert max(sizes) < 0.1 * 256


def test_synth_vstar_benchmark_scores_each_type(synth_vstar):
    root, _ = synth_vstar
    bench = get_benchmark("synth-vstar")
    samples = bench.load(str(root))
    m = bench.score(samples, {s.idx: s.answer for s in samples})
    assert m["accuracy"] == 1.0 and m["attribute"] == 1.0
    assert set(m["per_type"]) <= {"color", "shape", "spatial"}
    assert bench.mc_options(samples[0]).texts == tuple(samples[0].meta["choices"])


# ---- conditions and the harness ---------------------------------------------------------------------------------
def _samples(n=4):
    out = []
    for i in range(n):
        im = Image.new("RGB", (256, 256), (128, 128, 128))
        x = 30 + 50 * i
        ImageDraw.Draw(im).rectangle([x, 200, x + 15, 215], fill=(220, 20, 20))
        out.append(
            EvalSample(
                idx=i,
                prompt="What color is the cube?\nAnswer the question using a single word or phrase.",
                images=[im],
                answer="red",
                meta={
                    "category": "color",
                    "choices": ["red", "blue"],
                    "scene": f"s{i}",
                    "targets": [{"name": "cube", "box": [x, 200, x + 16, 216]}],
                },
            )
        )
    return out


def test_other_condition_feeds_another_scenes_image():
    from cambrian.eval.runner import run_benchmarks

    seen = []

    class Recording:
        name = "rec"

        def generate(self, requests, options):
            seen.extend((r.origin, r.images[0]) for r in requests)
            return ["red"] * len(requests)

    samples = _samples()
    bench = get_benchmark("synth-attribute")
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        run_benchmarks(Recording(), [bench], None, d, vision="other", samples_by_bench={bench.name: samples})
    assert sorted(o for o, _ in seen) == [("synth-attribute", i) for i in range(4)]
    own = {s.idx: s.images[0] for s in samples}
    assert all(im is not own[idx] for (_, idx), im in seen)


class _Detector:
    def __call__(self, crop, target):
        arr = np.asarray(crop.convert("RGB"), dtype=int)
        ys, xs = np.nonzero((arr[..., 0] > 150) & (arr[..., 1] < 100))
        if not len(xs) or (xs.max() - xs.min() + 1) < 0.1 * crop.width:
            return []
        return [((xs.min(), ys.min(), xs.max() + 1, ys.max() + 1), 0.9)]


@pytest.mark.parametrize("kind", ["toy", "cambrian"])
def test_search_eval_model_answers_logs_and_scores_the_search(kind, tmp_path):
    from cambrian.eval.likelihood import run_likelihood
    from cambrian.search.eval_model import SearchEvalModel, search_metrics, truth_of
    from cambrian.search.localise import DetectorLocaliser
    from cambrian.search.settings import SearchSettings

    model = make_vlm(kind).eval()
    set_context_length(model, 1024)
    samples = _samples()
    bench = get_benchmark("synth-attribute")
    truth = {bench.name: truth_of(samples)}
    sm = SearchEvalModel(
        model,
        SearchSettings(trigger="always", min_size=64),
        name="m +search",
        log_dir=tmp_path / "search",
        truth=truth,
        png_items=2,
        localiser=DetectorLocaliser(_Detector()),
    )
    results = run_likelihood(sm, [bench], None, tmp_path, samples_by_bench={bench.name: samples}, progress=False)
    assert results[bench.name]["likelihood"]["n"] == 4
    log = [json.loads(line) for line in (tmp_path / "search" / bench.name / "search.jsonl").read_text().splitlines()]
    assert [r["idx"] for r in log] == [0, 1, 2, 3]
    assert all(r["searched"] and r["searches"][0]["found"] for r in log)
    assert sorted(p.name for p in (tmp_path / "search" / bench.name).glob("*.png")) == ["0.png", "1.png"]
    m = search_metrics(tmp_path / "search", bench.name, truth[bench.name])
    assert m["top1"] == 1.0 and m["searched"] == 4 and m["mean_path_length"] >= 1
    # generation through the same wrapper; a request without an image is answered plainly
    outs = sm.generate(
        [GenerationRequest(samples[0].prompt, [samples[0].images[0]], origin=("x", 0)), GenerationRequest("Hi?", [])],
        GenerationOptions(max_new_tokens=3),
    )
    assert len(outs) == 2 and all(isinstance(o, str) for o in outs)


def test_search_metrics_by_hand(tmp_path):
    from cambrian.search.eval_model import search_metrics

    d = tmp_path / "b"
    d.mkdir()
    rows = [
        {"idx": 0, "searches": [{"target": "cube", "found": True, "box": [0, 0, 10, 10], "path_length": 3}]},
        {"idx": 1, "searches": [{"target": "Cube", "found": True, "box": [0, 0, 10, 10], "path_length": 5}]},
        {"idx": 2, "searches": []},
    ]
    (d / "search.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    truth = {0: [("cube", (0, 0, 10, 10))], 1: [("cube", (5, 0, 15, 10))], 2: [("cube", (0, 0, 10, 10))]}
    m = search_metrics(tmp_path, "b", truth)
    assert m["top1"] == pytest.approx(1 / 3) and m["top1_searched"] == pytest.approx(1 / 2)
    assert m["mean_path_length"] == 3 and m["mean_iou_found"] == pytest.approx((1 + 1 / 3) / 2)
    assert (d / "search_metrics.json").is_file()


# ---- the command line --------------------------------------------------------------------------------------------
def test_eval_run_search_on_the_command_line(synth_vstar, tmp_path, capsys):
    from cambrian.cli.main import main

    root, _ = synth_vstar
    data = tmp_path / "data"
    data.mkdir()
    (data / "synth-vstar").symlink_to(root)
    out = tmp_path / "run"
    args = ["eval", "run", "--model", "tiny", "--bench", "synth-vstar", "--data-root", str(data), "--out", str(out)]
    assert main([*args, "--mc", "likelihood", "--search", "--search-set", "trigger=always", "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "search Top-1 (IoU > 0.5)" in text and "synth-vstar: accuracy_likelihood" in text
    assert (out / "search" / "synth-vstar" / "search.jsonl").is_file()
    assert json.loads((out / "search" / "synth-vstar" / "search_metrics.json").read_text())["questions"] > 0
    assert json.loads((out / "run.json").read_text())["model"] == "tiny +search"
    assert main(["eval", "report", str(out), "--out", str(tmp_path / "report"), "--no-plots"]) == 0
    report = (tmp_path / "report" / "table.md").read_text()
    assert "Guided search" in report and "| tiny +search | synth-vstar |" in report
    assert main([*args[:-1], str(tmp_path / "bad"), "--search", "--search-set", "crop_scal=2"]) == 2
    assert "did you mean 'crop_scale'" in capsys.readouterr().err


def test_chat_search_prints_the_search_and_draws_it(tmp_path, capsys):
    from cambrian.cli.main import main

    img = tmp_path / "scene.png"
    im = Image.new("RGB", (300, 300), (128, 128, 128))
    ImageDraw.Draw(im).rectangle([250, 20, 270, 40], fill=(220, 20, 20))
    im.save(img)
    png = tmp_path / "path.png"
    argv = ["chat", "--model", "tiny", "--image", str(img), "--prompt", "What color is the cube?", "--search"]
    assert main([*argv, "--search-png", str(png), "--max-new-tokens", "3"]) == 0
    err = capsys.readouterr().err
    assert "search: cube:" in err and png.is_file()
    assert main(["chat", "--model", "tiny", "--prompt", "Hi", "--search"]) == 2
    assert "--search needs exactly one --image" in capsys.readouterr().err


# ---- the server ----------------------------------------------------------------------------------------------------
def test_server_search_option(tmp_path):
    pytest.importorskip("fastapi")
    import urllib.error
    import urllib.request

    from helpers import sensitive_tiny_model

    from cambrian.eval.adapters import image_to_data_url
    from cambrian.serve.server import ServerThread
    from cambrian.serve.settings import ServeSettings

    im = Image.new("RGB", (96, 96), (128, 128, 128))
    ImageDraw.Draw(im).rectangle([70, 10, 80, 20], fill=(220, 20, 20))
    url = image_to_data_url(im)

    def body(search, images=1, stream=False):
        content = [{"type": "image_url", "image_url": {"url": url}}] * images
        content.append({"type": "text", "text": "What color is the cube?"})
        return {
            "model": "tiny",
            "messages": [{"role": "user", "content": content}],
            "max_tokens": 4,
            "temperature": 0,
            "search": search,
            "stream": stream,
        }

    settings = ServeSettings(model_name="tiny", max_tokens_cap=16, max_image_pixels=200 * 200)
    with ServerThread(sensitive_tiny_model(), settings) as srv:

        def post(data):
            req = urllib.request.Request(
                srv.base_url + "/chat/completions",
                data=json.dumps(data).encode(),
                headers={"Content-Type": "application/json"},
            )
            try:
                with urllib.request.urlopen(req, timeout=60) as r:
                    return r.status, r.read().decode()
            except urllib.error.HTTPError as e:
                return e.code, e.read().decode()

        status, text = post(body({"min_size": 32}))
        assert status == 200
        out = json.loads(text)
        assert out["search"]["targets"] == ["cube"] and len(out["search"]["searches"]) == 1
        assert out["search"]["searches"][0]["path"][0]["patch"] == [0, 0, 96, 96]
        assert isinstance(out["choices"][0]["message"]["content"], str)
        status, text = post(body(True, stream=True))
        first = json.loads(text.split("\n\n")[0][len("data: ") :])
        assert status == 200 and first["search"]["targets"] == ["cube"]
        status, text = post(body(True, images=2))
        assert status == 400 and "exactly one image" in text
        status, text = post(body({"crop_scal": 2}))
        assert status == 400 and "crop_scale" in text
        status, text = post(body({"localiser": "ask"}))
        assert status == 400 and "not served" in text
        status, text = post(body(False))
        assert status == 200 and "search" not in json.loads(text)
