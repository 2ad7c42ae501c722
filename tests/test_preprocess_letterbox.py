"""The letterbox without the square canvas (issue 25, item 1): equal to the official ``expand2square -> resize`` within
one grey level on every shape, bit-identical below the direct-canvas size, and bounded in memory on aspect-ratio
bombs; ``load_image`` refuses a bomb from its header, before decoding."""

from __future__ import annotations

import io

import numpy as np
import pytest
from peak_memory import PeakRSS
from PIL import Image

from cambrian.models.encoders.preprocess import MAX_ASPECT, ImageSizeError, check_image_size, load_image
from cambrian.utils.letterbox import expand2square, letterbox, letterbox_pixels

COLOUR = (122, 116, 104)  # the official pad colour of CLIP / SigLIP / ConvNeXt


def official(img: Image.Image, size: int, colour=COLOUR) -> np.ndarray:
    return np.asarray(expand2square(img, colour).resize((size, size), Image.BICUBIC), dtype=np.int16)


SHAPES = [
    (640, 480),
    (480, 640),
    (1000, 300),
    (300, 1000),
    (97, 13),
    (13, 97),
    (2000, 1),
    (1, 2000),
    (1500, 37),
    (37, 1500),
    (385, 384),
    (383, 100),
    (100, 383),
    (50, 20),
    (7, 3),
]


@pytest.mark.parametrize("size", [384, 224, 32])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_canvas_free_letterbox_equals_the_official_within_one_level(shape, size):
    rng = np.random.default_rng(shape[0] * 7919 + shape[1] + size)
    img = Image.fromarray(rng.integers(0, 256, (shape[1], shape[0], 3), dtype=np.uint8))
    ours = np.asarray(letterbox(img, size, COLOUR, direct_limit=0), dtype=np.int16)  # never the canvas
    ref = official(img, size)
    assert ours.shape == ref.shape == (size, size, 3)
    diff = np.abs(ours - ref)
    assert diff.max() <= 1, f"max difference {diff.max()}"
    assert (diff > 0).mean() < 1e-3  # a rounding of PIL's filter positions, not a shifted or blurred edge


def test_the_letterbox_keeps_the_image_edge_and_the_background():
    """A sharp image/background edge stays where the official one is (a wrong offset would move it by a row)."""
    img = Image.new("RGB", (3000, 600), (0, 0, 0))
    ours = np.asarray(letterbox(img, 64, (255, 255, 255), direct_limit=0), dtype=np.int16)
    ref = official(img, 64, (255, 255, 255))
    assert np.abs(ours - ref).max() <= 1
    assert (ours[0] == 255).all() and (ours[32] == 0).all()  # background on top, image in the middle


def test_small_canvases_are_bit_identical_to_the_official():
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8))
    assert np.array_equal(np.asarray(letterbox(img, 224, COLOUR)), official(img, 224))
    sq = Image.fromarray(rng.integers(0, 256, (50, 50, 3), dtype=np.uint8))
    assert np.array_equal(np.asarray(letterbox(sq, 32, COLOUR)), official(sq, 32))


@pytest.mark.parametrize("shape", [(100_000, 1), (1, 100_000), (30_000, 7)])
def test_an_aspect_ratio_bomb_letterboxes_in_bounded_memory(shape):
    """The official canvas of a 100000 x 1 image is 10^10 pixels (30 GB); ours holds a few MB."""
    img = Image.new("RGB", shape, (200, 10, 10))
    with PeakRSS() as peak:
        out = letterbox(img, 384, COLOUR)
    assert out.size == (384, 384)
    bound = 3 * letterbox_pixels(*shape, 384) + (64 << 20)  # RGB bytes, plus slack for the allocator
    assert peak.delta < bound, f"peak {peak.delta / 2**20:.0f} MiB, bound {bound / 2**20:.0f} MiB"
    assert bound < 200 << 20
    px = np.asarray(out)
    edge = px[0] if shape[0] > shape[1] else px[:, 0]  # the padded side is background
    assert (edge == COLOUR).all()


def _png(w: int, h: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (w, h), (255, 0, 0)).save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def test_load_image_refuses_a_bomb_from_its_header(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(_png(40_000, 1))
    assert path.stat().st_size < 200
    with (
        PeakRSS() as peak,
        pytest.raises(ValueError, match=r"bomb.png: the image is 40000x1: its aspect ratio 40000:1"),
    ):
        load_image(path)
    assert peak.delta < 32 << 20
    assert load_image(path, max_aspect=None).size == (40_000, 1)  # the library may take it: the letterbox is bounded
    with pytest.raises(ImageSizeError, match="more than the limit of 100"):
        check_image_size(20, 20, max_pixels=100)
    with pytest.raises(ImageSizeError, match="aspect ratio"):
        load_image(Image.new("RGB", (int(MAX_ASPECT) * 10 + 10, 10)))
    assert load_image(Image.new("RGB", (int(MAX_ASPECT) * 10, 10))).size == (int(MAX_ASPECT) * 10, 10)


def test_cli_chat_reports_a_bomb_in_one_line(tmp_path, capsys):
    from cambrian.cli.main import main

    path = tmp_path / "wide.png"
    path.write_bytes(_png(40_000, 1))
    assert main(["chat", "--model", "tiny", "--image", str(path), "--prompt", "hi"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: cannot read image") and "aspect ratio 40000:1" in err and len(err.splitlines()) == 1


def test_every_tower_preprocessing_path_is_bounded_on_a_bomb():
    """Training samples, eval rows and ``data mmvp-pairs`` all go through a tower's ``preprocess``."""
    from cambrian.models.encoders import build_encoder

    enc = build_encoder("tiny-siglip", load_weights=False)
    img = Image.new("RGB", (100_000, 1), (0, 0, 0))
    with PeakRSS() as peak:
        px = enc.preprocess([img])
    assert px.shape == (1, 3, 32, 32) and peak.delta < 64 << 20
