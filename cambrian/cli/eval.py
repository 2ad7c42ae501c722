"""``cambrian eval``: run benchmarks, score a predictions file, merge shards, render the report.

    cambrian eval list
    cambrian eval run --model M --bench a,b,... --data-root DIR --out RUN_DIR [--vision disabled] [--batch-size N]
                      [--shard i/n] [--limit K] [--option textvqa.ocr_tokens=false] [--overwrite]
    cambrian eval merge RUN_DIR --bench a,b --data-root DIR       (after --shard runs; then scores)
    cambrian eval score --bench NAME --data PATH --predictions PRED.jsonl [--json] [--max-bad-fraction F]
    cambrian eval report RUN_DIR... [--out DIR] [--no-plots]

``--model``: a preset name, a checkpoint directory, or ``openai:<base_url>#<model_name>``.

Scoring: every benchmark uses its **official** scorer by default (the rules of the Cambrian-1 evaluation scripts,
comparable with the paper). ``--scorer lenient`` (or ``--option BENCH.scorer=lenient`` for one benchmark) uses the
forgiving variant where a benchmark has one; its metrics are named ``*_lenient``, written to
``metrics.lenient.json`` and listed apart from the paper-style table by ``eval report``.

``--mc likelihood``: instead of generating, answer every multiple-choice question with the option the model finds
most likely (``cambrian.eval.likelihood``); metrics ``*_likelihood`` (the letters the prompt asks for) and
``*_likelihood_text`` (the option texts) in ``metrics.likelihood*.json``, also outside the paper-style table.

``--constrained``: generate as usual, but every multiple-choice answer under a grammar that allows only its options
(the letters the prompt asks for, else the option texts; ``cambrian.models.generate.grammar``); metrics ``*_constrained``
in ``metrics.constrained.json``, outside the paper-style table. Through ``openai:`` endpoints it sends vLLM's
``structured_outputs: {"choice": [...]}`` (cambrian serve and vLLM honour it).

Conditions: ``--vision enabled`` (the question's own image), ``disabled`` (blind), ``other`` (another scene's image);
``--search`` answers through guided visual search (``cambrian.search``, docs/search.md): its run is named
``MODEL +search``, its paths and pictures go to ``RUN_DIR/search/<bench>/`` and the search is scored there
(``search_metrics.json``: Top-1 at IoU > 0.5 where the benchmark has boxes, mean path length).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..errors import InputError
from .chat import add_quantize_argument
from .search_flags import add_search_arguments, report_search, settings_from_args, wrap_eval_model
from .tower_flag import add_tower_argument, towers_from_args


def parse_options(items: list[str] | None) -> dict[str, dict]:
    """``["textvqa.ocr_tokens=false"]`` -> ``{"textvqa": {"ocr_tokens": False}}``: values read as YAML like every
    other override; each benchmark checks its options' names and types (``Benchmark.option_types``)."""
    from ..typed import ConfigError, apply_overrides

    raw = apply_overrides({}, list(items or []), what="--option")
    out: dict[str, dict] = {}
    for bench, opts in raw.items():
        if not isinstance(opts, dict) or not opts:
            raise ConfigError(f"--option expects BENCH.KEY=VALUE, got {bench!r}")
        out[bench] = opts
    return out


def parse_shard(s: str | None) -> tuple[int, int] | None:
    if not s:
        return None
    i, _, n = s.partition("/")
    try:
        i, n = int(i), int(n)
    except ValueError:
        raise SystemExit(f"--shard expects i/n (e.g. 0/4), got {s!r}") from None
    if not 0 <= i < n:
        raise SystemExit(f"--shard {s}: need 0 <= i < n")
    return i, n


def _benches(names: str, options: dict, scorer: str = "official"):
    """Benchmarks by name with their options. ``scorer`` applies to each benchmark that has it (the others keep
    their official scorer, with a note); a per-benchmark ``scorer`` option wins."""
    from ..eval.api import get_benchmark

    out = []
    for name in [n.strip() for n in names.split(",") if n.strip()]:
        opts = dict(options.get(name, {}))
        bench = get_benchmark(name, **opts)  # unknown names, options and per-benchmark scorers fail here
        if "scorer" not in opts and scorer != bench.scorer:
            if scorer in bench.scorers():
                bench = get_benchmark(name, **opts, scorer=scorer)
            else:
                print(f"note: {name} has no {scorer} scorer; it is scored with the official one", file=sys.stderr)
        out.append(bench)
    return out


