"""Synthetic CLEVR-like 3D scenes (pybullet) with exact annotations. CV-Bench-Synth and the LLaVA training data
made from them live one layer up, in ``cambrian.cvbench`` (they share CV-Bench's question programs).

Python API (no CLI needed)::

    from cambrian.data.scenes import render_scenes, assert_disjoint
    from cambrian.cvbench.builder import build_cvbench_synth
    from cambrian.cvbench.training_data import make_llava_data
    render_scenes("scenes/train", n=2000, seed=0, split="train")           # images, masks, depth, annotations
    render_scenes("scenes/test", n=300, seed=0, split="test")
    assert_disjoint("scenes/train", "scenes/test")
    build_cvbench_synth("scenes/test", "cvbench_synth", seed=0)            # official CV-Bench layout
    make_llava_data("scenes/train", "stage1.jsonl", stage=1)               # captions
    make_llava_data("scenes/train", "stage2.jsonl", stage=2)               # instructions (image folder = scenes/train)

Modules: ``engine`` (pybullet rendering, visibility rule), ``annotations`` (COCO / Omni3D export), ``render``
(split on disk), ``attributes`` (colour/shape questions), ``grounding`` (per-cell words); the command is
``cambrian data scenes`` (``cambrian.cli.data_scenes``).
"""

from __future__ import annotations


def render_scenes(*args, **kwargs):
    from .render import render_scenes as f

    return f(*args, **kwargs)


def assert_disjoint(*args, **kwargs):
    from .render import assert_disjoint as f

    return f(*args, **kwargs)


__all__ = ["render_scenes", "assert_disjoint"]
