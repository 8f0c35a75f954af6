"""A run's own charts: SVG files written by regfw.plots through regfw.svg, read back as XML."""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET

import pytest
import torch

from regfw import plots

from conftest import regfw_importing

NS = "{http://www.w3.org/2000/svg}"


def _svg(path):
    root = ET.parse(path).getroot()  # a parse error fails the test: the file must be valid XML
    assert root.tag == f"{NS}svg" and root.get("viewBox") and root.get("width") and root.get("height")
    return root


def _lines(root) -> list[list[tuple[float, float]]]:
    return [[tuple(map(float, p.split(","))) for p in line.get("points").split()] for line in root.iter(f"{NS}polyline")]


def _texts(root, cls: str) -> list[tuple[str, float]]:
    """(label, the pixel along the axis) for every text of a class; y for y ticks, x for x ticks."""
    axis = "x" if cls == "xtick" else "y"
    return [(t.text, float(t.get(axis, 0))) for t in root.iter(f"{NS}text") if t.get("class") == cls]


def _linear_in(ticks, scale) -> bool:
    """The labelled values sit where a ``scale`` axis puts them: pixel steps proportional to scaled steps."""
    (l0, p0), (l1, p1) = ticks[0], ticks[-1]
    per = (p1 - p0) / (scale(float(l1)) - scale(float(l0)))
    return all(abs(p0 + (scale(float(label)) - scale(float(l0))) * per - p) < 0.2 for label, p in ticks)


def _loss(epochs, f):
    return {"train_loss": [(e, f(e)) for e in range(1, epochs + 1)],
            "test_loss": [(e, 1.1 * f(e)) for e in range(1, epochs + 1)]}


def test_loss_curves_are_two_lines_on_a_log_axis_with_ticks_and_labels(tmp_path):
    path = plots.curves(_loss(100, lambda e: 2 * math.exp(-e / 15)), list(plots.LOSS_CURVES),
                        tmp_path / "loss_curve.svg", "linear (finished)", "loss", log_y=True)
    root = _svg(path)
    lines = _lines(root)
    assert [len(line) for line in lines] == [100, 100]
    assert len({line.get("stroke") for line in root.iter(f"{NS}polyline")}) == 2  # distinct colours
    y_ticks, x_ticks = _texts(root, "ytick"), _texts(root, "xtick")
    assert len(y_ticks) >= 3 and len(x_ticks) >= 3
    assert _linear_in(y_ticks, math.log10) and not _linear_in(y_ticks, float)
    assert _linear_in(x_ticks, float) and {label for label, _ in x_ticks} >= {"20", "40", "60", "80", "100"}
    assert [t.text for t in root.iter(f"{NS}text") if t.get("class") == "legend"] == ["train_loss", "test_loss"]
    assert {t.get("class"): t.text for t in root.iter(f"{NS}text")}.items() >= {"xlabel": "epoch", "ylabel": "loss"}.items()
    # a few digits per coordinate keep the file small
    assert all(re.fullmatch(r"-?\d+(\.\d)?", n) for line in root.iter(f"{NS}polyline")
               for n in re.split("[ ,]", line.get("points")))


def test_a_loss_that_reaches_zero_or_below_is_drawn_on_a_linear_axis(tmp_path):
    for last in (0.0, -0.5):
        history = {"train_loss": [(1, 3.0), (2, 1.0), (3, last)]}
        root = _svg(plots.curves(history, ["train_loss"], tmp_path / "l.svg", "t", "loss", log_y=True))
        y_ticks = _texts(root, "ytick")
        assert _linear_in(y_ticks, float) and min(float(v) for v, _ in y_ticks) <= 0  # no log axis shows 0


def test_a_curve_with_a_nan_tail_draws_its_finite_part(tmp_path):
    history = {"train_loss": [(e, 1 / e) for e in range(1, 31)] + [(31, float("nan")), (32, float("inf"))]}
    root = _svg(plots.curves(history, ["train_loss"], tmp_path / "nan.svg", "diverged (failed)", "loss", log_y=True))
    assert [len(line) for line in _lines(root)] == [30]
    assert "nan" not in (tmp_path / "nan.svg").read_text().lower()
    assert _linear_in(_texts(root, "ytick"), math.log10)

    history = {"train_loss": [(1, 4.0), (2, float("nan")), (3, 2.0), (4, 1.0)]}  # a gap, not a bridge
    root = _svg(plots.curves(history, ["train_loss"], tmp_path / "gap.svg", "t", "loss"))
    assert [len(line) for line in _lines(root)] == [1, 2]


