"""Non-SVA connectors (docs/official-code.md#projectors): linear, mlpNx_gelu, identity, concat, interleave; registry behaviour."""

import pytest
import torch
import torch.nn as nn

from cambrian.config import ConnectorConfig
from cambrian.models.connectors import CONNECTORS, build_connector
from cambrian.models.connectors.concat import ConcatConnector
from cambrian.models.connectors.interleave import InterleaveConnector
from cambrian.models.connectors.mlp import build_projector
from cambrian.registry import UnknownKeyError

SIZES = [(640, 480), (480, 640), (1000, 300), (64, 64)]
# L = 4: 640x480 -> new_h 3, pad 0 (4 rows); 480x640 -> 4 cols; 1000x300 -> new_h 1, pad 1 -> rows [1, 3); square
GRIDS4 = [(4, 4), (4, 4), (2, 4), (4, 4)]


def cfg(type_, **kw):
    return ConnectorConfig(type=type_, image_token_len=16, num_llm_layers=0, **kw)


def feats(n, dims, grids):
    return [torch.randn(n, s, s, c) for c, s in zip(dims, grids)]


def test_registry_lists_every_type():
    assert set(CONNECTORS.names()) >= {"sva", "linear", "mlpNx_gelu", "identity", "concat", "interleave"}
    with pytest.raises(UnknownKeyError, match="valid connector ids: .*concat"):
        build_connector(cfg("mlp_gelu"), [8], [4], 12)


def test_build_projector_structures():
    p = build_projector("mlp3x_gelu", 5, 7)
    assert [type(m) for m in p] == [nn.Linear, nn.GELU, nn.Linear, nn.GELU, nn.Linear]
    assert p[0].weight.shape == (7, 5) and p[4].weight.shape == (7, 7)
    assert (
        isinstance(build_projector("mlp1x_gelu", 5, 7)[0], nn.Linear) and len(build_projector("mlp1x_gelu", 5, 7)) == 1
    )
    assert isinstance(build_projector("linear", 5, 7), nn.Linear)
    assert isinstance(build_projector("identity", 7, 7), nn.Identity)
    with pytest.raises(ValueError, match="identity projector"):
        build_projector("identity", 5, 7)
    with pytest.raises(ValueError, match="depth"):
        build_projector("mlp0x_gelu", 5, 7)
    with pytest.raises(ValueError, match="unknown projector"):
        build_projector("mlpx_gelu", 5, 7)


def test_mlp_state_dict_layout():
    conn = build_connector(cfg("mlp2x_gelu"), [8, 6], [4, 4], 12)
    assert {k: tuple(v.shape) for k, v in conn.state_dict().items()} == {
        "mm_projector.0.weight": (12, 14),
        "mm_projector.0.bias": (12,),
        "mm_projector.2.weight": (12, 12),
        "mm_projector.2.bias": (12,),
        "image_newline": (12,),
    }
    lin = build_connector(cfg("linear"), [8], [4], 12)
    assert set(lin.state_dict()) == {"mm_projector.weight", "mm_projector.bias", "image_newline"}
    assert set(build_connector(cfg("identity"), [12], [4], 12).state_dict()) == {"image_newline"}
    assert len(build_connector(cfg("mlp4x_gelu"), [8], [4], 12).mm_projector) == 7


@pytest.mark.parametrize("type_", ["linear", "mlp2x_gelu", "mlp3x_gelu", "identity", "concat", "interleave"])
@pytest.mark.parametrize("n_enc", [1, 2])
def test_every_type_with_one_and_two_encoders(type_, n_enc):
    if type_ == "identity":
        dims = [12] if n_enc == 1 else [5, 7]
    else:
        dims = [8, 6][:n_enc]
    grids = [4, 4] if type_ in ("linear", "mlp2x_gelu", "mlp3x_gelu", "identity") else [4, 8]
    grids = grids[:n_enc]
    conn = build_connector(cfg(type_), dims, grids, 12)
    out = conn(feats(4, dims, grids), SIZES)
    k = n_enc if type_ == "interleave" else 1
    assert out.grids == [(h, w * k) for h, w in GRIDS4]
    assert [b.shape for b in out.blocks] == [(h * (w * k + 1), 12) for h, w in GRIDS4]
    assert out.state is None and conn.in_llm_layers == []
    for b, (h, w) in zip(out.blocks, out.grids):
        torch.testing.assert_close(b.view(h, w + 1, 12)[:, -1], conn.image_newline.detach().expand(h, 12))
    # gradient reaches every trainable parameter
    sum(b.square().sum() for b in out.blocks).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in conn.parameters())


def test_mlp_tokens_are_projected_concatenated_cells():
    conn = build_connector(cfg("mlp2x_gelu"), [8, 6], [4, 4], 12)
    f = feats(2, [8, 6], [4, 4])
    out = conn(f, [(1000, 300), (64, 64)])
    proj = conn.mm_projector(torch.cat(f, -1))  # [2, 4, 4, 12]
    # image 0 keeps rows [1, 3): block row u, column v = grid cell (1 + u, v)
    blk = out.blocks[0].view(2, 5, 12)
    torch.testing.assert_close(blk[:, :4], proj[0, 1:3])
    torch.testing.assert_close(out.blocks[1].view(4, 5, 12)[:, :4], proj[1])


