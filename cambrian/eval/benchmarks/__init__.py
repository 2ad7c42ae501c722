"""Importing this package registers every benchmark. Each benchmark module is listed here."""

import importlib

_MODULES = [
    "cambrian.eval.benchmarks.mme",
    "cambrian.eval.benchmarks.mmbench",
    "cambrian.eval.benchmarks.seed",
    "cambrian.eval.benchmarks.gqa",
    "cambrian.eval.benchmarks.scienceqa",
    "cambrian.eval.benchmarks.mmmu",
    "cambrian.eval.benchmarks.mathvista",
    "cambrian.eval.benchmarks.ai2d",
    "cambrian.eval.benchmarks.chartqa",
    "cambrian.eval.benchmarks.ocrbench",
    "cambrian.eval.benchmarks.textvqa",
    "cambrian.eval.benchmarks.docvqa",
    "cambrian.eval.benchmarks.mmvp",
    "cambrian.eval.benchmarks.realworldqa",
    "cambrian.eval.benchmarks.pope",
    "cambrian.eval.benchmarks.mmstar",
    "cambrian.eval.benchmarks.easyvqa",
    "cambrian.eval.benchmarks.synth_attribute",
    "cambrian.eval.benchmarks.synth_text",
    "cambrian.eval.benchmarks.synth_chart",
    "cambrian.eval.benchmarks.synth_vstar",
    "cambrian.eval.benchmarks.vstar",
    "cambrian.cvbench.benchmark",
]


for _mod in _MODULES:  # every listed module must import: a missing one is an error, never a silent gap
    importlib.import_module(_mod)
