"""Parity with the official Cambrian-1 code itself (tests/fixtures/official_parity, made by
scripts/official_parity/generate.py running the official modelling code under transformers 4.40.1).

Each fixture release was written by the official ``save_pretrained``: an 8B-shaped Llama-3 model (RoPE base 500000,
in-LLM SVA on), a 34B-shaped Yi model (RoPE base 5e6 with linear scaling, attention biases, connector only) and a
Phi-3 model (sliding window shorter than the prompt, in-LLM SVA on). Our loader reads them strictly; our logits must
equal the official ones at 1e-4 (fp32) for square, landscape and portrait images and a right-padded batch of two,
and our greedy decoding must produce the official ``generate()`` tokens. The Llama-3 text path compares our prompt
ids with the official ``tokenizer_image_token`` (docs/official-code.md#bugs B2, B3 where they differ).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from cambrian.models.cambrian_model import no_in_llm_aggregation
from cambrian.models.llm.tokenize import tokenize_prompt
from cambrian.models.official import load_release

FIXTURE = Path(__file__).parent / "fixtures" / "official_parity"
PROMPTS = json.loads((FIXTURE / "prompts.json").read_text(encoding="utf-8"))
TOWERS = {t["name"]: t["preset"] for t in PROMPTS["towers"]}
RELEASES = list(PROMPTS["releases"])
ATOL = 1e-4


def load(release: str):
    return load_release(FIXTURE / release, towers=TOWERS, load_towers=False).eval()


def cases(release: str) -> tuple[dict, dict[str, torch.Tensor]]:
    meta = json.loads((FIXTURE / f"{release}.cases.json").read_text(encoding="utf-8"))
    return meta, load_file(str(FIXTURE / f"{release}.cases.safetensors"))


def features(t: dict[str, torch.Tensor], case: str) -> list[torch.Tensor]:
    """The towers' output grids of the case, ``[B, N, C]`` as the official towers return them -> ours ``[B, s, s, C]``."""
    out = []
    for k, tower in enumerate(PROMPTS["towers"]):
        f = t[f"{case}.features.{k}"]
        out.append(f.view(f.shape[0], tower["grid"], tower["grid"], f.shape[-1]))
    return out


def our_logits(model, t, case, sizes):
    with torch.no_grad():
        return model(
            input_ids=t[f"{case}.input_ids"],
            attention_mask=t[f"{case}.attention_mask"],
            features=features(t, case),
            image_sizes=[tuple(s) for s in sizes],
        ).logits


def max_diff(ours: torch.Tensor, official: torch.Tensor, mask: torch.Tensor) -> float:
    """Largest |difference| over the positions the official model computed for real (its spliced attention mask);
    the spliced sequences must have the same layout (right padding, same lengths)."""
    assert ours.shape[0] == official.shape[0]
    worst = 0.0
    for b in range(official.shape[0]):
        n = int(mask[b].sum())
        assert bool(mask[b, :n].all()), "the official splice pads on the right"
        worst = max(worst, float((ours[b, :n] - official[b, :n]).abs().max()))
    return worst


@pytest.mark.parametrize("release", RELEASES)
def test_logits_equal_the_official_code(release):
    model = load(release)
    meta, t = cases(release)
    for case, info in meta["cases"].items():
        official = t[f"{case}.logits"]
        ours = our_logits(model, t, case, info["image_sizes"])
        diff = max_diff(ours, official, t[f"{case}.logits_mask"])
        assert diff <= ATOL, f"{release} {case}: max |logit difference| {diff:.3g}"


@pytest.mark.parametrize("release", [r for r in RELEASES if "square.logits_forward_b5" in cases(r)[1]])
def test_official_forward_skips_the_in_llm_sva_b5(release):
    """Bug B5: the official forward() outside TPUs runs the in-LLM SVA only when generate() left its inputs on the
    model. Its logits are ours with the in-LLM aggregation switched off; with it on (ours, and the official
    generate path) they differ."""
    model = load(release)
    meta, t = cases(release)
    sizes = meta["cases"]["square"]["image_sizes"]
    skipped = t["square.logits_forward_b5"]
    mask = t["square.logits_mask"]
    with no_in_llm_aggregation(model):
        assert max_diff(our_logits(model, t, "square", sizes), skipped, mask) <= ATOL
    assert max_diff(our_logits(model, t, "square", sizes), skipped, mask) > 1e-2


