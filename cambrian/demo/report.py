"""The demo's report folder: ``results.json``, ``report.md``, ``loss.png``, ``accuracy.png`` (+ ``likelihood.png``).

``results.json`` schema (accuracies are fractions in [0, 1], times in seconds)::

    {"image_use_accuracy": {BENCH: {TASK: {"own": a, "other": b, "blind": c}}},
        cvbench-synth: Count, Relation, Depth, Distance, overall (official formula: mean of 2D and 3D);
        synth-attribute: overall, color, shape;  easyvqa: colour, shape, yes/no, colour+shape
     "image_use_intervals": {BENCH: {TASK: {"own": [low, high], "other": [...], "blind": [...]}}},   95% bootstrap
     "image_use_n": {BENCH: {TASK: questions}},
     "image_use_differences": {BENCH: {TASK: {"own-other" | "own-blind": {"value", "low", "high", "supported"}}}},
        paired bootstrap of the difference; supported = its 95% interval excludes 0 (``cambrian.demo.stats``)
     "statistics": how the intervals were computed (method, resamples, level, seed),
     "likelihood_accuracy", "likelihood_intervals", "likelihood_n", "likelihood_differences": the same shapes as the
        image_use_* keys, for the option-likelihood reading (each multiple-choice question answered by its most
        likely option: the letter where the prompt asks for one, else the text); absent with ``likelihood: false``,
     "likelihood_metrics": {own|other|blind: {BENCH: {"likelihood" | "likelihood_text": metrics}}}, the benchmarks'
        scores of both readings (``cambrian.eval.likelihood``; every metric suffixed with the reading),
     "image_use": {BENCH: {"n", "nll_matched", "nll_shuffled", "gap"}},   gold-answer loss, own vs another image
     "grounding_probe": {"scenes", "object_cells", "background_cells", "colour", "shape", "background"},
     "chance": {"cvbench-synth": {"overall", "accuracy_2d", "accuracy_3d", "per_task"}, "synth-attribute": x, "easyvqa": x},
     "metrics": {own|other|blind: {BENCH: the benchmark's full metrics}},
     "targets": {name: {"value", "threshold", "ok"}},
     "timings": {step: seconds, ..., "total"}, "training": {"ground", ["stage1"], "stage2"}, "data", "chat",
     "config", "env"}

"own": the question's image; "other": the visual tokens of an image of another scene under the same prompt; "blind":
no image (the paper's vision-disabled setting). The intervals and differences are computed from the per-question
scores of the three conditions (``eval/question_scores.jsonl``) by ``cambrian.demo.stats``; a results.json without
them (an older run) is reported without intervals.

The option-likelihood figures are not the benchmarks' protocol (the model does not generate): they get their own
section of report.md and their own plot, and never enter the official table, the console's official rows or the
targets. Read against the generated answers they separate "does not know" (both low) from "knows but cannot put
the answer in the requested format" (likelihood high, generation low).
"""

from __future__ import annotations

from pathlib import Path

from ..utils.io import atomic_save_figure, atomic_write_json, atomic_write_text

TASKS = ("Count", "Relation", "Depth", "Distance")
CONDITIONS = ("own", "other", "blind")
BENCHES = ("cvbench-synth", "synth-attribute", "easyvqa")
TASK_CHANCE_EASYVQA = {"colour": 1 / 8, "shape": 1 / 3, "yes/no": 1 / 2}


def cvbench_chance(rows: list[dict]) -> dict:
    """Random-guess accuracy of CV-Bench rows (``type``, ``task``, ``choices``) under the official formula
    (2D / 3D = micro mean over their rows — one source each in CV-Bench-Synth —, overall = their mean)."""
    by_task, by_type = {}, {}
    for r in rows:
        c = 1.0 / len(r["choices"])
        by_task.setdefault(r["task"], []).append(c)
        by_type.setdefault(r["type"], []).append(c)
    mean = lambda xs: sum(xs) / len(xs) if xs else None
    a2, a3 = mean(by_type.get("2D", [])), mean(by_type.get("3D", []))
    return {
        "overall": mean([a for a in (a2, a3) if a is not None]),
        "accuracy_2d": a2,
        "accuracy_3d": a3,
        "per_task": {t: mean(v) for t, v in sorted(by_task.items())},
    }


