"""Resolve an experiment plus the user's overrides into the exact configuration a run uses.

Precedence, lowest first: the experiment's composition, ``--config FILE``, ``--set key=value``,
then the dedicated flags (``--epochs``, ``--lr`` ...). Swapping a component (``--optimizer adam``)
starts that component from its own defaults: parameters tuned for the old one do not leak over.
Everything is validated against declared parameters, so ``regfw show`` prints exactly what
``regfw run`` will use, and a bad value fails before anything is built.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from regfw.configfile import load_config_file  # noqa: F401 - where callers have always found it
from regfw.errors import RegfwError, did_you_mean
from regfw.errors import show as _show  # short name: used in most messages below
from regfw.params import Param, validate
from regfw.registry import Registry
from regfw.train_schema import METRICS, TRAIN_SCHEMA

PARTS = ("dataset", "model", "loss", "optimizer")
TOP_KEYS = ("experiment", "seed", "device") + PARTS + ("train",)
DEFAULT_SEED = 0


SEED = Param(DEFAULT_SEED, type=int, min=0)
MAX_SEED = 2**32 - 1
DEVICE_RE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


@dataclass
class Part:
    """A chosen component with its complete, validated parameters."""

    name: str
    params: dict = field(default_factory=dict)


@dataclass
class Config:
    experiment: str
    seed: int
    device: str
    dataset: Part
    model: Part
    loss: Part
    optimizer: Part
    train: dict

    def to_dict(self) -> dict:
        out = {"experiment": self.experiment, "seed": self.seed, "device": self.device}
        for part in PARTS:
            p = getattr(self, part)
            out[part] = {"name": p.name, "params": dict(p.params)}
        out["train"] = dict(self.train)
        return out

    def flat_params(self) -> dict[str, object]:
        """``optimizer.lr``-style keys for MLflow params and for comparing runs."""
        flat = {"experiment": self.experiment, "seed": self.seed, "device": self.device}
        for part in PARTS:
            p = getattr(self, part)
            flat[part] = p.name
            flat.update({f"{part}.{k}": v for k, v in p.params.items()})
        flat.update({f"train.{k}": v for k, v in self.train.items()})
        return flat

    @classmethod
    def from_dict(cls, values: dict) -> "Config":
        """The inverse of :meth:`to_dict` (no validation: use :func:`resolve` for user input)."""
        parts = {part: Part(values[part]["name"], dict(values[part]["params"])) for part in PARTS}
        return cls(values["experiment"], values["seed"], values["device"], train=dict(values["train"]), **parts)

    def to_yaml(self) -> str:
        import yaml

        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None)


def split_assignment(item: str, example: str = "optimizer.lr=0.1") -> tuple[str, str]:
    """``"optimizer.lr=0.1"`` → ``("optimizer.lr", "0.1")``, or a one-line error (run and sweep)."""
    if "=" not in item:
        raise RegfwError(f"--set expects key=value (e.g. {example}), got {_show(item)}")
    key, value = item.split("=", 1)
    key = key.strip()
    if not key:
        raise RegfwError(f"--set expects key=value with a key, got {_show(item)}")
    return key, value


def parse_set(items: tuple[str, ...] | list[str]) -> list[tuple[str, object]]:
    """``["optimizer.lr=0.1"]`` → ``[("optimizer.lr", "0.1")]``; values are typed later.
    A key given twice is refused (as ``regfw sweep`` does) rather than silently won by the last."""
    pairs = [(key, _scalar(value)) for key, value in map(split_assignment, items)]
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            raise RegfwError(f"--set {_show(key)} is given twice; keep one")
        seen.add(key)
    return pairs


def _scalar(text: str) -> object:
    """Strings stay strings (each Param coerces them); ``null`` and YAML lists are recognised."""
    stripped = text.strip()
    if stripped.lower() in ("null", "none", "~"):
        return None
    if stripped.startswith("["):
        import yaml

        try:
            return yaml.safe_load(stripped)
        except yaml.YAMLError:
            raise RegfwError(f"cannot read {_show(text)} as a list; write e.g. [256, 128]") from None
    return text


def dataset_dims(entry, params: dict) -> dict:
    """What a dataset says of its shapes (``{"in_features": 3, ...}``), from its ``dims`` hook."""
    if entry.dims is None:
        return {}
    return dict(entry.dims(params) or {})


def fill_sizes(model_params: dict, dims: dict) -> dict:
    """Fill the model's unset size parameters from the dataset's ``dims``, in place.

    The one place sizes flow from data to model: any key the dataset reports (``in_features``,
    ``out_features``, ``seq_len`` ...) that the model declares and leaves unset (None) is filled."""
    for key, value in dims.items():
        if key in model_params and model_params[key] is None:
            model_params[key] = value
    return model_params


# Sizes a model must take exactly as the data has them: a wrong one fails at epoch 1 ("mat1 and
# mat2 shapes cannot be multiplied") after the run exists. out_features is checked by the task.
INPUT_SIZES = ("in_features", "in_channels")


def check_sizes(model_params: dict, dims: dict, dataset: str) -> None:
    """Refuse an explicit model size that contradicts the dataset's ``dims``, naming both."""
    wrong = [key for key in INPUT_SIZES if key in dims and model_params.get(key) not in (None, dims[key])]
    outputs, task = dims.get("out_features"), dims.get("task")
    given = model_params.get("out_features")
    if outputs is not None and given is not None and given != outputs:
        if task != "multiclass" or given < outputs:  # more logits than classes still trains
            wrong.append("out_features")
    if wrong:
        key = wrong[0]
        raise RegfwError(f"model.{key}={model_params[key]} contradicts dataset '{dataset}', whose {key} is "
                         f"{dims[key]}; leave model.{key} unset and it is taken from the data")