def _add_scorer(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--scorer",
        choices=["official", "lenient"],
        default="official",
        help="official (default): the rules of the Cambrian-1 evaluation scripts, comparable with the paper; "
        'lenient: forgiving variants ("45%%" = 45, "(B)" = B, ...) reported as *_lenient metrics '
        "outside the paper-style table",
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="eval_command", metavar="ACTION")
    sub.add_parser("list", help="list the registered benchmarks with their metric and table group")

    r = sub.add_parser("run", help="generate predictions and score them")
    r.add_argument("--model", required=True, help="preset name, checkpoint dir, or openai:<base_url>#<model_name>")
    add_tower_argument(r)
    r.add_argument("--bench", required=True, help="comma-separated benchmark names (see `cambrian eval list`)")
    r.add_argument(
        "--data-root", default=None, help="each benchmark reads DATA_ROOT/<bench>; omit to use the hub (online)"
    )
    r.add_argument("--out", required=True, help="run directory")
    r.add_argument(
        "--vision",
        choices=["enabled", "disabled", "other"],
        default="enabled",
        help="disabled = the paper's vision-disabled setting (same prompts, no image); other = each question with the "
        "image of a question about another scene (does the model read its image?)",
    )
    r.add_argument("--batch-size", type=int, default=1)
    r.add_argument("--shard", default=None, help="i/n: run the i-th of n contiguous shards (torchrun sets it too)")
    r.add_argument("--limit", type=int, default=None, help="only the first K samples of each benchmark")
    r.add_argument("--max-new-tokens", type=int, default=None, help="override the benchmarks' official values")
    r.add_argument("--option", action="append", default=[], help="benchmark option BENCH.KEY=VALUE (repeatable)")
    _add_scorer(r)
    r.add_argument(
        "--mc",
        choices=["generate", "likelihood"],
        default="generate",
        help="generate (default): the official protocol, answers are generated and scored; likelihood: every "
        "multiple-choice question is answered by the option (letter, and option text) the model finds most "
        "likely, reported as *_likelihood metrics outside the paper-style table (local models only)",
    )
    r.add_argument(
        "--constrained",
        action="store_true",
        help="restrict every multiple-choice answer to its options (the letters, or the option texts the prompt "
        "asks for) by constrained decoding; reported as *_constrained metrics outside the paper-style table",
    )
    add_search_arguments(r)
    r.add_argument(
        "--search-png",
        type=int,
        default=8,
        help="with --search: pictures of the first N searched questions per benchmark",
    )
    r.add_argument("--device", default=None, help="torch device for our models (default: the model's own)")
    add_quantize_argument(r)
    r.add_argument("--name", default=None, help="model name recorded in run.json (default: preset / dir name)")
    r.add_argument("--no-progress", action="store_true")
    r.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the outputs of these benchmarks in --out when they come from another model, weights, "
        "vision setting, options or data (default: refuse; an identical rerun resumes)",
    )

    m = sub.add_parser("merge", help="merge shard prediction files and score")
    m.add_argument("run_dir")
    m.add_argument("--bench", required=True)
    m.add_argument("--data-root", default=None)
    m.add_argument("--option", action="append", default=[])
    m.add_argument("--limit", type=int, default=None)
    _add_scorer(m)

    s = sub.add_parser("score", help="score a predictions JSONL against a benchmark's data")
    s.add_argument("--bench", required=True)
    s.add_argument("--data", default=None, help="the benchmark's data file or directory (omit = hub, online)")
    s.add_argument("--predictions", required=True)
    s.add_argument("--option", action="append", default=[])
    _add_scorer(s)
    s.add_argument("--json", action="store_true", help="print the full metrics as JSON")
    s.add_argument(
        "--max-bad-fraction",
        type=float,
        default=0.01,
        help="fail (exit 2) when more than this share of the predictions file's lines are not prediction "
        "objects (default 0.01)",
    )

    p = sub.add_parser("report", help="paper-style table (markdown + CSV) and plots from run directories")
    p.add_argument("run_dirs", nargs="+")
    p.add_argument("--out", default="eval_report", help="output directory (default ./eval_report)")
    p.add_argument("--no-plots", action="store_true")


def _cmd_list() -> int:
    from ..eval.api import get_benchmark, list_benchmarks

    print(f"{'benchmark':<14} {'group':<15} {'max_new':>7}  {'scorers':<17} metric")
    for n in list_benchmarks():
        b = get_benchmark(n)
        print(
            f"{n:<14} {b.category:<15} {b.max_new_tokens:>7}  {','.join(b.scorers()):<17} "
            f"{getattr(b, 'metric_name', b.primary_metric)}"
        )
    return 0


def _cmd_run(args) -> int:
    from ..eval.identity import model_identity, precheck_run
    from ..eval.runner import run_benchmarks

    benches = _benches(args.bench, parse_options(args.option), args.scorer)
    settings = settings_from_args(args) if args.search else None  # a bad setting fails before the model loads
    if args.mc == "likelihood":
        if args.constrained:
            raise InputError("--constrained generates answers; --mc likelihood scores them instead: pick one")
        return _cmd_run_likelihood(args, benches, settings)
    identity = model_identity(args.model)
    if args.quantize:  # a quantised model answers differently: its own run
        identity["quantize"] = args.quantize
    if settings is not None:
        identity["search"] = settings.to_dict()
    precheck_run(args.out, benches, identity, args.vision, args.max_new_tokens, args.overwrite)  # before loading
    model, samples = _load_model(args, benches, settings)
    results = run_benchmarks(
        model,
        benches,
        args.data_root,
        args.out,
        batch_size=args.batch_size,
        vision=args.vision,
        shard=parse_shard(args.shard),
        limit=args.limit,
        max_new_tokens=args.max_new_tokens,
        progress=not args.no_progress,
        identity=identity,
        overwrite=args.overwrite,
        constrained=args.constrained,
        samples_by_bench=samples,
    )
    if samples is not None:
        report_search(args.out, samples, args.limit)
    for b in benches:
        m = results.get(b.name)
        if m is not None:
            extra = (
                f" ({m['missing_images']} samples with unreadable images scored wrong)"
                if m.get("missing_images")
                else ""
            )
            key = b.primary_metric + ("_constrained" if args.constrained else "")
            print(f"{b.name}: {key} = {m.get(key)}{extra}")
    return 0


