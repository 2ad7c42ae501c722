"""SVA layer, sampler and connector (docs/official-code.md#forward, docs/official-code.md#in-llm, docs/official-code.md#init, docs/official-code.md#release)."""

import math

import pytest
import torch
import torch.nn.functional as F

from cambrian.config import ConnectorConfig
from cambrian.models.connectors import ImageSpan, build_connector
from cambrian.models.connectors.geometry import to_windows, valid_region
from cambrian.models.connectors.sva import SVAConnector, SVAState, VisionCrossAttentionLayer, VisionTokenSampler

SIZES4 = [(336, 336), (640, 480), (480, 640), (1000, 300)]


def tiny_cfg(**kw):
    base = dict(
        type="sva", hidden_size=16, image_token_len=16, query_num_list=[16], depth=2, num_heads=4, num_llm_layers=0
    )
    base.update(kw)
    return ConnectorConfig(**base)


def feats(n, dims, grids):
    return [torch.randn(n, s, s, c) for c, s in zip(dims, grids)]


# ---- the layer ----------------------------------------------------------------------------------------------


def reference_layer(layer, q, c, windows, masks, heads):
    """The docs/official-code.md#sva-layer formula written out by hand (explicit softmax, -inf masking), per query."""
    h = torch.cat([q, c @ layer.proj_context.weight.T], -1) @ layer.proj_in.weight.T  # [M,1,d]
    att = layer.cross_attn
    keys, vals, ms = [], [], []
    for k, x in enumerate(windows):
        if x.shape[1] > 1:
            x = x + getattr(layer, f"pos_embed_{k}")
        kp, vp = getattr(att, f"k_proj_{k}"), getattr(att, f"v_proj_{k}")
        keys.append(F.linear(F.layer_norm(x, x.shape[-1:], kp[0].weight, kp[0].bias), kp[1].weight))
        vals.append(F.linear(F.layer_norm(x, x.shape[-1:], vp[0].weight, vp[0].bias), vp[1].weight))
        ms.append(masks[k])
    K, V, Mk = torch.cat(keys, 1), torch.cat(vals, 1), torch.cat(ms, 1)
    Q = F.linear(F.layer_norm(h, h.shape[-1:], att.q_proj[0].weight, att.q_proj[0].bias), att.q_proj[1].weight)
    d = Q.shape[-1]
    hd = d // heads
    outs = []
    for i in range(heads):
        sl = slice(i * hd, (i + 1) * hd)
        s = (Q[:, :, sl] @ K[:, :, sl].transpose(1, 2)) / math.sqrt(hd)  # [M,1,n]
        s = s.masked_fill(~Mk[:, None, :], float("-inf"))
        outs.append(s.softmax(-1) @ V[:, :, sl])
    a = torch.cat(outs, -1) @ att.o_proj.weight.T
    h = F.layer_norm(h + a, (d,), layer.norm.weight, layer.norm.bias)
    return layer.proj_out.linear_2(F.gelu(layer.proj_out.linear_1(h))) + q


def test_layer_matches_hand_formula_with_masks_and_qdim():
    torch.manual_seed(1)
    layer = VisionCrossAttentionLayer(
        q_dim=24, context_dim=8, kv_dims=[16, 16, 16], kv_sizes=[1, 2, 4], hidden_dim=16, num_heads=4
    )
    m = 5
    q, c = torch.randn(m, 1, 24), torch.randn(m, 1, 8)
    windows = [torch.randn(m, r * r, 16) for r in (1, 2, 4)]
    masks = [torch.ones(m, 1, dtype=torch.bool), torch.rand(m, 4) > 0.3, torch.rand(m, 16) > 0.5]
    masks[1][:, 0] = True
    out = layer(q, c, windows, masks)
    assert out.shape == (m, 1, 24)
    torch.testing.assert_close(out, reference_layer(layer, q, c, windows, masks, 4), atol=1e-5, rtol=1e-5)
    # parameter names of docs/official-code.md#sva-layer: no biases in the Linears, pos_embed only where r > 1
    names = dict(layer.named_parameters())
    assert (
        "pos_embed_0" not in names and names["pos_embed_1"].shape == (4, 16) and names["pos_embed_2"].shape == (16, 16)
    )
    assert not any(n.endswith(".bias") and ".0." not in n and not n.startswith("norm") for n in names)
    assert names["proj_in.weight"].shape == (16, 24 + 16) and names["proj_out.linear_2.weight"].shape == (24, 16)