def _bench_tasks(bench: str, m: dict) -> dict:
    """One benchmark's metrics -> {TASK: accuracy}."""
    if bench == "cvbench-synth":
        out = {t: m["per_task"][t] for t in TASKS if t in (m.get("per_task") or {})}
        out["overall"] = m.get("overall")
        return out
    if bench == "synth-attribute":
        return {"overall": m.get("accuracy"), **(m.get("per_type") or {})}
    pc, n = m.get("per_category") or {}, m.get("n_per_category") or {}
    out = {name: pc[cat] for name, cat in (("colour", "color"), ("shape", "shape"), ("yes/no", "yes/no")) if cat in pc}
    k = n.get("color", 0) + n.get("shape", 0)
    if k:
        out["colour+shape"] = (pc.get("color", 0.0) * n.get("color", 0) + pc.get("shape", 0.0) * n.get("shape", 0)) / k
    return out


def image_use_accuracy(metrics: dict) -> dict:
    """``metrics[condition][bench]`` (benchmark metrics) -> ``acc[bench][task][condition]``."""
    acc: dict = {}
    for cond in CONDITIONS:
        for bench, m in (metrics.get(cond) or {}).items():
            if m is None:
                continue
            for task, v in _bench_tasks(bench, m).items():
                acc.setdefault(bench, {}).setdefault(task, {})[cond] = v
    return acc


def check_targets(acc: dict, probes: dict, chance: dict, quick: bool, intervals: dict | None = None) -> dict:
    """The targets of the demo's issues (image use, then issue 20's spatial ones). Default and ``--long`` runs:
    easy-VQA colour and shape >= 0.85 with the own image and <= 0.30 with another image's tokens; synth-attribute
    >= 0.70 own and other <= chance + 0.10; CV-Bench-Synth overall own >= other + 0.10 and >= blind + 0.10 with
    the 95% intervals of own and other disjoint (``intervals``: ``image_use_intervals``; the row is absent without
    them); each of Count, Relation, Depth, Distance own >= other + 0.05 and own >= its chance; easy-VQA probe gap
    >= 0.2 nats. ``--quick``: easy-VQA colour+shape own >= other + 0.15."""
    t: dict = {}

    def add(name, value, threshold, ok):
        t[name] = {"value": value, "threshold": threshold, "ok": bool(ok) if value is not None else False}

    def get(bench, task, cond):
        return ((acc.get(bench) or {}).get(task) or {}).get(cond)

    def margin(bench, task, a, b):
        x, y = get(bench, task, a), get(bench, task, b)
        return None if x is None or y is None else x - y

    if quick:
        m = margin("easyvqa", "colour+shape", "own", "other")
        add("quick: easy-VQA colour+shape own - other >= 0.15", m, 0.15, m is not None and m >= 0.15)
        return t
    for task in ("colour", "shape"):
        v = get("easyvqa", task, "own")
        add(f"easy-VQA {task} own >= 0.85", v, 0.85, v is not None and v >= 0.85)
        v = get("easyvqa", task, "other")
        add(f"easy-VQA {task} other <= 0.30", v, 0.30, v is not None and v <= 0.30)
    v = get("synth-attribute", "overall", "own")
    add("synth-attribute own >= 0.70", v, 0.70, v is not None and v >= 0.70)
    c = chance.get("synth-attribute")
    v = get("synth-attribute", "overall", "other")
    if c is not None:
        add("synth-attribute other <= chance + 0.10", v, round(c + 0.10, 4), v is not None and v <= c + 0.10)
    for other in ("other", "blind"):
        m = margin("cvbench-synth", "overall", "own", other)
        add(f"CV-Bench-Synth overall own - {other} >= 0.10", m, 0.10, m is not None and m >= 0.10)
    iv = ((intervals or {}).get("cvbench-synth") or {}).get("overall") or {}
    if iv.get("own") and iv.get("other"):
        # the gap between the own interval's low end and the other's high end: > 0 when they are disjoint
        gap = round(iv["own"][0] - iv["other"][1], 4)
        add("CV-Bench-Synth overall own and other 95% intervals disjoint", gap, 0.0, gap > 0)
    cv_chance = (chance.get("cvbench-synth") or {}).get("per_task") or {}
    for task in ("Count", "Relation", "Depth", "Distance"):
        m = margin("cvbench-synth", task, "own", "other")
        add(f"CV-Bench-Synth {task} own - other >= 0.05", m, 0.05, m is not None and m >= 0.05)
        v, ch = get("cvbench-synth", task, "own"), cv_chance.get(task)
        if ch is not None:
            add(f"CV-Bench-Synth {task} own >= chance", v, round(ch, 4), v is not None and v >= ch)
    g = (probes.get("easyvqa") or {}).get("gap")
    add("easy-VQA probe gap >= 0.2 nats", g, 0.2, g is not None and g >= 0.2)
    return t