def test_a_long_curve_is_thinned_keeping_its_ends(tmp_path):
    history = {"train_loss": [(e, 1 + math.sin(e / 300)) for e in range(1, 5001)]}
    root = _svg(plots.curves(history, ["train_loss"], tmp_path / "long.svg", "t", "loss"))
    (line,) = _lines(root)
    assert 500 <= len(line) <= 1000
    xs = [x for x, _ in line]
    assert xs == sorted(xs) and (xs[0], xs[-1]) == (min(xs), max(xs))
    x_ticks = dict(_texts(root, "xtick"))
    per = (x_ticks["5000"] - x_ticks["1000"]) / 4000  # pixels per epoch from the labelled ticks
    assert xs[0] == pytest.approx(x_ticks["1000"] - 999 * per, abs=0.2)
    assert xs[-1] == pytest.approx(x_ticks["5000"], abs=0.2)


def test_a_title_from_user_input_is_escaped(tmp_path):
    title = 'a <b> & "c" \'d\' \x01'
    path = plots.curves(_loss(3, lambda e: 1 / e), ["train_loss"], tmp_path / "t.svg", title, "loss")
    root = _svg(path)
    assert [t.text for t in root.iter(f"{NS}text") if t.get("class") == "title"] == ['a <b> & "c" \'d\' ']
    assert "<b>" not in path.read_text()


def test_accuracy_has_no_log_axis_and_no_file_without_curves(tmp_path):
    history = {"train_accuracy": [(e, 0.5 + e / 20) for e in range(1, 11)],
               "test_accuracy": [(e, 0.45 + e / 22) for e in range(1, 11)]}
    root = _svg(plots.curves(history, list(plots.ACCURACY_CURVES), tmp_path / "a.svg", "binary", "accuracy"))
    assert _linear_in(_texts(root, "ytick"), float) and [len(line) for line in _lines(root)] == [10, 10]
    assert plots.curves({"train_loss": []}, list(plots.ACCURACY_CURVES), tmp_path / "none.svg", "t", "a") is None
    assert not (tmp_path / "none.svg").exists()


def test_fit_draws_every_data_point_and_the_model_over_200_points(tmp_path):
    torch.manual_seed(0)
    x = torch.rand(70, 1) * 4 - 2
    y = 3 * x + 1 + 0.1 * torch.randn(70, 1)
    model = torch.nn.Linear(1, 1)
    root = _svg(plots.fit(model, x, y, tmp_path / "fit.svg", "linear (finished)"))
    assert len(list(root.iter(f"{NS}circle"))) == 70 + 1  # the dots and the legend's marker
    (line,) = _lines(root)
    assert len(line) == 200
    x_ticks = _texts(root, "xtick")
    assert _linear_in(x_ticks, float) and _linear_in(_texts(root, "ytick"), float)


@pytest.mark.slow
def test_a_plain_run_writes_svg_charts_without_importing_matplotlib(tmp_path, store):
    """A real process, a real store: matplotlib's import alone cost more than a short run."""
    from mlflow import MlflowClient

    result, loaded = regfw_importing("matplotlib", ["run", "linear", "--epochs", "2", "--tracking-uri", store, "-q"],
                                     tmp_path)
    assert result.returncode == 0, result.stderr
    assert not loaded
    client = MlflowClient(store)
    (run,) = client.search_runs([client.get_experiment_by_name("linear").experiment_id])
    names = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"loss_curve.svg", "fit.svg"} <= names and not any(n.endswith(".png") for n in names)
    local = client.download_artifacts(run.info.run_id, "loss_curve.svg", str(tmp_path / "dl"))
    assert [len(line) for line in _lines(_svg(local))] == [2]  # linear has no test split: train_loss, 2 epochs
