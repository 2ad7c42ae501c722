"""A study's outputs a person reads: ``study.json`` / ``study.csv`` (one row per run), ``report.md`` (the table,
what the intervals support), and three PNGs in the paper's style:

- ``categories.png``: per-category averages per run (the paper's Fig. 4), 95% intervals, chance level;
- ``vision.png``: per benchmark column, vision enabled vs disabled for every run (the paper's Fig. 3-left),
  95% intervals, chance level;
- ``ranking.png``: the runs ranked by their average, with each category's value and rank.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from pathlib import Path

from ..utils.io import atomic_save_figure, atomic_write_json, atomic_write_text
from .results import (
    CATEGORIES,
    BenchCache,
    Strata,
    category_strata,
    chance_columns,
    evaluate_columns,
    interval,
    paired,
    table,
)
from .runner import data_root, read_run_json, run_complete, run_dir
from .spec import RunPlan, Skipped, StudySpec

AVERAGE = "Average"
NO_SOURCE = {
    "Knowledge": "no offline source (the paper's SQA-I, MMMU, MathVista and AI2D need world knowledge we cannot render)"
}


def _iv(iv) -> dict | None:
    return None if iv is None else {"value": iv.value, "low": iv.low, "high": iv.high, "n": iv.n}


def _cells(ev: dict, groups) -> dict:
    """{label: {"value", "strata"}} for every column, category average and the overall average of one eval."""
    out = dict(ev)
    every = []
    for group, cols in groups:
        if group == "Other" or not cols:
            continue
        vals = [ev[c.label]["value"] for c in cols]
        strata = [ev[c.label]["strata"] for c in cols]
        value = None if any(v is None for v in vals) else sum(vals) / len(vals)
        s = None if any(x is None for x in strata) else category_strata(strata)
        out[group] = {"value": value, "strata": s}
        every += cols
    if every:
        vals = [ev[c.label]["value"] for c in every]
        strata = [ev[c.label]["strata"] for c in every]
        out[AVERAGE] = {
            "value": None if any(v is None for v in vals) else sum(vals) / len(vals),
            "strata": None if any(x is None for x in strata) else category_strata(strata),
        }
    return out


def _with_interval(cell: dict) -> dict:
    s: Strata | None = cell["strata"]
    iv = interval(s) if s is not None else None
    return {"value": cell["value"], "low": iv.low if iv else None, "high": iv.high if iv else None}


def collect(spec: StudySpec, out: Path, runs: Sequence[RunPlan], skipped: Sequence[Skipped]) -> dict:
    bc = BenchCache(spec.benchmarks, data_root(spec, out))
    groups = table(spec.table, list(spec.benchmarks))
    labels = [c.label for _, cols in groups for c in cols]
    cats = [g for g, cols in groups if g != "Other" and cols]
    chance = chance_columns(bc, groups)
    for g in cats:
        vals = [chance.get(c.label) for gg, cols in groups if gg == g for c in cols]
        chance[g] = None if any(v is None for v in vals) else sum(vals) / len(vals)
    all_cols = [chance.get(c.label) for g, cols in groups if g != "Other" for c in cols]
    chance[AVERAGE] = None if not all_cols or any(v is None for v in all_cols) else sum(all_cols) / len(all_cols)
    keys = labels + cats + [AVERAGE]
    rows, cells = [], {}
    for plan in runs:
        rd = run_dir(out, plan)
        info = read_run_json(rd)
        row = {
            "id": plan.id,
            "towers": plan.axes["towers"],
            "label": plan.towers_label,
            "connector": plan.axes["connector"],
            "frozen": plan.axes["frozen"],
            "adapter_data": plan.axes["adapter_data"],
            "seed": plan.axes["seed"],
            "wall_seconds": (info.get("timings") or {}).get("total"),
            "timings": info.get("timings") or {},
            "status": "complete" if run_complete(spec, plan, out) else "pending",
        }
        if row["status"] == "complete":
            ev = {v: _cells(evaluate_columns(rd / "eval" / v, bc, groups), groups) for v in spec.eval.vision}
            cells[plan.id] = ev
            row["results"] = {v: {k: _with_interval(ev[v][k]) for k in keys if k in ev[v]} for v in ev}
            if {"enabled", "disabled"} <= set(ev):
                row["vision_delta"] = {
                    k: _iv(paired(ev["enabled"][k]["strata"], ev["disabled"][k]["strata"]))
                    for k in keys
                    if k in ev["enabled"] and ev["enabled"][k]["strata"] is not None and ev["disabled"][k]["strata"]
                }
        rows.append(row)
    done = [r for r in rows if r["status"] == "complete"]
    comparisons = []
    control = next((r for r in done if spec.control and r["towers"] == [spec.control]), None)
    for i, a in enumerate(done):
        for b in done[i + 1 :]:
            for k in cats + [AVERAGE]:
                ca, cb = cells[a["id"]]["enabled"].get(k), cells[b["id"]]["enabled"].get(k)
                if not ca or not cb or ca["strata"] is None or cb["strata"] is None:
                    continue
                iv = paired(ca["strata"], cb["strata"])
                comparisons.append({"a": a["id"], "b": b["id"], "what": k, **_iv(iv), "supported": iv.excludes(0.0)})
    return {
        "study": spec.name,
        "description": spec.description,
        "table": spec.table,
        "columns": [
            {"label": c.label, "bench": c.bench, "key": c.key, "group": c.group} for _, cols in groups for c in cols
        ],
        "categories": cats,
        "empty_categories": {g: NO_SOURCE.get(g, "no benchmark in this study") for g in CATEGORIES if g not in cats},
        "chance": chance,
        "control": control["id"] if control else None,
        "runs": rows,
        "comparisons": comparisons,
        "skipped": [{"towers": s.axes["towers"], "axes": s.axes, "reason": s.reason} for s in skipped],
        "vision": list(spec.eval.vision),
    }


# ---- formatting ----------------------------------------------------------------------------------------------
def _f(v, nd=1) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{nd}f}"


def _ci(c: dict | None) -> str:
    if not c or c.get("value") is None:
        return "-"
    if c.get("low") is None:
        return _f(c["value"])
    return f"{_f(c['value'])} [{_f(c['low'])}, {_f(c['high'])}]"


def _delta(d: dict | None) -> str:
    if not d:
        return "-"
    mark = "*" if not (d["low"] <= 0.0 <= d["high"]) else ""
    return f"{d['value']:+.1f} [{d['low']:+.1f}, {d['high']:+.1f}]{mark}"


def to_csv(res: dict) -> str:
    cols = [c["label"] for c in res["columns"]] + res["categories"] + [AVERAGE]
    header = ["run", "towers", "connector", "frozen", "adapter_data", "seed", "status", "wall_seconds"]
    for k in cols:
        header += [
            k,
            f"{k} low",
            f"{k} high",
            f"{k} vision-disabled",
            f"{k} delta",
            f"{k} delta low",
            f"{k} delta high",
        ]
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(header)
    for r in res["runs"]:
        line = [r["id"], "+".join(r["towers"]), r["connector"], r["frozen"], r["adapter_data"], r["seed"], r["status"]]
        line.append(r.get("wall_seconds") or "")
        on = (r.get("results") or {}).get("enabled", {})
        off = (r.get("results") or {}).get("disabled", {})
        dl = r.get("vision_delta") or {}
        for k in cols:
            c, o, d = on.get(k) or {}, off.get(k) or {}, dl.get(k) or {}
            line += [_num(c.get("value")), _num(c.get("low")), _num(c.get("high")), _num(o.get("value"))]
            line += [_num(d.get("value")), _num(d.get("low")), _num(d.get("high"))]
        w.writerow(line)
    return buf.getvalue()


def _num(v) -> str:
    return "" if v is None else f"{v:.4f}"


def to_markdown(res: dict) -> str:
    cols = [c["label"] for c in res["columns"]]
    cats = res["categories"]
    done = [r for r in res["runs"] if r["status"] == "complete"]
    lines = [f"# Study `{res['study']}`", "", res["description"].strip(), ""]
    lines += [
        f"{len(done)} of {len(res['runs'])} runs complete"
        + (f"; skipped: {len(res['skipped'])}" if res["skipped"] else "")
        + ". Values in % (MME-P / 20 in averages); [low, high] = 95% bootstrap interval over questions.",
        "",
        "## Category averages (vision enabled)",
        "",
    ]
    head = ["run", *cats, AVERAGE, "wall (s)"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in done:
        on = r["results"].get("enabled", {})
        lines.append(
            "| "
            + " | ".join(
                [r["label"] + _axes_note(r), *[_ci(on.get(k)) for k in cats + [AVERAGE]], _f(r.get("wall_seconds"), 0)]
            )
            + " |"
        )
    ch = res["chance"]
    lines.append("| *chance* | " + " | ".join(_f(ch.get(k)) for k in cats + [AVERAGE]) + " | |")
    for g, why in res["empty_categories"].items():
        lines += ["", f"**{g}**: {why}; the category is left out of every average."]
    lines += ["", "## Benchmarks (vision enabled; vision disabled; enabled - disabled)", ""]
    head = ["run", *cols]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in done:
        on, off = r["results"].get("enabled", {}), r["results"].get("disabled", {})
        dl = r.get("vision_delta") or {}
        lines.append("| " + r["label"] + _axes_note(r) + " | " + " | ".join(_ci(on.get(k)) for k in cols) + " |")
        if off:
            lines.append("| ↳ vision disabled | " + " | ".join(_ci(off.get(k)) for k in cols) + " |")
            lines.append("| ↳ enabled − disabled | " + " | ".join(_delta(dl.get(k)) for k in cols) + " |")
    lines.append("| *chance* | " + " | ".join(_f(ch.get(k)) for k in cols) + " |")
    lines += ["", "`*` = the interval excludes 0.", ""]
    lines += supported_markdown(res)
    pending = [r["id"] for r in res["runs"] if r["status"] != "complete"]
    if pending:
        lines += ["", "## Pending runs", ""] + [f"- `{p}`" for p in pending]
    if res["skipped"]:
        lines += ["", "## Skipped combinations", ""]
        lines += [f"- {' + '.join(s['towers'])} ({_axes_text(s['axes'])}): {s['reason']}" for s in res["skipped"]]
    lines += ["", "## Runs", ""]
    for r in res["runs"]:
        t = r.get("timings") or {}
        tt = ", ".join(f"{k} {v:.0f} s" for k, v in t.items() if k != "total")
        lines.append(f"- `{r['id']}` ({r['status']}): {_axes_text(r)}; {tt or 'no timings'}")
    lines += ["", "Figures: `categories.png`, `vision.png`, `ranking.png`."]
    return "\n".join(lines) + "\n"


def _axes_text(a: dict) -> str:
    return (
        f"connector {a['connector']}, {'frozen' if a['frozen'] else 'unfrozen'}, adapter data {a['adapter_data']:g}, "
        f"seed {a['seed']}"
    )


def _axes_note(r: dict) -> str:
    bits = []
    if r["connector"] not in ("default", "sva"):
        bits.append(r["connector"])
    if not r["frozen"]:
        bits.append("unfrozen")
    if r["adapter_data"] != 1.0:
        bits.append(f"ad {r['adapter_data']:g}")
    if r["seed"]:
        bits.append(f"seed {r['seed']}")
    if r["connector"] == "sva" and len(r["towers"]) > 1:
        bits.append("SVA")
    return f" ({', '.join(bits)})" if bits else ""


def supported_markdown(res: dict) -> list[str]:
    """What the intervals support: vision-on vs off, each run vs the control, and which pairs of runs differ."""
    done = {r["id"]: r for r in res["runs"] if r["status"] == "complete"}
    cats = res["categories"] + [AVERAGE]
    out = ["## What the intervals support", ""]
    ch = res["chance"]
    for r in done.values():
        on = r["results"].get("enabled", {})
        known = [k for k in cats if on.get(k, {}).get("low") is not None and ch.get(k) is not None]
        above = [k for k in known if on[k]["low"] > ch[k]]
        at = [k for k in known if on[k]["low"] <= ch[k]]  # the interval reaches chance: no support for more
        dl = r.get("vision_delta") or {}
        helps = [k for k in cats if dl.get(k) and dl[k]["low"] > 0]
        hurts = [k for k in cats if dl.get(k) and dl[k]["high"] < 0]
        out.append(
            f"- **{r['label']}{_axes_note(r)}**: above chance in {', '.join(above) or 'no category'}; "
            f"not above chance in {', '.join(at) or 'no category'}; the image helps (enabled > disabled) "
            f"in {', '.join(helps) or 'no category'}" + (f"; hurts in {', '.join(hurts)}" if hurts else "") + "."
        )
    ctrl = res.get("control")
    sup = [c for c in res["comparisons"] if c["supported"]]
    if ctrl:
        lines = []
        for c in res["comparisons"]:
            if ctrl not in (c["a"], c["b"]):
                continue
            other = c["b"] if c["a"] == ctrl else c["a"]
            sign = 1 if c["a"] == other else -1
            v, lo, hi = (
                sign * c["value"],
                min(sign * c["low"], sign * c["high"]),
                max(sign * c["low"], sign * c["high"]),
            )
            lines.append((done[other]["label"], c["what"], v, lo, hi, c["supported"]))
        if lines:
            out += ["", f"Each run minus the control ({done[ctrl]['label']}), vision enabled:", ""]
            out += ["| run | " + " | ".join(cats) + " |", "|---|" + "---|" * len(cats)]
            for name in dict.fromkeys(x[0] for x in lines):
                cellv = {w: (v, lo, hi, s) for n, w, v, lo, hi, s in lines if n == name}
                out.append(
                    f"| {name} | "
                    + " | ".join(
                        f"{cellv[k][0]:+.1f} [{cellv[k][1]:+.1f}, {cellv[k][2]:+.1f}]{'*' if cellv[k][3] else ''}"
                        if k in cellv
                        else "-"
                        for k in cats
                    )
                    + " |"
                )
    pairs = [c for c in sup if ctrl not in (c["a"], c["b"])]
    out += ["", "Differences between runs whose 95% interval excludes 0 (control excluded; A − B):", ""]
    if pairs:
        for c in pairs:
            out.append(
                f"- {c['what']}: {done[c['a']]['label']}{_axes_note(done[c['a']])} − {done[c['b']]['label']}"
                f"{_axes_note(done[c['b']])} = {c['value']:+.1f} [{c['low']:+.1f}, {c['high']:+.1f}]"
            )
    else:
        out.append("- none: no two runs (other than against the control) differ beyond their intervals.")
    n = len(res["comparisons"])
    out += [
        "",
        f"{len(sup)} of {n} paired comparisons exclude 0. With many comparisons at 95%, about 1 in 20 differences "
        "that are really zero would still look supported; the intervals are per comparison, not corrected.",
    ]
    return out


# ---- figures -------------------------------------------------------------------------------------------------
def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _colors(n: int):
    plt = _plt()
    cmap = plt.get_cmap("tab10" if n <= 10 else "tab20")
    return [cmap(i % cmap.N) for i in range(n)]


def _err(c: dict) -> tuple[float, float]:
    if c.get("low") is None:
        return 0.0, 0.0
    return max(0.0, c["value"] - c["low"]), max(0.0, c["high"] - c["value"])


def plot_categories(res: dict, path: Path) -> Path | None:
    done = [r for r in res["runs"] if r["status"] == "complete"]
    if not done or not res["categories"]:
        return None
    # the paper's four categories in order (an empty one keeps its place, labelled), then the average
    groups = [g for g in CATEGORIES if g in res["categories"] or g in res["empty_categories"]]
    groups += [g for g in res["categories"] if g not in groups] + [AVERAGE]
    plt = _plt()
    import numpy as np

    n = len(done)
    width = 0.8 / n
    fig, ax = plt.subplots(figsize=(max(8.0, 1.9 * len(groups) + 0.4 * n), 4.8))
    colors = _colors(n)
    x = np.arange(len(groups))
    for i, r in enumerate(done):
        on = r["results"].get("enabled", {})
        vals = [on.get(g, {}).get("value") for g in groups]
        errs = np.array([_err(on.get(g, {})) if on.get(g) else (0, 0) for g in groups]).T
        ax.bar(
            x - 0.4 + width * (i + 0.5),
            [np.nan if v is None else v for v in vals],
            width,
            yerr=errs,
            capsize=2,
            color=colors[i],
            label=r["label"] + _axes_note(r),
            edgecolor="black",
            linewidth=0.4,
        )
    for j, g in enumerate(groups):
        c = res["chance"].get(g)
        if c is not None:
            ax.hlines(c, j - 0.45, j + 0.45, colors="black", linestyles="--", linewidth=1.0)
        if g in res["empty_categories"]:
            why = res["empty_categories"][g].split(" (")[0]
            ax.text(j, 50, why.replace(" ", "\n", 2), ha="center", va="center", fontsize=8, color="#555555")
    ax.set_xticks(x, groups)
    ax.set_ylabel("accuracy (%), vision enabled")
    ax.set_ylim(0, 100)
    ax.set_title(
        f"{res['study']}: category averages per encoder (95% bootstrap intervals; dashed = chance)", fontsize=10
    )
    ax.legend(fontsize=7, ncol=2 if n > 4 else 1, loc="upper right")
    fig.tight_layout()
    return atomic_save_figure(fig, path)


def plot_vision(res: dict, path: Path) -> Path | None:
    done = [r for r in res["runs"] if r["status"] == "complete" and "disabled" in r.get("results", {})]
    cols = [c["label"] for c in res["columns"]]
    if not done or not cols:
        return None
    plt = _plt()
    import numpy as np

    ncol = 2 if len(done) > 1 else 1
    nrow = math.ceil(len(done) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(7.5 * ncol, 3.4 * nrow), squeeze=False)
    x = np.arange(len(cols))
    for ax, r in zip(axes.flat, done):
        on, off = r["results"]["enabled"], r["results"]["disabled"]
        dl = r.get("vision_delta") or {}
        for shift, cond, style in ((-0.2, on, {}), (0.2, off, {"alpha": 0.4, "hatch": "//"})):
            vals = [cond.get(k, {}).get("value") for k in cols]
            errs = np.array([_err(cond.get(k, {})) if cond.get(k) else (0, 0) for k in cols]).T
            ax.bar(
                x + shift,
                [np.nan if v is None else v for v in vals],
                0.4,
                yerr=errs,
                capsize=2,
                color="#1f77b4",
                edgecolor="black",
                linewidth=0.4,
                label="vision enabled" if shift < 0 else "vision disabled",
                **style,
            )
        for j, k in enumerate(cols):
            c = res["chance"].get(k)
            if c is not None:
                ax.hlines(c, j - 0.45, j + 0.45, colors="black", linestyles="--", linewidth=1.0)
            d = dl.get(k)
            if d:
                top = max(on.get(k, {}).get("high") or 0, off.get(k, {}).get("high") or 0)
                mark = "*" if not (d["low"] <= 0 <= d["high"]) else ""
                ax.annotate(f"{d['value']:+.0f}{mark}", (j, min(top + 2, 96)), ha="center", fontsize=7)
        ax.set_xticks(x, cols, rotation=25, ha="right", fontsize=8)
        ax.set_ylim(0, 100)
        ax.set_title(r["label"] + _axes_note(r), fontsize=9)
        ax.set_ylabel("%")
    for ax in list(axes.flat)[len(done) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7, loc="upper right")
    fig.suptitle(
        f"{res['study']}: vision enabled vs disabled per benchmark (label = enabled − disabled, * = 95% interval "
        "excludes 0; dashed = chance)",
        fontsize=10,
    )
    fig.tight_layout()
    return atomic_save_figure(fig, path)


def _rank(values: dict[str, float | None]) -> dict[str, int]:
    """Competition ranks (1, 2, 2, 4) of the values shown (rounded to 0.1); None ranks last."""
    shown = {k: (round(v, 1) if v is not None else None) for k, v in values.items()}
    ordered = sorted(shown.values(), key=lambda v: -1e9 if v is None else -v)
    return {k: 1 + ordered.index(v) for k, v in shown.items()}


def ranking(res: dict) -> list[dict]:
    """The complete runs by their average (best first): each category's cell with its rank, and the paired
    difference of the average to the next run (``gap``, supported when its interval excludes 0)."""
    done = [r for r in res["runs"] if r["status"] == "complete"]
    keys = res["categories"] + [AVERAGE]
    ranks = {k: _rank({r["id"]: r["results"]["enabled"].get(k, {}).get("value") for r in done}) for k in keys}
    order = sorted(done, key=lambda r: ranks[AVERAGE][r["id"]])
    pairs = {(c["a"], c["b"]): c for c in res["comparisons"] if c["what"] == AVERAGE}
    out = []
    for i, r in enumerate(order):
        gap = None
        if i + 1 < len(order):
            nxt = order[i + 1]["id"]
            c = pairs.get((r["id"], nxt))
            if c is None and (nxt, r["id"]) in pairs:
                c0 = pairs[(nxt, r["id"])]
                c = {**c0, "value": -c0["value"], "low": -c0["high"], "high": -c0["low"]}
            gap = None if c is None else {k: c[k] for k in ("value", "low", "high", "supported")}
        out.append(
            {
                "id": r["id"],
                "label": r["label"] + _axes_note(r),
                "cells": {k: {**(r["results"]["enabled"].get(k) or {}), "rank": ranks[k][r["id"]]} for k in keys},
                "gap_to_next": gap,
            }
        )
    return out


def plot_ranking(res: dict, path: Path) -> Path | None:
    rows = res.get("ranking") or ranking(res)
    if not rows:
        return None
    plt = _plt()
    keys = res["categories"] + [AVERAGE]
    cell = []
    for r in rows:
        g = r["gap_to_next"]
        gap = (
            "-"
            if g is None
            else f"{g['value']:+.1f} [{g['low']:+.1f}, {g['high']:+.1f}]{'*' if g['supported'] else ''}"
        )
        cell.append(
            [str(r["cells"][AVERAGE]["rank"]), r["label"]]
            + [f"{_ci(r['cells'][k])} (#{r['cells'][k]['rank']})" for k in keys]
            + [gap]
        )
    fig, ax = plt.subplots(figsize=(3.2 + 2.3 * (len(keys) + 1), 0.7 + 0.32 * (len(rows) + 1)))
    ax.axis("off")
    t = ax.table(cellText=cell, colLabels=["rank", "run"] + keys + ["average − next run"], loc="center", cellLoc="left")
    t.auto_set_font_size(False)
    t.set_fontsize(8)
    t.auto_set_column_width(list(range(len(keys) + 3)))
    t.scale(1.0, 1.3)
    ax.set_title(
        f"{res['study']}: runs ranked by their average (value [95% interval] (#rank); * = the gap to the next run "
        "is supported)",
        fontsize=9,
    )
    fig.tight_layout()
    return atomic_save_figure(fig, path)


def write_study_report(
    spec: StudySpec, out: str | Path, runs: Sequence[RunPlan], skipped: Sequence[Skipped], plots: bool = True
) -> dict:
    out = Path(out)
    res = collect(spec, out, runs, skipped)
    res["ranking"] = ranking(res)
    atomic_write_json(out / "study.json", res)
    atomic_write_text(out / "study.csv", to_csv(res))
    md = to_markdown(res)
    atomic_write_text(out / "report.md", md)
    paths = {"json": str(out / "study.json"), "csv": str(out / "study.csv"), "report": str(out / "report.md")}
    if plots:
        for name, fn in (("categories", plot_categories), ("vision", plot_vision), ("ranking", plot_ranking)):
            p = fn(res, out / f"{name}.png")
            if p:
                paths[f"{name}_png"] = str(p)
    return {"paths": paths, "markdown": md, "results": res}
