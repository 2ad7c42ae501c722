"""`cambrian data mmvp-pairs`: the pair miner on constructed embeddings and on constructed images with two
deterministic encoders whose answers are known by hand; percentile thresholds; the scene variant pool."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch.nn.functional as F
from PIL import Image

from cambrian.config import EncoderConfig
from cambrian.data.mmvp import (
    center,
    contact_sheet,
    list_images,
    mine_mmvp_pairs,
    mine_pairs,
    pair_cosine_quantiles,
    resolve_threshold,
)
from cambrian.models.encoders import ENCODER_BACKENDS, ENCODER_PRESETS, VisionEncoder, build_encoder


# ---- two deterministic encoders: A sees only the colour of the ink, B sees where it is ------------------------
class InkColour(VisionEncoder):
    """Mean ink (1 - pixel) per channel: blind to position."""

    def _forward_grid(self, x):
        return (1 - x).mean(dim=(2, 3))[:, None, None, :]


class InkLayout(VisionEncoder):
    """Ink averaged in 8x8-pixel cells, all cells as channels: sees position."""

    def _forward_grid(self, x):
        return F.avg_pool2d(1 - x, 8).flatten(1)[:, None, None, :]


def _cfg(name, backend, channels, image_size=None):
    return EncoderConfig(
        id=name,
        backend=backend,
        image_size=image_size or 32,
        hidden_size=channels,
        native_grid=1,
        image_mean=(0.0, 0.0, 0.0),
        image_std=(1.0, 1.0, 1.0),
    )


@pytest.fixture(autouse=True, scope="module")
def _test_towers_registered():
    """The two test towers as registered backends and presets, for this module only."""
    added = [
        (ENCODER_BACKENDS, "test_ink_colour", lambda cfg, load_weights=True: InkColour(cfg)),
        (ENCODER_BACKENDS, "test_ink_layout", lambda cfg, load_weights=True: InkLayout(cfg)),
        (
            ENCODER_PRESETS,
            "test-ink-colour",
            lambda image_size=None: _cfg("test-ink-colour", "test_ink_colour", 3, image_size),
        ),
        (
            ENCODER_PRESETS,
            "test-ink-layout",
            lambda image_size=None: _cfg("test-ink-layout", "test_ink_layout", 48, image_size),
        ),
    ]
    for reg, name, obj in added:
        reg.register(name, obj, overwrite=True)
    yield
    for reg, name, _ in added:
        reg._items.pop(name, None)  # leave the shared registries as they were


RED, BLUE = (255, 0, 0), (0, 0, 255)
# (colour, x0): 8x8 squares in pixel rows 8..16 of a white 32x32 image
POOL = [(RED, 0), (RED, 24), (BLUE, 0), (BLUE, 24), (RED, 0), (RED, 4)]


@pytest.fixture
def pool(tmp_path):
    d = tmp_path / "pool"
    d.mkdir()
    for k, (c, x0) in enumerate(POOL):
        im = Image.new("RGB", (32, 32), (255, 255, 255))
        im.paste(c, (x0, 8, x0 + 8, 16))
        im.save(d / f"{k}.png")
    return d


def test_mine_pairs_by_hand():
    a = np.array([[1, 0], [1, 0], [0, 1], [0.6, 0.8]], dtype=np.float32)
    b = np.array([[1, 0], [0, 1], [0, 1], [0.8, 0.6]], dtype=np.float32)
    # cos_A: (0,1)=1, (0,3)=.6, (1,3)=.6, (2,3)=.8, others 0; cos_B: (0,1)=0, (2,3)=.6
    pairs, c = mine_pairs(a, b, tau_a=0.7, tau_b=0.7, top_k=10)
    assert [(p.i, p.j) for p in pairs] == [(0, 1), (2, 3)]
    assert pairs[0].margin == pytest.approx(1.0) and pairs[1].margin == pytest.approx(0.2)
    assert c == {"images": 4, "usable_images": 4, "pairs_total": 6, "a_similar": 2, "selected": 2}
    pairs, c = mine_pairs(a, b, tau_a=0.7, tau_b=0.5, top_k=10)
    assert [(p.i, p.j) for p in pairs] == [(0, 1)] and c["selected"] == 1
    # a row that could not be embedded (NaN) takes part in no pair
    a2 = np.vstack([a, np.full((1, 2), np.nan, dtype=np.float32)])
    b2 = np.vstack([b, np.full((1, 2), np.nan, dtype=np.float32)])
    assert mine_pairs(a2, b2, 0.7, 0.7)[1]["usable_images"] == 4


def test_blocks_and_top_k_match_the_full_search():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(70, 8)).astype(np.float32)
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    b = rng.normal(size=(70, 8)).astype(np.float32)
    b /= np.linalg.norm(b, axis=1, keepdims=True)
    full, c1 = mine_pairs(a, b, 0.2, 0.1, top_k=None, block=1000)
    top, c2 = mine_pairs(a, b, 0.2, 0.1, top_k=7, block=9)
    assert c1 == c2 and len(full) == c1["selected"] > 7
    assert [(p.i, p.j) for p in top] == [(p.i, p.j) for p in full[:7]]
    ca, cb = a @ a.T, b @ b.T
    iu = np.triu_indices(70, 1)
    assert c1["a_similar"] == int((ca[iu] >= 0.2).sum()) and c1["selected"] == int(
        ((ca[iu] >= 0.2) & (cb[iu] <= 0.1)).sum()
    )


def test_thresholds_and_quantiles():
    e = np.eye(3, dtype=np.float32)
    e = np.vstack([e, [[1, 0, 0]]])  # pair cosines: five 0s and one 1
    q = pair_cosine_quantiles(e, qs=(0.5, 0.9))
    assert q == {"p50": 0.0, "p90": pytest.approx(0.5)}
    assert resolve_threshold("p90", e) == pytest.approx(0.5) and resolve_threshold("0.8", e) == 0.8
    for bad in ("p101", "high", 1.5):
        with pytest.raises(ValueError):
            resolve_threshold(bad, e)


def test_center_removes_the_common_direction():
    e = np.array([[1, 0], [0.6, 0.8], [np.nan, np.nan]], dtype=np.float32)
    c = center(e)
    # mean (0.8, 0.4): the two rows become (0.2, -0.4) and (-0.2, 0.4), normalised: exactly opposite
    assert float(c[0] @ c[1]) == pytest.approx(-1.0) and np.isnan(c[2]).all()
    assert float(e[0] @ e[1]) == pytest.approx(0.6)


def test_miner_on_constructed_images(pool, tmp_path):
    # A = ink colour: red squares 0,1,4,5 identical (cos 1), blue 2,3 identical; red vs blue cos 0.5.
    # B = ink layout in 8-px cells: 0 and 4 the same cell (cos 1), 5 half in 0's cell and half in the next
    # (cos 1/sqrt 2 = 0.707 with 0 and 4), 1 and 3 in the far cell (cos 0 with the left ones).
    # tau_A 0.9 keeps the 7 same-colour pairs; tau_B 0.75 drops (0,4); margin 1 for (0,1),(1,4),(1,5),(2,3),
    # 0.293 for (0,5),(4,5).
    paths = list_images(pool)
    ea, eb = build_encoder("test-ink-colour"), build_encoder("test-ink-layout")
    s = mine_mmvp_pairs(paths, ea, eb, tmp_path / "out", tau_a=0.9, tau_b=0.75, top_k=5, root=pool, progress=False)
    assert (s["a_similar"], s["selected"], s["pairs_total"]) == (7, 6, 15)
    assert [(p["a"], p["b"]) for p in s["pairs"]] == [
        ("0.png", "1.png"),
        ("1.png", "4.png"),
        ("1.png", "5.png"),
        ("2.png", "3.png"),
        ("0.png", "5.png"),
    ]
    assert s["pairs"][4]["cos_b"] == pytest.approx(2**-0.5, abs=1e-5) and s["pairs"][0]["cos_a"] == pytest.approx(1.0)
    on_disk = json.loads((tmp_path / "out" / "pairs.json").read_text())
    assert on_disk["pairs"] == s["pairs"]
    sheet = Image.open(tmp_path / "out" / "contact_sheet.png")
    assert sheet.size == (2 * (2 * 160 + 18), 3 * (160 + 34 + 12))  # 5 pairs, 2 a row
    # the first cell shows image 0 (red square, left) then image 1 (red square, right), scaled 32 -> 160
    assert sheet.getpixel((6 + 20, 6 + 60)) == RED and sheet.getpixel((6 + 160 + 6 + 140, 6 + 60)) == RED
    assert Image.open(tmp_path / "out" / "similarity.png").size[0] > 300
    # roles swapped: layout as A (same cell, red vs blue ink: cos 1/2), colour as B (red vs blue: cos 1/2):
    # tau_A 0.45 and tau_B 0.6 keep the same-place, other-colour pairs (0,2), (1,3), (2,4), all at margin 0
    s2 = mine_mmvp_pairs(paths, eb, ea, tmp_path / "out2", tau_a=0.45, tau_b=0.6, top_k=10, root=pool, progress=False)
    assert [(p["a"], p["b"]) for p in s2["pairs"]] == [("0.png", "2.png"), ("1.png", "3.png"), ("2.png", "4.png")]


def test_unreadable_images_are_skipped_and_reported(pool, tmp_path):
    (pool / "9.png").write_bytes(b"not a png")
    paths = list_images(pool)
    s = mine_mmvp_pairs(
        paths,
        build_encoder("test-ink-colour"),
        build_encoder("test-ink-layout"),
        tmp_path / "o",
        tau_a=0.9,
        tau_b=0.75,
        top_k=3,
        root=pool,
        progress=False,
    )
    assert s["usable_images"] == 6 and s["skipped_images"][0]["image"] == "9.png"


def test_cli_on_constructed_images(pool, tmp_path, capsys):
    from cambrian.cli.main import main

    rc = main(
        [
            "data",
            "mmvp-pairs",
            "--images",
            str(pool),
            "--encoder-a",
            "test-ink-colour",
            "--encoder-b",
            "test-ink-layout",
            "--tau-a",
            "0.9",
            "--tau-b",
            "0.75",
            "--top-k",
            "2",
            "--out",
            str(tmp_path / "o"),
            "--no-progress",
        ]
    )
    assert rc == 0
    out = capsys.readouterr().out
    assert "15 pairs: 7 with cos_A >= 0.900, 6 of them with cos_B <= 0.750; reporting the top 2" in out
    assert (
        main(
            [
                "data",
                "mmvp-pairs",
                "--images",
                str(pool),
                "--encoder-a",
                "no-such-encoder",
                "--out",
                str(tmp_path / "o2"),
            ]
        )
        == 2
    )
    assert "unknown encoder preset 'no-such-encoder'" in capsys.readouterr().err


def test_contact_sheet_without_pairs(tmp_path):
    p = contact_sheet([], [], tmp_path / "s.png")
    assert Image.open(p).size == (676, 206)


def test_scene_variant_pool(tmp_path):
    pytest.importorskip("pybullet")
    from cambrian.data.scenes.variants import pair_label, render_variant_pool

    entries = render_variant_pool(tmp_path, 2, seed=0, size=96, progress=False)
    kinds = [(e["base"], e["kind"]) for e in entries]
    assert kinds[:2] == [(0, "base"), (0, "colour")] and {k for _, k in kinds} <= {"base", "colour", "position"}
    base = np.asarray(Image.open(tmp_path / entries[0]["image"]), dtype=int)
    col = np.asarray(Image.open(tmp_path / entries[1]["image"]), dtype=int)
    changed = np.abs(base - col).sum(-1) > 0
    assert 0 < changed.mean() < 0.25  # one object changed colour, the rest of the picture is the same
    assert entries[1]["change"]["from"] != entries[1]["change"]["to"]
    assert pair_label(entries[0], entries[1]) == "same scene: colour"
    assert pair_label(entries[0], entries[-1]) == "different scenes"
    assert json.loads((tmp_path / "pool.json").read_text())["images"] == entries
