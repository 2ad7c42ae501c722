"""Synthetic scenes: determinism, exact masks/visibility rule, 3D boxes vs masks and depth, exports, CV-Bench-Synth."""

import json
import math

import numpy as np
import pytest

pytest.importorskip("pybullet")

from cambrian.data.scenes.annotations import rle_decode, rle_encode
from cambrian.data.scenes.engine import (
    FAR,
    NEAR,
    Camera,
    ObjectSpec,
    SceneConfig,
    SceneRenderer,
    project,
    scene_fingerprint,
    scene_rng,
)

SMALL = SceneConfig(width=128, height=128)


@pytest.fixture(scope="module")
def renderer():
    r = SceneRenderer(SMALL)
    yield r
    r.close()


@pytest.fixture(scope="module")
def scenes(renderer):
    return [renderer.render(scene_rng(0, "test", i)) for i in range(4)]


def test_rle_roundtrip_hand_made():
    m = np.array([[0, 1, 1], [0, 1, 0]], dtype=bool)
    # column-major: col0 = 0,0 ; col1 = 1,1 ; col2 = 1,0 -> runs 0:2, 1:3, 0:1
    assert rle_encode(m) == {"counts": [2, 3, 1], "size": [2, 3]}
    assert rle_encode(np.ones((1, 2), bool))["counts"] == [0, 2]
    assert (rle_decode(rle_encode(m)) == m).all()


def test_render_is_deterministic(renderer, scenes):
    again = renderer.render(scene_rng(0, "test", 1))
    assert np.array_equal(again["rgb"], scenes[1]["rgb"]) and np.array_equal(again["mask"], scenes[1]["mask"])
    other = renderer.render(scene_rng(0, "train", 1))
    assert not np.array_equal(other["rgb"], scenes[1]["rgb"])


