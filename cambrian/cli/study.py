"""``cambrian study STUDY``: train and evaluate every run of an encoder study, then tabulate it."""

from __future__ import annotations

import argparse
import shlex
import sys

from ..errors import InputError

DESCRIPTION = """\
Run an encoder study: a base recipe and axes (tower sets, connector, frozen / unfrozen towers, adapter-data size,
seed) whose product is a list of runs. Every run is an ordinary training run directory under OUT/runs/<run id>,
trained by the project's trainer and evaluated by its harness with its own image and with vision disabled; then
OUT/study.csv, study.json, report.md and categories.png / vision.png / ranking.png tabulate every complete run
(category averages as the paper computes them, 95% bootstrap intervals, vision-disabled deltas).

STUDY is a shipped study (nano-encoders: offline on a CPU; paper-encoders: the paper's 23-encoder sweep for GPUs,
untested here) or a YAML file (docs/study.md describes the format).

Rerunning the same command resumes: complete runs are skipped, an interrupted stage starts over, evaluation
resumes per question. Split the work with --shard i/n (several machines or processes), --max-runs N or
--max-minutes M (a bounded piece; run the command again for the next), or hand --print-commands' lines to a
scheduler (one line per run: its `cambrian train` stages and `cambrian eval run` evaluations), then --report-only.
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = DESCRIPTION
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("study", nargs="?", help="a shipped study name or a study YAML file (see --list)")
    p.add_argument("--out", default=None, help="output folder (default runs/study-<name>[-quick])")
    p.add_argument("--quick", action="store_true", help="the study's quick: variant (a small smoke study)")
    p.add_argument(
        "--set",
        dest="settings",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a study field (dotted keys, values read as YAML), e.g. --set data_root=/data/bench",
    )
    p.add_argument("--shard", default=None, help="i/n: only the runs whose index mod n is i")
    p.add_argument("--max-runs", type=int, default=None, help="train / evaluate at most N missing runs, then stop")
    p.add_argument(
        "--max-minutes",
        type=float,
        default=None,
        help="start a run only if it should end within M minutes of the command's start (estimate: the median "
        "wall time of the complete runs), then stop; the next command continues",
    )
    p.add_argument(
        "--report-only",
        action="store_true",
        help="only tabulate the runs that are complete (without STUDY: the study OUT/study.yaml was run with)",
    )
    p.add_argument("--plan", action="store_true", help="list the runs (and skipped combinations) and exit")
    p.add_argument(
        "--print-commands",
        action="store_true",
        help="write the run files and print one shell line per run (its train and eval commands), then the "
        "tabulation command; nothing is trained",
    )
    p.add_argument(
        "--launcher",
        default="cambrian",
        help="what runs `train` in --print-commands lines (e.g. 'torchrun --nproc_per_node 8 -m cambrian.cli.main')",
    )
    p.add_argument("--list", action="store_true", help="list the shipped studies and exit")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args) -> int:
    from ..study.runner import print_commands, run_complete, run_study
    from ..study.spec import expand, list_studies, load_study
    from .eval import parse_shard

    if args.list:
        for name in list_studies():
            print(name)
        return 0
    if args.report_only and not args.study and args.out:
        from ..study.spec import load_resolved

        spec = load_resolved(args.out)  # the study this folder was run with
    elif not args.study:
        raise InputError("give a study (a shipped name or a YAML file); --list shows the shipped ones")
    else:
        spec = load_study(args.study, args.settings, quick=args.quick)
    out = args.out or f"runs/study-{spec.name}{'-quick' if args.quick else ''}"
    shard = parse_shard(args.shard)
    if args.plan:
        from pathlib import Path

        runs, skipped = expand(spec)
        for i, r in enumerate(runs):
            state = "complete" if run_complete(spec, r, Path(out)) else "pending"
            print(f"{i:3d}  {r.id}  ({state})")
        for s in skipped:
            print(f"  -  {'+'.join(s.axes['towers'])}: skipped: {s.reason}")
        return 0
    if args.print_commands:
        flags = [shlex.quote(args.study)] + (["--quick"] if args.quick else [])
        flags += [f"--set {shlex.quote(s)}" for s in args.settings]
        for line in print_commands(spec, out, " ".join(flags), shard, args.launcher, progress=not args.no_progress):
            print(line)
        return 0
    if args.report_only:
        from ..study.report import write_study_report

        runs, skipped = expand(spec)
        rep = write_study_report(spec, out, runs, skipped)
        print(rep["markdown"])
        print(_paths(rep["paths"]))
        return 0
    res = run_study(
        spec, out, shard=shard, max_runs=args.max_runs, max_minutes=args.max_minutes, progress=not args.no_progress
    )
    rep = res.get("report") or {}
    if rep:
        print(rep["markdown"])
        print(_paths(rep["paths"]))
    for d in res["done_now"]:
        print(f"[cambrian study] {d['id']}: {d['seconds']:.0f} s")
    if res["pending"]:
        print(
            f"[cambrian study] {len(res['pending'])} run(s) still pending; run the same command again to continue",
            file=sys.stderr,
        )
    return 0


def _paths(p: dict) -> str:
    return "outputs: " + ", ".join(p.values())