def _pct(x) -> str:
    return "—" if x is None else f"{100 * x:.1f}"


def _pct_iv(x, iv) -> str:
    """``34.9 [29.1, 40.6]`` (percent; the point alone when there is no interval)."""
    if x is None or not iv:
        return _pct(x)
    return f"{_pct(x)} [{100 * iv[0]:.1f}, {100 * iv[1]:.1f}]"


def _pp(d) -> str:
    """A paired difference in percentage points: ``+25.0 [+12.5, +37.5]``."""
    return "—" if not d else f"{100 * d['value']:+.1f} [{100 * d['low']:+.1f}, {100 * d['high']:+.1f}]"


def _chance_of(chance: dict, bench: str, task: str):
    if bench == "cvbench-synth":
        c = chance.get(bench) or {}
        return c.get("overall") if task == "overall" else (c.get("per_task") or {}).get(task)
    if bench == "easyvqa":
        return TASK_CHANCE_EASYVQA.get(task)
    return chance.get(bench) if task == "overall" else None


OFFICIAL = "image_use"  # the official generation figures: image_use_accuracy, _intervals, _n, _differences
LIKELIHOOD = "likelihood"  # the option-likelihood reading: likelihood_accuracy, ... (the same shapes)


def accuracy_rows(results: dict, kind: str = OFFICIAL) -> list[tuple[str, str, dict, float | None]]:
    """(bench, task, {own, other, blind}, chance) in report order, of ``results[f"{kind}_accuracy"]``."""
    acc, chance = results.get(f"{kind}_accuracy") or {}, results.get("chance", {})
    rows = []
    for bench in BENCHES:
        for task, v in (acc.get(bench) or {}).items():
            rows.append((bench, task, v, _chance_of(chance, bench, task)))
    return rows


def row_interval(results: dict, bench: str, task: str, kind: str = OFFICIAL) -> dict:
    """``{cond: [low, high]}`` of one row ({} when results.json has no intervals)."""
    return ((results.get(f"{kind}_intervals") or {}).get(bench) or {}).get(task) or {}


def task_label(results: dict, bench: str, task: str, kind: str = OFFICIAL) -> str:
    """``Count (120)``: the task with its question count when known."""
    n = ((results.get(f"{kind}_n") or {}).get(bench) or {}).get(task)
    return task if n is None else f"{task} ({n})"


def difference_lines(results: dict, kind: str = OFFICIAL) -> list[str]:
    """Which own-vs-other / own-vs-blind differences the paired 95% intervals support, one line each."""
    from .stats import supported_lines

    diffs = results.get(f"{kind}_differences")
    if not diffs:
        return []
    yes, _ = supported_lines(diffs)
    return yes or ["none: every own-vs-other and own-vs-blind interval includes 0"]


def cvbench_set_line(results: dict) -> str | None:
    """How CV-Bench-Synth's test set was drawn: questions per task, scenes, per-image caps vs the official ones."""
    info = (results.get("data") or {}).get("cvbench_synth") or {}
    if not info.get("per_task"):
        return None
    caps, official = info.get("max_per_image"), info.get("official_max_per_image")
    per_task = ", ".join(f"{t} {info['per_task'].get(t, 0)}" for t in TASKS)
    line = f"CV-Bench-Synth test set: {info.get('n')} questions ({per_task})"
    if info.get("scenes"):
        line += f" from {info['scenes']} held-out scenes"
    if caps and official and caps != official:
        fmt = lambda c: "/".join(str(c.get(t, 0)) for t in TASKS)
        line += (
            f", at most {fmt(caps)} questions per image for Count/Relation/Depth/Distance: more than the official "
            f"builder's {fmt(official)} (`cambrian cvbench`'s default), for tighter intervals; questions of one image "
            "are not independent, and the bootstrap resamples questions, not images"
        )
    elif caps:
        line += ", the official per-image caps"
    return line + "."


