"""Encoder studies (``cambrian study``): the paper's central experiment as one command.

- ``spec.py``: the study file (base recipe + axes) and its expansion into runs with stable ids;
- ``data.py``: the nano study's offline data (the demo's data + synth-text / synth-chart), built once;
- ``runner.py``: each run trained by the trainer and evaluated by the harness (or printed as commands);
- ``features.py``: evaluation-image features cached per tower across runs;
- ``results.py``: columns, category averages (the paper's), 95% intervals and paired differences;
- ``report.py``: study.csv / study.json / report.md and the PNGs.
"""
