"""The tags that say where a run came from: experiment, components and their plugins, device,
versions, the git commit, and what a file-backed dataset says of itself."""

from __future__ import annotations

import subprocess

from regfw import __version__
from regfw.config import PARTS, Config
from regfw.device import device_name
from regfw.store import tags as T


def git_commit(cwd: str | None = None) -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


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
    }
    experiment = plugins.registry.get("experiment", config.experiment)
    tags[T.EXPERIMENT_PLUGIN] = _origin(plugins, experiment.plugin)
    for part in PARTS:
        entry = plugins.registry.get(part, getattr(config, part).name)
        tags[T.component(part)] = entry.name
        tags[T.component_plugin(part)] = _origin(plugins, entry.plugin)
    commit = git_commit()
    if commit:
        tags[T.GIT_COMMIT] = commit
    if data is not None:
        tags.update(data.tags)
    return tags