def test_the_official_phi3_forward_needs_generate_first():
    """The official Phi-3 forward() has no guard at all: without generate()'s cache it raises (recorded by the
    generator); ours runs the in-LLM SVA in every forward."""
    meta, _ = cases("phi3-3b")
    assert meta["cases"]["square"]["forward_b5_error"].startswith("AttributeError")


class _Features:
    """``features_from`` provider: the fixture's tower grids instead of running the towers."""

    def __init__(self, feats):
        self.feats = feats
        self.calls = 0

    def __call__(self, pixel_values, compute):
        self.calls += 1
        return self.feats


@pytest.mark.parametrize("release", RELEASES)
def test_greedy_decoding_equals_the_official_generate(release):
    model = load(release)
    meta, t = cases(release)
    tmpl = PROMPTS["templates"][meta["template"]]
    eos = PROMPTS["eos_token_id"]
    checked = 0
    for case, info in meta["cases"].items():
        if "greedy_tokens" not in info:
            continue
        (q,) = info["questions"]
        question = tmpl["questions"][q]
        # the official run was fed exactly the ids our template gives for this question
        assert model.prompt_ids(question, system=tmpl["system"]) == tmpl["ids"][q]
        tokens = info["greedy_tokens"]
        if eos in tokens:
            tokens = tokens[: tokens.index(eos)]
        expected = model.tokenizer.decode(tokens, skip_special_tokens=True)
        (w, h) = info["image_sizes"][0]
        provider = _Features(features(t, case))
        with model.features_from(provider):
            (text,) = model.generate_text(
                [question],
                [[Image.new("RGB", (w, h))]],
                max_new_tokens=len(info["greedy_tokens"]),
                system=tmpl["system"],
            )
        assert provider.calls == 1
        assert text == expected.strip() or text == expected, f"{release} {case}: {text!r} != {expected!r}"
        checked += 1
    assert checked == 3


# ---- the text path: our prompt ids against the official tokenizer_image_token, Llama-3 tokenizer ---------------
def _llama3_text_path():
    data = json.loads((FIXTURE / "llama3_text_path.json").read_text(encoding="utf-8"))
    return data["prompts"]


def _messages(turns):
    msgs = []
    for user, assistant in turns:
        msgs.append({"role": "user", "content": user})
        if assistant is not None:
            msgs.append({"role": "assistant", "content": assistant})
    return msgs


@pytest.mark.assets
@pytest.mark.parametrize("auto_bos", [False, True])
def test_llama3_prompt_ids_equal_the_official_ones(auto_bos):
    """The released 8B's tokenizer does not prepend BOS (its image_position 91 says so). Ours equals the official
    *training* ids (tokenizer_image_token_llama3) for it; the official *inference* helper drops the "\\n" after
    <image> (B3). With a tokenizer that prepends BOS, the official helpers double the BOS and move the image to 92
    (B2: the in-LLM SVA would read the wrong positions); ours is unchanged."""
    from test_official_release import llama3_tokenizer

    tok = llama3_tokenizer(auto_bos)
    for row in _llama3_text_path():
        ours = tokenize_prompt(_messages(row["turns"]), "llama_3", tok)
        clean = row["no_auto_bos"]
        assert ours == clean["training"]
        img = ours.index(-200)
        assert img == 91
        assert ours[img + 1] == 198  # "\n", kept
        assert clean["inference"] == ours[: img + 1] + ours[img + 2 :]  # B3: the official inference drops it
        official = row["auto_bos" if auto_bos else "no_auto_bos"]["inference"]
        if auto_bos:
            assert official[:2] == [128000, 128000] and official.index(-200) == 92  # B2
        else:
            assert official.index(-200) == 91


