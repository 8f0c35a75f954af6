"""From a table and the dataset's parameters to a checked plan: which columns, which task, which
classes. Every check a user can fail is here, so ``dims`` runs them all before a run exists."""

from __future__ import annotations

from dataclasses import dataclass

from regfw.errors import RegfwError, did_you_mean
from regfw.params import LIMITS
from regfw_table.read import Table, read

AUTO_CLASSES = 20  # task=auto: integer targets with at most this many values are class labels
FLOAT32_MAX = LIMITS["float32"]  # the dtype every table becomes
SHOWN = 8  # columns named in a message before "... (N in all)"


@dataclass
class Plan:
    train: Table
    test: Table | None
    target: str
    features: list[str]
    skipped: list[str]  # text columns left out when features are not named
    task: str  # regression | binary | multiclass
    classes: list | None  # index -> label, for binary and multiclass
    frames: tuple  # (train rows, test rows or None): the used columns, after dropna
    dropped: tuple  # rows dropped by dropna from (train, test)

    def dims(self) -> dict:
        out = len(self.classes) if self.task == "multiclass" else 1
        return {"in_features": len(self.features), "out_features": out, "task": self.task}


def _columns(names) -> str:
    names = [str(n) for n in names]
    more = f", ... ({len(names)} in all)" if len(names) > SHOWN else ""
    return ", ".join(names[:SHOWN]) + more


def _looks_like_data(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _not_a_column(key: str, name: str, table: Table) -> RegfwError:
    columns = [str(c) for c in table.frame.columns]
    if all(_looks_like_data(c) for c in columns):  # pandas took the first row of a headerless file as names
        return RegfwError(f"{key} {name!r} is not a column of {table.name}: its first row looks like data "
                          f"({_columns(columns)}), not a header; add a first line naming the columns")
    # Case first ('Y' for 'y': difflib sees no likeness), then spelling.
    same = [c for c in columns if c.casefold() == str(name).casefold()]
    hint = f" (did you mean '{same[0]}'?)" if same else did_you_mean(name, columns)
    if not hint.startswith(" (did"):
        hint = f"; its columns: {_columns(columns)}"
    return RegfwError(f"{key} {name!r} is not a column of {table.name}{hint}")


def _is_number(series) -> bool:
    import pandas as pd

    return pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series)


def _first_text(series) -> tuple[int, object]:
    """(row number from 1, value) of the first entry that is not a number."""
    import pandas as pd

    bad = pd.to_numeric(series, errors="coerce").isna() & series.notna()
    row = int(bad.to_numpy().argmax())
    return row + 1, series.iloc[row]


def _mostly_numbers(series) -> bool:
    import pandas as pd

    present = series.dropna()
    return len(present) > 0 and pd.to_numeric(present, errors="coerce").notna().mean() >= 0.5


def _features(params: dict, table: Table, target: str) -> tuple[list[str], list[str]]:
    frame = table.frame
    if params["features"]:
        features = list(dict.fromkeys(params["features"]))  # keep the order given, once each
        for name in features:
            if name not in frame.columns:
                raise _not_a_column("dataset.features:", name, table)
        if target in features:
            raise RegfwError(f"dataset.features includes the target {target!r}; list only the inputs")
        skipped = []
    else:
        others = [c for c in frame.columns if c != target]
        features = [c for c in others if _is_number(frame[c])]
        # A column of numbers with a stray word in it is a data error, not a text column to skip.
        features += [c for c in others if not _is_number(frame[c]) and _mostly_numbers(frame[c])]
        features = [c for c in others if c in features]
        skipped = [str(c) for c in others if c not in features]
        if not features:
            text = f"; its text columns: {_columns(skipped)}" if skipped else ""
            raise RegfwError(f"{table.name} has no numeric column besides the target {target!r}{text}")
    text = [c for c in features if not _is_number(frame[c])]
    if text:
        where = "; ".join(f"{c!r} (row {r}: {v!r})" for c, r, v in ((c, *_first_text(frame[c])) for c in text[:SHOWN]))
        raise RegfwError(f"feature columns of {table.name} must hold numbers; not numeric: {where}")
    return [str(c) for c in features], skipped


