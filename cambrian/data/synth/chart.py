"""``synth-chart`` images: bar and line charts drawn with matplotlib (Agg, no pyplot state), 256 x 256 px.

- Even items: a bar chart of 3-4 bars in distinct colours, integer values 1-9 with one highest and one lowest bar;
  half of them print each value above its bar, the others must be read against the y axis (0-10, grid lines).
  Questions: "What is the value of the red bar?" (``bar_value``, chance 1/9), "Which bar is the highest?" /
  "Which bar is the lowest?" (``bar_max`` / ``bar_min``, answer a colour, chance 1/bars).
- Odd items: a line chart of two coloured lines over five points (markers), values 1-9, the two last values
  distinct. Questions: "What is the last value of the blue line?" (``line_value``, chance 1/9), "Which line ends
  higher?" (``line_max``, chance 1/2).
- Colours and which bar / line a value question names are drawn uniformly, so answers are even in expectation.
- Regions for grounding: each bar's box reads "<colour> <value>" (its printed label, when there is one, the
  value); each line marker reads the line's colour, the last one "<colour> <value>".
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

CHART_COLORS = {
    "red": "#d62728",
    "blue": "#1f4fb4",
    "green": "#2ca02c",
    "orange": "#ff7f0e",
    "purple": "#8c3fbf",
}
VALUES = [str(v) for v in range(1, 10)]


def _figure(size: int):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(size / 100, size / 100), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_axes([0.14, 0.1, 0.82, 0.84])
    ax.set_ylim(0, 10)
    ax.set_yticks(range(0, 11, 2))
    ax.tick_params(labelsize=7)
    ax.grid(axis="y", color="#cccccc", linewidth=0.6)
    ax.set_axisbelow(True)
    return fig, ax


def _to_image(fig) -> Image.Image:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    buf.seek(0)
    with Image.open(buf) as im:
        return im.convert("RGB")


def _px(ax, x: float, y: float, height: int) -> tuple[float, float]:
    """Data coordinates -> image pixels (origin top left)."""
    X, Y = ax.transData.transform((x, y))
    return float(X), float(height - Y)


def _bar_chart(rng: np.random.Generator, size: int) -> tuple[Image.Image, dict]:
    k = int(rng.integers(3, 5))
    names = [list(CHART_COLORS)[i] for i in rng.permutation(len(CHART_COLORS))[:k]]
    while True:
        vals = [int(v) for v in rng.integers(1, 10, size=k)]
        if vals.count(max(vals)) == 1 and vals.count(min(vals)) == 1:
            break
    labelled = bool(rng.random() < 0.5)
    fig, ax = _figure(size)
    ax.set_xlim(-0.6, k - 0.4)
    ax.set_xticks([])
    ax.bar(range(k), vals, width=0.6, color=[CHART_COLORS[c] for c in names])
    if labelled:
        for i, v in enumerate(vals):
            ax.text(i, v + 0.15, str(v), ha="center", va="bottom", fontsize=9, fontweight="bold")
    fig.canvas.draw()
    regions = []
    for i, (c, v) in enumerate(zip(names, vals)):
        x0, y0 = _px(ax, i - 0.3, v, size)
        x1, y1 = _px(ax, i + 0.3, 0, size)
        regions.append({"box": [x0, y0, x1, y1], "words": f"{c} {v}"})
        if labelled:
            lx0, ly0 = _px(ax, i - 0.25, v + 1.2, size)
            lx1, ly1 = _px(ax, i + 0.25, v + 0.15, size)
            regions.append({"box": [lx0, ly0, lx1, ly1], "words": str(v)})
    im = _to_image(fig)
    j = int(rng.integers(k))
    qs = [
        {
            "type": "bar_value",
            "question": f"What is the value of the {names[j]} bar?",
            "answer": str(vals[j]),
            "choices": list(VALUES),
        },
        {
            "type": "bar_max",
            "question": "Which bar is the highest?",
            "answer": names[vals.index(max(vals))],
            "choices": list(names),
        },
        {
            "type": "bar_min",
            "question": "Which bar is the lowest?",
            "answer": names[vals.index(min(vals))],
            "choices": list(names),
        },
    ]
    return im, {
        "kind": "bar",
        "colors": names,
        "values": vals,
        "labelled": labelled,
        "questions": qs,
        "regions": regions,
    }


def _line_chart(rng: np.random.Generator, size: int) -> tuple[Image.Image, dict]:
    names = [list(CHART_COLORS)[i] for i in rng.permutation(len(CHART_COLORS))[:2]]
    while True:
        series = [[int(v) for v in rng.integers(1, 10, size=5)] for _ in names]
        if series[0][-1] != series[1][-1]:
            break
    fig, ax = _figure(size)
    ax.set_xlim(0.5, 5.5)
    ax.set_xticks(range(1, 6))
    for c, ys in zip(names, series):
        ax.plot(range(1, 6), ys, color=CHART_COLORS[c], linewidth=2, marker="o", markersize=4)
    fig.canvas.draw()
    regions = []
    for c, ys in zip(names, series):
        for x, y in enumerate(ys, 1):
            cx, cy = _px(ax, x, y, size)
            words = f"{c} {y}" if x == 5 else c
            regions.append({"box": [cx - 6, cy - 6, cx + 6, cy + 6], "words": words})
    im = _to_image(fig)
    j = int(rng.integers(2))
    hi = names[0] if series[0][-1] > series[1][-1] else names[1]
    qs = [
        {
            "type": "line_value",
            "question": f"What is the last value of the {names[j]} line?",
            "answer": str(series[j][-1]),
            "choices": list(VALUES),
        },
        {"type": "line_max", "question": "Which line ends higher?", "answer": hi, "choices": list(names)},
    ]
    return im, {"kind": "line", "colors": names, "series": series, "questions": qs, "regions": regions}


def render_chart(rng: np.random.Generator, k: int, size: int = 256) -> tuple[Image.Image, dict]:
    """Item ``k`` of a split: a bar chart (even ``k``) or a line chart (odd ``k``)."""
    return _bar_chart(rng, size) if k % 2 == 0 else _line_chart(rng, size)
