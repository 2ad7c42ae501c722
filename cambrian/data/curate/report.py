"""Curation statistics (``stats.json``), a Markdown report and PNG charts (matplotlib, Agg backend)."""

from __future__ import annotations

import os
from pathlib import Path

from ...utils.io import atomic_save_figure, atomic_write_json, atomic_write_text
from .records import ANSWER_LABELS, BAD_REASONS

COUNT_KEYS = ("records", "bad", "duplicates", "available", "capped", "selected")


def _pct(a: int, b: int) -> float:
    return round(100.0 * a / b, 2) if b else 0.0


def build_stats(recipe, tallies, take: dict, timing: dict) -> dict:
    sources = {}
    for t in tallies:
        sources[t.name] = {
            "category": t.category,
            "records": t.records,
            "bad": sum(t.bad.values()),
            "bad_by_reason": {r: t.bad[r] for r in BAD_REASONS if t.bad.get(r)},
            "valid": t.valid,
            "duplicates": t.duplicates,
            "available": t.available,
            "capped": t.capped,
            "planned": int(take[t.name]),
            "selected": t.selected,
            "system_prompts": {
                "records": t.prompt_records,
                "share": _pct(t.prompt_records, t.selected),
                "turns": dict(sorted(t.prompt_turns.items())),
                "already_present": t.prompt_present,
            },
            "answer_words_in": list(t.answers_in),
            "answer_words_out": list(t.answers_out),
        }
    cats: dict[str, dict] = {}
    for s in sources.values():
        c = cats.setdefault(s["category"], {k: 0 for k in COUNT_KEYS} | {"sources": 0, "prompt_records": 0})
        c["sources"] += 1
        for k in COUNT_KEYS:
            c[k] += s[k]
        c["prompt_records"] += s["system_prompts"]["records"]
    tot = {k: sum(s[k] for s in sources.values()) for k in COUNT_KEYS}
    tot["prompt_records"] = sum(s["system_prompts"]["records"] for s in sources.values())
    tot["prompt_share"] = _pct(tot["prompt_records"], tot["selected"])
    rsum = sum(recipe.ratios.values()) if recipe.ratios else 0.0
    for name, c in cats.items():
        c["share_available"] = _pct(c["available"], tot["available"])
        c["share_capped"] = _pct(c["capped"], tot["capped"])
        c["share_selected"] = _pct(c["selected"], tot["selected"])
        c["target_share"] = round(100.0 * recipe.ratios.get(name, 0.0) / rsum, 2) if rsum else None
    bad = {}
    for s in sources.values():
        for r, n in s["bad_by_reason"].items():
            bad[r] = bad.get(r, 0) + n
    n = len(ANSWER_LABELS)
    ans_in = [sum(s["answer_words_in"][i] for s in sources.values()) for i in range(n)]
    ans_out = [sum(s["answer_words_out"][i] for s in sources.values()) for i in range(n)]
    return {
        "recipe_file": str(recipe.path) if recipe.path else None,
        "recipe": recipe.to_dict(),
        "output": "data.jsonl",
        "image_root": os.path.abspath(recipe.output_image_root()),
        "totals": tot,
        "bad_by_reason": {r: bad[r] for r in BAD_REASONS if r in bad},
        "categories": dict(sorted(cats.items())),
        "sources": sources,
        "answer_words": {"bins": list(ANSWER_LABELS), "input": ans_in, "output": ans_out},
        "timing": timing,
        "records_per_s": round(tot["records"] / timing["total_s"], 1) if timing.get("total_s") else None,
    }


def write_report(stats: dict, out_dir: str | os.PathLike, plots: bool = True) -> None:
    out_dir = Path(out_dir)
    atomic_write_json(out_dir / "stats.json", stats)
    atomic_write_text(out_dir / "report.md", format_report(stats, plots))
    if plots:
        plot_categories(stats, out_dir / "categories.png")
        plot_sources(stats, out_dir / "sources.png")
        plot_answer_length(stats, out_dir / "answer_length.png")


