"""Reproducing a recorded run and proving it (`regfw rerun RUN_ID [--verify]`, `run --from RUN_ID`).

- :mod:`regfw.reproduce.record`: what a run in the store says it was made of (its config.yaml, tags).
- :mod:`regfw.reproduce.environment`: how this installation differs from the recorded one.
- :mod:`regfw.reproduce.verify`: a rerun's metrics and final parameters against the original's.
"""