def check_task(registry: Registry, parts: dict, task: str | None) -> None:
    """Refuse a loss that means nothing on the dataset's task (its dims' ``"task"``) when the
    loss declares the tasks it takes (``extras={"tasks": (...)}``); either left out: no check."""
    loss = registry.get("loss", parts["loss"].name)
    accepted = loss.extras.get("tasks")
    if task is None or not accepted or task in accepted:
        return
    fitting = [e.name for e in registry.all("loss") if task in (e.extras.get("tasks") or ())]
    hint = f": choose a {task} loss ({', '.join(fitting)})" if fitting else ""
    raise RegfwError(f"loss '{loss.name}' is for {' or '.join(accepted)} targets, but dataset "
                     f"'{parts['dataset'].name}' is a {task} task{hint}")


def _check_seed(seed: int) -> int:
    if seed > MAX_SEED:  # NumPy's generator takes 32-bit seeds; a bigger one would fail mid-run
        raise RegfwError(f"seed must be at most {MAX_SEED} (2**32 - 1), got {_show(seed)}")
    return seed


def _check_device(value: object) -> str:
    if not isinstance(value, str) or not DEVICE_RE.match(value.strip()):
        raise RegfwError(f"device must be auto, cpu, cuda, cuda:N or mps, got {_show(value)}")
    return value.strip()


def _unknown_key(key: str, section: str, source: str) -> str:
    """Why ``key`` cannot be set from ``source`` (``--set``/options), with what can."""
    valid = "seed, device, train.<key>, " + ", ".join(f"{p}, {p}.<param>" for p in PARTS)
    if section == "experiment":
        return f"the experiment is the command's first argument (regfw run EXPERIMENT), not a {source} key"
    if section == "train":
        return f"train is a group of settings: set one of them, e.g. train.epochs=5 (valid: {valid})"
    hint = did_you_mean(section, [k for k in TOP_KEYS if k != "experiment"])
    hint = hint if hint.startswith(" (") else ""  # the full list follows anyway
    return f"unknown key {_show(key)} in {source}{hint}; valid: {valid}"


