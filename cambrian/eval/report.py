"""Paper-style results table from one or more run directories (``cambrian eval report RUN_DIR...``).

Columns follow the paper's Table (General / Knowledge / OCR & Chart / Vision-Centric, each with its average);
benchmarks outside that table (POPE, MMStar, CV-Bench-Synth, ...) go to an "Other" group that does not enter
any average. Values are percentages except MME-P (raw perception score); averages use MME-P / 20. An average is
taken over the columns present in that run; a run missing some columns of a group is marked ``*``.

Only official-scorer metrics (``<bench>/metrics.json``) enter the table. Results of ``--scorer lenient``
(``<bench>/metrics.lenient.json``, keys ``*_lenient``) are listed in a separate section below it, under their own
metric names: they are not comparable with the paper's numbers and never mixed into its columns or averages.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

# (group, [(column label, benchmark, metric key or None for the benchmark's primary metric)])
PAPER_TABLE: list[tuple[str, list[tuple[str, str, str | None]]]] = [
    ("General", [("MME-P", "mme", None), ("MMB", "mmbench", None), ("SEED-I", "seed", None), ("GQA", "gqa", None)]),
    (
        "Knowledge",
        [
            ("SQA-I", "scienceqa", None),
            ("MMMU", "mmmu", None),
            ("MathVista", "mathvista", None),
            ("AI2D", "ai2d", None),
        ],
    ),
    (
        "OCR & Chart",
        [
            ("ChartQA", "chartqa", None),
            ("OCRBench", "ocrbench", None),
            ("TextVQA", "textvqa", None),
            ("DocVQA", "docvqa", None),
        ],
    ),
    (
        "Vision-Centric",
        [
            ("MMVP", "mmvp", None),
            ("RealWorldQA", "realworldqa", None),
            ("CV-Bench-2D", "cvbench", "accuracy_2d"),
            ("CV-Bench-3D", "cvbench", "accuracy_3d"),
        ],
    ),
]
OTHER_LABELS = {"pope": "POPE", "mmstar": "MMStar", "cvbench-synth": "CV-Bench-Synth"}


@dataclass
class Run:
    path: Path
    model: str
    vision: str
    metrics: dict = field(default_factory=dict)  # bench -> metrics dict (official scorer)
    label: str = ""
    other_scorers: dict = field(default_factory=dict)  # (bench, scorer) -> metrics of a non-official scorer


def load_run(run_dir: str | Path) -> Run:
    run_dir = Path(run_dir)
    info = json.loads((run_dir / "run.json").read_text()) if (run_dir / "run.json").exists() else {}
    metrics, others = {}, {}
    for m in sorted(run_dir.glob("*/metrics.json")):
        data = json.loads(m.read_text())
        if data.get("scorer", "official") != "official":  # never let another scorer's numbers into the table
            continue
        metrics[data.get("benchmark", m.parent.name)] = data.get("metrics", data)
    for m in sorted(run_dir.glob("*/metrics.*.json")):
        data = json.loads(m.read_text())
        scorer = str(data.get("scorer", m.name.split(".")[1]))
        others[(data.get("benchmark", m.parent.name), scorer)] = data
    if not metrics and not others:
        raise FileNotFoundError(f"{run_dir}: no <bench>/metrics.json found (is it a run directory?)")
    return Run(
        path=run_dir,
        model=str(info.get("model", run_dir.name)),
        vision=str(info.get("vision", "enabled")),
        metrics=metrics,
        other_scorers=others,
    )


def label_runs(runs: Sequence[Run]) -> None:
    for r in runs:
        r.label = r.model + {"disabled": " (vision disabled)", "other": " (other image)"}.get(r.vision, "")
    seen: dict[str, int] = {}
    for r in runs:
        seen[r.label] = seen.get(r.label, 0) + 1
    for r in runs:
        if seen[r.label] > 1:
            r.label = f"{r.label} [{r.path.name}]"


def _bench(name: str):
    from .api import BENCHMARKS, get_benchmark

    return get_benchmark(name) if name in BENCHMARKS or not BENCHMARKS.names() else None


def cell(run: Run, bench: str, key: str | None) -> tuple[float | None, float | None]:
    """(table value, value used in averages) for one column of one run."""
    m = run.metrics.get(bench)
    if m is None:
        return None, None
    if key is not None:
        v = m.get(key)
        return (None, None) if v is None else (100.0 * v, 100.0 * v)
    try:
        b = _bench(bench)
    except Exception:  # noqa: BLE001 - an unknown benchmark still shows its accuracy
        b = None
    if b is None:
        v = m.get("accuracy")
        return (None, None) if v is None else (100.0 * v, 100.0 * v)
    return b.table_value(m), b.average_value(m)


def build_table(runs: Sequence[Run]) -> tuple[list[str], list[list], list[str]]:
    """Header, rows (label then values), and the group of each value column ("" for the label)."""
    label_runs(runs)
    paper_benches = {b for _, cols in PAPER_TABLE for _, b, _ in cols}
    others = sorted({b for r in runs for b in r.metrics if b not in paper_benches})
    header, groups = ["Model"], [""]
    for g, cols in PAPER_TABLE:
        header += [f"{g} Avg"] + [c for c, _, _ in cols]
        groups += [g] * (len(cols) + 1)
    header += [OTHER_LABELS.get(b, b) for b in others]
    groups += ["Other"] * len(others)
    rows = []
    for r in runs:
        row = [r.label]
        for _group, cols in PAPER_TABLE:
            vals = [cell(r, b, k) for _, b, k in cols]
            avg_in = [a for _, a in vals if a is not None]
            avg = sum(avg_in) / len(avg_in) if avg_in else None
            partial = bool(avg_in) and len(avg_in) < len(cols)
            row.append((avg, partial))
            row += [t for t, _ in vals]
        row += [cell(r, b, None)[0] for b in others]
        rows.append(row)
    return header, rows, groups


def _fmt(v) -> str:
    if isinstance(v, tuple):
        v, partial = v
        return "-" if v is None else f"{v:.1f}" + ("*" if partial else "")
    return "-" if v is None else f"{v:.1f}"


def to_markdown(header, rows, groups, runs: Sequence[Run] = ()) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        lines.append("| " + " | ".join([row[0]] + [_fmt(v) for v in row[1:]]) + " |")
    notes = (
        "\nGroups: "
        + "; ".join(f"{g}: {', '.join(c for c, _, _ in cols)}" for g, cols in PAPER_TABLE)
        + ". Values in %, MME-P raw (max 2000, /20 in averages); * = average over the columns present."
    )
    return "\n".join(lines) + "\n" + notes + "\n" + other_scorers_markdown(runs) + search_markdown(runs)


def other_scorer_rows(runs: Sequence[Run]) -> list[tuple[str, str, str, str, float | None]]:
    """(model, benchmark, scorer, metric name, table value) of every non-official scorer's result."""
    out = []
    for r in runs:
        for (bench, scorer), data in sorted(r.other_scorers.items()):
            metrics = data.get("metrics", {})
            key = data.get("primary_metric") or next((k for k in metrics if k.endswith(f"_{scorer}")), None)
            try:
                b = _bench(bench)
                b = None if b is None else type(b)(scorer=scorer)
            except Exception:  # noqa: BLE001 - an unknown benchmark or scorer still shows its value
                b = None
            if b is not None:
                value = b.table_value(metrics)
            else:
                v = metrics.get(key)
                value = None if v is None else 100.0 * float(v)
            out.append((r.label or r.model, bench, scorer, str(key), value))
    return out


