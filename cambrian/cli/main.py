"""``cambrian`` command line. Each subcommand lives in its own module ``cambrian.cli.<name>`` which defines
``add_arguments(parser)`` and ``run(args) -> int``; modules are imported only when their command runs, so
``cambrian --help`` is instant."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "info": (
        "cambrian.cli.info",
        "parameter counts per component and visual tokens of a preset or checkpoint, ours or "
        "released-format (no weights loaded)",
    ),
    "convert": ("cambrian.cli.convert", "convert a checkpoint between our format and the released Cambrian-1 format"),
    "chat": (
        "cambrian.cli.chat",
        "chat with a model about images (one streamed answer with --prompt, else a multi-turn loop)",
    ),
    "serve": (
        "cambrian.cli.serve",
        "serve a model over an OpenAI-compatible HTTP API (chat completions, streaming, batching)",
    ),
    "train": ("cambrian.cli.train", "train stage 1 (connector) or stage 2 (connector + LLM) from a YAML recipe"),
    "eval": ("cambrian.cli.eval", "run benchmarks, score a predictions file, render report tables and plots"),
    "cvbench": ("cambrian.cli.cvbench", "build CV-Bench-style questions from COCO/Omni3D-style annotations"),
    "data": ("cambrian.cli.data", "validate and curate LLaVA-format data, render 3D scenes, data engine, MMVP pairs"),
    "demo": ("cambrian.cli.demo", "train and evaluate Cambrian-nano end to end on this machine (offline)"),
}


def build_parser(load: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cambrian",
        description="Cambrian: vision-centric multimodal LLMs (SVA connector, multi-encoder, CV-Bench, training, evaluation).",
    )
    parser.add_argument(
        "--debug",
        action="store_true",
        help="show the full traceback of a user error (bad config, missing file, bad data) instead of one line",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (mod, help_) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        if name == load:
            importlib.import_module(mod).add_arguments(p)
    return parser


def command_parser(name: str) -> argparse.ArgumentParser:
    """The parser of one command (``cambrian NAME ...``), with its arguments: what ``cambrian NAME --help`` shows."""
    parser = build_parser(load=name)
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[name]


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    cmd = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(load=cmd if cmd in COMMANDS else None)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    mod = importlib.import_module(COMMANDS[args.command][0])
    from ..utils.log import console_logging

    console_logging(logging.DEBUG if args.debug else logging.INFO)
    if args.debug:
        return int(mod.run(args) or 0)
    try:
        return int(mod.run(args) or 0)
    except _user_errors() as e:
        print(f"error: {error_line(e)}", file=sys.stderr)
        return 2


def _user_errors() -> tuple[type[BaseException], ...]:
    """Exception types that mean "the user's input is wrong" (one line, exit 2), not "the program is wrong": a bare
    ``ValueError`` is the program's (a traceback, exit 1); input errors raise ``InputError`` / ``ConfigError``."""
    from ..errors import UserError
    from ..registry import UnknownKeyError

    types: list[type[BaseException]] = [
        UserError,
        UnknownKeyError,
        FileNotFoundError,
        IsADirectoryError,
        NotADirectoryError,
        PermissionError,
    ]
    try:
        import yaml

        types.append(yaml.YAMLError)
    except ImportError:  # pragma: no cover
        pass
    return tuple(types)


def error_line(e: BaseException) -> str:
    """One line for an exception: its message (OSErrors: "strerror: filename"), whitespace collapsed."""
    if isinstance(e, OSError) and e.filename is not None and e.strerror:
        msg = f"{e.filename}: {e.strerror}"
    elif isinstance(e, KeyError) and e.args:
        msg = str(e.args[0])
    else:
        msg = str(e) or type(e).__name__
    return " ".join(msg.split())


if __name__ == "__main__":
    sys.exit(main())