def _load_model(args, benches, settings):
    """The evaluated model (quantised and with its towers as the flags say) and, with --search, wrapped by the
    search with the samples it needs; ``samples`` is None without --search."""
    from ..eval.adapters import load_eval_model

    model = load_eval_model(
        args.model, device=args.device, name=args.name, towers=towers_from_args(args), quantize=args.quantize
    )
    if settings is None:
        return model, None
    return wrap_eval_model(model, args, benches, settings)


def _cmd_run_likelihood(args, benches, settings=None) -> int:
    from ..eval.likelihood import run_likelihood

    if args.shard:
        raise InputError("--mc likelihood does not shard; run it without --shard")
    model, samples = _load_model(args, benches, settings)
    results = run_likelihood(
        model,
        benches,
        args.data_root,
        args.out,
        batch_size=max(1, args.batch_size),
        vision=args.vision,
        limit=args.limit,
        progress=not args.no_progress,
        samples_by_bench=samples,
    )
    if samples is not None:
        report_search(args.out, samples, args.limit)
    for b in benches:
        readings = results.get(b.name) or {}
        if not readings:
            print(f"{b.name}: no multiple-choice questions (nothing scored by likelihood)")
        for reading, m in readings.items():
            key = f"{b.primary_metric}_{reading}"
            print(f"{b.name}: {key} = {m.get(key)} (n={m.get('n')})")
    return 0


def _cmd_merge(args) -> int:
    from ..eval.predictions import merge_shards
    from ..eval.runner import score_run

    for b in _benches(args.bench, parse_options(args.option), args.scorer):
        samples = b.load(str(Path(args.data_root) / b.name) if args.data_root else None)
        if args.limit:
            samples = samples[: args.limit]
        bench_dir = Path(args.run_dir) / b.name
        if not any(bench_dir.glob("predictions*.jsonl")):
            raise FileNotFoundError(f"{bench_dir}: no predictions*.jsonl found")
        merge_shards(bench_dir, samples)
        m = score_run(b, samples, bench_dir)
        print(f"{b.name}: {b.primary_metric} = {m.get(b.primary_metric)}")
    return 0


def _cmd_score(args) -> int:
    from ..eval.predictions import align_predictions, read_predictions

    (bench,) = _benches(args.bench, parse_options(args.option), args.scorer)
    pred_path = Path(args.predictions)
    if not pred_path.is_file():
        raise FileNotFoundError(f"predictions file {pred_path} not found")
    raw = read_predictions(pred_path)
    samples = bench.load(args.data)
    preds = align_predictions(samples, raw)
    metrics = bench.evaluate(samples, preds)
    if args.json:
        print(
            json.dumps(
                {
                    "benchmark": bench.name,
                    "primary_metric": bench.primary_metric,
                    "scorer": bench.scorer,
                    "metrics": metrics,
                    "prediction_lines": raw.lines,
                    "bad_prediction_lines": raw.bad_lines,
                },
                indent=2,
                ensure_ascii=False,
            )
        )
    else:
        print(
            f"{bench.name}: {bench.primary_metric} = {metrics.get(bench.primary_metric)} "
            f"(n={metrics.get('n', len(samples))}, predictions={len(preds)})"
        )
    if raw.bad_lines:
        share = raw.bad_lines / max(raw.lines, 1)
        msg = (
            f"{raw.bad_lines} of {raw.lines} lines of {pred_path} ({100 * share:.2f}%) are not prediction objects "
            f'{{"idx": ..., "prediction": ...}} (first: line {raw.first_bad}); they were skipped'
        )
        if share > args.max_bad_fraction:
            print(f"error: {msg}, more than --max-bad-fraction {args.max_bad_fraction:g}", file=sys.stderr)
            return 2
        print(f"warning: {msg}", file=sys.stderr)
    return 0


def _cmd_report(args) -> int:
    from ..eval.report import write_report

    out = write_report(args.run_dirs, args.out, plots=not args.no_plots)
    print(out["table"])
    for k in ("markdown", "csv", "vision_png", "clustering_png"):
        if k in out:
            print(f"{k}: {out[k]}")
    return 0


def run(args) -> int:
    cmd = getattr(args, "eval_command", None)
    if cmd is None:
        print(__doc__)
        return 0
    return {  # mistakes in the input reach cambrian.cli.main as one error line
        "list": _cmd_list,
        "run": lambda: _cmd_run(args),
        "merge": lambda: _cmd_merge(args),
        "score": lambda: _cmd_score(args),
        "report": lambda: _cmd_report(args),
    }[cmd]()
