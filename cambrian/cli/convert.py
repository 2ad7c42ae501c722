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
    p.add_argument(
        "--tokenizer",
        metavar="DIR",
        default=None,
        help="the LLM's tokenizer (a directory or hub id) when SRC holds none; the output needs one to run",
    )
    p.add_argument("--max-shard-size", default="5GB", help="largest safetensors shard written by --to official (5GB)")
    p.add_argument("--force", action="store_true", help="skip the memory check before building the model")


MIN_SHARD_BYTES = 1000


def parse_size(text: str) -> int:
    """``5GB``, ``500MB``, ``2GiB``, ``60000`` -> bytes; at least ``MIN_SHARD_BYTES``."""
    import math
    import re

    units = {"KB": 10**3, "MB": 10**6, "GB": 10**9, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "B": 1, "": 1}
    m = re.fullmatch(r"\s*([-+0-9.eE]+)\s*([KMG]I?B|B)?\s*", str(text).upper())
    try:
        value = float(m[1]) * units[m[2] or ""] if m else math.nan
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise InputError(f"--max-shard-size {text!r}: expected a size such as 5GB or 500MB")
    if value < MIN_SHARD_BYTES:
        raise InputError(f"--max-shard-size {text!r}: a shard must be at least {MIN_SHARD_BYTES} bytes")
    return int(value)


def attach_tokenizer(model, src: str, tokenizer: str | None) -> None:
    """``--tokenizer`` replaces the model's tokenizer; a model without one is refused (its output could not run)."""
    from ..errors import UserError
    from ..models.llm.loader import ensure_pad_token, load_tokenizer

    if tokenizer is not None:
        model.tokenizer = load_tokenizer(tokenizer)
        ensure_pad_token(model.tokenizer, model.llm)
    if model.tokenizer is None:
        raise UserError(
            f"{src} holds no tokenizer (tokenizer.json / tokenizer.model ...), so the converted model could not run; "
            "pass --tokenizer DIR with the LLM's tokenizer"
        )


def run(args) -> int:
    from ..errors import UserError
    from ..models.cambrian_model import CambrianModel
    from ..models.official import load_release, resolve_release, save_release

    out = Path(args.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"output {out} exists and is not an empty directory")
    shard_bytes = parse_size(args.max_shard_size)
    towers = towers_from_args(args)
    release = resolve_release(args.src)
    if release is not None:
        model = load_release(
            release, towers=towers.presets, template=args.template, tower_weights=towers.dirs, force=args.force
        )
    else:
        src = Path(args.src)
        if src.is_dir() and not (src / "config.json").exists():
            raise FileNotFoundError(f"{src} has no config.json (not a checkpoint)")
        if towers or args.template:
            raise InputError("--tower / --template apply to released-format sources only")
        model = CambrianModel.from_pretrained(args.src, force=args.force)
    attach_tokenizer(model, args.src, args.tokenizer)
    if args.to == "official":
        save_release(model, out, max_shard_bytes=shard_bytes)
    else:
        # self-contained: the LLM's weights and tokenizer are written into OUT, so its config does not name SRC
        model.config.llm.name_or_path = model.config.llm.tokenizer = None
        model.save_pretrained(out)
    kind = "released" if release is not None else "cambrian"
    print(f"converted {args.src} ({kind} format) -> {out} ({args.to} format)")
    return 0