def probe_lines(results: dict) -> list[str]:
    """The gold-answer loss probes and the grounded-token decoding, one sentence each (report and console)."""
    out = []
    for bench, iu in (results.get("image_use") or {}).items():
        if iu.get("gap") is not None:
            out.append(
                f"gold-answer loss on {bench} ({iu['n']} questions), own image vs another: {iu['nll_matched']:.3f} "
                f"vs {iu['nll_shuffled']:.3f} nats (gap {iu['gap']:+.3f}; > 0 = the image is used)"
            )
    gp = results.get("grounding_probe")
    if gp:
        out.append(
            f"grounded tokens of {gp['scenes']} held-out scenes, nearest word: colour {_pct(gp['colour'])}%, "
            f"shape {_pct(gp['shape'])}% of {gp['object_cells']} object cells; floor {_pct(gp['background'])}% "
            f"of {gp['background_cells']} floor cells"
        )
    return out


def render_markdown(results: dict) -> str:
    cfg = results["config"]
    # results.json files written before the preset key existed name only ``quick``
    preset = cfg.get("preset") or ("quick" if cfg.get("quick") else "default")
    L = [f"# Cambrian-nano demo{'' if preset == 'default' else f' (--{preset})'}", ""]
    env = results.get("env", {})
    L += [
        f"Device: {env.get('device')} ({env.get('threads')} threads, {env.get('precision')}); "
        f"total wall time {results['timings'].get('total', 0) / 60:.1f} min.",
        "",
    ]
    L += [
        "## Does the model use the image? Accuracy % with its own image, another image, no image",
        "",
        '"other": the visual tokens of an image of another scene under the same prompt; "blind": no image. '
        "CV-Bench-Synth `overall` uses the official formula (mean of 2D and 3D)."
        + (
            " [low, high]: 95% bootstrap interval over the questions (CV-Bench-Synth overall: resampled within each "
            "source); (n): questions."
            if results.get("image_use_intervals")
            else ""
        ),
        "",
    ]
    cv_line = cvbench_set_line(results)
    if cv_line:
        L += [cv_line, ""]
    L += ["| benchmark | task | own | other | blind | chance |", "|---|---|---|---|---|---|"]
    for bench, task, v, c in accuracy_rows(results):
        iv = row_interval(results, bench, task)
        cells = " | ".join(_pct_iv(v.get(k), iv.get(k)) for k in CONDITIONS)
        L.append(f"| {bench} | {task_label(results, bench, task)} | {cells} | {_pct(c)} |")
    diffs = results.get("image_use_differences") or {}
    if diffs:
        L += [
            "",
            "### Which differences hold?",
            "",
            "own − other and own − blind in percentage points with the 95% interval of a *paired* bootstrap: the "
            "three conditions answer the same questions, so the questions are resampled jointly (CV-Bench-Synth "
            "overall: within each source, through the official formula). A difference is supported when its "
            "interval excludes 0 (**bold**). Overlap of the separate intervals above is not the test: it ignores "
            "the pairing and misses real differences.",
            "",
            "| benchmark | task | own − other | own − blind |",
            "|---|---|---|---|",
        ]
        for bench, task, _, _ in accuracy_rows(results):
            d = (diffs.get(bench) or {}).get(task) or {}
            cells = [
                (f"**{_pp(d.get(k))}**" if (d.get(k) or {}).get("supported") else _pp(d.get(k)))
                for k in ("own-other", "own-blind")
            ]
            L.append(f"| {bench} | {task} | {cells[0]} | {cells[1]} |")
        L += ["", "Supported by the intervals:", ""] + [f"- {line}" for line in difference_lines(results)]
    L += likelihood_markdown(results)
    L += ["", "Probes:", ""] + [f"- {line}" for line in probe_lines(results)]
    L += ["", "## Targets", "", "| target | value | threshold | ok |", "|---|---|---|---|"]
    for name, t in results.get("targets", {}).items():
        unit = (lambda x: "—" if x is None else f"{x:.3f}") if "nats" in name else _pct
        L.append(f"| {name} | {unit(t['value'])} | {unit(t['threshold'])} | {'yes' if t['ok'] else 'NO'} |")
    L += ["", "## Wall time per step (s)", "", "| step | seconds |", "|---|---|"]
    for k, s in results["timings"].items():
        L.append(f"| {k} | {s:.1f} |")
    tr = results.get("training", {})
    L += ["", "## Training", ""]
    for st, d in tr.items():
        fl = d.get("final_loss")
        L.append(
            f"- {st}: {d.get('steps')} steps, {d.get('samples')} samples, "
            + (f"{d.get('answers', '?')} supervised answers, {d.get('tokens')} LLM tokens, " if st != "ground" else "")
            + f"{d.get('seconds')} s, final loss {fl if fl is None else round(fl, 4)}"
        )
    ch = results.get("chat")
    if ch:
        L += [
            "",
            "## Chat (a held-out image)",
            "",
            "```",
            ch["command"],
            "```",
            "",
            f"> {ch['answer']}" + (f"  (truth: {ch['truth']})" if ch.get("truth") else ""),
        ]
    L += [
        "",
        "Plots: `loss.png` (loss per step of each stage), `accuracy.png` (own / other / blind per task, 95% "
        "intervals as error bars, chance marks)"
        + (
            "; `likelihood.png` (the same for the option-likelihood reading)."
            if results.get("likelihood_accuracy")
            else "."
        ),
        "",
    ]
    return "\n".join(L)