def resolve(
    registry: Registry,
    experiment: str,
    *,
    config_file: dict | None = None,
    sets: list[tuple[str, object]] = (),
    swaps: dict[str, str | None] | None = None,
    flags: dict[str, object] | None = None,
) -> Config:
    """The full configuration of ``experiment`` with every override applied and validated."""
    entry = registry.get("experiment", experiment)
    names = {part: entry.parts[part].name for part in PARTS}
    overrides: dict[str, dict] = {part: dict(entry.parts[part].params) for part in PARTS}
    train: dict = dict(entry.train)
    top = {"seed": entry.seed if entry.seed is not None else DEFAULT_SEED, "device": "auto"}

    def swap(part: str, name: object) -> None:
        if not isinstance(name, str):
            raise RegfwError(f"{part} must be a component name, got {_show(name)}")
        key = registry.get(part, name).name  # unknown name → did-you-mean error now; torch:adam → adam
        if key != names[part]:
            names[part], overrides[part] = key, {}

    def assign(key: str, value: object, source: str) -> None:
        section, _, sub = key.partition(".")
        if section in ("seed", "device") and not sub:
            top[section] = value
        elif section in PARTS and not sub:
            swap(section, value)
        elif section in PARTS:
            overrides[section][sub] = value
        elif section == "train" and sub:
            train[sub] = value
        else:
            raise RegfwError(_unknown_key(key, section, source))

    for key, value in (config_file or {}).items():
        if key not in TOP_KEYS:
            hint = did_you_mean(str(key), TOP_KEYS)
            hint = hint if hint.startswith(" (") else ""  # the full list follows anyway
            raise RegfwError(f"unknown key {_show(key)} in --config{hint}; valid keys: {', '.join(TOP_KEYS)}")
        if key == "experiment":
            if value != experiment:
                raise RegfwError(f"--config is for experiment {_show(value)}, not '{experiment}'")
        elif key in PARTS:
            if isinstance(value, str):
                swap(key, value)
                continue
            if not isinstance(value, dict) or set(value) - {"name", "params"}:
                raise RegfwError(f"--config {key} must be a mapping with 'name' and/or 'params'")
            if "name" in value:
                swap(key, value["name"])
            params = value.get("params") or {}
            if not isinstance(params, dict):
                raise RegfwError(f"--config {key}.params must be a mapping, got {_show(params)}")
            for sub, sub_value in params.items():
                overrides[key][str(sub)] = sub_value
        elif key == "train":
            if not isinstance(value, dict):
                raise RegfwError(f"--config train must be a mapping, got {_show(value)}")
            for sub, sub_value in value.items():
                train[str(sub)] = sub_value
        else:
            top[key] = value

    for part, name in (swaps or {}).items():
        if name is not None:
            swap(part, name)
    for key, value in sets:
        assign(key, value, "--set")
    for key, value in (flags or {}).items():
        if value is not None:
            assign(key, value, "options")

    parts = {}
    for part in PARTS:
        comp = registry.get(part, names[part])
        given = validate(part, comp.params, overrides[part], f"{part} '{comp.name}'")
        params = {k: p.default for k, p in comp.params.items()} | given
        parts[part] = Part(comp.name, params)

    # A model swapped in without sizes gets them from the dataset (cheap metadata, nothing built).
    dataset_entry = registry.get("dataset", names["dataset"])
    dims = dataset_dims(dataset_entry, parts["dataset"].params)
    check_sizes(parts["model"].params, dims, names["dataset"])
    fill_sizes(parts["model"].params, dims)
    check_task(registry, parts, dims.get("task"))

    train_values = validate("train", TRAIN_SCHEMA, train, "training settings")
    train_full = {k: p.default for k, p in TRAIN_SCHEMA.items()} | train_values
    for metric in train_full["metrics"]:
        if metric not in METRICS:
            raise RegfwError(f"unknown metric {_show(metric)}{did_you_mean(metric, METRICS)}")

    return Config(
        experiment=experiment,
        seed=_check_seed(SEED.coerce(top["seed"], "seed")),
        device=_check_device(top["device"]),
        train=train_full,
        **parts,
    )