# ---- converting back: what the official code wrote, written again ------------------------------------------------
@pytest.mark.parametrize("release", RELEASES)
def test_converting_an_official_release_back_writes_the_same_model(release, tmp_path):
    from safetensors.torch import load_file as read

    from cambrian.models.official import save_release
    from cambrian.models.official.llm_keys import COMPUTE_KEYS, FAMILY_OF

    original = json.loads((FIXTURE / release / "config.json").read_text(encoding="utf-8"))
    out = save_release(load(release), tmp_path / "out")
    written = json.loads((out / "config.json").read_text(encoding="utf-8"))
    for key in COMPUTE_KEYS[FAMILY_OF[original["model_type"]]]:
        assert written[key] == original[key], key
    a, b = read(str(FIXTURE / release / "model.safetensors")), read(str(out / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ---- --tower: local weights or other presets for a release's towers, the same for every command ----------------
def _tower_dirs(tmp_path) -> list[str]:
    """Each tiny stand-in tower saved as the HF directory a user would point --tower at."""
    from cambrian.models.encoders import build_encoder, expand_encoder_entry

    items = []
    for name, entry in TOWERS.items():
        enc = build_encoder(expand_encoder_entry(entry), load_weights=False)
        d = tmp_path / name.replace("/", "_")
        enc.model.save_pretrained(str(d)) if hasattr(enc, "model") else d.mkdir()
        preset = entry if isinstance(entry, str) else entry["preset"]
        items.append(f"{name}={preset}@{d}")
    return items


def test_a_release_without_tower_weights_names_the_tower_and_the_flag():
    from cambrian.models.official import ReleaseFormatError

    with pytest.raises(ReleaseFormatError) as e:
        load_release(FIXTURE / "llama3-8b")  # the real towers' hub ids, and no hub here
    msg = str(e.value)
    assert "tower 'siglip/CLIP-ViT-SO400M-14-384'" in msg and "--tower 'siglip/CLIP-ViT-SO400M-14-384=DIR'" in msg


def test_tower_map_parsing(tmp_path):
    from cambrian.models.official import ReleaseFormatError
    from cambrian.models.official.tower_map import TowerMap

    tm = TowerMap.parse([f"a/b={tmp_path}", "c=tiny-clip", f"d=tiny-siglip@{tmp_path}"])
    assert tm.dirs == {"a/b": str(tmp_path), "d": str(tmp_path)}
    assert tm.presets == {"c": "tiny-clip", "d": "tiny-siglip"}
    assert not TowerMap.parse([]) and TowerMap.parse(["c=tiny-clip"])
    for bad, msg in [
        ("no-equals", "expects NAME=DIR"),
        ("x=not-a-preset", "neither a directory nor an encoder preset"),
        (f"x=tiny-clip@{tmp_path / 'missing'}", "weights directory"),
    ]:
        with pytest.raises(ReleaseFormatError, match=msg):
            TowerMap.parse([bad])
    with pytest.raises(ReleaseFormatError, match="given twice"):
        TowerMap.parse(["c=tiny-clip", "c=tiny-siglip"])


def test_every_model_command_takes_tower_and_loads_through_it(tmp_path, capsys):
    from cambrian.cli.main import build_parser, main
    from cambrian.models.official.tower_map import TowerMap
    from cambrian.models.vlm import load_vlm

    items = _tower_dirs(tmp_path)
    for cmd, extra in [
        ("info", [str(FIXTURE / "llama3-8b")]),
        ("convert", [str(FIXTURE / "llama3-8b"), "out", "--to", "cambrian"]),
        ("chat", ["--model", "m"]),
        ("serve", ["--model", "m"]),
        ("eval", ["run", "--model", "m", "--bench", "pope", "--out", "o"]),
    ]:
        args = build_parser(load=cmd).parse_args([cmd, *extra, "--tower", items[0]])
        assert args.tower == [items[0]], cmd
    # the Python path every command uses: load_vlm / CambrianModel.load with a TowerMap
    model = load_vlm(str(FIXTURE / "llama3-8b"), towers=TowerMap.parse(items))
    assert [e.config.options["official_name"] for e in model.encoders] == list(TOWERS)
    assert [e.config.name_or_path for e in model.encoders] == [i.rpartition("@")[2] for i in items]
    meta, t = cases("llama3-8b")
    diff = max_diff(our_logits(model.eval(), t, "square", meta["cases"]["square"]["image_sizes"]),
                    t["square.logits"], t["square.logits_mask"])  # fmt: skip
    assert diff <= ATOL
    assert main(["info", str(FIXTURE / "llama3-8b"), "--json", *sum((["--tower", i] for i in items), [])]) == 0
    assert json.loads(capsys.readouterr().out)["released_format"]["image_position"] == 18
    # a model that is not a release: --tower is one error line
    assert main(["chat", "--model", "tiny", "--prompt", "hi", "--tower", "x=tiny-clip"]) == 2
    assert "applies to released-format checkpoints only" in capsys.readouterr().err
