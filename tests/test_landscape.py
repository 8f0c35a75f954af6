"""Loss landscapes: grid values against a direct loss evaluation, the CLI on a real SQLite store,
the snapshots artifact, bad inputs, and quadratic-param's path along its valley."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from regfw.build import build_state
from regfw.config import resolve
from regfw.landscape import evaluate, loss_grid, make_plane
from regfw.landscape.compute import compute
from regfw.plugins import load_plugins
from regfw.store import tags as T


def built(experiment: str, *sets: str):
    plugins = load_plugins()
    config = resolve(plugins.registry, experiment, sets=[tuple(s.split("=", 1)) for s in sets], flags={"device": "cpu"})
    return build_state(config, plugins.registry, torch.device("cpu"))


def direct_loss(state, flat: torch.Tensor) -> float:
    """The loss with the parameters set by hand to ``flat``, restored afterwards."""
    params = list(state.model.parameters())
    saved = [p.detach().clone() for p in params]
    with torch.no_grad():
        i = 0
        for p in params:
            p.copy_(flat[i:i + p.numel()].reshape(p.shape))
            i += p.numel()
        state.model.eval()
        loss = float(state.loss_fn(state.model(state.data.x_train), state.data.y_train))
        for p, s in zip(params, saved):
            p.copy_(s)
    return loss


SMALL_MLP = ("dataset.n_samples=900", "dataset.n_train=700", "dataset.n_features=40")
SMALL_BINARY = ("dataset.n_per_class=400", "dataset.n_train_per_class=300", "dataset.n_features=30")
CASES = [("manual-gd", ("model.bias=true",), "params"), ("linear", (), "random"), ("quadratic-param", (), "random"),
         ("quadratic-linear", (), "random"), ("mlp-regression", SMALL_MLP, "random"),
         ("binary", SMALL_BINARY, "random")]


@pytest.mark.parametrize("cache", ["blocks", "whole"])
@pytest.mark.parametrize("experiment,sets,kind", CASES, ids=[c[0] for c in CASES])
def test_grid_values_equal_a_direct_loss_evaluation(experiment, sets, kind, cache, monkeypatch):
    # "blocks": a tiny cache budget splits the samples into blocks (the path large data take)
    monkeypatch.setattr(evaluate, "CACHE_BYTES", 64 * 1024 if cache == "blocks" else 2**40)
    state = built(experiment, *sets)
    plane = make_plane(kind, state.model, seed=3)
    axes = [torch.linspace(c - 0.7, c + 0.9, 9, dtype=torch.float64) for c in plane.center]
    values = loss_grid(state.model, state.loss_fn, state.data.x_train, state.data.y_train, plane, axes)
    assert values.shape == (9, 9)
    for i, j in [(0, 0), (4, 4), (8, 1), (2, 7)]:
        coords = torch.tensor([[float(axes[0][j]), float(axes[1][i])]], dtype=torch.float64)
        expected = direct_loss(state, plane.at(coords)[0].float())
        assert values[i, j].item() == pytest.approx(expected, rel=2e-5, abs=1e-9), (i, j)
    # the centre is the model itself
    assert values[4, 4].item() != values[0, 0].item()


def test_a_model_vmap_cannot_batch_is_evaluated_point_by_point_and_says_so():
    state = built("sequence", "dataset.n_train=40", "dataset.n_test=10", "dataset.length=32", "model.seq_len=32",
                  "model.hidden=8")
    ls = compute(state.model, state.loss_fn, state.data, directions="random", grid=3, span=0.5)
    assert "point by point" in ls.note
    plane = make_plane("random", state.model, seed=state.config.seed)
    corner = plane.at(torch.tensor([[ls.axes[0][0], ls.axes[1][2]]], dtype=torch.float64))[0].float()
    assert ls.values[2][0] == pytest.approx(direct_loss(state, corner), rel=2e-5)


def test_random_directions_are_filter_normalized():
    state = built("mlp-regression", *SMALL_MLP)
    plane = make_plane("random", state.model, seed=0)
    for name, theta, d in zip(plane.names, plane.origin, plane.directions[0]):
        if theta.ndim == 2:
            assert torch.allclose(d.norm(dim=1), theta.norm(dim=1), rtol=1e-4), name
        else:
            assert d.norm().item() == pytest.approx(theta.norm().item(), rel=1e-4, abs=1e-8), name


def test_params_directions_on_a_two_scalar_model_mark_the_least_squares_point():
    state = built("manual-gd", "model.bias=true", "dataset.weight=3", "dataset.bias=2")
    ls = compute(state.model, state.loss_fn, state.data, grid=21)
    assert ls.kind == "params" and ls.labels == ["w", "b"]
    # the default span holds the parameters' own scale around the final point (w = 1, b = 0 here)
    assert ls.axes[0][0] < ls.final[0] < ls.axes[0][-1]
    assert ls.optimum["coords"] == pytest.approx([3.0, 2.0], abs=1e-4)
    assert ls.optimum["loss"] < 1e-8 and ls.optimum["off_plane"] < 1e-9


def runs(store):
    from mlflow import MlflowClient

    client = MlflowClient(store)
    found = client.search_runs([e.experiment_id for e in client.search_experiments()])
    return client, found


def one_error(result, *needles):
    lines = [line for line in result.stderr.splitlines() if line.startswith("regfw: error: ")]
    assert result.exit_code != 0 and len(lines) == 1 and "Traceback" not in result.output + result.stderr, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.mark.slow
def test_cli_run_then_landscape_logs_into_the_same_run(invoke, store, tmp_path):
    result = invoke("run", "manual-gd", "-q", "--set", "model.bias=true", "--snapshots", "6", "--tracking-uri", store)
    assert result.exit_code == 0, result.stderr
    client, (run,) = runs(store)
    run_id = run.info.run_id
    snapshots = torch.load(client.download_artifacts(run_id, "snapshots.pt", str(tmp_path)), weights_only=True)
    assert snapshots["epochs"].tolist() == [0, 20, 40, 60, 80, 100]
    assert set(snapshots["params"]) == {"w", "b"} and snapshots["params"]["w"].shape == (6,)
    final = torch.load(client.download_artifacts(run_id, "model_state_dict.pt", str(tmp_path)), weights_only=True)
    assert torch.equal(snapshots["params"]["w"][-1], final["w"]) and snapshots["params"]["w"][0].item() == 1.0

    out = tmp_path / "pictures"
    result = invoke("landscape", run_id, "--3d", "--grid", "11", "--out", out, "--tracking-uri", store)
    assert result.exit_code == 0, result.stderr
    assert "params landscape" in result.output
    names = {Path(a.path).name for a in client.list_artifacts(run_id, "landscape")}
    assert names == {"landscape_params.json", "landscape_params.svg", "landscape_params_3d.svg"}
    assert {p.name for p in out.iterdir()} == {n.replace("landscape_", "landscape_manual-gd_") for n in names}
    saved = json.loads((out / "landscape_manual-gd_params.json").read_text())
    assert saved["labels"] == ["w", "b"] and len(saved["values"]) == 11 and len(saved["values"][0]) == 11
    assert saved["path"]["epochs"] == [0, 20, 40, 60, 80, 100]
    assert saved["path"]["coords"][0] == pytest.approx([1.0, 0.0])  # w_init, b_init
    after = client.get_run(run_id)
    assert after.info.status == "FINISHED" and after.data.params == run.data.params
    result = invoke("landscape", run_id, "--1d", "--grid", "7", "--span", "0.5", "--tracking-uri", store)
    assert result.exit_code == 0, result.stderr
    line = json.loads(Path(client.download_artifacts(run_id, "landscape/landscape_params_1d.json", str(tmp_path)))
                      .read_text())
    assert line["labels"] == ["w"] and len(line["values"]) == 7
    assert line["axes"][0][0] == pytest.approx(line["final"][0] - 0.5)

    # The same from `regfw run --landscape`, one more run in the store
    result = invoke("run", "manual-gd", "--landscape", "--tracking-uri", store)
    assert result.exit_code == 0, result.stderr
    assert "params landscape" in result.output and "landscape_params_1d.svg" in result.output


@pytest.mark.slow
def test_bad_inputs_are_one_line_each(invoke, store, tmp_path):
    from mlflow import MlflowClient

    assert invoke("run", "manual-gd", "-q", "--tracking-uri", store).exit_code == 0
    client, (run,) = runs(store)
    run_id = run.info.run_id
    one_error(invoke("landscape", "0123456789abcdef0123456789abcdef", "--tracking-uri", store), "no run")
    one_error(invoke("landscape", run_id, "--directions", "pca", "--tracking-uri", store), "--snapshots")
    one_error(invoke("landscape", run_id, "--tracking-uri", store, env={"REGFW_DISABLE_PLUGINS": "manual-gd"}),
              "manual-gd", "not installed")
    one_error(invoke("run", "manual-gd", "--snapshots", "3", "--no-track"), "--no-track")
    one_error(invoke("run", "manual-gd", "--snapshots", "1", "--tracking-uri", store), "--snapshots")
    bare = MlflowClient(store).create_run(run.info.experiment_id, tags={T.EXPERIMENT: "manual-gd"})
    one_error(invoke("landscape", bare.info.run_id, "--tracking-uri", store), "model_state_dict.pt")
    # A run recorded without config.yaml is rebuilt from its params
    client.log_artifact(bare.info.run_id, client.download_artifacts(run_id, "model_state_dict.pt", str(tmp_path)))
    for key, value in run.data.params.items():
        client.log_param(bare.info.run_id, key, value)
    result = invoke("landscape", bare.info.run_id, "--tracking-uri", store)
    assert result.exit_code == 0, result.stderr
    assert "params landscape" in result.output
    # three scalars: no params plane
    assert invoke("run", "quadratic-param", "-q", "--epochs", "10", "--tracking-uri", store).exit_code == 0
    quadratic = [r for r in runs(store)[1] if r.data.tags.get(T.EXPERIMENT) == "quadratic-param"][0]
    one_error(invoke("landscape", quadratic.info.run_id, "--directions", "params", "--tracking-uri", store),
              "one or two scalar parameters")


@pytest.mark.slow
def test_quadratic_param_path_runs_along_its_valley(invoke, store):
    result = invoke("run", "quadratic-param", "-q", "--epochs", "20000", "--snapshots", "21", "--tracking-uri", store)
    assert result.exit_code == 0, result.stderr
    client, (run,) = runs(store)
    assert invoke("landscape", run.info.run_id, "--tracking-uri", store).exit_code == 0
    folder = client.download_artifacts(run.info.run_id, "landscape", str(Path(store[len("sqlite:///"):]).parent))
    saved = json.loads((Path(folder) / "landscape_pca.json").read_text())
    assert saved["kind"] == "pca" and saved["labels"][0].startswith("PC1")
    u, values = saved["axes"][0], torch.tensor(saved["values"])

    def height(point, loss):
        """Where the point sits between its column's valley floor (0) and the column's top (1)."""
        column = values[:, min(range(len(u)), key=lambda j: abs(u[j] - point[0]))]
        return (loss - float(column.min())) / float(column.max() - column.min())

    heights = [height(p, loss) for p, loss in zip(saved["path"]["coords"], saved["path"]["loss"])]
    assert heights[0] > 0.05  # the start is up on the wall ...
    assert max(heights[len(heights) // 2:]) < 0.02  # ... the second half of the path runs along the floor
    assert saved["path"]["epochs"][-1] == 20000 and saved["path"]["coords"][-1] == pytest.approx([0, 0], abs=1e-4)


@pytest.mark.slow
def test_landscape_over_an_http_tracking_server(invoke, mlflow_server):
    uri = mlflow_server
    result = invoke("run", "manual-gd", "-q", "--snapshots", "5", "--tracking-uri", uri)
    assert result.exit_code == 0, result.stderr
    client, (run,) = runs(uri)
    result = invoke("landscape", run.info.run_id, "--directions", "pca", "--tracking-uri", uri)
    assert result.exit_code == 0, result.stderr
    names = {Path(a.path).name for a in client.list_artifacts(run.info.run_id, "landscape")}
    assert names == {"landscape_pca_1d.json", "landscape_pca_1d.svg"}  # one scalar: a line
    assert client.get_run(run.info.run_id).info.status == "FINISHED"


def _pictured():
    """A landscape whose path ends on the final point (as training's does) and whose loss is
    lowest in the upper left, where a legend inside the axes used to sit."""
    from regfw.landscape.compute import Landscape

    axes = [[i / 10 for i in range(-10, 11)], [i / 10 for i in range(-10, 11)]]
    values = [[(u + 1) ** 2 + (v - 1) ** 2 + 0.1 for u in axes[0]] for v in axes[1]]
    path = {"epochs": [0, 10, 20], "coords": [[0.8, -0.8], [0.3, -0.2], [0.0, 0.0]], "loss": [4.0, 2.0, 2.1]}
    return Landscape("pca", ["PC1", "PC2"], axes, values, [0.0, 0.0], 2.1, title="t", path=path,
                     optimum={"coords": [-1.0, 1.0], "loss": 0.1, "off_plane": 0.0})


def test_the_legend_is_beside_the_data_and_the_path_end_shows_over_the_final_star(tmp_path):
    from regfw.landscape import draw

    for figure in (draw.contour_figure(_pictured()), draw.surface_figure(_pictured())):
        figure.canvas.draw()
        renderer = figure.canvas.get_renderer()
        ax = figure.axes[0]
        legend = ax.get_legend() or figure.legends[0]
        assert not legend.get_window_extent(renderer).overlaps(ax.get_window_extent(renderer))
        marks = {line.get_label().split(" ")[0]: line for line in ax.get_lines()}
        end, final = marks["end"], marks["final"]
        # an open square larger than the star, drawn above it
        assert end.get_markerfacecolor() == "none" and end.get_markersize() > final.get_markersize()
        assert end.get_zorder() > final.get_zorder()
        from regfw.plots import pyplot

        pyplot().close(figure)
    written = draw.contour(_pictured(), tmp_path / "landscape_pca.svg")
    text = written.read_text()
    assert text.startswith("<?xml") and "<svg" in text and "end (epoch 20)" in text  # text kept as text
    assert draw.contour(_pictured(), tmp_path / "again.svg").read_bytes() == written.read_bytes()  # same bytes
