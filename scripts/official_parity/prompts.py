"""Step 1 of the official-parity fixtures (run with this project's .venv): the inputs the official code is fed.

Writes ``tests/fixtures/official_parity/prompts.json``: for each chat template a tiny release uses, the prompt ids
our template and the built-in tiny tokenizer give for a few one-image questions (the official code is then run on
exactly these ids by ``generate.py``, so its logits can be compared with ours position by position), the towers'
hidden sizes and grids of the tiny presets that stand in for the released towers, and the tiny tokenizer's files in
each release directory (a release directory carries its tokenizer; the official side never reads it).

    .venv/bin/python scripts/official_parity/prompts.py

Then run ``generate.py`` in the throwaway venv (see its docstring).
"""

from __future__ import annotations

import json
from pathlib import Path

from cambrian.models.llm.loader import tiny_tokenizer
from cambrian.models.llm.tokenize import tokenize_prompt
from cambrian.presets.encoders import expand_encoder_entry

OUT = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "official_parity"
SYSTEM = "Answer briefly."
QUESTIONS = [
    "<image>\nWhat color is the cube?",
    "<image>\nHow many spheres are in the picture? Answer with one number.",
]
# the released 8B's towers (official names) and the tiny presets that stand in for them in tests
TOWERS = {
    "siglip/CLIP-ViT-SO400M-14-384": "tiny-siglip",
    "openai/clip-vit-large-patch14-336": "tiny-clip",
    "facebook/dinov2-giant-res378": "tiny-dinov2",
    "clip-convnext-XXL-multi-stage": {"preset": "tiny-convnext", "grid_size": 16},
}
RELEASES = {"llama3-8b": "llama_3", "yi-34b": "chatml", "phi3-3b": "phi3"}


def main() -> None:
    tok = tiny_tokenizer()
    towers = []
    for name, entry in TOWERS.items():
        enc = expand_encoder_entry(entry)
        towers.append({"name": name, "preset": entry, "hidden_size": enc.hidden_size, "grid": enc.out_grid})
    templates = {}
    for template in sorted(set(RELEASES.values())):
        ids = [tokenize_prompt(q, template, tok, system=SYSTEM) for q in QUESTIONS]
        templates[template] = {"system": SYSTEM, "questions": QUESTIONS, "ids": ids}
    OUT.mkdir(parents=True, exist_ok=True)
    for release in RELEASES:
        tok.save_pretrained(str(OUT / release))
    data = {
        "vocab_size": len(tok),
        "pad_token_id": tok.pad_token_id,
        "bos_token_id": tok.bos_token_id,
        "eos_token_id": tok.eos_token_id,
        "towers": towers,
        "releases": RELEASES,
        "templates": templates,
    }
    (OUT / "prompts.json").write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {OUT / 'prompts.json'}")


if __name__ == "__main__":
    main()