def test_masked_keys_do_not_change_output():
    layer = VisionCrossAttentionLayer(16, 16, [16, 16], [1, 2], hidden_dim=16, num_heads=4)
    q, c = torch.randn(3, 1, 16), torch.randn(3, 1, 16)
    w = [torch.randn(3, 1, 16), torch.randn(3, 4, 16)]
    masks = [
        torch.ones(3, 1, dtype=torch.bool),
        torch.tensor([[1, 0, 1, 0], [1, 1, 1, 1], [0, 0, 0, 1]], dtype=torch.bool),
    ]
    out = layer(q, c, w, masks)
    w2 = [w[0], w[1].clone()]
    w2[1][~masks[1]] = 1000.0 * torch.randn(int((~masks[1]).sum()), 16)
    torch.testing.assert_close(layer(q, c, w2, masks), out, atol=1e-6, rtol=1e-6)
    w2[1][masks[1]] = torch.randn(int(masks[1].sum()), 16)  # unmasked keys do matter
    assert not torch.allclose(layer(q, c, w2, masks), out)


def test_layer_shape_errors():
    layer = VisionCrossAttentionLayer(16, 16, [16], [2], hidden_dim=16, num_heads=4)
    q = torch.randn(2, 1, 16)
    with pytest.raises(ValueError, match="expected \\[2, 4, C\\]"):
        layer(q, q, [torch.randn(2, 9, 16)], [None])
    with pytest.raises(ValueError, match="expects 1 windows"):
        layer(q, q, [], [])
    with pytest.raises(ValueError, match="divisible"):
        VisionCrossAttentionLayer(16, 16, [16], [1], hidden_dim=18, num_heads=4)


def test_sampler_feeds_same_inputs_to_every_layer():
    s = VisionTokenSampler(16, 16, [16], [2], hidden_dim=16, num_layers=3, num_heads=4)
    q, c, w = torch.randn(2, 1, 16), torch.randn(2, 1, 16), [torch.randn(2, 4, 16)]
    m = [torch.ones(2, 4, dtype=torch.bool)]
    expected = q
    for layer in s.layers:
        expected = layer(expected, c, w, m)
    torch.testing.assert_close(s(q, c, w, m), expected)


# ---- the connector ------------------------------------------------------------------------------------------


def test_spec_table_through_connector():
    cfg = tiny_cfg(image_token_len=576, query_num_list=[576], depth=1)
    conn = build_connector(cfg, [8, 6], [24, 48], 12)
    out = conn(feats(4, [8, 6], [24, 48]), SIZES4)
    assert out.grids == [(24, 24), (18, 24), (24, 18), (8, 24)]
    assert [b.shape for b in out.blocks] == [(600, 12), (450, 12), (456, 12), (200, 12)]
    # newline after each row
    for b, (h, w) in zip(out.blocks, out.grids):
        rows = b.view(h, w + 1, 12)
        assert torch.equal(rows[:, -1], conn.image_newline.detach().expand(h, 12))
    no_nl = build_connector(
        tiny_cfg(image_token_len=576, query_num_list=[576], depth=1, newline=False, unpad=False), [8, 6], [24, 48], 12
    )
    out = no_nl(feats(4, [8, 6], [24, 48]), SIZES4)
    assert [b.shape[0] for b in out.blocks] == [576] * 4 and out.grids == [(24, 24)] * 4


