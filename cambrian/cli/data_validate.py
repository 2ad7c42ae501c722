"""``cambrian data validate FILE --images DIR``: the training data checks without training; bad samples by reason
(missing / corrupt image, wrong roles, empty turns, ``<image>`` count != image count, over-length, no supervised
token). Exit status 1 when the bad share exceeds ``--max-bad-fraction``.

Without ``--model`` only the structural and image checks run (no tokenizer needed); with ``--model`` (a preset
or a saved model dir) every sample is also tokenised with the model's chat template and checked against
``--max-length`` with the model's visual-token counts, exactly as the trainer does.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="LLaVA-format .json (array) or .jsonl")
    parser.add_argument(
        "--images", default=None, help="image root the relative paths resolve against (default: the file's dir)"
    )
    parser.add_argument(
        "--allow-outside-root",
        action="store_true",
        help="accept image paths outside --images (../x, absolute paths); default: counted bad",
    )
    parser.add_argument("--model", default=None, help="preset or model dir: also tokenise and check lengths")
    parser.add_argument(
        "--max-length", type=int, default=None, help="token limit (default: the model's llm.max_length)"
    )
    parser.add_argument("--max-bad-fraction", type=float, default=0.01, help="exit 1 above this share of bad samples")
    parser.add_argument("--no-images", action="store_true", help="skip opening images (structure only)")
    parser.add_argument("--limit", type=int, default=None, help="check only the first N samples")
    parser.add_argument("--list", type=int, default=5, metavar="N", help="show up to N examples per reason")
    parser.add_argument("--json", dest="json_out", default=None, help="also write the report as JSON here")


def run(args) -> int:
    from ..data.dataset import ImagePipeline, SupervisedDataset
    from ..data.llava import LlavaSource
    from ..data.validate import format_report, validate

    src = LlavaSource(args.file, args.images, allow_outside_root=args.allow_outside_root)
    ds = None
    if args.model:
        from ..models.cambrian_model import CambrianModel

        model = CambrianModel.load(args.model)
        max_len = args.max_length or model.max_length
        ds = SupervisedDataset(
            [src], model.tokenize_conversation, model.visual_token_count, ImagePipeline(), max_length=max_len
        )
    rep = validate(src, ds, open_imgs=not args.no_images, limit=args.limit, examples=args.list)
    print(format_report(rep))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(rep, indent=2))
    frac = rep["bad"] / max(rep["samples"], 1)
    if frac > args.max_bad_fraction:
        print(f"FAIL: {100 * frac:.2f}% bad > --max-bad-fraction {args.max_bad_fraction:g}", file=sys.stderr)
        return 1
    return 0
