"""A recorded run read back for reproducing: its configuration (the config.yaml artifact every run
writes), tags, params and experiment, and the configuration re-validated against what is installed
now. Every problem is one line, raised before anything new is recorded."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from regfw.errors import RegfwError
from regfw.store import is_missing, open_client, store_error
from regfw.store import tags as T

CONFIG_ARTIFACT = "config.yaml"


@dataclass
class Recorded:
    uri: str
    run_id: str
    experiment_name: str
    status: str
    run_name: str
    tags: dict
    params: dict
    values: dict | None  # config.yaml as the run wrote it; None for a sweep's parent, which has none

    @property
    def is_sweep(self) -> bool:
        return self.tags.get(T.ROLE) == T.ROLE_SWEEP

    @property
    def world_size(self) -> int:
        text = self.tags.get(T.WORLD_SIZE, "1")
        return int(text) if text.isdigit() else 1

    @property
    def vectorized(self) -> bool:
        """Trained as one point of a stacked sweep bucket (``--vectorize``)."""
        return T.BUCKET in self.tags

    def config(self, registry, sets=()):
        """The run's configuration validated against the plugins installed now, ``sets`` applied
        on top; a component gone or a value no longer valid is one line."""
        from regfw.config import resolve

        if self.values is None:
            raise RegfwError(f"run {self.run_id} has no {CONFIG_ARTIFACT} artifact: there is no configuration to "
                             f"start from")
        experiment = self.values.get("experiment")
        if not isinstance(experiment, str):
            raise RegfwError(f"run {self.run_id}: its {CONFIG_ARTIFACT} names no experiment")
        try:
            return resolve(registry, experiment, config_file=self.values, sets=list(sets))
        except RegfwError as exc:
            for tag, param in DATA_FILES:  # the file moved: say where to point, and what it must be
                if self.tags.get(tag) and str(exc).startswith(f"dataset.{param}"):
                    raise RegfwError(f"run {self.run_id}: {exc}; give the file it trained on (sha256 "
                                     f"{self.tags[tag][:12]}) with --set dataset.{param}=FILE") from None
            raise RegfwError(f"run {self.run_id} cannot be reproduced with this installation: {exc}") from None


# A file-backed dataset's own sha256 tag, and the parameter naming the file it was computed on.
DATA_FILES = (("regfw.data.sha256", "path"), ("regfw.data.test_sha256", "test_path"))


def check_data_files(recorded: Recorded, config) -> None:
    """The files a table run trained on are the same bytes now (at the recorded path, or where
    ``--set dataset.path=...`` points): another sha256 is one line, before any run exists."""
    import hashlib

    for tag, param in DATA_FILES:
        want, path = recorded.tags.get(tag), config.dataset.params.get(param)
        if not want or not isinstance(path, str):
            continue
        digest = hashlib.sha256()
        try:
            with open(path, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
        except OSError as exc:
            raise RegfwError(f"run {recorded.run_id}: cannot read dataset.{param} {path} ({exc.strerror or exc}); "
                             f"give the file's new place with --set dataset.{param}=FILE") from None
        if digest.hexdigest() != want:
            raise RegfwError(f"run {recorded.run_id} trained on a dataset.{param} with sha256 {want[:12]}, "
                             f"{path} now has {digest.hexdigest()[:12]}: not the same data; point "
                             f"--set dataset.{param}=FILE at the file it trained on")


def load_recorded(uri: str, run_id: str, client=None) -> Recorded:
    """Read ``run_id`` (a full id) from the store at ``uri``."""
    from mlflow.exceptions import MlflowException

    client = client or open_client(uri)
    try:
        run = client.get_run(run_id)
        experiment = client.get_experiment(run.info.experiment_id)
    except MlflowException as exc:
        if is_missing(exc):
            raise RegfwError(f"no run '{run_id}' in {uri}") from None
        raise store_error(uri, exc) from None
    except Exception as exc:  # noqa: BLE001 - a store that cannot be read is one line
        raise store_error(uri, exc) from None
    if run.info.lifecycle_stage == "deleted":
        raise RegfwError(f"run {run_id} is deleted; restore it first")
    tags = dict(run.data.tags)
    values = None if tags.get(T.ROLE) == T.ROLE_SWEEP else _config_values(client, uri, run_id)
    return Recorded(uri, run_id, experiment.name, run.info.status, run.info.run_name or run_id, tags,
                    dict(run.data.params), values)


def _config_values(client, uri: str, run_id: str) -> dict:
    import yaml

    with tempfile.TemporaryDirectory(prefix="regfw-rerun-") as folder:
        try:
            path = client.download_artifacts(run_id, CONFIG_ARTIFACT, folder)
        except Exception:  # noqa: BLE001 - absent (deleted, never written) or unreadable: the same answer
            raise RegfwError(f"run {run_id} has no {CONFIG_ARTIFACT} artifact: there is no configuration to "
                             f"start from") from None
        try:
            values = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise RegfwError(f"run {run_id}: its {CONFIG_ARTIFACT} cannot be read ({type(exc).__name__})") from None
    if not isinstance(values, dict):
        raise RegfwError(f"run {run_id}: its {CONFIG_ARTIFACT} is not a configuration mapping")
    return values


@dataclass
class StartingPoint:
    """``regfw run/sweep --from RUN_ID``: the run's resolved configuration as the base layer."""

    run_id: str
    experiment: str
    values: dict

    def layered(self, experiment: str | None, file_values: dict | None) -> tuple[str, dict]:
        """(experiment, configuration values): ``--config FILE`` laid over the run's configuration.
        A part the file names anew starts from that component's own defaults, as a swap does."""
        if experiment is not None and experiment != self.experiment:
            raise RegfwError(f"--from run {self.run_id} is experiment '{self.experiment}', not '{experiment}'; "
                             f"leave EXPERIMENT out or give '{self.experiment}'")
        values = {k: (dict(v) if isinstance(v, dict) else v) for k, v in self.values.items()}
        for key, value in (file_values or {}).items():
            base = values.get(key)
            if key == "train" and isinstance(value, dict) and isinstance(base, dict):
                values[key] = base | value
            elif isinstance(value, dict) and isinstance(base, dict) and value.get("name", base.get("name")) == \
                    base.get("name") and isinstance(value.get("params", {}), dict):
                values[key] = base | {"params": dict(base.get("params") or {}) | dict(value.get("params") or {})}
            else:  # a value, or another component: it replaces the run's
                values[key] = value
        return self.experiment, values


def starting_point(uri: str, given: str) -> StartingPoint:
    """The run ``given`` (an id or unique prefix) in ``uri`` as a starting point."""
    from regfw.runs.queries import full_run_id

    run_id = full_run_id(uri, given)
    recorded = load_recorded(uri, run_id)
    if recorded.is_sweep:
        raise RegfwError(f"run {run_id} is a sweep's parent run: start --from one of its points "
                         f"(regfw runs --sweep {recorded.tags.get(T.SWEEP_ID, '?')})")
    experiment = recorded.values.get("experiment")
    if not isinstance(experiment, str):
        raise RegfwError(f"run {run_id}: its {CONFIG_ARTIFACT} names no experiment")
    return StartingPoint(run_id, experiment, recorded.values)
