"""Letterbox arithmetic, masks, windows and block assembly (docs/official-code.md#windows, docs/official-code.md#letterbox)."""

import pytest
import torch

from cambrian.models.connectors.geometry import (
    assemble_blocks,
    fill_empty_windows,
    resize_grid,
    to_windows,
    unpad_grid,
    valid_mask,
    valid_region,
    window_masks,
)


@pytest.mark.parametrize(
    "size, region",
    [
        ((336, 336), (0, 24, 0, 24)),  # square: nothing removed
        ((640, 480), (3, 21, 0, 24)),  # new_h = 18, pad 3
        ((480, 640), (0, 24, 3, 21)),  # new_w = 18, pad 3
        ((1000, 300), (8, 16, 0, 24)),  # new_h = int(7.2) = 7, pad (24-7)//2 = 8, odd remainder keeps 8 rows
    ],
)
def test_valid_region_spec_table(size, region):
    assert valid_region(*size, 24) == region


def test_valid_region_follows_reference_float_order():
    # reference: int(H * (S / W)); 55 * (24/88) = 14.999999999999998 -> 14 (int(55*24/88) would be 15)
    assert valid_region(88, 55, 24) == (5, 19, 0, 24)
    # portrait mirror
    assert valid_region(55, 88, 24) == (0, 24, 5, 19)


def test_valid_region_on_tower_grid():
    # 1000x300 on the ConvNeXt 96 grid: int(300 * 0.096) = 28, pad 34
    assert valid_region(1000, 300, 96) == (34, 62, 0, 96)
    assert valid_region(640, 480, 96) == (12, 84, 0, 96)


def test_valid_region_degenerate_and_errors():
    # aspect ratio 1000: the reference would keep zero rows; we keep what new_h = 1 keeps
    assert valid_region(10000, 10, 24) == (11, 13, 0, 24)
    assert valid_region(10000, 10, 5) == (2, 3, 0, 5)
    with pytest.raises(ValueError, match="positive"):
        valid_region(0, 10, 24)
    with pytest.raises(ValueError, match="grid side"):
        valid_region(10, 10, 0)


def test_valid_mask_hand_made():
    m = valid_mask([(8, 4), (4, 8), (5, 5)], 4)
    assert m.shape == (3, 4, 4) and m.dtype == torch.bool
    # 8x4 on S=4: new_h = int(4 * 0.5) = 2, pad 1 -> rows 1, 2
    exp0 = torch.tensor([[0, 0, 0, 0], [1, 1, 1, 1], [1, 1, 1, 1], [0, 0, 0, 0]], dtype=torch.bool)
    assert torch.equal(m[0], exp0)
    assert torch.equal(m[1], exp0.T)
    assert m[2].all()


def test_to_windows_arange():
    x = torch.arange(2 * 4 * 4).view(2, 4, 4, 1)
    w = to_windows(x, 2)  # L = 2, r = 2
    assert w.shape == (8, 4, 1)
    assert w[..., 0].tolist() == [
        [0, 1, 4, 5],
        [2, 3, 6, 7],
        [8, 9, 12, 13],
        [10, 11, 14, 15],
        [16, 17, 20, 21],
        [18, 19, 22, 23],
        [24, 25, 28, 29],
        [26, 27, 30, 31],
    ]
    # r = 1 is the identity layout; masks (no channel dim) work too
    assert torch.equal(to_windows(x, 4).view(-1), x.view(-1))
    m = to_windows(torch.arange(16).view(1, 4, 4), 2)
    assert m.shape == (4, 4) and m[3].tolist() == [10, 11, 14, 15]
    g = to_windows(x, 2, keep_grid=True)
    assert g.shape == (2, 2, 2, 4, 1) and g[1, 1, 1, :, 0].tolist() == [26, 27, 30, 31]


def test_to_windows_errors():
    with pytest.raises(ValueError, match="integer multiple"):
        to_windows(torch.zeros(1, 6, 6, 2), 4)
    with pytest.raises(ValueError, match="square grid"):
        to_windows(torch.zeros(1, 4, 6, 2), 2)


