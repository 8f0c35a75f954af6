"""Sweeps: a grid of overrides becomes one MLflow parent run and one child run per point.

``grid`` parses and validates the grid, ``execute`` runs the whole sweep under its parent run; how
the points train is the execution layer's (:mod:`regfw.training`), shared with ``regfw tune``.
"""

from regfw.sweep.execute import SweepResult, common_params, run_sweep, sweep_name
from regfw.sweep.grid import AXIS_SEP, DEFAULT_MAX_POINTS, Axis, Grid, Point, build_grid, parse_seeds, split_values

__all__ = ["SweepResult", "common_params", "run_sweep", "sweep_name", "AXIS_SEP", "DEFAULT_MAX_POINTS", "Axis",
           "Grid", "Point", "build_grid", "parse_seeds", "split_values"]
