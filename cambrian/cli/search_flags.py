"""``--search`` and ``--search-set KEY=VALUE`` for the commands where a user asks a question (``chat``, ``eval run``),
and what ``eval run --search`` does around the harness: the search wrapper as the model, the ground-truth boxes of
the benchmarks for the pictures, the search's own scores after the run."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import InputError


def add_search_arguments(p: argparse.ArgumentParser, always: bool = False) -> None:
    g = p.add_argument_group("guided visual search (V*; docs/search.md)")
    g.add_argument(
        "--search",
        action="store_true",
        help="search the image for the objects the question needs and answer from crops of what was found "
        "(cambrian.search: quad-tree search, visual working memory)",
    )
    g.add_argument(
        "--search-set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a search setting (repeatable), e.g. trigger=always, localiser=ask, crop_scale=3, layout=crops; "
        "see cambrian.search.settings" + (" (default trigger here: always)" if always else ""),
    )


def settings_from_args(args, base: dict | None = None):
    """The search settings of ``--search-set`` over ``base`` (checked before any model loads)."""
    from ..search.settings import search_settings

    return search_settings(args.search_set, base)


def search_log_dir(out: str | Path) -> Path:
    return Path(out) / "search"


def wrap_eval_model(eval_model, args, benches, settings):
    """(the search wrapper around ``eval_model``'s VLM, ``{bench: samples}``): the samples are loaded here once so
    their ground-truth boxes can be drawn and scored."""
    from ..eval.adapters import CambrianEvalModel
    from ..search.eval_model import SearchEvalModel, truth_of

    if not isinstance(eval_model, CambrianEvalModel):
        raise InputError("--search needs a local model (a checkpoint, preset or registered model), not an endpoint")
    samples = {b.name: b.load(str(Path(args.data_root) / b.name) if args.data_root else None) for b in benches}
    truth = {name: truth_of(ss) for name, ss in samples.items()}
    model = SearchEvalModel(
        eval_model.model,
        settings,
        name=f"{eval_model.name} +search",
        log_dir=search_log_dir(args.out),
        truth=truth,
        png_items=args.search_png,
        system=eval_model.system,
        batch_size=max(1, args.batch_size),
    )
    return model, samples


def report_search(out, samples: dict, limit: int | None = None) -> None:
    """Score the logged searches of every benchmark (``search_metrics``) and print one line each."""
    from ..search.eval_model import search_metrics, truth_of

    for name, ss in samples.items():
        ss = ss[:limit] if limit else ss
        m = search_metrics(search_log_dir(out), name, truth_of(ss))
        top1 = "n/a (no ground-truth boxes)" if m["top1"] is None else f"{m['top1']:.3f}"
        length = "n/a" if m["mean_path_length"] is None else f"{m['mean_path_length']:.2f}"
        print(
            f"{name}: search Top-1 (IoU > 0.5) = {top1}, searched {m['searched']} of {m['logged']} questions, "
            f"mean path length {length}; paths and pictures in {search_log_dir(out) / name}",
            file=sys.stdout,
        )
