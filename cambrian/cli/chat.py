"""``cambrian chat``: talk to a model about images: one streamed answer with ``--prompt``, else a multi-turn loop.

In the loop the conversation keeps its history; images given with ``--image`` go with the first question (as the
official CLI does) and are not re-sent; ``/image PATH`` adds an image to the next question, ``/reset`` starts a new
conversation, ``/quit`` (or Ctrl-D) leaves, Ctrl-C stops an answer.

``--search`` (one ``--image``): each question is answered through guided visual search (``cambrian.search``,
docs/search.md) on its own, without the conversation's history: the objects it names are searched for, the answer
comes from crops of what was found; the search is summarised on stderr and drawn to ``--search-png``."""

from __future__ import annotations

import argparse
import sys

from .search_flags import add_search_arguments, settings_from_args
from .tower_flag import add_tower_argument, towers_from_args

HELP = (
    "commands: /image PATH (an image for the next question), /reset (new conversation), /quit (or Ctrl-D); "
    "Ctrl-C stops an answer"
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="checkpoint directory, hub id, or model preset name (e.g. nano)")
    add_tower_argument(p)
    p.add_argument(
        "--image", action="append", default=[], help="image file for the first question (repeat for several images)"
    )
    p.add_argument("--prompt", help="question; without it an interactive loop reads questions from stdin")
    p.add_argument("--system", default=None, help="system prompt (default: the chat template's)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    add_quantize_argument(p)
    p.add_argument("--no-stream", action="store_true", help="print each answer once complete instead of as it comes")
    add_sampling_arguments(p)
    add_search_arguments(p, always=True)
    p.add_argument(
        "--search-png",
        default="search_path.png",
        help="with --search: where the picture of the search goes (the loop numbers them: search_path_2.png, ...)",
    )


def add_sampling_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("sampling (default: greedy)")
    g.add_argument("--max-new-tokens", type=int, default=256, help="longest answer in tokens (default 256)")
    g.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default); e.g. 0.7 to sample")
    g.add_argument(
        "--top-p",
        type=float,
        default=1.0,
        help="nucleus sampling: keep the most probable tokens up to this total probability (default 1 = off)",
    )
    g.add_argument("--top-k", type=int, default=0, help="sample among the k most probable tokens (default 0 = off)")
    g.add_argument(
        "--repetition-penalty",
        type=float,
        default=1.0,
        help="> 1 discourages tokens already in the conversation (default 1 = off)",
    )
    g.add_argument("--seed", type=int, default=None, help="seed for sampling (reproducible answers)")
    g.add_argument("--stop", action="append", default=[], help="stop before this string (repeat for several)")
    g.add_argument(
        "--json-schema",
        metavar="FILE",
        default=None,
        help="answer with JSON that follows the JSON schema in FILE (constrained decoding; every answer of the "
        "conversation)",
    )


def structured_from_args(args):
    """The ``--json-schema`` file as a StructuredOutput (None without it); one error line for a bad file."""
    path = getattr(args, "json_schema", None)
    if not path:
        return None
    from pathlib import Path

    from ..errors import InputError
    from ..models.generate import GrammarError, StructuredOutput

    try:
        return StructuredOutput.json_schema(Path(path).read_text(encoding="utf-8"))
    except OSError as e:
        raise InputError(f"--json-schema: cannot read {path}: {e.strerror or e}") from None
    except GrammarError as e:
        raise InputError(f"--json-schema {path}: {e}") from None


def sampling_from_args(args):
    from ..models.generate import SamplingParams

    return SamplingParams(
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        top_p=args.top_p,
        top_k=args.top_k,
        repetition_penalty=args.repetition_penalty,
        seed=args.seed,
        stop=tuple(args.stop),
        structured=structured_from_args(args),
    )


def add_quantize_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--quantize",
        choices=["int8", "nf4"],
        default=None,
        help="quantise the LLM's and connector's linear layers (towers stay as they are): int8 on CPU (PyTorch "
        "dynamic int8) or CUDA (bitsandbytes 8-bit); nf4: CUDA only (bitsandbytes 4-bit). Default: none",
    )


def load_model(name: str, device: str | None = None, towers=None, quantize: str | None = None):
    """A checkpoint dir, preset name, config file or hub id (``CambrianModel.load``), on ``device`` (quantised with
    ``quantize``); weight-loading progress bars are off (an interactive command, not a long job)."""
    import torch
    from transformers.utils import logging as hf_logging

    from ..models.cambrian_model import CambrianModel

    hf_logging.disable_progress_bar()
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = CambrianModel.load(name, towers=towers, quantize=quantize, device=device)
    if model.tokenizer is None:
        from ..errors import UserError

        raise UserError(f"{name} holds no tokenizer (tokenizer.json / tokenizer.model ...); the model cannot run")
    if not quantize:  # a quantised model is already placed (and typed) for its device
        model.to(device)
        if device.startswith("cuda"):
            model.to(torch.bfloat16)
    return model.eval()


