"""Synthetic image sets whose generators know the answer to every question and what every pixel shows:
``text`` (words and numbers on signs, the ``synth-text`` benchmark) and ``chart`` (bar and line charts drawn with
matplotlib, ``synth-chart``). Each split is a folder of PNGs plus ``items.jsonl`` (one item per image: what was
drawn, where, and its questions); the benchmarks, the grounding targets and the stage-2 training records are all
read from that one file (``split.py``)."""
