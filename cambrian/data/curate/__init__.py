"""Data curation at Cambrian-10M scale (the paper's data section and its appendix G): stream LLaVA-format sources, drop exact
duplicates (conversation + image content), cap each source and rebalance categories
(:func:`cambrian.data.mixing.plan_mixture`), add response-format instructions against the "answer machine", write
one JSONL with provenance plus statistics, a report and charts.

Python API::

    from cambrian.data.curate import load_recipe, curate, curate_with_datasets
    stats = curate(load_recipe("recipe.yaml"), "runs/curated")            # streaming, one process
    stats = curate_with_datasets(load_recipe("recipe.yaml"), "runs/hf", num_proc=8)   # same output, HF datasets

Modules: ``recipe`` (typed YAML recipe), ``prompts`` (response-format instructions and question types),
``records`` (per-record scan / transform), ``dedup`` (disk-spilled digest buckets), ``pipeline`` (streaming),
``hf`` (Hugging Face ``datasets`` map/filter with ``num_proc``), ``report`` (stats.json, report.md, PNGs).
"""

from __future__ import annotations

from .pipeline import curate
from .recipe import CurateRecipe, SourceRecipe, load_recipe, recipe_from_dict


def curate_with_datasets(*args, **kwargs):
    from .hf import curate_with_datasets as f

    return f(*args, **kwargs)


__all__ = ["CurateRecipe", "SourceRecipe", "curate", "curate_with_datasets", "load_recipe", "recipe_from_dict"]