def _missing(frame, table: Table, columns: list[str], dropna: bool):
    """The rows to use: all of them, or a one-line error saying where values are missing."""
    empty = frame[columns].isna()
    count = int(empty.to_numpy().sum())
    for column in columns:  # "inf" parses as a number, and would turn the scaling into NaN
        series = frame[column]
        if _is_number(series) and series.dtype.kind == "f" and bool(series.abs().eq(float("inf")).any()):
            row = int(series.abs().eq(float("inf")).to_numpy().argmax()) + 1
            raise RegfwError(f"{table.name}: column {column!r} holds an infinite value (row {row}); "
                             f"only finite numbers can be trained on")
        if _is_number(series) and series.dtype.kind in "fiu":
            # The tensors are float32: a bigger cell becomes inf there, and the run fails "NaN or inf".
            over = series.abs().gt(FLOAT32_MAX).to_numpy()
            if over.any():
                row = int(over.argmax())
                raise RegfwError(f"{table.name}: column {column!r} row {row + 1} holds {series.iloc[row].item()!r}, which does "
                                 f"not fit float32 (at most {FLOAT32_MAX:.4g}); rescale the column")
    if count == 0:
        return frame[columns], 0
    if dropna:
        kept = frame.loc[~empty.any(axis=1), columns]
        if kept.empty:
            raise RegfwError(f"{table.name}: every row misses a value in the columns used; no row is left")
        return kept, len(frame) - len(kept)
    places = []
    for column in columns:
        rows = (empty[column].to_numpy().nonzero()[0] + 1).tolist()
        if rows:
            more = f" ... ({len(rows)})" if len(rows) > 3 else ""
            places.append(f"{column!r} row{'s' * (len(rows) > 1)} {', '.join(map(str, rows[:3]))}{more}")
    raise RegfwError(f"{table.name} has {count} missing value{'s' * (count > 1)} in "
                     f"{'; '.join(places[:4])}{' ...' if len(places) > 4 else ''} "
                     f"(rows counted from 1 after the header); fill them or set dataset.dropna=true")


def _task(wanted: str, target: str, series, name: str) -> tuple[str, list | None]:
    import pandas as pd

    numeric = _is_number(series) and not pd.api.types.is_bool_dtype(series)
    whole = numeric and bool((series.astype("float64") % 1 == 0).all())
    if wanted == "auto":
        if numeric and not (whole and series.nunique() <= AUTO_CLASSES):
            return "regression", None
        wanted = "binary" if series.nunique() == 2 else "multiclass"
    if wanted == "regression":
        if not numeric:
            row, value = _first_text(series) if not pd.api.types.is_bool_dtype(series) else (1, series.iloc[0])
            raise RegfwError(f"dataset.target {target!r} of {name} holds {value!r} (row {row}): a regression target "
                             f"must be numbers; for class labels use the classification experiment")
        return "regression", None
    if numeric and not whole:
        raise RegfwError(f"dataset.target {target!r} of {name} holds non-integer numbers; class labels are words "
                         f"or integers (for numbers to predict, use the regression experiment)")
    values = series.unique().tolist()
    classes = sorted(values) if numeric or pd.api.types.is_bool_dtype(series) else sorted(values, key=str)
    if len(classes) < 2:
        raise RegfwError(f"dataset.target {target!r} of {name} has one class ({classes[0]!r}); "
                         f"classification needs at least two")
    if wanted == "binary" and len(classes) != 2:
        raise RegfwError(f"dataset.target {target!r} of {name} has {len(classes)} classes ({_columns(classes)}); "
                         f"dataset.task=binary needs exactly two: use multiclass")
    if len(classes) > max(AUTO_CLASSES, len(series) // 2):
        raise RegfwError(f"dataset.target {target!r} of {name} has {len(classes)} distinct values in {len(series)} "
                         f"rows: not class labels (for numbers to predict, use the regression experiment)")
    return wanted, [c.item() if hasattr(c, "item") else c for c in classes]


def make_plan(params: dict) -> Plan | None:
    """The checked plan for these parameters; None while no file is named (nothing to check yet)."""
    if params["path"] is None:
        return None
    train = read("dataset.path", params["path"])
    test = read("dataset.test_path", params["test_path"]) if params["test_path"] is not None else None
    target = params["target"]
    if target is None:
        raise RegfwError(f"dataset 'table' needs the column to predict: --set dataset.target=COLUMN "
                         f"(columns of {train.name}: {_columns(train.frame.columns)})")
    if target not in train.frame.columns:
        raise _not_a_column("dataset.target", target, train)
    if not 0.0 <= params["test_fraction"] < 1.0:
        raise RegfwError(f"dataset.test_fraction must be at least 0 and below 1, got {params['test_fraction']}")
    features, skipped = _features(params, train, target)
    columns = features + [target]
    if test is not None:
        absent = [c for c in columns if c not in test.frame.columns]
        if absent:
            raise RegfwError(f"dataset.test_path: {test.name} lacks columns of {train.name}: {_columns(absent)}")
    train_rows, train_dropped = _missing(train.frame, train, columns, params["dropna"])
    test_rows, test_dropped = (None, 0) if test is None else _missing(test.frame, test, columns, params["dropna"])
    if test is not None:  # the test file's feature columns must be numbers too
        _features(params | {"features": features}, test, target)
    labels = train_rows[target] if test_rows is None else _concat(train_rows[target], test_rows[target])
    task, classes = _task(params["task"], target, labels, train.name)
    if test is None and params["test_fraction"] > 0:
        n_test = max(1, round(len(train_rows) * params["test_fraction"]))
        if len(train_rows) - n_test < 1:
            raise RegfwError(f"{train.name} has {len(train_rows)} row{'s' * (len(train_rows) > 1)}: too few to hold "
                             f"out a test split; set dataset.test_fraction=0")
    return Plan(train, test, target, features, skipped, task, classes, (train_rows, test_rows),
                (train_dropped, test_dropped))


def _concat(a, b):
    import pandas as pd

    return pd.concat([a, b], ignore_index=True)