def test_connector_matches_manual_pipeline():
    """forward == projections, mean context, windows + masks, sampler, mm_projector, crop, newline, by hand."""
    cfg = tiny_cfg(image_token_len=4, query_num_list=[4], depth=1)
    conn = build_connector(cfg, [8, 6], [2, 4], 12)
    f = feats(2, [8, 6], [2, 4])
    sizes = [(8, 4), (4, 4)]
    out = conn(f, sizes)
    p0, p1 = conn.mm_projector_aux_0(f[0]), conn.mm_projector_aux_1(f[1])
    ctx = p0.flatten(1, 2).mean(1)
    q = conn.vision_query[0].expand(8, 1, 16)
    c = ctx.repeat_interleave(4, 0)[:, None]
    # 8x4 on the 4-grid: rows [1, 3) valid; windows of 2x2 -> each query window keeps one of two rows
    m1 = torch.tensor([[0, 0, 1, 1]] * 2 + [[1, 1, 0, 0]] * 2 + [[1, 1, 1, 1]] * 4, dtype=torch.bool)
    m0 = torch.ones(8, 1, dtype=torch.bool)  # 2-grid: new_h = 1, pad 0 -> everything valid
    y = conn.vision_sampler_0(q, c, [p0.reshape(8, 1, 16), to_windows(p1, 2)], [m0, m1])
    grid = conn.mm_projector(y.view(2, 2, 2, 16))
    assert out.grids == [(2, 2), (2, 2)]  # 8x4 on S=2: int(4 * 0.25) = 1, pad 0
    nl = conn.image_newline
    exp0 = torch.cat([grid[0], nl.expand(2, 1, 12)], 1).reshape(-1, 12)
    torch.testing.assert_close(out.blocks[0], exp0)


def test_letterbox_content_does_not_leak():
    """Changing encoder-1 features on letterbox padding leaves every block unchanged (only encoder 0 feeds the
    global context over all its tokens, padding included)."""
    cfg = tiny_cfg(image_token_len=16, query_num_list=[16])
    conn = build_connector(cfg, [8, 6], [4, 8], 12)
    sizes = [(1000, 300), (300, 1000)]
    f = feats(2, [8, 6], [4, 8])
    base = conn(f, sizes).blocks
    g = f[1].clone()
    top, bottom, _, _ = valid_region(1000, 300, 8)
    g[0, :top] = 50.0
    g[0, bottom:] = -50.0
    _, _, left, right = valid_region(300, 1000, 8)
    g[1, :, :left] = 50.0
    g[1, :, right:] = 7.0
    new = conn([f[0], g], sizes).blocks
    for x, y in zip(base, new):
        torch.testing.assert_close(x, y)


def test_batch_independence():
    conn = build_connector(tiny_cfg(), [8, 6], [4, 8], 12)
    f = feats(3, [8, 6], [4, 8])
    sizes = [(640, 480), (200, 900), (50, 50)]
    full = conn(f, sizes).blocks
    for i in range(3):
        one = conn([x[i : i + 1] for x in f], [sizes[i]]).blocks[0]
        torch.testing.assert_close(one, full[i], atol=1e-5, rtol=1e-5)


def test_multiple_query_groups_with_different_grids():
    cfg = tiny_cfg(image_token_len=16, query_num_list=[16, 4, 1])
    conn = build_connector(cfg, [8, 6], [4, 8], 12)
    sd = conn.state_dict()
    # kv sizes: group 0 (L=4): [1, 2]; group 1 (L=2): [2, 4]; group 2 (L=1): [4, 8]
    assert "vision_sampler_0.layers.0.pos_embed_0" not in sd
    assert sd["vision_sampler_0.layers.0.pos_embed_1"].shape == (4, 16)
    assert sd["vision_sampler_1.layers.1.pos_embed_0"].shape == (4, 16)
    assert sd["vision_sampler_1.layers.1.pos_embed_1"].shape == (16, 16)
    assert sd["vision_sampler_2.layers.0.pos_embed_1"].shape == (64, 16)
    assert sd["mm_projector.0.weight"].shape == (12, 48) and sd["vision_query"].shape == (3, 16)
    out = conn(feats(2, [8, 6], [4, 8]), [(800, 400), (400, 800)])  # 4-grid: new_h = 2, pad 1
    assert out.grids == [(2, 4), (4, 2)] and [b.shape for b in out.blocks] == [(10, 12), (12, 12)]


