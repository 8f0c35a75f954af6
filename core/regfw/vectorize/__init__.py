"""Vectorized sweeps (``regfw sweep --vectorize``): compatible points trained as one stacked program.

- :mod:`.buckets`: which points can train together, and one reason for each that cannot;
- :mod:`.stack`: N built points stacked with torch.func, and the probe run before training;
- :mod:`.optimizers`: sgd, adam, adamw, rmsprop with per-point hyperparameters, and the
  ``extras["vectorized"]`` hook for plugin optimizers;
- :mod:`.record`: per-point metric curves and per-point divergence;
- :mod:`.train`: the stacked loop;
- :mod:`.bucket_run`: a bucket as N MLflow child runs.

Importing this package imports neither torch nor mlflow.
"""

from regfw.vectorize.buckets import Plan, plan_buckets

__all__ = ["Plan", "plan_buckets"]
