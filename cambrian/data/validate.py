"""``cambrian data validate FILE --images DIR``: run the training data checks without training and report bad
samples by reason (missing / corrupt image, wrong roles, empty turns, ``<image>`` count != image count,
over-length, no supervised token). Exit status 1 when the bad share exceeds ``--max-bad-fraction``.

Without ``--model`` only the structural and image checks run (no tokenizer needed); with ``--model`` (a preset
or a saved model dir) every sample is also tokenised with the model's chat template and checked against
``--max-length`` with the model's visual-token counts, exactly as the trainer does.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

from .dataset import BAD_REASONS, BadSample, ImagePipeline, SupervisedDataset, model_tokenize_fn, model_visual_tokens_fn, \
    normalize_conversation, open_images, record_image_paths
from .llava import LlavaSource


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="LLaVA-format .json (array) or .jsonl")
    parser.add_argument("--images", default=None, help="image root the relative paths resolve against (default: the file's dir)")
    parser.add_argument("--allow-outside-root", action="store_true",
                        help="accept image paths outside --images (../x, absolute paths); default: counted bad")
    parser.add_argument("--model", default=None, help="preset or model dir: also tokenise and check lengths")
    parser.add_argument("--max-length", type=int, default=None, help="token limit (default: the model's llm.max_length)")
    parser.add_argument("--max-bad-fraction", type=float, default=0.01, help="exit 1 above this share of bad samples")
    parser.add_argument("--no-images", action="store_true", help="skip opening images (structure only)")
    parser.add_argument("--limit", type=int, default=None, help="check only the first N samples")
    parser.add_argument("--list", type=int, default=5, metavar="N", help="show up to N examples per reason")
    parser.add_argument("--json", dest="json_out", default=None, help="also write the report as JSON here")


def validate(source: LlavaSource, dataset: SupervisedDataset | None = None, open_imgs: bool = True, limit: int | None = None,
             examples: int = 5) -> dict:
    """Counts by reason plus a few (index, id, detail) examples for each."""
    n = len(source) if limit is None else min(limit, len(source))
    bad: Counter = Counter()
    ex: dict[str, list] = {}
    for i in range(n):
        try:
            if dataset is not None:
                dataset.encode(i, load_pixels=False)
            else:
                rec = source[i]
                paths = record_image_paths(source, rec, i)
                normalize_conversation(rec, len(paths))
                if open_imgs:
                    open_images(paths)
        except BadSample as e:
            bad[e.reason] += 1
            if len(ex.setdefault(e.reason, [])) < examples:
                try:
                    rid = source[i].get("id")
                except Exception:
                    rid = None
                ex[e.reason].append({"index": i, "line": source.line_number(i), "id": rid, "detail": e.detail})
    # lines that never became records (same parser as training: LlavaSource / parse_record)
    for reason, c in source.bad_by_reason.items():
        bad[reason] += c
    for ln, reason, detail in source.bad_examples:
        if len(ex.setdefault(reason, [])) < examples:
            ex[reason].append({"index": None, "line": ln, "id": None, "detail": detail})
    total = n + source.bad_lines
    return {"file": str(source.path), "samples": total, "bad": sum(bad.values()), "by_reason": dict(bad), "examples": ex,
            "text_only": int((source.lengths[:n] <= 0).sum())}


def format_report(rep: dict) -> str:
    lines = [f"{rep['file']}: {rep['samples']} samples ({rep['text_only']} text-only), {rep['bad']} bad "
             f"({100 * rep['bad'] / max(rep['samples'], 1):.2f}%)"]
    for r in BAD_REASONS:
        c = rep["by_reason"].get(r, 0)
        if c:
            lines.append(f"  {r:<22} {c}")
            for e in rep["examples"].get(r, []):
                where = f"line {e['line']}" if e.get("line") else f"#{e['index']}"
                rid = f" id={e['id']}" if e.get("id") is not None else ""
                lines.append(f"      {where}{rid} {e['detail']}")
    return "\n".join(lines)


def run(args) -> int:
    src = LlavaSource(args.file, args.images, allow_outside_root=args.allow_outside_root)
    ds = None
    if args.model:
        from ..train.trainer import load_model

        model = load_model(args.model)
        max_len = args.max_length or model.config.llm.max_length
        ds = SupervisedDataset([src], model_tokenize_fn(model), model_visual_tokens_fn(model), ImagePipeline(), max_length=max_len)
    rep = validate(src, ds, open_imgs=not args.no_images, limit=args.limit, examples=args.list)
    print(format_report(rep))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(rep, indent=2))
    frac = rep["bad"] / max(rep["samples"], 1)
    if frac > args.max_bad_fraction:
        print(f"FAIL: {100 * frac:.2f}% bad > --max-bad-fraction {args.max_bad_fraction:g}", file=sys.stderr)
        return 1
    return 0
