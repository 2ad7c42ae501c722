"""The demo's report folder: ``results.json``, ``report.md``, ``loss.png``, ``accuracy.png``.

``results.json`` schema (fractions in [0, 1], seconds)::

    {"vision": {"overall", "accuracy_2d", "accuracy_3d", "flat_accuracy", "per_task": {task: acc}, "n",
                "parse_failure_rate", "easyvqa": {"accuracy", "per_category": {type: acc}, "n"}},
     "blind":  {... same keys, vision disabled: same prompts, no image ...},
     "chance": {"overall", "accuracy_2d", "accuracy_3d", "per_task", "easyvqa"},
     "targets": {name: {"value", "threshold", "ok"}},
     "image_use": {"n", "nll_matched", "nll_shuffled", "gap"},   (gold-letter loss, own image vs another scene's)
     "timings": {step: seconds, ..., "total": seconds},
     "training": {"stage1": {...}, "stage2": {...}}, "data": {...}, "chat": {...}, "config": {...}, "env": {...}}
"""

from __future__ import annotations

from pathlib import Path

from ..utils.io import atomic_save_figure, atomic_write_json, atomic_write_text

CV_KEYS = ("overall", "accuracy_2d", "accuracy_3d", "flat_accuracy", "n", "parse_failure_rate")
TASKS = ("Count", "Relation", "Depth", "Distance")


def cvbench_chance(rows: list[dict]) -> dict:
    """Random-guess accuracy of CV-Bench rows (``type``, ``task``, ``choices``) under the official formula
    (2D / 3D = micro mean over their rows — one source each in CV-Bench-Synth —, overall = their mean)."""
    by_task, by_type = {}, {}
    for r in rows:
        c = 1.0 / len(r["choices"])
        by_task.setdefault(r["task"], []).append(c)
        by_type.setdefault(r["type"], []).append(c)
    mean = lambda xs: sum(xs) / len(xs) if xs else None  # noqa: E731
    a2, a3 = mean(by_type.get("2D", [])), mean(by_type.get("3D", []))
    return {"overall": mean([a for a in (a2, a3) if a is not None]), "accuracy_2d": a2, "accuracy_3d": a3,
            "per_task": {t: mean(v) for t, v in sorted(by_task.items())}}


def summarize(cv_metrics: dict | None, ev_metrics: dict | None) -> dict:
    out = {}
    if cv_metrics:
        out.update({k: cv_metrics.get(k) for k in CV_KEYS})
        out["per_task"] = dict(cv_metrics.get("per_task", {}))
    if ev_metrics:
        out["easyvqa"] = {"accuracy": ev_metrics.get("accuracy"), "per_category": ev_metrics.get("per_category", {}),
                          "n": ev_metrics.get("n")}
    return out


def check_targets(vision: dict, blind: dict, chance: dict, quick: bool) -> dict:
    """The issue's targets. Default run: vision overall >= 0.70, every task >= its chance + 0.15, blind overall <=
    chance + 0.10. ``--quick``: vision overall > blind overall."""
    t: dict = {}

    def add(name, value, threshold, ok):
        t[name] = {"value": value, "threshold": threshold, "ok": bool(ok) if value is not None else False}

    v, b = vision.get("overall"), blind.get("overall")
    if quick:
        add("quick: vision overall > blind overall", v, b, v is not None and b is not None and v > b)
        return t
    add("vision overall >= 0.70", v, 0.70, v is not None and v >= 0.70)
    for task, c in (chance.get("per_task") or {}).items():
        val = (vision.get("per_task") or {}).get(task)
        add(f"vision {task} >= chance + 0.15", val, round(c + 0.15, 4), val is not None and val >= c + 0.15)
    c = chance.get("overall")
    if c is not None:
        add("blind overall <= chance + 0.10", b, round(c + 0.10, 4), b is not None and b <= c + 0.10)
    return t


def _pct(x) -> str:
    return "—" if x is None else f"{100 * x:.1f}"


