"""CambrianModel end to end on the random ``tiny`` preset: splicing, in-LLM SVA hooks, batched generation,
checkpoints (foreign files in the directory left alone, normal permissions), the memory guard, and the errors a
user meets first."""

import os

import numpy as np
import pytest
import torch
from PIL import Image

from cambrian.constants import IGNORE_INDEX, IMAGE_TOKEN_INDEX
from cambrian.models.cambrian_model import CambrianModel, no_in_llm_aggregation
from cambrian.presets.models import load_preset


def _img(w, h, seed):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = CambrianModel.from_config(load_preset("tiny")).eval()
    # Make the newline and in-LLM samplers matter so the tests can see them.
    with torch.no_grad():
        m.connector.image_newline.normal_()
    return m


def _batch(model, texts, images):
    ids = [model.prompt_ids(t) for t in texts]
    T = max(len(i) for i in ids)
    pad = model.tokenizer.pad_token_id
    input_ids = torch.full((len(ids), T), pad)
    mask = torch.zeros(len(ids), T, dtype=torch.long)
    for b, s in enumerate(ids):
        input_ids[b, : len(s)] = torch.tensor(s)
        mask[b, : len(s)] = 1
    flat = [im for ims in images for im in ims]
    pixels, sizes = model.encode_images(flat) if flat else (None, None)
    return input_ids, mask, pixels, sizes


def test_splice_places_blocks_and_masks_labels(model):
    imgs = [[_img(40, 30, 1)], [_img(30, 40, 2), _img(32, 32, 3)]]
    texts = ["<image>\nWhat is this?", "<image>\nand <image> compare"]
    input_ids, mask, pixels, sizes = _batch(model, texts, imgs)
    labels = input_ids.masked_fill(mask == 0, IGNORE_INDEX)
    visual = model.visual_tokens(model.image_features(pixels), sizes)
    sp = model.splice(input_ids, mask, labels, visual)
    # every image block sits at its span, labels -100 there, lengths = text + blocks
    assert [s.image for s in sp.spans] == [0, 1, 2]
    for s in sp.spans:
        blk = visual.blocks[s.image]
        n = blk.shape[0]
        assert n == model.visual_token_count(sizes[s.image])
        assert torch.equal(sp.inputs_embeds[s.row, s.start : s.start + n], blk)
        assert (sp.labels[s.row, s.start : s.start + n] == IGNORE_INDEX).all()
    for b in range(2):
        n_text = int(mask[b].sum()) - int((input_ids[b] == IMAGE_TOKEN_INDEX).sum())
        n_img = sum(visual.blocks[s.image].shape[0] for s in sp.spans if s.row == b)
        assert int(sp.attention_mask[b].sum()) == n_text + n_img
    # right padding: positions 0..n-1 on real tokens
    n0 = int(sp.attention_mask[0].sum())
    assert sp.position_ids[0, :n0].tolist() == list(range(n0))


def test_forward_loss_and_grads_reach_connector_and_in_llm_layers(model):
    model.train()
    imgs = [[_img(40, 30, 1)], [_img(30, 40, 2)]]
    input_ids, mask, pixels, sizes = _batch(model, ["<image>\nA", "<image>\nB c"], imgs)
    labels = input_ids.masked_fill((mask == 0) | (input_ids == IMAGE_TOKEN_INDEX), IGNORE_INDEX)
    out = model(input_ids=input_ids, attention_mask=mask, labels=labels, pixel_values=pixels, image_sizes=sizes)
    assert torch.isfinite(out.loss)
    model.zero_grad()
    out.loss.backward()
    # after layer 0 (after the last layer it could only change logits at image positions, whose labels are -100)
    g = model.connector.vision_sampler_layers[0].layers[0].proj_out.linear_2.weight.grad
    assert g is not None and g.abs().sum() > 0, "in-LLM SVA must run (and get gradients) in training"
    model.eval()


