"""``cambrian convert SRC OUT --to {cambrian,official}``: between our checkpoint format and the released Cambrian-1
format.

    cambrian convert nyu-visionx/cambrian-8b ckpt/cambrian-8b --to cambrian     # hub id (online) or a local copy
    cambrian convert ckpt/my-model release/my-model --to official               # for the official code, lmms-eval,
                                                                                 # VLMEvalKit's Cambrian adapters

``--to cambrian`` needs the towers' pretrained weights (the released files hold none): they load from their
original hub ids, or from a local directory given with ``--tower NAME=DIR`` (or ``NAME=PRESET@DIR``). ``--to official`` writes the
connector and LLM weights under the official names (sharded safetensors), ``config.json`` with the official keys and
the tokenizer; towers are left out (the official loader fetches them), so towers trained here are refused.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import InputError
from .tower_flag import add_tower_argument, towers_from_args


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("src", help="checkpoint directory (ours or released format), or a hub id (online)")
    p.add_argument("out", help="output directory (must not exist or be empty)")
    p.add_argument(
        "--to",
        required=True,
        choices=["cambrian", "official"],
        help="cambrian: our format (config.json + model.safetensors, towers included); official: the "
        "released Cambrian-1 format",
    )
    add_tower_argument(p)
    p.add_argument("--template", default=None, help="chat template of a released model when it cannot be detected")
    p.add_argument("--max-shard-size", default="5GB", help="largest safetensors shard written by --to official (5GB)")
    p.add_argument("--force", action="store_true", help="skip the memory check before building the model")


def parse_size(text: str) -> int:
    units = {"KB": 10**3, "MB": 10**6, "GB": 10**9, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "B": 1}
    t = str(text).strip().upper()
    for u in sorted(units, key=len, reverse=True):
        if t.endswith(u):
            try:
                return int(float(t[: -len(u)]) * units[u])
            except ValueError:
                break
    try:
        return int(t)
    except ValueError:
        raise InputError(f"--max-shard-size {text!r}: expected a size such as 5GB or 500MB") from None


def run(args) -> int:
    from ..errors import UserError
    from ..models.cambrian_model import CambrianModel
    from ..models.official import load_release, resolve_release, save_release

    out = Path(args.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"output {out} exists and is not an empty directory")
    towers = towers_from_args(args)
    release = resolve_release(args.src)
    if release is not None:
        model = load_release(
            release, towers=towers.presets, template=args.template, tower_weights=towers.dirs, force=args.force
        )
    else:
        src = Path(args.src)
        if src.is_dir() and not (src / "config.json").is_file():
            raise FileNotFoundError(f"{src} has no config.json (not a checkpoint)")
        if towers or args.template:
            raise InputError("--tower / --template apply to released-format sources only")
        model = CambrianModel.from_pretrained(args.src, force=args.force)
    if args.to == "official":
        save_release(model, out, max_shard_bytes=parse_size(args.max_shard_size))
    else:
        model.save_pretrained(out)
    kind = "released" if release is not None else "cambrian"
    print(f"converted {args.src} ({kind} format) -> {out} ({args.to} format)")
    return 0