def render_markdown(results: dict) -> str:
    v, b, c = results["vision"], results["blind"], results["chance"]
    L = [f"# Cambrian-nano demo{' (--quick)' if results['config'].get('quick') else ''}", ""]
    env = results.get("env", {})
    L += [f"Device: {env.get('device')} ({env.get('threads')} threads, {env.get('precision')}); "
          f"total wall time {results['timings'].get('total', 0) / 60:.1f} min.", ""]
    L += ["## CV-Bench-Synth (official formula; accuracy %)", "",
          "| | overall | 2D | 3D | " + " | ".join(TASKS) + " | n |", "|---" * (5 + len(TASKS)) + "|"]
    for name, d in (("vision", v), ("blind (no image)", b), ("chance", c)):
        pt = d.get("per_task") or {}
        L.append(f"| {name} | {_pct(d.get('overall'))} | {_pct(d.get('accuracy_2d'))} | {_pct(d.get('accuracy_3d'))} | "
                 + " | ".join(_pct(pt.get(t)) for t in TASKS) + f" | {d.get('n', '') or ''} |")
    L += ["", "## easy-VQA test subset (exact match %)", "", "| | all | yes/no | shape | color | n |", "|---|---|---|---|---|---|"]
    for name, d in (("vision", v.get("easyvqa") or {}), ("blind (no image)", b.get("easyvqa") or {})):
        pc = d.get("per_category") or {}
        L.append(f"| {name} | {_pct(d.get('accuracy'))} | {_pct(pc.get('yes/no'))} | {_pct(pc.get('shape'))} | "
                 f"{_pct(pc.get('color'))} | {d.get('n', '')} |")
    L.append(f"| chance | {_pct(c.get('easyvqa'))} | 50.0 | 33.3 | 12.5 | |")
    iu = results.get("image_use") or {}
    if iu.get("gap") is not None:
        L += ["", "## Does the model use the image?", "",
              f"Gold-letter loss on {iu['n']} CV-Bench-Synth questions, with the question's own image vs the image of "
              f"another scene (same prompt shape): **{iu['nll_matched']:.3f}** vs **{iu['nll_shuffled']:.3f}** nats, "
              f"gap {iu['gap']:+.3f} (clearly > 0 when the visual tokens carry usable information)."]
    L += ["", "## Targets", "", "| target | value | threshold | ok |", "|---|---|---|---|"]
    for name, t in results.get("targets", {}).items():
        L.append(f"| {name} | {_pct(t['value'])} | {_pct(t['threshold'])} | {'yes' if t['ok'] else 'NO'} |")
    L += ["", "## Wall time per step (s)", "", "| step | seconds |", "|---|---|"]
    for k, s in results["timings"].items():
        L.append(f"| {k} | {s:.1f} |")
    tr = results.get("training", {})
    L += ["", "## Training", ""]
    for st in ("stage1", "stage2"):
        if st in tr:
            d = tr[st]
            L.append(f"- {st}: {d.get('steps')} steps, {d.get('samples')} samples, {d.get('answers', '?')} supervised "
                     f"answers, {d.get('tokens')} LLM tokens, {d.get('seconds')} s, final loss "
                     f"{d.get('final_loss') if d.get('final_loss') is None else round(d['final_loss'], 4)}")
    ch = results.get("chat")
    if ch:
        L += ["", "## Chat", "", "```", ch["command"], "```", "", f"> {ch['answer']}"]
    L += ["", "Plots: `loss.png` (training loss per step), `accuracy.png` (per-task accuracy, vision vs blind, chance marks).", ""]
    return "\n".join(L)