def test_in_llm_aggregation_changes_the_output(model):
    imgs = [[_img(40, 30, 1)]]
    input_ids, mask, pixels, sizes = _batch(model, ["<image>\nA"], imgs)
    with torch.no_grad():
        a = model(input_ids=input_ids, attention_mask=mask, pixel_values=pixels, image_sizes=sizes).logits
        with no_in_llm_aggregation(model):
            b = model(input_ids=input_ids, attention_mask=mask, pixel_values=pixels, image_sizes=sizes).logits
        c = model(input_ids=input_ids, attention_mask=mask, pixel_values=pixels, image_sizes=sizes).logits
    assert not torch.allclose(a, b)
    assert torch.equal(a, c)


def test_text_only_forward_never_sees_stale_image_features(model):
    """Official bug docs/official-code.md#bugs B4: a text-only call after an image call reused cached features."""
    imgs = [[_img(40, 30, 1)]]
    input_ids, mask, pixels, sizes = _batch(model, ["<image>\nA"], imgs)
    t_ids, t_mask, _, _ = _batch(model, ["just text"], [[]])
    with torch.no_grad():
        fresh = model(input_ids=t_ids, attention_mask=t_mask).logits
        model(input_ids=input_ids, attention_mask=mask, pixel_values=pixels, image_sizes=sizes)
        after = model(input_ids=t_ids, attention_mask=t_mask).logits
    assert torch.equal(fresh, after)


def test_batched_generation_equals_batch_size_one(model):
    texts = [
        "<image>\nWhat colour?",
        "<image>\nHow many objects are there in this picture?",
        "no image here",
        "<image>\n<image>\ntwo",
    ]
    images = [[_img(40, 30, 1)], [_img(30, 50, 2)], [], [_img(32, 32, 3), _img(64, 20, 4)]]
    batched = model.generate_text(texts, images, max_new_tokens=12)
    single = [model.generate_text([t], [i], max_new_tokens=12)[0] for t, i in zip(texts, images)]
    assert batched == single
    assert all(isinstance(s, str) for s in batched)


def test_last_position_prefill_equals_full_logits_prefill(model):
    texts = ["<image>\nWhat colour?", "a longer prompt without any image at all"]
    images = [[_img(40, 30, 1)], []]
    fast = model.generate_text(texts, images, max_new_tokens=10)
    opts = model.config.llm.options
    opts["full_logits"] = True  # the plain HF forward (logits at every position)
    try:
        assert not model._fast_loss_ok()
        full = model.generate_text(texts, images, max_new_tokens=10)
    finally:
        opts.pop("full_logits")
    assert fast == full


def test_next_token_logits_batched_equal_single_and_plain_forward(model):
    texts = ["<image>\nWhat colour?", "no image, and a longer prompt than the first one"]
    images = [[_img(40, 30, 1)], []]
    batched = model.next_token_logits(texts, images)
    assert batched.shape == (2, model.llm.config.vocab_size)
    for b, (t, ims) in enumerate(zip(texts, images)):
        ids, mask, pixels, sizes = _batch(model, [t], [ims])
        with torch.no_grad():
            plain = model(input_ids=ids, attention_mask=mask, pixel_values=pixels, image_sizes=sizes).logits[0, -1]
        assert torch.allclose(batched[b], plain, atol=1e-4)
    with pytest.raises(ValueError, match="1 <image> placeholders but 0 images"):
        model.next_token_logits(["<image>\nx"], [[]])


def test_generation_uses_kv_cache_and_prefill_only_aggregation(model):
    calls = []
    layer = model._decoder_layers()[0]
    h = layer.register_forward_hook(lambda m, a, o: calls.append(o.shape[1]))
    try:
        model.generate_text(["<image>\nhi"], [[_img(40, 30, 1)]], max_new_tokens=5)
    finally:
        h.remove()
    assert calls[0] > 1 and all(n == 1 for n in calls[1:]), "decode steps must feed one token (KV cache)"
    assert model._sva_ctx is None


