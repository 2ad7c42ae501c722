"""The released families' ``config.json`` files as key-audit fixtures (tests/fixtures/official_configs/).

``cambrian-8b.json`` is the released ``nyu-visionx/cambrian-8b`` config as published. The three others cannot be
fetched here (no hub), so this script reconstructs them the way the official code wrote the 8B's: the official
``CambrianConfig`` class (a ``LlamaConfig``, or the official code's vendored ``Phi3Config``) of transformers 4.40.1
built from the base LLM's published architecture, plus the Cambrian keys of the official fine-tuning script of that
size (tower list, token lengths, in-LLM SVA layout, ``image_position``). The values are public facts; the key set is
what that class serialises, which is what the audit needs. Run it in the throwaway venv of ``generate.py``:

    /tmp/offvenv/bin/python scripts/official_parity/family_configs.py --official /tmp/official-src
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from official_code import use_official_code

OUT = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "official_configs"
TOWERS = [
    "siglip/CLIP-ViT-SO400M-14-384",
    "openai/clip-vit-large-patch14-336",
    "facebook/dinov2-giant-res378",
    "clip-convnext-XXL-multi-stage",
]
# the base LLMs' published architectures (lmsys/vicuna-13b-v1.5, NousResearch/Nous-Hermes-2-Yi-34B,
# microsoft/Phi-3-mini-4k-instruct)
BASES = {
    "cambrian-13b": dict(
        family="llama",
        name_or_path="lmsys/vicuna-13b-v1.5",
        llm=dict(
            vocab_size=32000,
            hidden_size=5120,
            intermediate_size=13824,
            num_hidden_layers=40,
            num_attention_heads=40,
            num_key_value_heads=40,
            max_position_embeddings=4096,
            rms_norm_eps=1e-5,
            rope_theta=10000.0,
            bos_token_id=1,
            eos_token_id=2,
            pad_token_id=0,
        ),
        sampler=dict(
            num_of_vision_sampler_layers=10, start_of_vision_sampler_layers=0, stride_of_vision_sampler_layers=4
        ),
        image_position=35,
        connector_only=False,
    ),
    "cambrian-34b": dict(
        family="llama",
        name_or_path="NousResearch/Nous-Hermes-2-Yi-34B",
        llm=dict(
            vocab_size=64000,
            hidden_size=7168,
            intermediate_size=20480,
            num_hidden_layers=60,
            num_attention_heads=56,
            num_key_value_heads=8,
            max_position_embeddings=4096,
            rms_norm_eps=1e-5,
            rope_theta=5000000.0,
            bos_token_id=1,
            eos_token_id=7,
            pad_token_id=0,
        ),
        sampler=dict(
            num_of_vision_sampler_layers=9, start_of_vision_sampler_layers=0, stride_of_vision_sampler_layers=7
        ),
        image_position=87,
        connector_only=False,
    ),
    "cambrian-phi3-3b": dict(
        family="phi3",
        name_or_path="microsoft/Phi-3-mini-4k-instruct",
        llm=dict(
            vocab_size=32064,
            hidden_size=3072,
            intermediate_size=8192,
            num_hidden_layers=32,
            num_attention_heads=32,
            num_key_value_heads=32,
            max_position_embeddings=4096,
            original_max_position_embeddings=4096,
            rms_norm_eps=1e-5,
            rope_theta=10000.0,
            sliding_window=2047,
            bos_token_id=1,
            eos_token_id=32000,
            pad_token_id=32000,
        ),
        # the repository has no script for the 3B: its in-LLM layout is not published, so the connector-only keys
        sampler=dict(
            num_of_vision_sampler_layers=10, start_of_vision_sampler_layers=0, stride_of_vision_sampler_layers=3
        ),
        image_position=None,
        connector_only=True,
    ),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--official", required=True, type=Path, help="checkout of cambrian-mllm/cambrian")
    args = ap.parse_args()
    use_official_code(args.official)
    from transformers import LlamaConfig

    eight = json.loads((OUT / "cambrian-8b.json").read_text(encoding="utf-8"))
    for name, spec in BASES.items():
        if spec["family"] == "llama":
            from cambrian.model.language_model.cambrian_llama import CambrianConfig
        else:
            from cambrian.model.language_model.cambrian_phi3 import CambrianConfig
        cfg = CambrianConfig(tie_word_embeddings=False, **spec["llm"])
        d = cfg.to_diff_dict()  # what save_pretrained writes
        # the Cambrian keys as the 8B has them (its keys that LlamaConfig does not write), with this size's values
        llama_keys = set(LlamaConfig().to_dict())
        d.update({k: v for k, v in eight.items() if k not in llama_keys})
        d.update(spec["sampler"])
        d.update(
            _name_or_path=spec["name_or_path"],
            architectures=["CambrianLlamaForCausalLM" if spec["family"] == "llama" else "CambrianPhi3ForCausalLM"],
            model_type=CambrianConfig.model_type,
            image_position=spec["image_position"],
            connector_only=spec["connector_only"],
            mm_vision_tower_aux_list=TOWERS,
            torch_dtype="float32",
        )
        d = dict(sorted(d.items()))
        (OUT / f"{name}.json").write_text(json.dumps(d, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {OUT / f'{name}.json'}")


if __name__ == "__main__":
    main()
