"""``cambrian chat``: ask a model about an image."""

from __future__ import annotations

import argparse
import sys


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="checkpoint directory, hub id, or model preset name (e.g. nano)")
    p.add_argument("--image", action="append", default=[], help="image file (repeat for several images)")
    p.add_argument("--prompt", help="question; without it an interactive loop reads questions from stdin")
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--system", default=None, help="override the template's system prompt")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda when available)")


def load_model(name: str, device: str | None = None):
    """A checkpoint dir, preset name, config file or hub id (``CambrianModel.load``), on ``device``."""
    import torch

    from ..models.cambrian_model import CambrianModel

    model = CambrianModel.load(name)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device)
    if device.startswith("cuda"):
        model.to(torch.bfloat16)
    return model.eval()


def run(args) -> int:
    from PIL import Image

    from ..models.encoders.preprocess import load_image

    try:
        images: list[Image.Image] = [load_image(p) for p in args.image]
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    model = load_model(args.model, args.device)
    if not model.connector_trained:
        print(f"warning: {args.model} is a bare preset: its connector was never trained, so its answers ignore the "
              f"image (pass a trained checkpoint directory, e.g. runs/demo/checkpoint after `make demo`)", file=sys.stderr)
    if args.prompt is not None:
        print(model.chat(args.prompt, images, max_new_tokens=args.max_new_tokens, system=args.system))
        return 0
    print("Type a question (empty line or Ctrl-D to quit). The image goes with every question.", file=sys.stderr)
    for line in sys.stdin:
        q = line.strip()
        if not q:
            break
        print(model.chat(q, images, max_new_tokens=args.max_new_tokens, system=args.system), flush=True)
    return 0