def test_save_load_identical_logits(model, tmp_path):
    imgs = [[_img(40, 30, 1)], [_img(30, 40, 2)]]
    input_ids, mask, pixels, sizes = _batch(model, ["<image>\nA", "<image>\nB c"], imgs)
    model.save_pretrained(tmp_path / "ckpt")
    names = {p.name for p in (tmp_path / "ckpt").iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= names
    assert not any(n.endswith((".bin", ".pt", ".pth")) for n in names)
    loaded = CambrianModel.from_pretrained(tmp_path / "ckpt").eval()
    with torch.no_grad():
        a = model(input_ids=input_ids, attention_mask=mask, pixel_values=pixels, image_sizes=sizes).logits
        b = loaded(input_ids=input_ids, attention_mask=mask, pixel_values=pixels, image_sizes=sizes).logits
    assert torch.equal(a, b)
    # saving over an existing checkpoint replaces it atomically
    model.save_pretrained(tmp_path / "ckpt")
    assert (tmp_path / "ckpt" / "model.safetensors").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".ckpt")]


def test_more_placeholders_than_images_is_a_clear_error(model):
    with pytest.raises(ValueError, match="2 <image> placeholders but 1 images"):
        model.generate_text(["<image> and <image>"], [[_img(32, 32, 1)]])


