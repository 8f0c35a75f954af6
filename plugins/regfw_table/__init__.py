"""``table``: your own data from a CSV or Parquet file, and the ``regression`` and
``classification`` experiments that train on it.

``regfw run regression --set dataset.path=houses.csv --set dataset.target=price`` predicts the
column ``price`` from every other numeric column; ``dataset.features=a,b,c`` chooses them. A test
split is a seeded share of the rows (``dataset.test_fraction``, default 0.2; the run's seed draws
it) or a second file (``dataset.test_path``, which then wins). With ``dataset.standardize`` (the
default) features, and a regression target, are scaled to mean 0 and std 1 with the training
split's statistics only; the statistics are stored with the run (``scaler.json``), so regression
losses read as shares of the target's variance. Class labels, words or integers, become indices
0..k-1 in sorted order (``labels.json``). ``dataset.task=auto`` calls a target of words, booleans
or at most 20 distinct integers classes (two: binary, more: multiclass), and anything else
regression.

The file is read when the configuration is resolved (the dataset's ``dims``): every error in it,
a missing file, a file too large for the memory, a target that is not a column, text in a
feature column, missing values, one class, is one line before any MLflow run is created. The
run records the file's name, row and column counts and sha256 as ``regfw.data.*`` tags and the
file as the run's MLflow dataset input.
"""

from regfw import Param, hookimpl

FILE_PARAMS = {
    "path": Param(None, type=str, help="the CSV or Parquet file (required)"),
    "target": Param(None, type=str, help="the column to predict (required)"),
    "features": Param(None, type=list, item=str, help="input columns a,b,c (default: every other numeric column)"),
    "test_fraction": Param(0.2, min=0.0, help="share of the rows held out for testing, drawn with the seed; 0: none"),
    "test_path": Param(None, type=str, help="a second file to test on instead (same columns)"),
    "standardize": Param(True, help="scale features (and a regression target) with the training split's mean and std"),
    "task": Param("auto", choices=("auto", "regression", "binary", "multiclass"), help="what the target is"),
    "dropna": Param(False, help="drop rows with a missing value in the columns used (default: refuse them)"),
}


def dims(params):
    """Read and check the file: sizes for the model, and every data error before a run exists."""
    from regfw_table.plan import make_plan

    plan = make_plan(params)
    return {} if plan is None else plan.dims()


def make_table(generator, **params):
    from regfw.errors import RegfwError
    from regfw_table.build import build
    from regfw_table.plan import make_plan

    plan = make_plan(params)
    if plan is None:
        raise RegfwError("dataset 'table' needs a file: --set dataset.path=FILE (CSV or Parquet) "
                         "--set dataset.target=COLUMN")
    return build(plan, params, generator)


@hookimpl
def register_datasets(register):
    register("table", make_table, description="Your own CSV or Parquet file: dataset.path=FILE dataset.target=COLUMN",
             params=FILE_PARAMS, dims=dims)


@hookimpl
def register_experiments(register):
    register("regression", description="Predict a numeric column of your CSV/Parquet file: MLP, MSE, Adam",
             dataset=("table", {"task": "regression"}), model=("mlp", {"hidden": [64]}), loss="mse",
             optimizer=("adam", {"lr": 0.01}), train={"epochs": 200, "batch_size": 64, "shuffle": True})
    register("classification", description="Predict a class column of your CSV/Parquet file: MLP, cross-entropy, Adam",
             dataset=("table", {"task": "multiclass"}), model=("mlp", {"hidden": [64]}), loss="cross-entropy",
             optimizer=("adam", {"lr": 0.01}),
             train={"epochs": 200, "batch_size": 64, "shuffle": True, "metrics": ["accuracy"]})
