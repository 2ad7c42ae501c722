"""Released-format directories an attacker hands over (issue 25, items 5, 6 and 8): a layer-count bomb in
``config.json`` is one error line in bounded memory, a small fuzz of config values never ends in a traceback,
``convert`` refuses a source without a tokenizer (or takes ``--tokenizer``) and writes a self-contained output, and
``--max-shard-size`` must be a real size."""

from __future__ import annotations

import json
import random
import shutil

import pytest
import torch
from peak_memory import PeakRSS

from cambrian.cli.main import main
from cambrian.config import CambrianConfig, ConnectorConfig, LLMConfig
from cambrian.models.cambrian_model import CambrianModel
from cambrian.models.llm.loader import tiny_llm_config, tiny_tokenizer
from cambrian.models.official import save_release
from cambrian.presets.encoders import expand_encoder_entry

TOWER = "openai/clip-vit-large-patch14-336"
MAP = ["--tower", f"{TOWER}=tiny-clip"]  # the official tower as a tiny random one


def _tiny_release_model() -> CambrianModel:
    enc = expand_encoder_entry("tiny-clip")
    enc.options = {**enc.options, "official_name": TOWER}
    cfg = CambrianConfig(
        name="tiny-release",
        encoders=[enc],
        connector=ConnectorConfig(
            type="sva", hidden_size=32, image_token_len=16, query_num_list=[16], depth=1, num_heads=16,
            num_llm_layers=2, llm_start=0, llm_stride=1,
        ),
        llm=LLMConfig(backend="random", tokenizer="tiny", hf_config=tiny_llm_config(num_layers=2), template="chatml"),
    )  # fmt: skip
    torch.manual_seed(0)
    return CambrianModel.from_config(cfg).eval()


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    root = tmp_path_factory.mktemp("release") / "ckpt"
    save_release(_tiny_release_model(), root, max_shard_bytes=50_000)
    return root


def _copy(release, dest, **changes):
    shutil.copytree(release, dest)
    cfg = json.loads((dest / "config.json").read_text())
    cfg.update(changes)
    (dest / "config.json").write_text(json.dumps(cfg))
    return dest


def _one_error(capsys) -> str:
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error: ")]
    assert len(err) == 1, err
    return err[0]


@pytest.mark.parametrize(
    "changes, needle",
    [
        ({"num_hidden_layers": 20_000}, "num_hidden_layers must be a whole number from 0 to 512, got 20000"),
        (
            {"num_of_vision_sampler_layers": 10**7},
            "'num_of_vision_sampler_layers' must be a whole number from 0 to 512",
        ),
        ({"connector_depth": 10**6}, "'connector_depth' must be a whole number from 0 to 64"),
        ({"num_local_experts": 10**8}, "num_local_experts must be"),
    ],
)
def test_a_layer_count_bomb_is_one_error_line_in_bounded_memory(release, tmp_path, capsys, changes, needle):
    """20000 layers took 33 s and 1.2 GB on the meta device; 10^7 grew without bound."""
    bomb = _copy(release, tmp_path / "bomb", **changes)
    assert main(["info", str(release), *MAP]) == 0  # warm: imports, the tokenizer
    capsys.readouterr()
    with PeakRSS() as peak:
        assert main(["info", str(bomb), *MAP]) == 2
        assert main(["convert", str(bomb), str(tmp_path / "out"), "--to", "cambrian", *MAP]) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error: ")]
    assert len(err) == 2 and all(str(bomb / "config.json") in e and needle in e for e in err), err
    assert peak.delta < 64 << 20, f"{peak.delta / 2**20:.0f} MiB"


BAD_VALUES = [0, -1, "x", None, [], {}, 1e300, True, 10**30, 2.5, {"a": 1}, [1], ["x"], [[1]], [None], "", float("nan")]


def test_fuzzed_release_configs_never_end_in_a_traceback(release, tmp_path, capsys):
    """A seeded sample of (key, bad value) mutations of a working config.json: ``info`` either works or prints one
    ``error:`` line; it never raises (before: tracebacks from transformers, torch and int() on lists)."""
    base = json.loads((release / "config.json").read_text())
    pairs = [(k, v) for k in sorted(base) for v in BAD_VALUES]
    rng = random.Random(25)
    sample = rng.sample(pairs, 120)
    for key in ("hidden_size", "num_attention_heads", "mm_vision_select_layer", "query_num_list", "vocab_size"):
        sample += [(key, v) for v in (0, -1, 10**30, [[1]], {"a": 1}, "x")]
    d = tmp_path / "fuzz"
    d.mkdir()
    codes = []
    for key, value in sample:
        (d / "config.json").write_text(json.dumps({**base, key: value}))
        capsys.readouterr()
        rc = main(["info", str(d), *MAP])  # raises (fails the test) on anything but a clean exit
        codes.append(rc)
        if rc != 0:
            err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip() and not ln.startswith("warning")]
            assert rc == 2 and len(err) == 1 and err[0].startswith("error: "), (key, value, err)
    assert codes.count(2) > 60  # most mutations are refused, as they should be


# ---- convert ------------------------------------------------------------------------------------------------
def test_convert_refuses_a_source_without_a_tokenizer(release, tmp_path, capsys):
    bare = _copy(release, tmp_path / "bare")
    for f in bare.iterdir():
        if f.name.startswith(("tokenizer", "special_tokens")) or f.name in ("vocab.json", "merges.txt"):
            f.unlink()
    out = tmp_path / "out"
    assert main(["convert", str(bare), str(out), "--to", "cambrian", *MAP]) == 2
    assert "holds no tokenizer" in _one_error(capsys) and not (out / "config.json").exists()
    assert main(["convert", str(bare), str(tmp_path / "rel"), "--to", "official", *MAP]) == 2
    assert "--tokenizer DIR" in _one_error(capsys)
    tok = tmp_path / "tok"
    tiny_tokenizer().save_pretrained(str(tok))
    assert main(["convert", str(bare), str(out), "--to", "cambrian", *MAP, "--tokenizer", str(tok)]) == 0
    assert (out / "tokenizer.json").is_file()
    for f in out.glob("tokenizer*"):  # a model dir that lost its tokenizer: chat says so before answering
        f.unlink()
    capsys.readouterr()
    assert main(["chat", "--model", str(out), "--prompt", "hi"]) == 2
    assert "holds no tokenizer" in _one_error(capsys)


def test_a_converted_model_is_self_contained(release, tmp_path):
    src = _copy(release, tmp_path / "src")
    out = tmp_path / "out"
    assert main(["convert", str(src), str(out), "--to", "cambrian", *MAP]) == 0
    assert str(src) not in (out / "config.json").read_text()
    before = CambrianModel.load(out).generate_text(["hello"], max_new_tokens=4)
    shutil.rmtree(src)  # nothing of the source is needed any more
    model = CambrianModel.load(out)
    assert model.tokenizer is not None and model.generate_text(["hello"], max_new_tokens=4) == before


@pytest.mark.parametrize("size", ["0", "-5GB", "999", "nanGB", "infGB", "1e400GB", "GB", "5 parsecs"])
def test_max_shard_size_must_be_a_real_size(release, tmp_path, capsys, size):
    out = tmp_path / "out"
    assert main(["convert", str(release), str(out), "--to", "official", *MAP, f"--max-shard-size={size}"]) == 2
    assert _one_error(capsys).startswith(f"error: --max-shard-size {size!r}") and not out.exists()