def test_fill_empty_windows():
    m = torch.tensor([[False, False], [True, False], [False, False]])
    assert fill_empty_windows(m).tolist() == [[True, True], [True, False], [True, True]]
    assert m.tolist()[0] == [False, False]  # out of place


def _masked_fraction(size):
    m = window_masks([size], 96, 24)  # ConvNeXt: s = 96, L = 24, r = 4
    assert m.shape == (576, 16)
    return (~m).float().mean().item()


def test_convnext_partial_mask_percentages():
    # docs/official-code.md#windows: after resetting all-False windows, 0 % of keys stay masked for 640x480, 4.2 % for 1000x300
    assert _masked_fraction((640, 480)) == 0.0
    # 1000x300: valid rows [34, 62); window rows 8 and 15 keep 2 of 4 pixel rows -> 2 * 24 windows * 8 keys
    assert _masked_fraction((1000, 300)) == pytest.approx(384 / 9216)
    assert round(100 * _masked_fraction((1000, 300)), 1) == 4.2


def test_window_masks_keep_grid_and_empty_reset():
    m = window_masks([(8, 4)], 8, 4, keep_grid=True)  # 8 grid rows valid [2, 6); r = 2
    assert m.shape == (1, 4, 4, 4)
    assert m[0, 0].all() and m[0, 3].all()  # fully padded windows reset to True
    assert m[0, 1].all() and m[0, 2].all()  # aligned: fully valid


def test_unpad_grid_order():
    x = torch.arange(2 * 4 * 4).view(2, 4, 4)
    out = unpad_grid(x, [(8, 4), (4, 8)])
    # image 0 keeps rows 1..2 (8 cells), image 1 keeps columns 1..2 (8 cells), row-major each
    assert out.tolist() == [4, 5, 6, 7, 8, 9, 10, 11, 17, 18, 21, 22, 25, 26, 29, 30]


def test_assemble_blocks_newline_and_unpad():
    grid = torch.arange(2 * 4 * 4, dtype=torch.float).view(2, 4, 4, 1)
    nl = torch.tensor([-1.0])
    blocks, grids = assemble_blocks(grid, [(8, 4), (5, 5)], nl, unpad=True)
    assert grids == [(2, 4), (4, 4)]
    assert blocks[0][:, 0].tolist() == [4, 5, 6, 7, -1, 8, 9, 10, 11, -1]
    assert blocks[1].shape == (20, 1) and blocks[1][4, 0] == -1 and blocks[1][5, 0] == 20
    blocks, grids = assemble_blocks(grid, [(8, 4), (5, 5)], None, unpad=False)
    assert grids == [(4, 4), (4, 4)] and blocks[0][:, 0].tolist() == list(range(16))


def test_assemble_blocks_several_tokens_per_cell():
    grid = torch.arange(1 * 2 * 2 * 3, dtype=torch.float).view(1, 2, 2, 3, 1)  # K = 3 tokens per cell
    blocks, grids = assemble_blocks(grid, [(1, 1)], torch.tensor([-1.0]))
    assert grids == [(2, 6)]
    assert blocks[0][:, 0].tolist() == [0, 1, 2, 3, 4, 5, -1, 6, 7, 8, 9, 10, 11, -1]
    with pytest.raises(ValueError, match="image sizes"):
        assemble_blocks(grid, [(1, 1), (2, 2)], None)


def test_resize_grid_bilinear_hand_values():
    # 2 -> 4 with align_corners=False samples at -0.25, 0.25, 0.75, 1.25 (edges clamp)
    x = torch.tensor([[0.0, 4.0], [0.0, 4.0]]).view(1, 2, 2, 1)
    y = resize_grid(x, 4)
    assert y[0, 0, :, 0].tolist() == [0.0, 1.0, 3.0, 4.0]
    assert resize_grid(x, 2) is x
    assert resize_grid(x.half(), 4).dtype == torch.float16