def other_scorers_markdown(runs: Sequence[Run]) -> str:
    rows = other_scorer_rows(runs)
    if not rows:
        return ""
    lines = [
        "",
        "Other scorers (not comparable with the paper's numbers; not part of the table above):",
        "",
        "| Model | Benchmark | Scorer | Metric | Value |",
        "|---|---|---|---|---|",
    ]
    lines += [f"| {m} | {b} | {s} | {k} | {_fmt(v)} |" for m, b, s, k, v in rows]
    return "\n".join(lines) + "\n"


def search_markdown(runs: Sequence[Run]) -> str:
    """The search's own scores of ``eval run --search`` runs (``RUN_DIR/search/<bench>/search_metrics.json``)."""
    rows = []
    for r in runs:
        for f in sorted(Path(r.path).glob("search/*/search_metrics.json")):
            m = json.loads(f.read_text(encoding="utf-8"))
            top1 = "-" if m.get("top1") is None else f"{100 * m['top1']:.1f}"
            length = "-" if m.get("mean_path_length") is None else f"{m['mean_path_length']:.2f}"
            pngs = len(list(f.parent.glob("*.png")))
            rows.append(
                f"| {r.label or r.model} | {f.parent.name} | {m.get('searched')} / {m.get('logged')} | {top1} | "
                f"{length} | {pngs} in {f.parent} |"
            )
    if not rows:
        return ""
    head = [
        "",
        "Guided search (cambrian.search): questions searched, Top-1 = found box with IoU > 0.5 (%), mean path length:",
        "",
        "| Model | Benchmark | Searched | Top-1 | Path length | Pictures |",
        "|---|---|---|---|---|---|",
    ]
    return "\n".join(head + rows) + "\n"


def to_csv(header, rows) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(header)
    for row in rows:
        out = [row[0]]
        for v in row[1:]:
            v = v[0] if isinstance(v, tuple) else v
            out.append("" if v is None else f"{v:.4f}")
        w.writerow(out)
    return buf.getvalue()


def column_matrix(runs: Sequence[Run]) -> tuple[list[str], list[str], list[list[float | None]]]:
    """(column labels, their groups, values[run][column]) in average units (percent, MME-P / 20)."""
    cols, grp, vals = [], [], [[] for _ in runs]
    paper_benches = {b for _, cs in PAPER_TABLE for _, b, _ in cs}
    others = sorted({b for r in runs for b in r.metrics if b not in paper_benches})
    spec = [(g, c, b, k) for g, cs in PAPER_TABLE for c, b, k in cs] + [
        ("Other", OTHER_LABELS.get(b, b), b, None) for b in others
    ]
    for g, c, b, k in spec:
        col = [cell(r, b, k)[1] for r in runs]
        if all(v is None for v in col):
            continue
        cols.append(c)
        grp.append(g)
        for i, v in enumerate(col):
            vals[i].append(v)
    return cols, grp, vals


def write_report(run_dirs: Sequence[str | Path], out_dir: str | Path, plots: bool = True) -> dict:
    """Write table.md, table.csv and (when possible) vision.png / clustering.png under out_dir."""
    from ..utils.io import atomic_write_text

    runs = [load_run(d) for d in run_dirs]
    header, rows, groups = build_table(runs)
    out_dir = Path(out_dir)
    md = to_markdown(header, rows, groups, runs)
    atomic_write_text(out_dir / "table.md", md)
    atomic_write_text(out_dir / "table.csv", to_csv(header, rows))
    written = {"markdown": str(out_dir / "table.md"), "csv": str(out_dir / "table.csv"), "table": md}
    if plots:
        from .plots import plot_clustering, plot_vision

        v = plot_vision(runs, out_dir / "vision.png")
        if v:
            written["vision_png"] = str(v)
        c = plot_clustering(runs, out_dir / "clustering.png")
        if c:
            written["clustering_png"] = str(c)
    return written