def likelihood_markdown(results: dict) -> list[str]:
    """The "Option likelihood (not the official score)" section: own / other / blind with intervals, chance, the
    paired differences and the generated own-image figure beside it; [] when the run has no likelihood figures."""
    if not results.get("likelihood_accuracy"):
        return []
    L = [
        "",
        "## Option likelihood (not the official score)",
        "",
        "The same multiple-choice questions under the same three conditions, answered without generating: every "
        "option is scored as the reply to the prompt (the summed log-probability of its tokens, as "
        "`cambrian eval run --mc likelihood` and lm-evaluation-harness do) and the most likely one is the answer: the "
        "option letter where the prompt asks for a letter (CV-Bench-Synth), the option text elsewhere "
        "(synth-attribute; easy-VQA: the answers of the question's type). It is not the benchmarks' protocol, so "
        "it stays out of the table above and the targets. Read against the generated answers: both low, the model "
        "does not know; likelihood high and generation low, it knows but cannot put the answer in the requested "
        "format. Intervals and paired differences as above.",
        "",
        "| benchmark | task | own | other | blind | chance | own − other | own − blind | generated, own |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    diffs = results.get("likelihood_differences") or {}
    gen = results.get("image_use_accuracy") or {}
    for bench, task, v, c in accuracy_rows(results, LIKELIHOOD):
        iv = row_interval(results, bench, task, LIKELIHOOD)
        cells = " | ".join(_pct_iv(v.get(k), iv.get(k)) for k in CONDITIONS)
        d = (diffs.get(bench) or {}).get(task) or {}
        dd = " | ".join(
            (f"**{_pp(d.get(k))}**" if (d.get(k) or {}).get("supported") else _pp(d.get(k)))
            for k in ("own-other", "own-blind")
        )
        g = ((gen.get(bench) or {}).get(task) or {}).get("own")
        L.append(
            f"| {bench} | {task_label(results, bench, task, LIKELIHOOD)} | {cells} | {_pct(c)} | {dd} | {_pct(g)} |"
        )
    if diffs:
        L += ["", "Supported by the intervals (option likelihood):", ""]
        L += [f"- {line}" for line in difference_lines(results, LIKELIHOOD)]
    return L


STAGE_TITLES = {
    "ground": "grounding (connector; tokens -> word embeddings)",
    "stage1": "stage 1: connector, captions",
    "stage2": "stage 2: LLM, questions",
}


def plot_losses(training: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stages = [s for s in training if training[s].get("metrics")]
    fig, axes = plt.subplots(1, max(1, len(stages)), figsize=(4.6 * max(1, len(stages)), 3.6), squeeze=False)
    for ax, st in zip(axes[0], stages):
        m = training[st]["metrics"]
        ax.plot([r["step"] for r in m], [r["loss"] for r in m], marker=".", lw=1)
        ax.set_title(STAGE_TITLES.get(st, st), fontsize=10)
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("grounding loss" if st == "ground" else "loss (token cross-entropy)")
        ax.ticklabel_format(axis="y", useOffset=False)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    atomic_save_figure(fig, path)


def plot_accuracy(results: dict, path: Path, kind: str = OFFICIAL) -> None:
    """own / other / blind bars per task with their 95% intervals and chance marks: ``accuracy.png`` (the official
    generation figures) or, with ``kind="likelihood"``, ``likelihood.png`` (the option-likelihood reading)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    rows = accuracy_rows(results, kind)
    short = {"cvbench-synth": "CV", "synth-attribute": "attr", "easyvqa": "eVQA"}
    names = [f"{short.get(b, b)} {t}" for b, t, _, _ in rows]
    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(max(7, 0.75 * len(rows) + 2.5), 4.2))
    colours = {"own": "#3a7bd5", "other": "#f0a030", "blind": "#bbbbbb"}
    labels = {"own": "own image", "other": "another image's tokens", "blind": "no image"}
    for k, cond in enumerate(CONDITIONS):
        heights = [v.get(cond) or 0.0 for _, _, v, _ in rows]
        ivs = [row_interval(results, b, t, kind).get(cond) for b, t, _, _ in rows]
        yerr = None
        if any(ivs):  # 95% bootstrap intervals (none drawn for a row without one)
            yerr = np.array(
                [[max(0.0, h - iv[0]), max(0.0, iv[1] - h)] if iv else [0.0, 0.0] for h, iv in zip(heights, ivs)]
            ).T
        ax.bar(
            x + (k - 1) * 0.27,
            heights,
            0.27,
            yerr=yerr,
            capsize=2,
            error_kw={"elinewidth": 0.8, "ecolor": "#333333"},
            label=labels[cond],
            color=colours[cond],
        )
    for i, (_, _, _, ch) in enumerate(rows):
        if ch is not None:
            ax.hlines(ch, i - 0.45, i + 0.45, colors="red", linestyles="--", lw=1, label="chance" if i == 0 else None)
    ax.set_xticks(x, names, rotation=35, ha="right")
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy" if kind == OFFICIAL else "accuracy, most likely option")
    ax.set_title(
        (
            "Cambrian-nano: own image vs another image vs no image"
            if kind == OFFICIAL
            else "Cambrian-nano, option likelihood (not the official score): own vs another image vs no image"
        )
        + (" (95% bootstrap intervals)" if results.get(f"{kind}_intervals") else ""),
        fontsize=10,
    )
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)  # outside: never hides a bar
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    atomic_save_figure(fig, path)


def write_report(out: str | Path, results: dict, plots: bool = True) -> dict:
    """Write results.json, report.md and (``plots``) the PNGs into ``out``; returns the paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "results": out / "results.json",
        "report": out / "report.md",
        "loss_png": out / "loss.png",
        "accuracy_png": out / "accuracy.png",
    }
    if results.get("likelihood_accuracy"):
        paths["likelihood_png"] = out / "likelihood.png"
    atomic_write_json(paths["results"], results)
    atomic_write_text(paths["report"], render_markdown(results))
    if plots:
        plot_losses(results.get("training", {}), paths["loss_png"])
        plot_accuracy(results, paths["accuracy_png"])
        if "likelihood_png" in paths:
            plot_accuracy(results, paths["likelihood_png"], LIKELIHOOD)
    return {k: str(p) for k, p in paths.items()}


def summary_table(results: dict) -> str:
    """The final console table: own / other / blind / chance per benchmark task, probes, timings."""
    rows = [("", "", "own", "other", "blind", "chance")]
    for b, t, v, c in accuracy_rows(results):
        iv = row_interval(results, b, t)
        rows.append((b, task_label(results, b, t), *(_pct_iv(v.get(k), iv.get(k)) for k in CONDITIONS), _pct(c)))
    w = [max(len(r[i]) for r in rows) for i in range(6)]
    lines = [
        f"{r[0]:<{w[0]}}  {r[1]:<{w[1]}}  " + "  ".join(f"{x:>{w[i + 2]}}" for i, x in enumerate(r[2:])) for r in rows
    ]
    diff = difference_lines(results)
    if diff:
        lines += ["", "differences the paired 95% intervals support:"] + [f"  {x}" for x in diff]
        lines.append("")
    lik = accuracy_rows(results, LIKELIHOOD)
    if lik:  # apart from the official rows above
        rows = [("", "", "own", "other", "blind")]
        for b, t, v, _ in lik:
            iv = row_interval(results, b, t, LIKELIHOOD)
            rows.append((b, task_label(results, b, t, LIKELIHOOD), *(_pct_iv(v.get(k), iv.get(k)) for k in CONDITIONS)))
        w2 = [max(len(r[i]) for r in rows) for i in range(5)]
        lines.append("option likelihood, the most likely option (not the official score):")
        lines += [
            f"  {r[0]:<{w2[0]}}  {r[1]:<{w2[1]}}  " + "  ".join(f"{x:>{w2[i + 2]}}" for i, x in enumerate(r[2:]))
            for r in rows
        ]
        lines += [f"  {x}" for x in difference_lines(results, LIKELIHOOD)]
        lines.append("")
    lines += probe_lines(results)
    lines.append("")
    lines += [f"{k:<{w[0]}}  {s:>7.1f} s" for k, s in results["timings"].items()]
    return "\n".join(lines)