def test_concat_requirements_and_grid_errors():
    with pytest.raises(ValueError, match="use connector type 'concat'"):
        build_connector(cfg("mlp2x_gelu"), [8, 6], [4, 8], 12)
    with pytest.raises(ValueError, match="num_llm_layers"):
        build_connector(ConnectorConfig(type="linear", image_token_len=16, num_llm_layers=2), [8], [4], 12)
    conn = build_connector(cfg("linear"), [8], [4], 12)
    with pytest.raises(ValueError, match="expected \\[N=1, 4, 4, 8\\]"):
        conn([torch.randn(1, 8, 8, 8)], [(4, 4)])
    assert conn([torch.randn(0, 4, 4, 8)], []).blocks == []


def test_concat_resizes_bilinear_then_projects():
    conn = build_connector(
        cfg("concat", options={"projector": "identity"}, unpad=False, newline=False), [1, 11], [2, 4], 12
    )
    assert isinstance(conn, ConcatConnector) and conn.state_dict().keys() == {"image_newline"}
    a = torch.tensor([[0.0, 4.0], [0.0, 4.0]]).view(1, 2, 2, 1)
    b = torch.randn(1, 4, 4, 11)
    out = conn([a, b], [(5, 5)])
    blk = out.blocks[0].view(4, 4, 12)
    # channel 0: 2 -> 4 bilinear, align_corners=False: 0, 1, 3, 4 along each row
    assert blk[:, :, 0].tolist() == [[0.0, 1.0, 3.0, 4.0]] * 4
    torch.testing.assert_close(blk[:, :, 1:], b[0])
    default = build_connector(cfg("concat"), [8, 6], [2, 4], 12)
    assert [type(m) for m in default.mm_projector] == [nn.Linear, nn.GELU, nn.Linear]


def test_interleave_token_layout():
    dims, grids = [12, 12], [4, 2]
    conn = build_connector(cfg("interleave", options={"projector": "identity"}), dims, grids, 12)
    assert isinstance(conn, InterleaveConnector)
    f = [torch.randn(1, 4, 4, 12), torch.randn(1, 2, 2, 12)]
    out = conn(f, [(1000, 300)])  # valid rows [1, 3) of the 4x4 grid
    h, w = 2, 4
    assert out.grids == [(h, 2 * w)] and out.blocks[0].shape == (h * (2 * w + 1), 12)
    up = torch.nn.functional.interpolate(f[1].permute(0, 3, 1, 2), size=(4, 4), mode="bilinear", align_corners=False)
    up = up.permute(0, 2, 3, 1)
    blk = out.blocks[0]
    for u in range(h):
        row = u * (2 * w + 1)
        for v in range(w):
            torch.testing.assert_close(blk[row + 2 * v], f[0][0, 1 + u, v])  # encoder 0 first
            torch.testing.assert_close(blk[row + 2 * v + 1], up[0, 1 + u, v])  # then encoder 1, same cell
        torch.testing.assert_close(blk[row + 2 * w], conn.image_newline.detach())  # newline ends the row
    with_mlp = build_connector(cfg("interleave"), [8, 6], [4, 2], 12)
    assert {
        k.split(".")[0] + "." + k.split(".")[1] for k in with_mlp.state_dict() if k.startswith("mm_projectors")
    } == {"mm_projectors.0", "mm_projectors.1"}


def test_no_unpad_no_newline_variants():
    conn = build_connector(cfg("mlp2x_gelu", unpad=False, newline=True), [8], [4], 12)
    out = conn(feats(2, [8], [4]), [(1000, 300), (300, 1000)])
    assert out.grids == [(4, 4), (4, 4)] and [b.shape[0] for b in out.blocks] == [20, 20]
    conn = build_connector(cfg("interleave", newline=False), [8, 6], [4, 4], 12)
    out = conn(feats(1, [8, 6], [4, 4]), [(1000, 300)])
    assert out.grids == [(2, 8)] and out.blocks[0].shape == (16, 12)


@pytest.mark.parametrize("type_", ["sva", "mlp2x_gelu", "concat", "interleave"])
@pytest.mark.parametrize("unpad, newline", [(True, True), (False, True), (True, False)])
def test_num_tokens_matches_blocks(type_, unpad, newline):
    conn = build_connector(
        cfg(type_, unpad=unpad, newline=newline, hidden_size=16, num_heads=4, query_num_list=[16]), [8, 6], [4, 4], 12
    )
    out = conn(feats(4, [8, 6], [4, 4]), SIZES)
    assert [conn.num_tokens(s) for s in SIZES] == [b.shape[0] for b in out.blocks]