def format_report(stats: dict, plots: bool = True) -> str:
    t = stats["totals"]
    r = stats["recipe"]
    ratios = r["ratios"] if isinstance(r["ratios"], str) or r["ratios"] is None else "custom map"
    L = [
        "# Curation report",
        "",
        f"- recipe: `{stats['recipe_file']}`; cap {r['cap'] if r['cap'] is not None else 'none'}; ratios "
        f"{ratios or 'none'}; total {r['total'] or 'auto'}; dedup {r['dedup']}; system prompts "
        f"{'on' if r['system_prompts'] else 'off'} (short = at most {r['short_answer_words']} words); seed {r['seed']}",
        f"- {t['records']:,} records read, {t['bad']:,} bad, {t['duplicates']:,} duplicates, {t['available']:,} "
        f"available, {t['capped']:,} after the cap, **{t['selected']:,} written** to `data.jsonl` "
        f"(images relative to `{stats['image_root']}`)",
        f"- {t['prompt_records']:,} written records ({t['prompt_share']}%) got a response-format instruction",
        f"- time {stats['timing']['total_s']} s ({stats['records_per_s']:,} records/s)",
        "",
        "## Sources",
        "",
        "| source | category | records | bad | duplicates | available | after cap | selected | with instruction |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, s in stats["sources"].items():
        sp = s["system_prompts"]
        L.append(
            f"| {name} | {s['category']} | {s['records']:,} | {s['bad']:,} | {s['duplicates']:,} | "
            f"{s['available']:,} | {s['capped']:,} | {s['selected']:,} | {sp['records']:,} ({sp['share']}%) |"
        )
    L += [
        "",
        "## Categories",
        "",
        "| category | sources | available | share | after cap | share | selected | share | target |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, c in stats["categories"].items():
        tgt = f"{c['target_share']}%" if c["target_share"] is not None else "-"
        L.append(
            f"| {name} | {c['sources']} | {c['available']:,} | {c['share_available']}% | {c['capped']:,} | "
            f"{c['share_capped']}% | {c['selected']:,} | {c['share_selected']}% | {tgt} |"
        )
    if stats["bad_by_reason"]:
        L += ["", "## Bad records by reason", "", "| reason | records |", "|---|---:|"]
        L += [f"| {k} | {v:,} |" for k, v in stats["bad_by_reason"].items()]
    L += [
        "",
        "## Response-format instructions",
        "",
        "| source | added (turns by instruction) | already there |",
        "|---|---|---:|",
    ]
    for name, s in stats["sources"].items():
        sp = s["system_prompts"]
        turns = ", ".join(f"{k} {v:,}" for k, v in sp["turns"].items()) or "-"
        L.append(f"| {name} | {turns} | {sp['already_present']:,} |")
    a = stats["answer_words"]
    L += ["", "## Answer length (words per assistant turn)", "", "| words | input | output |", "|---|---:|---:|"]
    L += [f"| {b} | {i:,} | {o:,} |" for b, i, o in zip(a["bins"], a["input"], a["output"])]
    if plots:
        L += [
            "",
            "![categories](categories.png)",
            "",
            "![sources](sources.png)",
            "",
            "![answer length](answer_length.png)",
        ]
    return "\n".join(L) + "\n"


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_categories(stats: dict, path) -> None:
    import numpy as np

    plt = _plt()
    cats = list(stats["categories"])
    x = np.arange(len(cats))
    fig, ax = plt.subplots(figsize=(max(5.0, 1.1 * len(cats) + 2), 3.8))
    series = (
        ("available", "available (after dedup)"),
        ("capped", "after cap"),
        ("selected", "selected (after ratios)"),
    )
    w = 0.27
    for i, (k, label) in enumerate(series):
        v = [stats["categories"][c][k] for c in cats]
        bars = ax.bar(x + (i - 1) * w, v, w, label=label)
        if k == "selected":
            for b, c in zip(bars, cats):
                ax.annotate(
                    f"{stats['categories'][c]['share_selected']:.1f}%",
                    (b.get_x() + b.get_width() / 2, b.get_height()),
                    ha="center",
                    va="bottom",
                    fontsize=7,
                )
    ax.set_xticks(x, cats, rotation=20)
    ax.set_ylabel("records")
    ax.set_title("records per category (label: share of the output)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    atomic_save_figure(fig, path)


def plot_sources(stats: dict, path) -> None:
    import numpy as np

    plt = _plt()
    names = list(stats["sources"])
    y = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(7.5, max(2.5, 0.32 * len(names) + 1.2)))
    avail = [stats["sources"][n]["available"] for n in names]
    sel = [stats["sources"][n]["selected"] for n in names]
    ax.barh(y + 0.2, avail, 0.4, label="available (after dedup)")
    ax.barh(y - 0.2, sel, 0.4, label="selected")
    ax.set_yticks(y, [f"{n} ({stats['sources'][n]['category']})" for n in names], fontsize=8)
    ax.invert_yaxis()
    cap = stats["recipe"]["cap"]
    if cap is not None and max(avail, default=0) > cap:
        ax.axvline(cap, color="k", ls="--", lw=0.8, label=f"cap {cap:,}")
    ax.set_xlabel("records")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    atomic_save_figure(fig, path)


def plot_answer_length(stats: dict, path) -> None:
    import numpy as np

    plt = _plt()
    a = stats["answer_words"]
    x = np.arange(len(a["bins"]))
    fig, ax = plt.subplots(figsize=(7.5, 3.6))
    for i, (k, label) in enumerate((("input", "input (valid records)"), ("output", "output"))):
        v = np.asarray(a[k], dtype=float)
        ax.bar(x + (i - 0.5) * 0.4, 100 * v / max(v.sum(), 1), 0.4, label=label)
    ax.set_xticks(x, a["bins"])
    ax.set_xlabel("words per assistant turn")
    ax.set_ylabel("% of assistant turns")
    ax.set_title("answer length")
    ax.legend(fontsize=8)
    fig.tight_layout()
    atomic_save_figure(fig, path)
