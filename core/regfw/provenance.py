"""The tags that say where a run came from: experiment, components and their plugins, device and
thread count, versions, the git commit and whether the tree was dirty, the data's fingerprint, and
what a file-backed dataset says of itself. `regfw rerun` compares them with its own environment."""

from __future__ import annotations

import functools
import hashlib
import platform
import subprocess

from regfw import __version__
from regfw.config import PARTS, Config
from regfw.device import device_name
from regfw.store import tags as T


def git_commit(cwd: str | None = None) -> str | None:
    return git_state(cwd)[0]


def git_state(cwd: str | None = None) -> tuple[str | None, bool | None]:
    """(commit, dirty) of the working tree, from one ``git status`` call; (None, None) outside git.
    Dirty means a tracked file differs from the commit (untracked files are not looked for: on a
    big tree that search costs more than the run it describes)."""
    try:
        out = subprocess.run(["git", "status", "--porcelain=v2", "--branch", "--untracked-files=no"], cwd=cwd,
                             capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None, None
    if out.returncode != 0:
        return None, None
    lines = out.stdout.splitlines()
    commit = next((line.split()[2] for line in lines if line.startswith("# branch.oid ")), None)
    if commit is None or commit == "(initial)":
        return None, None
    return commit, any(not line.startswith("#") for line in lines)


@functools.lru_cache(maxsize=1)
def _mlflow_version() -> str | None:
    """From the installed metadata: reading it does not import mlflow (the direct store never does)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mlflow")
    except PackageNotFoundError:
        return None


def data_fingerprint(data) -> str:
    """sha256 over the dataset's tensors (name, dtype, shape, bytes), the same on every device: a
    changed file, generator or generator parameter gives another fingerprint."""
    import torch

    digest = hashlib.sha256()
    for name in ("x_train", "y_train", "x_test", "y_test"):
        tensor = getattr(data, name)
        if tensor is None:
            continue
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)};".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy())  # the bytes as they are, no copy
    return digest.hexdigest()


def _origin(plugins, plugin: str) -> str:
    info = plugins.info.get(plugin)
    if info and info.distribution:
        return f"{plugin} ({info.distribution} {info.version})"
    return plugin


def run_tags(config: Config, plugins, device, data=None) -> dict:
    import torch

    tags = {
        T.EXPERIMENT: config.experiment,
        T.DEVICE: str(device),
        T.DEVICE_NAME: device_name(device),
        T.SEED: config.seed,
        T.VERSION: __version__,
        T.TORCH_VERSION: torch.__version__,
        T.PYTHON_VERSION: platform.python_version(),
        T.THREADS: torch.get_num_threads(),
    }
    mlflow_version = _mlflow_version()
    if mlflow_version:
        tags[T.MLFLOW_VERSION] = mlflow_version
    experiment = plugins.registry.get("experiment", config.experiment)
    tags[T.EXPERIMENT_PLUGIN] = _origin(plugins, experiment.plugin)
    for part in PARTS:
        entry = plugins.registry.get(part, getattr(config, part).name)
        tags[T.component(part)] = entry.name
        tags[T.component_plugin(part)] = _origin(plugins, entry.plugin)
    commit, dirty = git_state()
    if commit:
        tags[T.GIT_COMMIT] = commit
        tags[T.GIT_DIRTY] = "true" if dirty else "false"
    if data is not None:
        tags.update(data.tags)
    return tags