def plot_losses(training: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stages = [s for s in ("stage1", "stage2") if training.get(s, {}).get("metrics")]
    fig, axes = plt.subplots(1, max(1, len(stages)), figsize=(5 * max(1, len(stages)), 3.6), squeeze=False)
    for ax, st in zip(axes[0], stages):
        m = training[st]["metrics"]
        ax.plot([r["step"] for r in m], [r["loss"] for r in m], marker=".", lw=1)
        ax.set_title(f"{st}: {'connector' if st == 'stage1' else 'connector + LLM'}")
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("loss (token cross-entropy)")
        ax.ticklabel_format(axis="y", useOffset=False)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    atomic_save_figure(fig, path)


def plot_accuracy(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    v, b, c = results["vision"], results["blind"], results["chance"]
    names, vv, bb, cc = [], [], [], []
    for t in TASKS:
        if t in (v.get("per_task") or {}):
            names.append(f"CV {t}")
            vv.append(v["per_task"][t])
            bb.append((b.get("per_task") or {}).get(t) or 0.0)
            cc.append((c.get("per_task") or {}).get(t))
    for k, lab in (("overall", "CV overall"),):
        if v.get(k) is not None:
            names.append(lab)
            vv.append(v[k])
            bb.append(b.get(k) or 0.0)
            cc.append(c.get(k))
    ev, eb = v.get("easyvqa") or {}, b.get("easyvqa") or {}
    tch = {"yes/no": 0.5, "shape": 1 / 3, "color": 1 / 8}
    for cat, acc in sorted((ev.get("per_category") or {}).items()):
        names.append(f"easyVQA {cat}")
        vv.append(acc)
        bb.append((eb.get("per_category") or {}).get(cat) or 0.0)
        cc.append(tch.get(cat))
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(max(6, 1.0 * len(names) + 2), 4))
    ax.bar(x - 0.2, vv, 0.4, label="vision", color="#3a7bd5")
    ax.bar(x + 0.2, bb, 0.4, label="blind (no image)", color="#bbbbbb")
    for i, ch in enumerate(cc):
        if ch is not None:
            ax.hlines(ch, i - 0.45, i + 0.45, colors="red", linestyles="--", lw=1, label="chance" if i == 0 else None)
    ax.set_xticks(x, names, rotation=30, ha="right")
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    ax.set_title("Cambrian-nano: vision vs vision-disabled")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)  # outside: never hides a bar
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    atomic_save_figure(fig, path)


def write_report(out: str | Path, results: dict) -> dict:
    """Write results.json, report.md and the PNGs into ``out``; returns the paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"results": out / "results.json", "report": out / "report.md", "loss_png": out / "loss.png",
             "accuracy_png": out / "accuracy.png"}
    atomic_write_json(paths["results"], results)
    atomic_write_text(paths["report"], render_markdown(results))
    for key, fn in (("loss_png", lambda p: plot_losses(results.get("training", {}), p)),
                    ("accuracy_png", lambda p: plot_accuracy(results, p))):
        tmp = paths[key].with_name(f".{paths[key].stem}.tmp.png")
        fn(tmp)
        tmp.replace(paths[key])
    return {k: str(p) for k, p in paths.items()}


def summary_table(results: dict) -> str:
    """The final console table."""
    v, b, c = results["vision"], results["blind"], results["chance"]
    rows = [("", "vision", "blind", "chance")]
    for k, lab in (("overall", "CV-Bench-Synth overall"), ("accuracy_2d", "  2D"), ("accuracy_3d", "  3D")):
        rows.append((lab, _pct(v.get(k)), _pct(b.get(k)), _pct(c.get(k))))
    for t in TASKS:
        if t in (v.get("per_task") or {}):
            rows.append((f"  {t}", _pct(v["per_task"].get(t)), _pct((b.get("per_task") or {}).get(t)),
                         _pct((c.get("per_task") or {}).get(t))))
    rows.append(("easy-VQA", _pct((v.get("easyvqa") or {}).get("accuracy")), _pct((b.get("easyvqa") or {}).get("accuracy")),
                 _pct(c.get("easyvqa"))))
    w = max(len(r[0]) for r in rows)
    lines = [f"{r[0]:<{w}}  {r[1]:>7}  {r[2]:>7}  {r[3]:>7}" for r in rows]
    iu = results.get("image_use") or {}
    if iu.get("gap") is not None:
        lines.append(f"gold-letter loss, own image vs another scene's: {iu['nll_matched']:.3f} vs {iu['nll_shuffled']:.3f} "
                     f"nats (gap {iu['gap']:+.3f}; > 0 = the image is used)")
    lines.append("")
    lines += [f"{k:<{w}}  {s:>7.1f} s" for k, s in results["timings"].items()]
    return "\n".join(lines)