def test_every_counted_object_is_visible_in_its_mask(scenes):
    for sc in scenes:
        ids = set(np.unique(sc["mask"]).tolist()) - {0}
        assert ids == {o["instance_id"] for o in sc["objects"]}
        for o in sc["objects"]:
            sel = sc["mask"] == o["instance_id"]
            assert sel.sum() == o["pixels"] >= SMALL.min_visible_pixels
            ys, xs = np.nonzero(sel)
            assert o["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
            assert o["visible_fraction"] is None or o["visible_fraction"] >= SMALL.min_visible_fraction
            # the 3D box projects around the mask (within a pixel), and the depth under the mask lies inside it
            K = np.asarray(sc["camera"]["K"])
            corners = np.asarray(o["box3d"]["bbox3D_cam"])
            uv = project(corners, K)
            x, y, w, h = o["bbox"]
            assert uv[:, 0].min() - 1.5 <= x and x + w <= uv[:, 0].max() + 1.5
            assert uv[:, 1].min() - 1.5 <= y and y + h <= uv[:, 1].max() + 1.5
            d = sc["depth"][sel]
            assert corners[:, 2].min() - 0.05 <= d.min() and d.max() <= corners[:, 2].max() + 0.05
            # category is what is drawn: the mean colour of the mask is closest to the object's own colour
            from cambrian.data.scenes.engine import COLORS

            mean = sc["rgb"][sel].mean(axis=0)
            hue = lambda c: np.asarray(c, float) / (np.linalg.norm(c) + 1e-6)
            best = max(COLORS, key=lambda n: float(hue(COLORS[n]) @ hue(mean)))
            assert best == o["color"] or o["color"] == "gray"


def _camera(eye, target, fov=30.0, size=128):
    import pybullet as p

    return Camera(
        eye=eye,
        target=target,
        fov=fov,
        width=size,
        height=size,
        view=list(p.computeViewMatrix(eye, target, [0, 0, 1])),
        proj=list(p.computeProjectionMatrixFOV(fov, 1.0, NEAR, FAR)),
    )


def test_visibility_rule_hidden_and_marginal(renderer):
    cam = _camera([-8.0, 0.0, 0.4], [0.0, 0.0, 0.4])
    big = ObjectSpec("cube", "red", "large", 0.0, 0.0, 0.0)
    # a small sphere right behind the big cube: entirely hidden -> not annotated, scene accepted
    objs = [big, ObjectSpec("sphere", "blue", "small", 1.5, 0.0, 0.0)]
    renderer._build(objs)
    renderer._rgba = {
        b: list(renderer.p.getVisualShapeData(b, physicsClientId=renderer.client)[0][7])
        for b in renderer._bodies + [renderer.plane]
    }
    rej = {"marginal_object": 0, "out_of_frame": 0, "no_visible_object": 0}
    res = renderer._try_camera(objs, cam, rej)
    assert res is not None and [o["category"] for o in res["objects"]] == ["red cube"]
    assert [o["category"] for o in res["hidden"]] == ["blue sphere"]
    # the same sphere moved sideways so that only a sliver shows: ambiguous -> camera rejected
    objs = [big, ObjectSpec("sphere", "blue", "small", 1.5, 0.42, 0.0)]
    renderer._build(objs)
    renderer._rgba = {
        b: list(renderer.p.getVisualShapeData(b, physicsClientId=renderer.client)[0][7])
        for b in renderer._bodies + [renderer.plane]
    }
    res = renderer._try_camera(objs, cam, rej)
    assert res is None and rej["marginal_object"] == 1
    # well apart: both visible
    objs = [big, ObjectSpec("sphere", "blue", "small", 1.5, 1.2, 0.0)]
    renderer._build(objs)
    renderer._rgba = {
        b: list(renderer.p.getVisualShapeData(b, physicsClientId=renderer.client)[0][7])
        for b in renderer._bodies + [renderer.plane]
    }
    res = renderer._try_camera(objs, cam, rej)
    assert res is not None and len(res["objects"]) == 2 and not res["hidden"]


def test_intrinsics_and_camera_frame(renderer):
    cam = _camera([-6.0, 0.0, 3.0], [0.0, 0.0, 0.0], fov=40.0)
    K = cam.K()
    assert K[0, 0] == pytest.approx(64 / math.tan(math.radians(20)))
    R, t = cam.world_to_cam()
    # the look-at target is on the optical axis, in front of the camera
    c = R @ np.zeros(3) + t
    assert c[0] == pytest.approx(0, abs=1e-6) and c[1] == pytest.approx(0, abs=1e-6)
    assert c[2] == pytest.approx(math.hypot(6, 3), rel=1e-6)
    assert project(c[None], K)[0] == pytest.approx([64, 64])
    # a point above the target appears higher in the image (smaller v): y axis points down
    up = R @ np.array([0, 0, 1.0]) + t
    assert project(up[None], K)[0][1] < 64


def test_render_split_exports_and_cvbench_synth(tmp_path):
    from cambrian.cvbench.builder import build_cvbench_synth
    from cambrian.cvbench.loader import load_cvbench
    from cambrian.cvbench.training_data import make_llava_data
    from cambrian.data.scenes import assert_disjoint, render_scenes
    from cambrian.data.scenes.render import load_depth, load_mask, read_scenes
    from cambrian.eval.api import get_benchmark

    cfg = {"width": 128, "height": 128}
    s = render_scenes(tmp_path / "test", 6, seed=5, split="test", config=cfg, progress=False)
    render_scenes(tmp_path / "train", 4, seed=5, split="train", config=cfg, progress=False)
    assert s["n"] == 6 and s["scenes_per_s"] > 0
    assert_disjoint(tmp_path / "train", tmp_path / "test")
    with pytest.raises(ValueError):
        assert_disjoint(tmp_path / "test", tmp_path / "test")

    recs = read_scenes(tmp_path / "test")
    coco = json.loads((tmp_path / "test" / "annotations" / "coco.json").read_text())
    omni = json.loads((tmp_path / "test" / "annotations" / "omni3d.json").read_text())
    assert {c["shape"] for c in coco["categories"]} == {"cube", "sphere", "cylinder"}  # only rendered shapes
    assert len(coco["annotations"]) == len(omni["annotations"]) == sum(len(r["objects"]) for r in recs)
    r0 = recs[0]
    mask = load_mask(tmp_path / "test", r0)
    a0 = coco["annotations"][0]
    assert (rle_decode(a0["segmentation"]) == (mask == 1)).all() and a0["area"] == (mask == 1).sum()
    depth = load_depth(tmp_path / "test", r0)
    assert depth.shape == (128, 128) and 1.0 < float(depth[mask == 1].mean()) < 20.0
    assert scene_fingerprint(r0) == r0["fingerprint"]
    o0 = omni["annotations"][0]
    assert np.asarray(o0["bbox3D_cam"]).shape == (8, 3) and len(omni["images"][0]["K"]) == 3

    rep = build_cvbench_synth(tmp_path / "test", tmp_path / "cvb", seed=0)
    assert set(rep["per_source"]) <= {"Synth2D", "Synth3D"} and rep["n"] > 0
    rows = load_cvbench(tmp_path / "cvb")
    assert all(r["filename"].startswith(("img/2D/", "img/3D/")) for r in rows)
    bench = get_benchmark("cvbench-synth")
    samples = bench.load(str(tmp_path / "cvb"))
    gold = {smp.idx: smp.answer for smp in samples}
    sc = bench.score(samples, gold)
    assert sc["overall"] == 1.0 and sc["parse_failure_rate"] == 0.0
    assert "accuracy_2d_synth2d" in sc

    # count questions agree with the annotations (colour+shape or shape)
    for r in rows:
        if r["task"] != "Count":
            continue
        rec = next(x for x in recs if x["image"].endswith(r["source_filename"]))
        cls = r["target_class"]
        truth = sum(1 for o in rec["objects"] if cls in (o["category"], o["shape"]))
        assert r["choices"][ord(r["answer"][1]) - 65] == str(truth)

    st1 = make_llava_data(tmp_path / "train", tmp_path / "s1.jsonl", stage=1)
    st2 = make_llava_data(tmp_path / "train", tmp_path / "s2.jsonl", stage=2)
    assert st1["records"] == 4 and st2["records"] >= 4
    for line in (tmp_path / "s2.jsonl").read_text().splitlines():
        rec = json.loads(line)
        assert (tmp_path / "train" / rec["image"]).is_file()
        conv = rec["conversations"]
        assert [t["from"] for t in conv] == ["human", "gpt"] * (len(conv) // 2)
        assert conv[0]["value"].startswith("<image>\n") and sum(t["value"].count("<image>") for t in conv) == 1
        for h, g in zip(conv[::2], conv[1::2]):
            if "Answer with the option's letter" in h["value"]:
                assert g["value"] in "ABCDEF" and len(g["value"]) == 1
            if "single word or phrase" in h["value"]:
                assert len(g["value"].split()) <= 3
