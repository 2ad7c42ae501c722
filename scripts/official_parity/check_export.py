"""The export direction: a model built here, written by ``cambrian convert --to official``, loaded by the official
code, must compute our logits. Two phases, one per venv:

    .venv/bin/python scripts/official_parity/check_export.py ours --out /tmp/export-check
    /tmp/offvenv/bin/python scripts/official_parity/check_export.py official --out /tmp/export-check \
        --official /tmp/official-src

Phase ``ours`` builds tiny random models of two families with non-default settings (Llama-3 layout: RoPE base 300000
with linear scaling 2.0, in-LLM SVA; Phi-3: sliding window 12, in-LLM SVA), saves each in our format, converts it
with the ``cambrian convert`` command, and records our logits for a square and a landscape image (tower grids fed
directly). Phase ``official`` loads each converted directory with the official ``from_pretrained`` and prints the
largest logit difference per case (nothing is written to the repository).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

TOWERS = {
    "siglip/CLIP-ViT-SO400M-14-384": "tiny-siglip",
    "openai/clip-vit-large-patch14-336": "tiny-clip",
    "facebook/dinov2-giant-res378": "tiny-dinov2",
    "clip-convnext-XXL-multi-stage": {"preset": "tiny-convnext", "grid_size": 16},
}
CASES = {"square": (32, 32), "landscape": (64, 40)}
QUESTION = "<image>\nWhat color is the cube?"


def build_ours(family: str):
    from cambrian.config import CambrianConfig, ConnectorConfig, LLMConfig
    from cambrian.models.cambrian_model import CambrianModel
    from cambrian.models.llm.loader import tiny_llm_config, tiny_tokenizer
    from cambrian.presets.encoders import expand_encoder_entry

    encs = []
    for name, entry in TOWERS.items():
        e = expand_encoder_entry(entry)
        e.options = {**e.options, "official_name": name}
        encs.append(e)
    conn = ConnectorConfig(
        type="sva",
        hidden_size=32,
        image_token_len=16,
        query_num_list=[16],
        depth=3,
        num_heads=16,
        num_llm_layers=2,
        llm_start=0,
        llm_stride=2,
    )
    vocab = len(tiny_tokenizer())
    if family == "llama":
        hf = tiny_llm_config(
            num_layers=4, rope_parameters={"rope_theta": 300000.0, "rope_type": "linear", "factor": 2.0}
        )
        template = "llama_3"
    else:
        from transformers import Phi3Config

        hf = Phi3Config(
            vocab_size=vocab,
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=4,
            num_attention_heads=4,
            num_key_value_heads=4,
            max_position_embeddings=4096,
            original_max_position_embeddings=4096,
            sliding_window=12,
            pad_token_id=0,
            bos_token_id=1,
            eos_token_id=2,
            tie_word_embeddings=False,
        ).to_dict()
        template = "phi3"
    llm = LLMConfig(backend="random", tokenizer="tiny", hf_config=hf, template=template, max_length=512)
    torch.manual_seed(0)
    model = CambrianModel.from_config(CambrianConfig(name=f"export-{family}", encoders=encs, connector=conn, llm=llm))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if not name.startswith("encoders."):
                p.add_((0.25 if "proj" in name and "self_attn" in name else 0.02) * torch.randn_like(p))
        model.connector.image_newline.normal_()
    return model.eval()


def phase_ours(out: Path) -> None:
    from safetensors.torch import save_file

    from cambrian.cli.main import main as cli

    out.mkdir(parents=True, exist_ok=True)
    for family in ("llama", "phi3"):
        model = build_ours(family)
        ours_dir, release = out / f"{family}-ours", out / f"{family}-official"
        model.save_pretrained(ours_dir)
        assert cli(["convert", str(ours_dir), str(release), "--to", "official"]) == 0
        ids = model.prompt_ids(QUESTION)
        tensors = {}
        for case, (w, h) in CASES.items():
            feats = [torch.randn(1, e.config.out_grid, e.config.out_grid, e.config.hidden_size) for e in model.encoders]
            with torch.no_grad():
                logits = model(
                    input_ids=torch.tensor([ids]),
                    attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                    features=feats,
                    image_sizes=[(w, h)],
                ).logits
            tensors[f"{case}.input_ids"] = torch.tensor([ids])
            for k, f in enumerate(feats):
                tensors[f"{case}.features.{k}"] = f.flatten(1, 2).contiguous()  # [B, N, C], the official towers' shape
            tensors[f"{case}.logits"] = logits.contiguous()
        save_file(tensors, str(out / f"{family}.ours.safetensors"))
        meta = {"towers": {n: e.config.hidden_size for n, e in zip(TOWERS, model.encoders)}, "cases": CASES}
        (out / f"{family}.json").write_text(json.dumps(meta), encoding="utf-8")
        print(f"{family}: wrote {release} and our logits")


def phase_official(out: Path, checkout: Path) -> None:
    from safetensors.torch import load_file

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from generate import clear_generate_cache, official_logits
    from official_code import use_official_code

    widths = {}
    for family in ("llama", "phi3"):
        widths.update(json.loads((out / f"{family}.json").read_text(encoding="utf-8"))["towers"])
    use_official_code(checkout, widths)
    from cambrian.model.language_model.cambrian_llama import CambrianLlamaForCausalLM
    from cambrian.model.language_model.cambrian_phi3 import CambrianPhi3ForCausalLM

    for family, cls in (("llama", CambrianLlamaForCausalLM), ("phi3", CambrianPhi3ForCausalLM)):
        kwargs = {"attn_implementation": "eager"} if family == "phi3" else {}
        model = cls.from_pretrained(str(out / f"{family}-official"), **kwargs).eval()
        cfg = model.config
        print(
            f"{family}: official config rope_theta={cfg.rope_theta} rope_scaling={cfg.rope_scaling} "
            f"sliding_window={getattr(cfg, 'sliding_window', None)} image_position={cfg.image_position}"
        )
        t = load_file(str(out / f"{family}.ours.safetensors"))
        meta = json.loads((out / f"{family}.json").read_text(encoding="utf-8"))
        for case, (w, h) in meta["cases"].items():
            ids = t[f"{case}.input_ids"]
            feats = [t[f"{case}.features.{k}"] for k in range(len(widths and meta["towers"]))]
            with torch.no_grad():
                logits, mask = official_logits(model, ids, torch.ones_like(ids), feats, [(w, h)], in_llm=True)
            clear_generate_cache(model)
            n = int(mask[0].sum())
            diff = float((logits[0, :n] - t[f"{case}.logits"][0, :n]).abs().max())
            print(f"  {case}: max |our logits - official logits| = {diff:.3g} over {n} positions")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("phase", choices=["ours", "official"])
    ap.add_argument("--out", type=Path, required=True, help="scratch directory shared by the two phases")
    ap.add_argument("--official", type=Path, help="checkout of cambrian-mllm/cambrian (phase official)")
    args = ap.parse_args()
    if args.phase == "ours":
        phase_ours(args.out)
    else:
        if args.official is None:
            ap.error("phase official needs --official")
        phase_official(args.out, args.official)


if __name__ == "__main__":
    main()
