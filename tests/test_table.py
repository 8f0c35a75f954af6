"""The ``table`` dataset and the ``regression`` / ``classification`` experiments on small files the
tests write: good files train and are recorded, bad ones give one line before any MLflow run."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
import torch

from regfw_table import FILE_PARAMS, make_table
from regfw_table.read import available_memory
from conftest import metrics_of

ROWS = 60


def houses(n: int = ROWS, seed: int = 0) -> dict[str, list]:
    """Columns of a small housing table: price is linear in size and rooms, plus noise."""
    g = torch.Generator().manual_seed(seed)
    size = (50 + 150 * torch.rand(n, generator=g)).tolist()
    rooms = torch.randint(1, 6, (n,), generator=g).tolist()
    noise = torch.randn(n, generator=g).tolist()
    price = [round(3000 * s + 10000 * r + 5000 * e + 50000, 2) for s, r, e in zip(size, rooms, noise)]
    city = [("Paris", "Lyon", "Nice")[i % 3] for i in range(n)]
    return {"size": [round(s, 3) for s in size], "rooms": rooms, "city": city, "price": price}


def write_csv(path: Path, columns: dict[str, list]) -> Path:
    names = list(columns)
    lines = [",".join(names)] + [",".join("" if v is None else str(v) for v in row) for row in zip(*columns.values())]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def csv(tmp_path):
    return write_csv(tmp_path / "houses.csv", houses())


def params(**given) -> dict:
    return {k: p.default for k, p in FILE_PARAMS.items()} | given


def table(seed: int = 0, **given):
    return make_table(torch.Generator().manual_seed(seed), **params(**given))


def only_run(store: str, experiment: str):
    from mlflow import MlflowClient

    client = MlflowClient(store)
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    assert len(runs) == 1
    return client, runs[0]


def runs_in(store: str) -> int:
    from mlflow import MlflowClient

    client = MlflowClient(store)
    return sum(len(client.search_runs([e.experiment_id])) for e in client.search_experiments())


# -- good files, through the CLI ------------------------------------------------------------------

def test_regression_just_works_on_a_csv(invoke, csv):
    result = invoke("run", "regression", "--set", f"dataset.path={csv}", "--set", "dataset.target=price",
                    "--epochs", "3", "--no-track")
    assert result.exit_code == 0, result.stderr
    assert "regression finished after 3 epochs" in result.stdout
    assert "final_train_loss" in result.stdout and "final_test_loss" in result.stdout
    shown = invoke("show", "regression", "--set", f"dataset.path={csv}", "--set", "dataset.target=price")
    assert "in_features: 2" in shown.stdout  # size and rooms: the numeric columns besides price (city is text)


@pytest.mark.slow
def test_a_linear_model_logs_the_least_squares_optimum(invoke, csv, store):
    result = invoke("run", "regression", "--model", "linear", "--set", f"dataset.path={csv}",
                    "--set", "dataset.target=price", "--epochs", "200", "--tracking-uri", store, "-q")
    assert result.exit_code == 0, result.stderr
    _, run = only_run(store, "regression")
    metrics = metrics_of(run)
    assert 0 <= metrics["optimum_loss"] <= metrics["final_train_loss"]
    # excess_loss is stored to the precision it has: the float32 final loss's (7 significant digits)
    assert math.isclose(metrics["excess_loss"], metrics["final_train_loss"] - metrics["optimum_loss"],
                        rel_tol=0, abs_tol=abs(metrics["final_train_loss"]) * 1e-6)


@pytest.mark.slow
def test_the_loss_is_also_logged_in_the_targets_own_units(invoke, tmp_path, store):
    # A known noise floor: y = 3x + 100 + N(0, 5²); a fitted line leaves the noise, 25 in y's units.
    g = torch.Generator().manual_seed(1)
    x = torch.linspace(-10, 10, 400)
    noise = 5.0 * torch.randn(400, generator=g)
    path = write_csv(tmp_path / "line.csv", {"x": [round(v, 4) for v in x.tolist()],
                                             "y": [round(v, 4) for v in (3 * x + 100 + noise).tolist()]})
    result = invoke("run", "regression", "--model", "linear", "--set", f"dataset.path={path}", "--set", "dataset.target=y",
                    "--set", "dataset.test_fraction=0", "--lr", "0.05", "--epochs", "300", "--tracking-uri", store)
    assert result.exit_code == 0, result.stderr
    assert "final_train_loss_in_target_units" in result.stdout
    client, run = only_run(store, "regression")
    metrics = metrics_of(run)
    scaler = json.loads(open(client.download_artifacts(run.info.run_id, "scaler.json", str(tmp_path))).read())
    std = scaler["target"]["std"]
    assert math.isclose(metrics["final_train_loss_in_target_units"], metrics["final_train_loss"] * std ** 2, rel_tol=1e-6)
    floor = float(((noise - noise.mean()) ** 2).mean())  # what no line can explain, in y's units
    assert math.isclose(metrics["final_train_loss_in_target_units"], floor, rel_tol=0.05)
    listed = invoke("runs", "regression", "--tracking-uri", store)
    assert listed.exit_code == 0 and "final_train_loss_in_target_units" in listed.stdout, listed.stdout
    # A loss that does not rescale by a factor (Huber) gets no such figure.
    huber = invoke("run", "regression", "--loss", "huber", "--set", f"dataset.path={path}", "--set", "dataset.target=y",
                   "--epochs", "2", "--no-track")
    assert huber.exit_code == 0 and "in_target_units" not in huber.stdout


@pytest.mark.slow
def test_the_run_records_the_file_tags_artifacts_and_dataset_input(invoke, csv, store):
    result = invoke("run", "classification", "--set", f"dataset.path={csv}", "--set", "dataset.target=city",
                    "--epochs", "2", "--tracking-uri", store, "-q")
    assert result.exit_code == 0, result.stderr
    client, run = only_run(store, "classification")
    import hashlib

    tags = run.data.tags
    assert tags["regfw.data.file"] == "houses.csv"
    assert tags["regfw.data.rows"] == str(ROWS) and tags["regfw.data.columns"] == "4"
    assert tags["regfw.data.sha256"] == hashlib.sha256(csv.read_bytes()).hexdigest()
    assert "test_accuracy" in metrics_of(run)
    folder = Path(client.download_artifacts(run.info.run_id, "", str(csv.parent / "artifacts")))
    assert json.loads((folder / "labels.json").read_text())["classes"] == ["Lyon", "Nice", "Paris"]
    assert json.loads((folder / "scaler.json").read_text())["features"] == ["size", "rooms", "price"]
    inputs = run.inputs.dataset_inputs
    assert [i.dataset.name for i in inputs] == ["houses.csv"]
    assert tags["regfw.data.sha256"].startswith(inputs[0].dataset.digest)


@pytest.mark.slow
def test_new_contents_at_the_same_path_are_a_new_hash(invoke, csv, store):
    shas = []
    for seed in (0, 1):
        write_csv(csv, houses(seed=seed))
        result = invoke("run", "regression", "--set", f"dataset.path={csv}", "--set", "dataset.target=price",
                        "--epochs", "1", "--tracking-uri", store, "-q")
        assert result.exit_code == 0, result.stderr
    from mlflow import MlflowClient

    client = MlflowClient(store)
    runs = client.search_runs([client.get_experiment_by_name("regression").experiment_id])
    shas = {r.data.tags.get("regfw.data.sha256") for r in runs}
    assert len(runs) == 2 and len(shas) == 2 and None not in shas


def test_parquet_reads_like_csv(tmp_path, csv):
    pytest.importorskip("pyarrow")
    import pandas as pd

    pd.read_csv(csv).to_parquet(tmp_path / "houses.parquet")
    a = table(path=str(csv), target="price")
    b = table(path=str(tmp_path / "houses.parquet"), target="price")
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    assert b.tags["regfw.data.format"] == "parquet" and b.tags["regfw.data.sha256"] != a.tags["regfw.data.sha256"]


def test_check_table_passes_or_skips_cleanly(invoke):
    result = invoke("check", "table")
    assert result.exit_code == 0, result.stdout + result.stderr
    lines = [l for l in result.stdout.splitlines() if l.split() and l.split()[0] in ("ok", "skip", "FAIL")]
    assert {l.split()[2] for l in lines} == {"table", "regression", "classification"}
    assert all(l.startswith("skip") and "dataset.path" in l for l in lines)


# -- what the dataset builds ----------------------------------------------------------------------

def test_the_split_is_drawn_with_the_seed(csv):
    first, again, other = table(0, path=str(csv), target="price"), table(0, path=str(csv), target="price"), \
        table(1, path=str(csv), target="price")
    assert len(first.x_test) == round(ROWS * FILE_PARAMS["test_fraction"].default)
    assert torch.equal(first.x_test, again.x_test)
    assert not torch.equal(first.x_test, other.x_test)


def test_scaling_uses_the_training_file_only(tmp_path, csv):
    import pandas as pd

    held_out = write_csv(tmp_path / "later.csv", houses(20, seed=5))
    data = table(path=str(csv), target="price", test_path=str(held_out))
    scaler = json.loads(data.artifacts["scaler.json"])
    train = pd.read_csv(csv)
    assert scaler["mean"] == pytest.approx(train[["size", "rooms"]].mean().tolist(), rel=1e-9)
    assert scaler["target"]["mean"] == pytest.approx(train["price"].mean(), rel=1e-9)
    assert data.x_train.mean(0).abs().max() < 1e-5 and len(data.x_test) == 20
    assert data.x_test.mean(0).abs().max() > 1e-3  # the test file keeps its own offset: nothing leaked
    raw = table(path=str(csv), target="price", test_fraction=0.0, standardize=False)
    assert torch.allclose(raw.x_train[:, 0].double(), torch.tensor(train["size"].to_numpy()))


def test_integer_labels_map_to_indices_and_binary_targets_are_floats(tmp_path):
    columns = {"a": list(range(12)), "b": [i % 5 for i in range(12)], "label": [7, 3] * 6}
    path = write_csv(tmp_path / "two.csv", columns)
    data = table(path=str(path), target="label", test_fraction=0.0)
    assert data.task == "binary" and json.loads(data.artifacts["labels.json"])["classes"] == [3, 7]
    assert data.y_train.dtype == torch.float32 and data.y_train[:2, 0].tolist() == [1.0, 0.0]
    multi = table(path=str(path), target="label", test_fraction=0.0, task="multiclass")
    assert multi.y_train.dtype == torch.long and multi.y_train[:2].tolist() == [1, 0]


def test_dropna_drops_the_rows_and_says_how_many(tmp_path):
    columns = houses(20)
    columns["size"][4] = None
    path = write_csv(tmp_path / "gaps.csv", columns)
    data = table(path=str(path), target="price", test_fraction=0.0, dropna=True)
    assert len(data.x_train) == 19 and data.tags["regfw.data.dropped_rows"] == "1"


# -- bad input: one line, no MLflow run -----------------------------------------------------------

def _bad_files(tmp_path: Path) -> dict:
    cols = houses(10)
    gaps = dict(cols, size=[None if i in (2, 6) else v for i, v in enumerate(cols["size"])])
    text = dict(cols, rooms=[*cols["rooms"][:3], "many", *cols["rooms"][4:]])
    one = dict(cols, city=["Paris"] * 10)
    (tmp_path / "binary.csv").write_bytes(bytes(range(256)) * 4)
    (tmp_path / "semi.csv").write_text("size;price\n1;2\n3;4\n")
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 this is not parquet")
    (tmp_path / "empty.csv").write_text("")
    (tmp_path / "header.csv").write_text("size,price\n")
    (tmp_path / "folder.csv").mkdir()
    (tmp_path / "twice.csv").write_text("size,rooms,size,price\n1,2,3,4\n2,3,4,5\n3,4,5,6\n4,5,6,7\n")
    (tmp_path / "headerless.csv").write_text("".join(f"{i},{2 * i},{3 * i}\n" for i in range(1, 9)))
    return {
        "missing": (["--set", f"dataset.path={tmp_path / 'nope.csv'}"], "no such file"),
        "folder": (["--set", f"dataset.path={tmp_path / 'folder.csv'}"], "is a folder"),
        "binary": (["--set", f"dataset.path={tmp_path / 'binary.csv'}"], "not a table"),
        "semicolons": (["--set", f"dataset.path={tmp_path / 'semi.csv'}"], "not a table"),
        "bad parquet": (["--set", f"dataset.path={tmp_path / 'bad.parquet'}"], "not a Parquet table"),
        "empty": (["--set", f"dataset.path={tmp_path / 'empty.csv'}"], "is empty"),
        "header only": (["--set", f"dataset.path={tmp_path / 'header.csv'}"], "no rows"),
        "no target": (["--set", f"dataset.path={write_csv(tmp_path / 'ok.csv', cols)}", "--set", "dataset.target=null"],
                      "needs the column to predict"),
        "unknown target": (["--set", f"dataset.path={tmp_path / 'ok.csv'}", "--set", "dataset.target=prise"],
                           "did you mean 'price'?"),
        "text feature": (["--set", f"dataset.path={tmp_path / 'ok.csv'}", "--set", "dataset.features=size,city"],
                         "not numeric: 'city' (row 1: 'Paris')"),
        "stray word": (["--set", f"dataset.path={write_csv(tmp_path / 'word.csv', text)}"],
                       "not numeric: 'rooms' (row 4: 'many')"),
        "missing values": (["--set", f"dataset.path={write_csv(tmp_path / 'gaps.csv', gaps)}"],
                           "2 missing values in 'size' rows 3, 7"),
        "one class": (["--experiment", "classification", "--set", f"dataset.path={write_csv(tmp_path / 'one.csv', one)}",
                       "--set", "dataset.target=city"], "has one class ('Paris')"),
        "infinite": (["--set", f"dataset.path={write_csv(tmp_path / 'inf.csv', dict(cols, size=['inf', *cols['size'][1:]]))}"],
                     "column 'size' holds an infinite value (row 1)"),
        "fraction": (["--set", f"dataset.path={tmp_path / 'ok.csv'}", "--set", "dataset.test_fraction=1.5"],
                     "test_fraction must be at least 0 and below 1"),
        "repeated name": (["--set", f"dataset.path={tmp_path / 'twice.csv'}"],
                          "twice.csv names two columns 'size' (columns 1 and 3); give each column its own name"),
        "target case": (["--set", f"dataset.path={tmp_path / 'ok.csv'}", "--set", "dataset.target=Price"],
                        "dataset.target 'Price' is not a column of ok.csv (did you mean 'price'?)"),
        "feature case": (["--set", f"dataset.path={tmp_path / 'ok.csv'}", "--set", "dataset.features=SIZE"],
                         "dataset.features: 'SIZE' is not a column of ok.csv (did you mean 'size'?)"),
        "headerless": (["--set", f"dataset.path={tmp_path / 'headerless.csv'}", "--set", "dataset.target=y"],
                       "its first row looks like data (1, 2, 3), not a header; add a first line naming the columns"),
    }


BAD = ["missing", "folder", "binary", "semicolons", "bad parquet", "empty", "header only", "no target",
       "unknown target", "text feature", "stray word", "missing values", "one class", "infinite", "fraction",
       "repeated name", "target case", "feature case", "headerless"]


@pytest.mark.parametrize("case", BAD)
def test_bad_input_is_one_line_before_any_run(case, invoke, tmp_path, store):
    args, expected = _bad_files(tmp_path)[case]
    experiment = "regression"
    if args[0] == "--experiment":
        experiment, args = args[1], args[2:]
    if not any(a.startswith("dataset.target") for a in args):
        args = [*args, "--set", "dataset.target=price"]
    result = invoke("run", experiment, *args, "--tracking-uri", store)
    assert result.exit_code != 0
    assert result.stderr.startswith("regfw: error: ") and result.stderr.count("\n") == 1, result.stderr
    assert expected in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and "unexpected" not in result.stderr
    assert not Path(store.removeprefix("sqlite:///")).exists() or runs_in(store) == 0


def test_unreadable_file_is_one_line(invoke, csv, store):
    if os.geteuid() == 0:
        pytest.skip("root reads any file")
    csv.chmod(0)
    try:
        result = invoke("show", "regression", "--set", f"dataset.path={csv}", "--set", "dataset.target=price")
    finally:
        csv.chmod(0o644)
    assert result.exit_code != 0 and "permission denied" in result.stderr and result.stderr.count("\n") == 1


def test_a_file_larger_than_the_memory_is_refused_with_its_size(invoke, tmp_path, store):
    memory = available_memory()
    if memory is None:
        pytest.skip("no /proc/meminfo here")
    big = tmp_path / "big.csv"
    with open(big, "wb") as f:  # sparse: the size is set, no byte is written to the disk
        f.truncate(2 * memory + 1)
    result = invoke("run", "regression", "--set", f"dataset.path={big}", "--set", "dataset.target=price",
                    "--tracking-uri", store)
    assert result.exit_code != 0 and result.stderr.count("\n") == 1, result.stderr
    assert f"big.csv is {(2 * memory + 1) / 1e9:.1f} GB" in result.stderr and "memory available" in result.stderr
    assert not Path(store.removeprefix("sqlite:///")).exists() or runs_in(store) == 0


def test_no_file_named_is_one_line(invoke):
    result = invoke("run", "regression", "--no-track")
    assert result.exit_code != 0 and result.stderr.count("\n") == 1
    assert "dataset.path=FILE" in result.stderr


def test_show_reads_the_file_list_does_not(invoke, csv):
    shown = invoke("show", "classification", "--set", f"dataset.path={csv}", "--set", "dataset.target=city")
    assert shown.exit_code == 0, shown.stderr
    assert "in_features: 3" in shown.stdout and "out_features: 3" in shown.stdout
    assert invoke("list", "datasets").exit_code == 0
