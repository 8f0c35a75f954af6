"""From a checked plan to tensors: the seeded split, the scaling, and what the run records."""

from __future__ import annotations

import json

from regfw.data import Data
from regfw_table.plan import Plan

DIGEST = 32  # hex characters of the sha256 in MLflow's dataset digest (it allows 36)


def _targets(plan: Plan, series):
    import torch

    if plan.task == "regression":
        return torch.tensor(series.to_numpy(dtype="float64")).reshape(-1, 1)  # float32 after scaling
    index = {label: i for i, label in enumerate(plan.classes)}
    codes = torch.tensor([index[v.item() if hasattr(v, "item") else v] for v in series.tolist()], dtype=torch.long)
    return codes.float().reshape(-1, 1) if plan.task == "binary" else codes


def _split(plan: Plan, fraction: float, generator):
    """Train and test tensors: the second file, or a seeded share of the first one's rows."""
    import torch

    train_rows, test_rows = plan.frames
    x = torch.tensor(train_rows[plan.features].to_numpy(dtype="float64"))  # float64 until scaled
    y = _targets(plan, train_rows[plan.target])
    if test_rows is not None:
        x_test = torch.tensor(test_rows[plan.features].to_numpy(dtype="float64"))
        return x, y, x_test, _targets(plan, test_rows[plan.target])
    if fraction == 0:
        return x, y, None, None
    n_test = max(1, round(len(x) * fraction))
    order = torch.randperm(len(x), generator=generator)
    test, train = order[:n_test].sort().values, order[n_test:].sort().values  # file order within each split
    return x[train], y[train], x[test], y[test]


def _scale(plan: Plan, x, y, x_test, y_test):
    """Mean 0, std 1 with the training split's statistics only: the test split must not leak into them."""
    mean, std = x.mean(0), x.std(0, unbiased=False)
    std = std.where(std > 0, 1.0)  # a constant column stays as it is, shifted to 0
    scaler = {"features": plan.features, "mean": mean.tolist(), "std": std.tolist()}
    x = (x - mean) / std
    x_test = None if x_test is None else (x_test - mean) / std
    if plan.task == "regression":
        t_mean, t_std = float(y.mean()), float(y.std(unbiased=False)) or 1.0
        scaler["target"] = {"name": plan.target, "mean": t_mean, "std": t_std}
        y = (y - t_mean) / t_std
        y_test = None if y_test is None else (y_test - t_mean) / t_std
    return x, y, x_test, y_test, scaler


def _schema(plan: Plan) -> dict:
    frame = plan.frames[0]
    kinds = {"b": "boolean", "i": "long", "u": "long", "f": "double"}
    spec = [{"name": c, "type": kinds.get(frame[c].dtype.kind, "string"), "required": True}
            for c in plan.features + [plan.target]]
    return {"mlflow_colspec": spec}  # MLflow's column-spec schema: its UI shows it with the dataset


def build(plan: Plan, params: dict, generator) -> Data:
    x, y, x_test, y_test = _split(plan, params["test_fraction"], generator)
    scaler = None
    if params["standardize"]:
        x, y, x_test, y_test, scaler = _scale(plan, x, y, x_test, y_test)
    train = plan.train
    single = lambda t: t.float() if t is not None and t.is_floating_point() else t  # noqa: E731
    x, y, x_test, y_test = map(single, (x, y, x_test, y_test))
    tags = {"regfw.data.file": train.name, "regfw.data.format": train.kind,
            "regfw.data.rows": str(len(train.frame)), "regfw.data.columns": str(len(train.frame.columns)),
            "regfw.data.sha256": train.sha256, "regfw.data.task": plan.task,
            "regfw.data.features": str(len(plan.features)),
            "regfw.data.train_rows": str(len(x)), "regfw.data.test_rows": str(0 if x_test is None else len(x_test))}
    if plan.test is not None:
        tags |= {"regfw.data.test_file": plan.test.name, "regfw.data.test_sha256": plan.test.sha256}
    if any(plan.dropped):
        tags["regfw.data.dropped_rows"] = str(sum(plan.dropped))
    described = {"file": train.name, "target": plan.target, "task": plan.task, "features": plan.features,
                 "skipped_columns": plan.skipped}
    artifacts = {"table.json": json.dumps(described, indent=2)}
    if plan.classes is not None:
        artifacts["labels.json"] = json.dumps({"classes": plan.classes}, indent=2)
    if scaler is not None:
        artifacts["scaler.json"] = json.dumps(scaler, indent=2)
    rows = len(plan.frames[0])
    source = {"name": train.name, "digest": train.sha256[:DIGEST], "source": str(train.path),
              "schema": _schema(plan),
              "profile": {"num_rows": rows, "num_elements": rows * (len(plan.features) + 1)}}
    target_scale = scaler["target"]["std"] if scaler is not None and "target" in scaler else None
    return Data(x, y, x_test, y_test, task=plan.task, tags=tags, artifacts=artifacts, source=source,
                target_scale=target_scale)