def test_group_interpolation_is_bilinear_fp32():
    """A 1×1 group is broadcast to every cell; a 2×2 group is bilinearly upsampled to the 4×4 grid."""
    cfg = tiny_cfg(image_token_len=16, query_num_list=[4], unpad=False, newline=False)
    conn = build_connector(cfg, [8], [4], 12)
    f = feats(1, [8], [4])
    captured = {}
    conn.mm_projector.register_forward_hook(lambda m, i, o: captured.setdefault("x", i[0]))
    conn(f, [(5, 5)])
    x = captured["x"]  # [1, 4, 4, 16]
    # align_corners=False: output row 1 = 0.75*row0 + 0.25*row1 of the 2x2 map; corners equal the source cells
    torch.testing.assert_close(x[0, 1, 0], 0.75 * x[0, 0, 0] + 0.25 * x[0, 3, 0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(x[0, 0, 1], 0.75 * x[0, 0, 0] + 0.25 * x[0, 0, 3], atol=1e-5, rtol=1e-5)


def test_state_dict_keys_tiny():
    cfg = tiny_cfg(image_token_len=4, query_num_list=[4], depth=2, num_llm_layers=2, llm_stride=3)
    conn = build_connector(cfg, [8, 6], [2, 4], 12)
    layer_keys = {
        "proj_context.weight": (16, 16),
        "proj_out.linear_1.weight": (16, 16),
        "norm.weight": (16,),
        "norm.bias": (16,),
        "cross_attn.q_proj.0.weight": (16,),
        "cross_attn.q_proj.0.bias": (16,),
        "cross_attn.q_proj.1.weight": (16, 16),
        "cross_attn.o_proj.weight": (16, 16),
        "pos_embed_1": (4, 16),
    }
    for k, c in enumerate([16, 16]):
        for kv in "kv":
            layer_keys[f"cross_attn.{kv}_proj_{k}.0.weight"] = (c,)
            layer_keys[f"cross_attn.{kv}_proj_{k}.0.bias"] = (c,)
            layer_keys[f"cross_attn.{kv}_proj_{k}.1.weight"] = (16, c)
    expected = {}
    for k, c in enumerate([8, 6]):
        expected.update(
            {
                f"mm_projector_aux_{k}.0.weight": (16, c),
                f"mm_projector_aux_{k}.0.bias": (16,),
                f"mm_projector_aux_{k}.2.weight": (16, 16),
                f"mm_projector_aux_{k}.2.bias": (16,),
                f"mm_projector_aux_{k}.3.weight": (16,),
                f"mm_projector_aux_{k}.3.bias": (16,),
            }
        )
    for j in range(2):
        for name, shape in layer_keys.items():
            expected[f"vision_sampler_0.layers.{j}.{name}"] = shape
        expected[f"vision_sampler_0.layers.{j}.proj_in.weight"] = (16, 32)
        expected[f"vision_sampler_0.layers.{j}.proj_out.linear_2.weight"] = (16, 16)
        for name, shape in layer_keys.items():
            expected[f"vision_sampler_layers.{j}.layers.0.{name}"] = shape
        expected[f"vision_sampler_layers.{j}.layers.0.proj_in.weight"] = (16, 12 + 16)
        expected[f"vision_sampler_layers.{j}.layers.0.proj_out.linear_2.weight"] = (12, 16)
    expected.update(
        {
            "mm_projector.0.weight": (12, 16),
            "mm_projector.0.bias": (12,),
            "mm_projector.2.weight": (12, 12),
            "mm_projector.2.bias": (12,),
            "vision_query": (1, 16),
            "image_newline": (12,),
        }
    )
    got = {k: tuple(v.shape) for k, v in conn.state_dict().items()}
    assert got == expected
    assert conn.in_llm_layers == [0, 3]


def test_8b_parameter_counts_on_meta():
    cfg = ConnectorConfig(
        type="sva",
        hidden_size=1024,
        image_token_len=576,
        query_num_list=[576],
        depth=3,
        num_heads=16,
        num_llm_layers=10,
        llm_start=0,
        llm_stride=3,
    )
    with torch.device("meta"):
        conn = build_connector(cfg, [1152, 1024, 1536, 6144], [24, 24, 24, 96], 4096)
    count = lambda m: sum(p.numel() for p in m.parameters())
    assert count(conn) == 303_154_176
    assert count(conn.vision_sampler_0) == 47_296_512
    assert all(count(s) == 22_056_960 for s in conn.vision_sampler_layers)
    assert conn.in_llm_layers == [0, 3, 6, 9, 12, 15, 18, 21, 24, 27]
    assert conn.vision_sampler_0.layers[0].proj_in.weight.shape == (1024, 2048)
    assert conn.vision_sampler_layers[9].layers[0].proj_in.weight.shape == (1024, 5120)


def test_init_scales():
    torch.manual_seed(0)
    cfg = tiny_cfg(hidden_size=256, num_heads=16, image_token_len=4, query_num_list=[4, 4, 4, 4], depth=1)
    conn = build_connector(cfg, [8], [4], 1024)
    assert conn.vision_query.std().item() == pytest.approx(1 / 16, rel=0.1)
    assert conn.image_newline.std().item() == pytest.approx(1 / 32, rel=0.15)
    assert conn.vision_sampler_0.layers[0].pos_embed_0.std().item() == pytest.approx(1.0, rel=0.1)


def test_construction_errors():
    with pytest.raises(ValueError, match="integer multiple"):
        build_connector(tiny_cfg(), [8, 6], [4, 6], 12)
    with pytest.raises(ValueError, match="in-LLM"):
        build_connector(tiny_cfg(query_num_list=[4], num_llm_layers=1), [8], [6], 12)  # 6 % 2 == 0 but 6 % 4 != 0
    with pytest.raises(ValueError, match="divisible"):
        build_connector(tiny_cfg(num_heads=5), [8], [4], 12)
    with pytest.raises(ValueError, match="square"):
        build_connector(tiny_cfg(query_num_list=[8]), [8], [4], 12)
    conn = build_connector(tiny_cfg(), [8], [4], 12)
    with pytest.raises(ValueError, match="expected \\[N=1, 4, 4, 8\\]"):
        conn([torch.randn(1, 4, 4, 7)], [(4, 4)])
    with pytest.raises(ValueError, match="image sizes"):
        conn([torch.randn(2, 4, 4, 8)], [(4, 4)])
    with pytest.raises(ValueError, match="1 encoders"):
        conn([torch.randn(1, 4, 4, 8)] * 2, [(4, 4)])
    assert conn([torch.randn(0, 4, 4, 8)], []).blocks == []


# ---- in-LLM SVA -------------------------------------------------------------------------------------------


def in_llm_setup(**kw):
    cfg = tiny_cfg(num_llm_layers=3, llm_start=1, llm_stride=2, **kw)
    conn = build_connector(cfg, [8, 6], [4, 8], 12)
    return conn


def test_state_holds_unpadded_windows():
    conn = in_llm_setup()
    f = feats(2, [8, 6], [4, 8])
    out = conn(f, [(800, 400), (300, 1000)])
    st = out.state
    assert isinstance(st, SVAState) and st.grids == out.grids == [(2, 4), (4, 2)]
    assert st.offsets == [0, 8] and st.windows[1].shape == (16, 4, 16) and st.masks[0].shape == (16, 1)
    p1 = conn.mm_projector_aux_1(f[1])
    full = to_windows(p1, 4, keep_grid=True)  # [2, 4, 4, 4, 16]
    torch.testing.assert_close(st.windows[1][:8], full[0, 1:3].reshape(8, 4, 16))  # 800x400: rows [1, 3)
    torch.testing.assert_close(st.windows[1][8:], full[1, :, 1:3].reshape(8, 4, 16))  # 300x1000: cols [1, 3)
    # masks of the 8-grid tower: 800x400 valid rows [2, 6) align with the 2x2 windows -> nothing masked;
    # 300x1000 valid columns [3, 5): kept window columns 1 and 2 each see one valid pixel column
    assert st.masks[1][:8].all()
    assert st.masks[1][8:].int().tolist() == [[0, 1, 0, 1], [1, 0, 1, 0]] * 4
    torch.testing.assert_close(st.context, conn.mm_projector_aux_0(f[0]).flatten(1, 2).mean(1))
    assert conn(f, [(5, 5)] * 2).state.windows[0].shape[0] == 32


def _positions(span, grid, newline=True):
    h, w = grid
    row_len = w + int(newline)
    return [span.start + u * row_len + v for u in range(h) for v in range(w)]


def test_apply_in_llm_touches_only_image_tokens_and_matches_sampler():
    conn = in_llm_setup()
    sizes = [(640, 480), (300, 1000), (5, 5)]
    out = conn(feats(3, [8, 6], [4, 8]), sizes)
    n = [b.shape[0] for b in out.blocks]  # 15, 12, 20
    # row 0 holds images 0 and 1, row 1 (left padded) image 2
    spans = [ImageSpan(0, 3, 0), ImageSpan(0, 3 + n[0] + 2, 1), ImageSpan(1, 10, 2)]
    hidden = torch.randn(2, 40, 12)
    new = conn.apply_in_llm(3, hidden, spans, out.state)
    changed = (new != hidden).any(-1)
    expected = torch.zeros(2, 40, dtype=torch.bool)
    for sp in spans:
        for p in _positions(sp, out.grids[sp.image]):
            expected[sp.row, p] = True
    assert torch.equal(changed, expected)  # newline columns and text untouched
    # layer 3 -> vision_sampler_layers[(3 - 1) // 2] = [1]; check image 1 against a direct call
    st = out.state
    pos = _positions(spans[1], out.grids[1])
    q = hidden[0, pos][:, None]
    rows = slice(st.offsets[1], st.offsets[1] + len(pos))
    direct = conn.vision_sampler_layers[1](
        q, st.context[1].expand(len(pos), 1, 16), [w[rows] for w in st.windows], [m[rows] for m in st.masks]
    )
    torch.testing.assert_close(new[0, pos], direct[:, 0], atol=1e-5, rtol=1e-5)
    other = conn.apply_in_llm(1, hidden, spans, st)
    assert not torch.allclose(other[0, pos], new[0, pos])


def test_apply_in_llm_left_padding_and_span_order_invariant():
    conn = in_llm_setup()
    sizes = [(480, 640), (1000, 300)]
    out = conn(feats(2, [8, 6], [4, 8]), sizes)
    n0, n1 = (b.shape[0] for b in out.blocks)
    blk0, blk1 = torch.randn(n0, 12), torch.randn(n1, 12)
    # the same two images at different offsets (as with left padding) in two rows, spans in reverse order
    hidden = torch.zeros(2, 60, 12)
    hidden[0, 2 : 2 + n0], hidden[0, 30 : 30 + n1] = blk0, blk1
    hidden[1, 7 : 7 + n0], hidden[1, 40 : 40 + n1] = blk0, blk1
    spans_a = [ImageSpan(0, 2, 0), ImageSpan(0, 30, 1)]
    a = conn.apply_in_llm(5, hidden[:1], spans_a, out.state)
    spans_b = [ImageSpan(1, 40, 1), ImageSpan(0, 2, 0), ImageSpan(1, 7, 0), ImageSpan(0, 30, 1)]
    spans_b = [ImageSpan(sp.row, sp.start, sp.image) for sp in spans_b]
    b = conn.apply_in_llm(5, hidden, spans_b, out.state)
    torch.testing.assert_close(b[0], a[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(b[1, 7 : 7 + n0], a[0, 2 : 2 + n0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(b[1, 40 : 40 + n1], a[0, 30 : 30 + n1], atol=1e-5, rtol=1e-5)


def test_apply_in_llm_without_newline():
    conn = in_llm_setup(newline=False)
    out = conn(feats(1, [8, 6], [4, 8]), [(800, 400)])
    hidden = torch.randn(1, 20, 12)
    new = conn.apply_in_llm(1, hidden, [ImageSpan(0, 4, 0)], out.state)
    changed = (new != hidden).any(-1)[0]
    assert changed[4:12].all() and not changed[:4].any() and not changed[12:].any()


def test_apply_in_llm_is_differentiable():
    conn = in_llm_setup()
    out = conn(feats(2, [8, 6], [4, 8]), [(640, 480), (5, 5)])
    hidden = torch.randn(1, 50, 12, requires_grad=True)
    new = conn.apply_in_llm(5, hidden * 1.0, [ImageSpan(0, 1, 0), ImageSpan(0, 20, 1)], out.state)
    new.square().sum().backward()
    assert hidden.grad is not None
    torch.testing.assert_close(hidden.grad[0, 0], 2 * hidden[0, 0].detach())  # text passes straight through
    assert all(p.grad is not None for p in conn.vision_sampler_layers[2].parameters())
    assert conn.vision_sampler_layers[0].layers[0].proj_in.weight.grad is None


def test_apply_in_llm_errors():
    conn = in_llm_setup()
    out = conn(feats(1, [8, 6], [4, 8]), [(5, 5)])
    hidden = torch.randn(1, 30, 12)
    with pytest.raises(ValueError, match="in-LLM SVA layers are \\[1, 3, 5\\]"):
        conn.apply_in_llm(2, hidden, [ImageSpan(0, 0, 0)], out.state)
    with pytest.raises(ValueError, match="does not fit"):
        conn.apply_in_llm(1, hidden, [ImageSpan(0, 15, 0)], out.state)
    with pytest.raises(ValueError, match="names image 1"):
        conn.apply_in_llm(1, hidden, [ImageSpan(0, 0, 1)], out.state)
    with pytest.raises(ValueError, match="overlap"):
        conn.apply_in_llm(1, torch.randn(1, 60, 12), [ImageSpan(0, 0, 0), ImageSpan(0, 5, 0)], out.state)
    with pytest.raises(ValueError, match="SVAState"):
        conn.apply_in_llm(1, hidden, [ImageSpan(0, 0, 0)], None)
    assert conn.apply_in_llm(1, hidden, [], out.state) is hidden


def test_gradient_reaches_every_parameter():
    cfg = tiny_cfg(query_num_list=[16, 4], num_llm_layers=2, llm_stride=1)
    conn = build_connector(cfg, [8, 6], [4, 8], 12)
    out = conn(feats(2, [8, 6], [4, 8]), [(640, 480), (300, 1000)])
    n0, n1 = (b.shape[0] for b in out.blocks)
    hidden = torch.cat([out.blocks[0], out.blocks[1]])[None]
    spans = [ImageSpan(0, 0, 0), ImageSpan(0, n0, 1)]
    for layer in conn.in_llm_layers:
        hidden = conn.apply_in_llm(layer, hidden, spans, out.state)
    hidden.square().sum().backward()
    missing = [n for n, p in conn.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


def test_sva_is_registered():
    conn = build_connector(tiny_cfg(), [8], [4], 12)
    assert isinstance(conn, SVAConnector) and conn.in_llm_layers == []


def test_bfloat16_connector_with_fp32_features():
    conn = in_llm_setup().to(torch.bfloat16)
    out = conn(feats(2, [8, 6], [4, 8]), [(800, 400), (5, 5)])
    assert all(b.dtype == torch.bfloat16 for b in out.blocks)
    hidden = torch.randn(1, 40, 12, dtype=torch.bfloat16)
    new = conn.apply_in_llm(1, hidden, [ImageSpan(0, 0, 0), ImageSpan(0, 10, 1)], out.state)
    assert new.dtype == torch.bfloat16 and torch.isfinite(new.float()).all()