def warn_if_bare(model, name: str) -> None:
    if not model.connector_trained:
        print(
            f"warning: {name} is a bare preset: its connector was never trained, so its answers ignore the image "
            f"(pass a trained checkpoint directory, e.g. runs/demo/checkpoint after `make demo`)",
            file=sys.stderr,
        )


def _answer(conv, model, text: str, sampling, stream: bool, out=None) -> None:
    out = out or sys.stdout
    if stream:
        for d in conv.stream_reply(model, text, sampling=sampling):
            out.write(d)
            out.flush()
        out.write("\n")
    else:
        out.write("".join(conv.stream_reply(model, text, sampling=sampling)) + "\n")
    out.flush()


def _searcher(args, images, model):
    """A function answering one question through guided search (``--search``), or None."""
    if not args.search:
        return None
    from ..search.draw import save_png
    from ..search.guided import GuidedSearch, Question

    settings = settings_from_args(args, {"trigger": "always", "max_new_tokens": args.max_new_tokens})
    guided = GuidedSearch(model, settings, system=args.system)
    count = [0]

    def answer(question: str, out=None) -> None:
        out = out or sys.stdout
        (outcome,) = guided.run([Question(question, images[0])])
        out.write(outcome.answer + "\n")
        out.flush()
        for r in outcome.results:
            where = f"found at {[round(v) for v in r.box]} (confidence {r.confidence:.2f})" if r.found else "not found"
            print(f"search: {r.target}: {where}, {len(r.path)} patches visited, {r.scored} scored", file=sys.stderr)
        if not outcome.results:
            print("search: nothing to search for (no object named in the question)", file=sys.stderr)
        count[0] += 1
        path = args.search_png
        if count[0] > 1:
            stem, dot, ext = path.rpartition(".")
            path = f"{stem}_{count[0]}.{ext}" if dot else f"{path}_{count[0]}"
        print(f"search: picture in {save_png(outcome, path)}", file=sys.stderr)

    return answer


def run(args) -> int:
    from ..models.conversation import Conversation
    from ..models.encoders.preprocess import load_image

    sampling = sampling_from_args(args)  # bad values: one error line before the model loads
    if args.search:
        settings_from_args(args)
        if len(args.image) != 1:
            from ..errors import UserError

            raise UserError("--search needs exactly one --image (the image to search)")
    images = [load_image(p) for p in args.image]
    model = load_model(args.model, args.device, towers_from_args(args), args.quantize)
    warn_if_bare(model, args.model)
    if sampling.structured is not None:  # a schema the grammar library cannot use: one error line, before asking
        from ..errors import InputError
        from ..models.generate import GrammarError, grammars_for

        try:
            grammars_for(model).compile(sampling.structured)
        except GrammarError as e:
            raise InputError(f"--json-schema {args.json_schema}: {e}") from None
    searched = _searcher(args, images, model)
    if searched is not None and args.prompt is not None:
        searched(args.prompt)
        return 0
    conv = Conversation(system=args.system)
    for im in images:
        conv.attach(im)
    stream = not args.no_stream
    if args.prompt is not None:
        _answer(conv, model, args.prompt, sampling, stream)
        return 0
    interactive = sys.stdin.isatty()
    if interactive:
        print(f"Ask about the image{'s' if len(images) != 1 else ''} ({len(images)} attached). {HELP}", file=sys.stderr)
    while True:
        try:
            line = input("you> " if interactive else "")
        except EOFError:
            break
        except KeyboardInterrupt:
            print(file=sys.stderr)
            break
        q = line.strip()
        if not q:
            continue
        if q in ("/quit", "/exit"):
            break
        if q == "/reset":
            conv.reset()
            print("(new conversation)", file=sys.stderr)
            continue
        if q == "/help":
            print(HELP, file=sys.stderr)
            continue
        if q.startswith("/image"):
            path = q[len("/image") :].strip()
            try:
                if searched is not None:
                    images[0] = load_image(path)  # --search: the image searched from now on
                else:
                    conv.attach(load_image(path))
            except (FileNotFoundError, ValueError) as e:
                print(f"error: {e}", file=sys.stderr)
                continue
            print(f"(image {path} goes with the next question)", file=sys.stderr)
            continue
        if q.startswith("/"):
            print(f"error: unknown command {q.split()[0]}; {HELP}", file=sys.stderr)
            continue
        try:
            if searched is not None:
                searched(q)
            else:
                _answer(conv, model, q, sampling, stream)
        except KeyboardInterrupt:
            print("\n(stopped; the question was dropped from the history)", file=sys.stderr)
        except ValueError as e:  # e.g. the conversation outgrew the model's context
            print(f"error: {' '.join(str(e).split())} (/reset starts a new conversation)", file=sys.stderr)
    return 0
