"""Synthetic LLaVA-format data for smoke tests and the ``tiny`` recipe: ``cambrian data synthetic OUT``.

Questions about the colour of a solid image (learnable from pixels, at three aspect ratios), optional text-only
arithmetic samples, and optional bad samples of each reason the training checks count.
"""

from __future__ import annotations

import json
from pathlib import Path


def make_synthetic_data(
    root, n: int = 32, text_only: int = 0, seed: int = 0, image_size: int = 16, bad: dict | None = None
) -> Path:
    """Write ``root/data.jsonl`` + ``root/images/*.png``: question/answer pairs about the colour of a solid image
    (learnable from pixels), ``text_only`` arithmetic samples, and optionally bad samples
    (``bad={"missing_image": 2, ...}``)."""
    import random

    from PIL import Image

    rng = random.Random(seed)
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    colours = {"red": (220, 20, 20), "green": (20, 200, 20), "blue": (20, 20, 220), "white": (240, 240, 240)}
    recs = []
    for i in range(n):
        name = rng.choice(sorted(colours))
        w, h = rng.choice([(image_size, image_size), (image_size, image_size // 2), (image_size // 2, image_size)])
        Image.new("RGB", (w, h), colours[name]).save(root / "images" / f"{i:04d}.png")
        q = rng.choice(["What colour is this?", "Name the colour.", "Colour?"])
        recs.append(
            {
                "id": f"img{i}",
                "image": f"{i:04d}.png",
                "conversations": [{"from": "human", "value": f"<image>\n{q}"}, {"from": "gpt", "value": name}],
            }
        )
    for i in range(text_only):
        a, b = rng.randint(0, 9), rng.randint(0, 9)
        recs.append(
            {
                "id": f"txt{i}",
                "conversations": [{"from": "human", "value": f"{a}+{b}?"}, {"from": "gpt", "value": str(a + b)}],
            }
        )
    for reason, count in (bad or {}).items():
        for j in range(count):
            r = {
                "id": f"bad-{reason}-{j}",
                "image": "0000.png",
                "conversations": [{"from": "human", "value": "<image>\nQ"}, {"from": "gpt", "value": "A"}],
            }
            if reason == "missing_image":
                r["image"] = f"nope-{j}.png"
            elif reason == "corrupt_image":
                (root / "images" / f"corrupt-{j}.png").write_bytes(b"not a png")
                r["image"] = f"corrupt-{j}.png"
            elif reason == "wrong_roles":
                r["conversations"] = [{"from": "gpt", "value": "<image>\nA"}, {"from": "human", "value": "Q"}]
            elif reason == "empty_turn":
                r["conversations"][1]["value"] = "  "
            elif reason == "image_count_mismatch":
                r["conversations"][0]["value"] = "<image>\n<image>\nQ"
            elif reason == "over_length":
                r["conversations"][0]["value"] = "<image>\n" + "long " * 400
            else:
                raise ValueError(reason)
            recs.append(r)
    rng.shuffle(recs)
    path = root / "data.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    return path
