"""Reaching Ray for ``--backend ray``: the options, the runtime env file, and :func:`connect`, which
runs before a sweep's or a search's parent run exists: a store the workers cannot write to, a cluster
that does not answer or lacks the requested GPUs is one line and no run."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
import time
from dataclasses import dataclass
from typing import Callable
from urllib.parse import urlparse

from regfw.errors import RegfwError, one_line
from regfw.store import check_reachable

REACH_SECONDS = 5  # a cluster address that does not accept a connection within this is unreachable
SERVER_HINT = ("run an `mlflow server` the workers can reach (e.g. `mlflow server --host 0.0.0.0 --port 5000 "
               "--backend-store-uri sqlite:///mlflow.db`) and pass --tracking-uri http://HOST:5000")


@dataclass
class RayOptions:
    """How points go to Ray. ``address``: as Ray takes it (``auto``, ``host:port``, ``ray://host:10001``);
    None: a local instance on this machine (unless ``RAY_ADDRESS`` is set, as for Ray itself)."""

    address: str | None = None
    cpus_per_point: float = 1.0
    gpus_per_point: float = 0.0
    retries: int = 0
    runtime_env: dict | None = None
    announce: Callable[[str], None] | None = None  # one line once the cluster is ready
    keep: bool = False  # run_ray leaves Ray connected (a search hands it wave after wave)

    @property
    def target(self) -> str | None:
        return self.address or os.environ.get("RAY_ADDRESS") or None

    def where(self) -> str:
        return f"the Ray cluster at {self.target}" if self.target else "a local Ray instance"


MAX_RUNTIME_ENV_BYTES = 1_000_000  # pip lists and env_vars: kilobytes; a working_dir is shipped by path


def load_runtime_env(path: str) -> dict:
    """``--ray-runtime-env FILE``: a YAML or JSON mapping handed to Ray as it is (pip, working_dir, env_vars...)."""
    from regfw.files import load_yaml

    # Through the guarded reader, as --config: a FIFO, /dev/zero or an alias bomb is one line.
    value = load_yaml(path, "--ray-runtime-env", MAX_RUNTIME_ENV_BYTES, "a runtime_env is at most")
    if not isinstance(value, dict):
        raise RegfwError(f"--ray-runtime-env {path} must hold a mapping (pip:, working_dir:, env_vars:...), "
                         f"not {type(value).__name__}")
    return value


def connect(options: RayOptions, uri: str, points) -> None:
    """Reach Ray and check it can run these points; every refusal is one line, before any run exists."""
    scheme = urlparse(uri).scheme
    if options.target and scheme in ("", "file", "sqlite"):
        raise RegfwError(f"the workers of a Ray cluster cannot write to the local store {uri}: {SERVER_HINT}")
    devices = sorted({p.config.device for p in points if str(p.config.device).startswith("cuda")})
    if devices and not options.gpus_per_point:
        raise RegfwError(f"points on {devices[0]} need --gpus-per-point 1: Ray gives a task a GPU only if it asks")
    check_reachable(uri)  # cheap, and before Ray's start of several seconds
    if options.target:
        _check_reachable(options.target)
    try:
        import ray
    except ImportError:
        raise RegfwError("--backend ray needs Ray: pip install 'regfw[ray]'") from None
    started = time.monotonic()
    # Ray's Python logs (the token-authentication notice, "Started a local Ray instance") are not the
    # user's business; a failure still reaches them, as one line.
    kwargs = dict(logging_level=logging.ERROR, log_to_driver=False, runtime_env=options.runtime_env)
    if not options.target:
        kwargs |= dict(num_cpus=os.cpu_count(), include_dashboard=False)
    try:
        with _silent_stderr():
            ray.init(address=options.target, **kwargs)
    except Exception as exc:  # noqa: BLE001 - whatever Ray raises, the user gets one line
        hint = ""
        if options.target and options.target != "auto" and os.environ.get("RAY_AUTH_MODE") != "token":
            # Ray sends its token only to an address it found itself, or when told to.
            hint = ("; if the cluster uses token authentication (Ray's default), set RAY_AUTH_MODE=token "
                    "and its token (~/.ray/auth_token or RAY_AUTH_TOKEN)")
        raise RegfwError(f"cannot connect to {options.where()}: {one_line(exc)}{hint}") from None
    try:
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        need = {"CPU": options.cpus_per_point, "GPU": options.gpus_per_point}
        if not any(all(n["Resources"].get(k, 0) >= v for k, v in need.items() if v) for n in nodes):
            have = "; ".join(_resources(n["Resources"]) for n in nodes) or "none"
            raise RegfwError(f"no node of {options.where()} has {_resources(need)} for a point "
                             f"(its nodes: {have}); lower --cpus-per-point/--gpus-per-point or add such a node")
    except BaseException:
        ray.shutdown()
        raise
    if options.announce is not None:
        total = ray.cluster_resources()
        options.announce(f"Ray: {options.where()}, {len(nodes)} node{'s' * (len(nodes) != 1)}, "
                         f"{_resources(total)} (ready in {time.monotonic() - started:.1f} s)")


@contextlib.contextmanager
def _silent_stderr():
    """Ray's C++ core prints a warning on the process's stderr for each retry while it connects (a
    wrong token: one a second for 20 s); the outcome reaches the user as one line instead."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _resources(values: dict) -> str:
    return ", ".join(f"{values.get(k, 0):g} {k}s" for k in ("CPU", "GPU"))


def _check_reachable(address: str) -> None:
    """Ray retries an unreachable address for minutes, printing C++ warnings: try it once first."""
    if address in ("auto", "local"):
        return  # Ray finds (or refuses) the cluster this machine knows of, quickly
    parsed = urlparse(address if "://" in address else f"tcp://{address}")
    try:
        host, port = parsed.hostname, parsed.port
    except ValueError:
        host, port = None, None
    if not host or not port:
        raise RegfwError(f"--ray-address {address}: expected auto, HOST:PORT or ray://HOST:PORT")
    try:
        with socket.create_connection((host, port), timeout=REACH_SECONDS):
            pass
    except OSError as exc:
        raise RegfwError(f"the Ray cluster at {address} is unreachable ({exc.strerror or type(exc).__name__}); "
                         "is `ray start --head` running there, and the port open?") from None
