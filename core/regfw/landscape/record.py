"""``regfw landscape RUN_ID``: rebuild a stored run and attach its landscape to it.

Only the MLflow client API is used, so a SQLite file and an ``http://`` server work alike. The run
is read (config.yaml, or its params; model_state_dict.pt; snapshots.pt when it kept them),
rebuilt with :mod:`regfw.build` on the CPU, and the pictures and grid values are logged under the
run's ``landscape/`` artifacts. The run's status, params and metrics are left as they are.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from regfw.config import PARTS
from regfw.errors import RegfwError, squeeze
from regfw.landscape.snapshots import ARTIFACT as SNAPSHOTS
from regfw.store import is_missing, open_client, store_error
from regfw.store import tags as T

STATE = "model_state_dict.pt"
CONFIG = "config.yaml"
FOLDER = "landscape"


@dataclass
class Written:
    landscape: object  # regfw.landscape.compute.Landscape
    files: list  # names under the run's landscape/ artifacts
    copies: list  # the same files under --out


def _run(client, uri: str, run_id: str):
    from mlflow.exceptions import MlflowException

    try:
        return client.get_run(run_id)
    except MlflowException as exc:
        if is_missing(exc) or "invalid" in str(exc).lower():
            raise RegfwError(f"no run '{run_id}' in {uri}") from None
        raise store_error(uri, exc) from None
    except Exception as exc:  # noqa: BLE001 - a store that cannot be read is one line too
        raise store_error(uri, exc) from None


def _config(client, run, folder: Path, names: set, registry):
    """The run's configuration, re-validated; a part whose plugin is gone is named with its plugin."""
    from regfw.config import load_config_file, parse_set, resolve

    tags, params, run_id = run.data.tags, run.data.params, run.info.run_id
    wanted = {"experiment": tags.get(T.EXPERIMENT) or params.get("experiment")}
    wanted |= {part: tags.get(T.component(part)) or params.get(part) for part in PARTS}
    for kind, name in wanted.items():
        if name and name not in registry.entries[kind]:
            plugin = tags.get(T.EXPERIMENT_PLUGIN if kind == "experiment" else T.component_plugin(kind), "?")
            raise RegfwError(f"run {run_id} needs {kind} '{name}' from plugin {plugin}, which is not installed "
                             "(see `regfw plugins`)")
    if not wanted["experiment"]:
        raise RegfwError(f"run {run_id} is not a regfw run (no experiment recorded)")
    try:
        if CONFIG in names:
            stored = load_config_file(client.download_artifacts(run_id, CONFIG, str(folder)))
            stored.pop("device", None)
            return resolve(registry, wanted["experiment"], config_file=stored, flags={"device": "cpu"})
        # No config.yaml: the params hold every resolved value, flattened as `--set` takes them.
        skip = {"experiment", "device"}
        sets = parse_set([f"{k}={v}" for k, v in params.items() if k not in skip])
        return resolve(registry, wanted["experiment"], sets=sets, flags={"device": "cpu"})
    except RegfwError as exc:
        raise RegfwError(f"run {run_id} cannot be rebuilt with this installation: {exc}") from None


def rebuild(client, uri: str, run, folder: Path, registry):
    """``(config, model, loss_fn, data, trajectory)`` of a stored run, its final weights loaded."""
    import torch

    from regfw.build import build_data, build_loss, build_model, seed_everything
    from regfw.landscape import snapshots

    run_id = run.info.run_id
    try:
        names = {a.path for a in client.list_artifacts(run_id)}
    except Exception as exc:  # noqa: BLE001
        raise store_error(uri, exc) from None
    if STATE not in names:
        raise RegfwError(f"run {run_id} has no {STATE}: nothing to draw (the run ended before its artifacts "
                         "were written, or it was recorded without them)")
    config = _config(client, run, folder, names, registry)
    seed_everything(config.seed)
    data, model, loss_fn = build_data(config, registry), build_model(config, registry), build_loss(config, registry)
    try:
        state = torch.load(client.download_artifacts(run_id, STATE, str(folder)), map_location="cpu",
                           weights_only=True)
        model.load_state_dict(state)
    except Exception as exc:  # noqa: BLE001 - a torn file, or weights of another model
        raise RegfwError(f"run {run_id}'s {STATE} does not fit the model built now: {squeeze(str(exc), 160)}") from None
    trajectory = None
    if SNAPSHOTS in names:
        trajectory = snapshots.load(client.download_artifacts(run_id, SNAPSHOTS, str(folder)),
                                    [n for n, _ in model.named_parameters()])
    return config, model, loss_fn, data, trajectory


def landscape_of_run(uri: str, run_id: str, registry, *, directions: str | None = None, grid: int = 41,
                     span: float | None = None, one_d: bool = False, three_d: bool = False,
                     out: str | Path | None = None, seed: int | None = None) -> Written:
    """Compute, draw and log the landscape of ``run_id``; copies go to ``out`` when given."""
    from regfw.landscape import draw
    from regfw.landscape.compute import compute

    client = open_client(uri)
    run = _run(client, uri, run_id)
    with tempfile.TemporaryDirectory(prefix="regfw-landscape-") as tmp:
        downloads, pictures = Path(tmp) / "in", Path(tmp) / FOLDER
        downloads.mkdir()
        pictures.mkdir()
        config, model, loss_fn, data, trajectory = rebuild(client, uri, run, downloads, registry)
        title = f"{config.experiment} · run {run_id[:8]}"
        ls = compute(model, loss_fn, data, directions=directions, trajectory=trajectory, grid=grid, span=span,
                     one_d=one_d, seed=config.seed if seed is None else seed, title=title)
        stem = f"landscape_{ls.kind}" + ("_1d" if len(ls.axes) == 1 else "")
        files = [f"{stem}.json"]
        (pictures / files[0]).write_text(json.dumps(ls.to_json()), encoding="utf-8")
        if len(ls.axes) == 1:
            files.append(draw.curve(ls, pictures / f"{stem}.svg").name)
        else:
            files.append(draw.contour(ls, pictures / f"{stem}.svg").name)
            if three_d:
                files.append(draw.surface(ls, pictures / f"{stem}_3d.svg").name)
        try:
            client.log_artifacts(run_id, str(pictures), FOLDER)
        except Exception as exc:  # noqa: BLE001
            raise store_error(uri, exc) from None
        copies = []
        if out is not None:  # named after the experiment too: several runs can share one folder
            target = Path(out)
            try:
                target.mkdir(parents=True, exist_ok=True)
                for name in files:
                    copies.append(target / name.replace("landscape_", f"landscape_{config.experiment}_", 1))
                    shutil.copyfile(pictures / name, copies[-1])
            except OSError as exc:  # a folder in a file's place, a full disk: the run has it already
                raise RegfwError(f"the landscape is logged in run {run_id}, but cannot be copied to --out {out}: "
                                 f"{exc.strerror or type(exc).__name__}") from None
    return Written(ls, files, copies)
