"""Sweeps: a grid of overrides becomes one MLflow parent run and one child run per point.

``grid`` parses and validates the grid, ``points`` runs one point, ``pool`` runs points in worker
processes, ``execute`` runs the whole sweep under its parent run.
"""

from regfw.sweep.execute import SweepResult, common_params, run_sweep, sweep_name
from regfw.sweep.grid import AXIS_SEP, DEFAULT_MAX_POINTS, Axis, Grid, Point, build_grid, parse_seeds, split_values
from regfw.sweep.points import PointResult, PointTask, run_point

__all__ = ["SweepResult", "common_params", "run_sweep", "sweep_name", "AXIS_SEP", "DEFAULT_MAX_POINTS", "Axis",
           "Grid", "Point", "build_grid", "parse_seeds", "split_values", "PointResult", "PointTask", "run_point"]
