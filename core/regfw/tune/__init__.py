"""``regfw tune``: searches with Optuna over the params ``--set`` takes (docs/tuning.md).

:mod:`regfw.tune.space` parses and checks a search space (no optuna import); :mod:`regfw.tune.study`
holds the Optuna side; :mod:`regfw.tune.search` drives a study by ask and tell; trials train as sweep
points (:mod:`regfw.tune.execute`).
"""