def test_unreadable_image_is_a_clear_error(model, tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(ValueError, match="broken.png"):
        model.chat("what?", [str(bad)])
    with pytest.raises(FileNotFoundError, match="missing.png"):
        model.chat("what?", [str(tmp_path / "missing.png")])


def test_unknown_encoder_id_lists_valid_ids():
    from cambrian.presets.models import config_from_mapping

    with pytest.raises(KeyError, match="valid .*clip-vit-l-14-336"):
        config_from_mapping({"encoders": ["clip-vit-xxl-9000"]})


def test_fast_supervised_loss_equals_full_logits_loss(model):
    imgs = [[_img(40, 30, 1)], [_img(30, 40, 2)]]
    input_ids, mask, pixels, sizes = _batch(model, ["<image>\nA b c", "<image>\nB c d e"], imgs)
    labels = input_ids.masked_fill((mask == 0) | (input_ids == IMAGE_TOKEN_INDEX), IGNORE_INDEX)
    labels[:, :3] = IGNORE_INDEX
    kw = dict(input_ids=input_ids, attention_mask=mask, labels=labels, pixel_values=pixels, image_sizes=sizes)
    with torch.no_grad():
        fast = model(**kw).loss
        model.config.llm.options["full_logits"] = True
        try:
            full = model(**kw).loss
        finally:
            model.config.llm.options.pop("full_logits")
    assert torch.allclose(fast, full, atol=1e-5), (fast, full)


def test_load_accepts_preset_config_file_and_checkpoint_dir(model, tmp_path):
    from cambrian.presets.models import PRESET_DIR

    assert CambrianModel.load("tiny").config.name == "tiny"
    assert CambrianModel.load(str(PRESET_DIR / "tiny.yaml")).config.name == "tiny"
    model.save_pretrained(tmp_path / "ck")
    loaded = CambrianModel.load(str(tmp_path / "ck"))
    assert torch.equal(loaded.connector.image_newline, model.connector.image_newline)
    with pytest.raises(KeyError, match="valid presets"):
        CambrianModel.load("no-such-preset")
    with pytest.raises(FileNotFoundError, match="no config.json"):
        CambrianModel.load(str(tmp_path))


def test_in_llm_state_does_not_outlive_forward(model):
    """After a forward the in-LLM aggregation state is gone: a later direct ``model.llm`` call sees no images."""
    assert model.connector.in_llm_layers, "the tiny preset must exercise in-LLM SVA for this test to mean anything"
    ids, mask, pixels, sizes = _batch(model, ["<image>\nWhat colour?"], [[_img(40, 30, 1)]])
    with torch.no_grad():
        model(input_ids=ids, attention_mask=mask, pixel_values=pixels, image_sizes=sizes)
    assert model._sva_ctx is None


def test_gradient_checkpointing_keeps_in_llm_aggregation_in_backward():
    """Gradients with gradient checkpointing (layers recomputed in backward, in-LLM SVA included) equal those
    without; the state is released once backward has reached the input embeddings."""
    grads = []
    for ckpt in (False, True):
        torch.manual_seed(0)
        m = CambrianModel.from_config(load_preset("tiny")).train()
        assert m.connector.in_llm_layers
        if ckpt:
            from cambrian.train.builder import enable_checkpointing

            enable_checkpointing(m.llm)
        ids, mask, pixels, sizes = _batch(m, ["<image>\nWhat colour?"], [[_img(40, 30, 1)]])
        labels = ids.clone()
        labels[ids < 0] = -100
        out = m(input_ids=ids, attention_mask=mask, labels=labels, pixel_values=pixels, image_sizes=sizes)
        assert (m._sva_ctx is not None) == ckpt  # kept for the recompute only
        out.loss.backward()
        assert m._sva_ctx is None
        grads.append(
            {n: p.grad.clone() for n, p in m.named_parameters() if p.grad is not None and "vision_sampler_layers" in n}
        )
    assert grads[0] and grads[0].keys() == grads[1].keys()
    for n in grads[0]:
        assert torch.allclose(grads[0][n], grads[1][n], atol=1e-5), n


# ---- save_pretrained leaves foreign files alone, normal permissions -----------------------------------------


@pytest.fixture(scope="module")
def tiny_model():
    from cambrian.models.cambrian_model import CambrianModel
    from cambrian.presets.models import load_preset

    torch.manual_seed(0)
    return CambrianModel.from_config(load_preset("tiny")).eval()


def test_save_pretrained_keeps_other_files_and_normal_permissions(tiny_model, tmp_path):
    import stat

    from cambrian.models.cambrian_model import CambrianModel

    old = os.umask(0o022)
    try:
        out = tmp_path / "ckpt"
        out.mkdir()
        (out / "NOTES.md").write_text("mine")
        (out / "eval").mkdir()
        (out / "eval" / "run.json").write_text("{}")
        (out / "vocab.txt").write_text("stale tokenizer file of an earlier save")
        tiny_model.save_pretrained(out)
        tiny_model.save_pretrained(out)  # again, over itself
        assert (out / "NOTES.md").read_text() == "mine" and (out / "eval" / "run.json").read_text() == "{}"
        assert not (out / "vocab.txt").exists()  # a tokenizer file this save did not write: not left to mix in
        assert not [p.name for p in out.iterdir() if p.name.startswith(".")], "temp files left behind"
        assert not [p.name for p in tmp_path.iterdir() if p.name != "ckpt"]
        for name in ("config.json", "model.safetensors", "tokenizer.json"):
            assert stat.S_IMODE((out / name).stat().st_mode) == 0o644, name
        fresh = tmp_path / "sub" / "fresh"
        tiny_model.save_pretrained(fresh)
        assert stat.S_IMODE(fresh.stat().st_mode) == 0o755
        assert stat.S_IMODE((fresh / "model.safetensors").stat().st_mode) == 0o644
        CambrianModel.from_pretrained(out)
    finally:
        os.umask(old)


# ---- resource guard: a model that does not fit is refused before anything is allocated --------------------


HUGE_LLAMA = {
    "model_type": "llama",
    "hidden_size": 8192,
    "intermediate_size": 28672,
    "num_hidden_layers": 80,
    "num_attention_heads": 64,
    "num_key_value_heads": 8,
    "vocab_size": 128256,
    "max_position_embeddings": 8192,
}


def _huge_config():
    from cambrian.presets.models import resolve_model_config

    cfg = resolve_model_config("tiny")
    cfg.name = "huge"
    cfg.llm.hf_config = dict(HUGE_LLAMA)
    return cfg


def test_memory_estimate_of_a_huge_config_on_meta():
    from cambrian.models.builder import estimate_parameter_bytes

    need = estimate_parameter_bytes(_huge_config())  # ~70B params in fp32, built on meta in well under a second
    assert 250 * 2**30 < need < 300 * 2**30


def test_from_config_refuses_a_model_larger_than_available_memory(monkeypatch, capsys):
    import cambrian.models.builder as builder
    from cambrian.errors import ResourceError
    from cambrian.models.cambrian_model import CambrianModel

    monkeypatch.delenv("CAMBRIAN_SKIP_MEMORY_CHECK", raising=False)
    monkeypatch.setattr(builder, "available_memory_bytes", lambda device=None: 2 * 2**30)
    built = []
    monkeypatch.setattr(
        builder, "build_components", lambda *a, **k: built.append(1) or (_ for _ in ()).throw(AssertionError)
    )
    with pytest.raises(
        ResourceError,
        match=r"model 'huge' needs about 2\d\d\.\d GiB .* 2\.0 GiB of available memory.*"
        r"CAMBRIAN_SKIP_MEMORY_CHECK=1",
    ):
        CambrianModel.from_config(_huge_config(), load_weights=False)
    assert not built  # refused before building
    # the override: the check is skipped (and building starts)
    monkeypatch.setenv("CAMBRIAN_SKIP_MEMORY_CHECK", "1")
    with pytest.raises(AssertionError):
        CambrianModel.from_config(_huge_config(), load_weights=False)
    monkeypatch.delenv("CAMBRIAN_SKIP_MEMORY_CHECK")
    with pytest.raises(AssertionError):
        CambrianModel.from_config(_huge_config(), load_weights=False, force=True)
    assert len(built) == 2


def test_tiny_model_fits_and_cli_reports_the_guard_in_one_line(monkeypatch, tmp_path, capsys):
    from PIL import Image

    import cambrian.models.builder as builder
    from cambrian.cli.main import main
    from cambrian.presets.models import resolve_model_config

    monkeypatch.delenv("CAMBRIAN_SKIP_MEMORY_CHECK", raising=False)
    builder.check_model_fits(resolve_model_config("tiny"))  # real available memory: the tiny model fits
    monkeypatch.setattr(builder, "available_memory_bytes", lambda device=None: 1024)
    img = tmp_path / "x.png"
    Image.new("RGB", (8, 8)).save(img)
    assert main(["chat", "--model", "tiny", "--image", str(img), "--prompt", "hi", "--device", "cpu"]) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and err[0].startswith("error: model 'tiny' needs about") and "available memory" in err[0], err


def test_memory_check_uses_cuda_free_memory_and_meminfo_fallback(monkeypatch, tmp_path):
    import builtins
    import sys

    import cambrian.models.builder as builder
    from cambrian.errors import ResourceError

    monkeypatch.delenv("CAMBRIAN_SKIP_MEMORY_CHECK", raising=False)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (3 * 2**30, 80 * 2**30))
    assert builder.available_memory_bytes("cuda:0") == 3 * 2**30
    with pytest.raises(ResourceError, match=r"the model needs about 4\.0 GiB .* 3\.0 GiB of cuda device memory"):
        builder.check_memory(4 * 2**30, "the model", "cuda:0")
    builder.check_memory(2 * 2**30, "the model", "cuda:0")
    # no psutil: /proc/meminfo MemAvailable
    real_import = builtins.__import__

    def no_psutil(name, *a, **k):
        if name == "psutil":
            raise ImportError(name)
        return real_import(name, *a, **k)

    monkeypatch.delitem(sys.modules, "psutil", raising=False)
    monkeypatch.setattr(builtins, "__import__", no_psutil)
    avail = builder.available_memory_bytes()
    if os.path.exists("/proc/meminfo"):
        assert avail is not None and avail > 0
