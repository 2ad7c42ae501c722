"""The nano study's offline data, built once into ``OUT/data`` and shared by every run.

It is the demo's data (``cambrian.demo.pipeline.make_data``: pybullet scenes -> CV-Bench-Synth and synth-attribute,
easy-VQA, the grounding targets and the packed stage-2 questions) plus the two OCR & Chart sets:

- ``synth-text/`` and ``synth-chart/``: the benchmarks (test splits); ``easyvqa/``: the easy-VQA package's test
  split (a link);
- ``synth-train/{text,chart}/``: their training splits, whose per-cell grounding targets (the word, the digit, "red
  7" on a bar) are added to ``ground.jsonl`` and whose questions are added to ``stage2.jsonl`` (both reshuffled);
- text-only copies of ``text_only_share`` of the stage-2 records (the vision-disabled condition is then a prompt the
  model has seen, as with the paper's instruction data).

``data_settings`` are the fields of :class:`NanoData` and any field of the demo's ``DemoConfig`` that shapes its
data (``train_scenes``, ``ground_easyvqa_images``, ...; the demo's defaults otherwise, so the study follows the demo
recipe as it improves). ``OUT/data/data.json`` is written last: a folder without it is an interrupted build and is
built again; one built with other settings is refused (another ``--out``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
from pathlib import Path

import numpy as np

from ..typed import ConfigError, Int, Num, build, did_you_mean, typed_config
from ..utils.io import atomic_write_json, read_jsonl
from ..utils.log import get_logger

MARKER = "data.json"


@typed_config
class NanoData:
    seed: Int(ge=0) = 0
    synth_text_train: Int(ge=0) = 240
    synth_text_test: Int(ge=1) = 96
    synth_chart_train: Int(ge=0) = 240
    synth_chart_test: Int(ge=1) = 64
    synth_max_turns: Int(ge=1) = 6
    # text-only copies of this share of the stage-2 records (their questions without the image), so a question
    # without its image is not out of distribution: the paper's instruction data holds text-only samples, which is
    # what makes its vision-disabled comparison measure the image and not a broken prompt
    text_only_share: Num(ge=0, le=1) = 0.1


def split_settings(settings: dict) -> tuple[NanoData, dict]:
    """``data_settings`` -> (NanoData, DemoConfig overrides); unknown keys refused with a did-you-mean."""
    from ..demo.config import DemoConfig

    ours = {f.name for f in dataclasses.fields(NanoData)}
    demo_fields = {f.name for f in dataclasses.fields(DemoConfig)}
    mine, demo = {}, {}
    for k, v in (settings or {}).items():
        if k in ours:
            mine[k] = v
        elif k in demo_fields:
            demo[k] = v
        else:
            raise ConfigError(f"data_settings: unknown key {k!r}{did_you_mean(k, ours | demo_fields)}")
    nano = build(NanoData, mine, "data_settings")
    demo["seed"] = nano.seed
    return nano, demo


def text_only_copies(records: list[dict], share: float, seed: int) -> list[dict]:
    """``round(share * len(records))`` records (a seeded choice) as text-only records: no image, the ``<image>``
    placeholder removed from the first human turn, the same questions and answers."""
    k = int(round(share * len(records)))
    pick = sorted(int(i) for i in np.random.default_rng([seed, 61]).permutation(len(records))[:k])
    out = []
    for i in pick:
        r = records[i]
        conv = [dict(t) for t in r["conversations"]]
        for t in conv:
            t["value"] = t["value"].replace("<image>\n", "").replace("<image>", "")
        out.append({"id": f"{r['id']}-text-only", "conversations": conv})
    return out


@contextlib.contextmanager
def _lock(path: Path):
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _shuffle_into(path: Path, extra: list[dict], seed: int, salt: int) -> int:
    from ..demo.data import _write_jsonl

    recs = list(read_jsonl(path)) + extra
    recs = [recs[i] for i in np.random.default_rng([seed, salt]).permutation(len(recs))]
    _write_jsonl(path, recs)
    return len(recs)


def _link_easyvqa(dst: Path) -> None:
    """``data/easyvqa``: the easy-VQA package's test split (a symlink; a copy where links are not allowed), so
    ``--data-root OUT/data`` serves every benchmark of the study."""
    from ..eval.benchmarks.easyvqa import package_test_dir

    src = package_test_dir()
    try:
        dst.symlink_to(src, target_is_directory=True)
    except OSError:
        shutil.copytree(src, dst)


def build_nano_data(out: str | os.PathLike, settings: dict, grid: int, progress: bool = True) -> dict:
    """Build (or reuse) ``out/data``; returns its ``data.json`` record. Safe when several shards start at once (a
    file lock; the first builds, the others wait and reuse)."""
    from ..data.synth.chart import render_chart
    from ..data.synth.split import grounding_records, qa_records, write_split
    from ..data.synth.text import render_sign
    from ..demo.config import make_config
    from ..demo.pipeline import make_data
    from ..eval.benchmarks.synth_chart import build_synth_chart
    from ..eval.benchmarks.synth_text import build_synth_text

    out = Path(out)
    d = out / "data"
    nano, demo = split_settings(settings)
    want = {"settings": dict(sorted((settings or {}).items())), "grid": grid}
    with _lock(out / ".data.lock"):
        if (d / MARKER).exists():
            have = json.loads((d / MARKER).read_text(encoding="utf-8"))
            if {k: have.get(k) for k in want} != want:
                raise ConfigError(
                    f"{d} was built with other data settings ({have.get('settings')}, grid {have.get('grid')}); "
                    "use another --out for these settings"
                )
            return have
        if d.exists():
            get_logger("study").info(f"{d}: an interrupted build; building it again")
            shutil.rmtree(d)
        log = get_logger("study")
        log.info(f"building the study's data in {d} (scenes, easy-VQA, synth-text, synth-chart)")
        cfg = make_config(settings={**demo, "out": str(out), "progress": progress})
        info = make_data(cfg, out, progress, grid)
        info.pop("cvbench_rows", None)
        seed = nano.seed
        _link_easyvqa(d / "easyvqa")
        info["synth_text"] = build_synth_text(d / "synth-text", nano.synth_text_test, seed=seed)
        info["synth_chart"] = build_synth_chart(d / "synth-chart", nano.synth_chart_test, seed=seed)
        ground, qa, counts = [], [], {}
        for name, render, n in (
            ("text", render_sign, nano.synth_text_train),
            ("chart", render_chart, nano.synth_chart_train),
        ):
            if not n:
                continue
            sd = d / "synth-train" / name
            write_split(sd, n, seed, render, split="train")
            ground += grounding_records(sd, grid, prefix=f"synth-{name}")
            recs, c = qa_records(sd, seed=seed, max_turns=nano.synth_max_turns, prefix=f"synth-{name}")
            qa += recs
            counts.update(c)
        info["grounding"]["records"] = _shuffle_into(d / "ground.jsonl", ground, seed, 53)
        info["grounding"]["synth_records"] = len(ground)
        base = list(read_jsonl(d / "stage2.jsonl")) + qa
        text_only = text_only_copies(base, nano.text_only_share, seed)
        info["stage2"]["records"] = _shuffle_into(d / "stage2.jsonl", qa + text_only, seed, 59)
        info["stage2"]["text_only_records"] = len(text_only)
        info["stage2"]["synth_records"] = len(qa)
        info["stage2"]["answers"].update(counts)
        record = {**want, "info": info, "nano": dataclasses.asdict(nano), "demo": demo}
        atomic_write_json(d / MARKER, record)  # last: marks a complete build
        return record
