"""Data-parallel training: one run across the processes that torchrun starts.

PyTorch's own runtime does the work. ``torchrun`` (``torch.distributed.run``; ``regfw run --nproc N``
starts it in-process) starts the processes and sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR`` and ``MASTER_PORT`` for each. Every process builds the same run from the same
seed (the same data, model and shuffle generator), so every rank draws the same batch order and
no data is sent around. DistributedDataParallel all-reduces the gradients; only rank 0 writes the
MLflow run and its checkpoints.

``--batch-size`` is the global batch: rank r of W takes rows ``[r*m//W, (r+1)*m//W)`` of each
global batch of m rows, and its loss is weighted by ``rows * W / m`` so DDP's average of the
ranks' gradients is the gradient of the global batch's mean loss (exact for a loss that is a mean
over rows, as every built-in loss is). The train loss is the sum of every rank's per-row losses
over the epoch, divided by the number of rows: the single-process figure.

Faults end the run instead of hanging it. A collective waits at most :data:`ENV_TIMEOUT` seconds
for a rank that stopped answering; a rank that exits makes its peers' collectives fail at once
(its sockets close) and torchrun stops the others. Ranks other than 0 leave how they ended in
torchrun's key-value store; rank 0 reads it (:meth:`Parallel.settle`) to tell a Ctrl-C (every
rank stopped: KILLED) from a rank that died or failed (FAILED, with that rank's reason).
"""

from __future__ import annotations

import os
import socket
import time
from datetime import timedelta

from regfw.errors import RegfwError, one_line, squeeze
from regfw.store import NullTracker
from regfw.store import tags as T

ENV_TIMEOUT = "REGFW_DIST_TIMEOUT"
# How long a collective waits for a silent rank. Longer than anything rank 0 does alone while
# the others wait at the next all-reduce (writing a checkpoint, evaluating the test set), short
# enough that a hung rank ends the run within minutes instead of torch's default half hour.
DEFAULT_TIMEOUT = 120.0
REPORT_GRACE = 3.0  # seconds rank 0 waits for the other ranks to say how they ended
ENV_NAMES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


def launched() -> bool:
    """This process was started by torchrun (which sets these for every rank)."""
    return all(name in os.environ for name in ENV_NAMES)


def from_env() -> "Parallel | None":
    """The rank this process plays, or None for an ordinary single-process run."""
    if not launched():
        return None
    env = os.environ
    try:
        timeout = float(env.get(ENV_TIMEOUT, DEFAULT_TIMEOUT))
    except ValueError:
        raise RegfwError(f"{ENV_TIMEOUT} must be a number of seconds, not {env[ENV_TIMEOUT]!r}") from None
    return Parallel(int(env["RANK"]), int(env["WORLD_SIZE"]), int(env["LOCAL_RANK"]), timeout)


def shard_bounds(rows: int, rank: int, world: int) -> tuple[int, int]:
    """Rank ``rank``'s contiguous share of ``rows``: sizes differ by at most one row."""
    return rows * rank // world, rows * (rank + 1) // world


class Parallel:
    """One rank of a data-parallel run: joining, stepping, reducing, reporting, leaving."""

    def __init__(self, rank: int, world: int, local_rank: int, timeout: float = DEFAULT_TIMEOUT):
        self.rank, self.world, self.local_rank, self.timeout = rank, world, local_rank, timeout
        self.backend: str | None = None
        self.store = None
        self._rows, self._spare = 0, None

    @property
    def leader(self) -> bool:
        return self.rank == 0

    def device(self, config):
        """Each rank on its own device: ``cuda:LOCAL_RANK`` (NCCL) or the CPU (gloo)."""
        import torch

        from regfw.device import resolve_device

        spec = config.device
        refuse_what_cannot_run_parallel(config)
        if spec in ("cuda", "auto") and torch.cuda.is_available():
            count = torch.cuda.device_count()
            if self.local_rank >= count:
                raise RegfwError(f"process {self.local_rank} on this machine has no GPU of its own: {count} CUDA "
                                 f"device(s); start at most {count} processes per machine")
            torch.cuda.set_device(self.local_rank)
            return torch.device("cuda", self.local_rank)
        return resolve_device("cpu" if spec == "auto" else spec)  # cuda without CUDA: the usual one-line error

    def start(self, state, tracker, checkpoint_every, reporter):
        """Join the other ranks once this rank's parts are built (bad input fails before any
        waiting). Returns the tracker, checkpoint interval and reporter this rank uses: rank 0
        keeps them, the others write and print nothing."""
        import torch.distributed as dist

        self.backend = "nccl" if state.device.type == "cuda" else "gloo"
        wait = timedelta(seconds=self.timeout)
        try:
            store, _, _ = next(dist.rendezvous("env://", self.rank, self.world, timeout=wait))
            dist.init_process_group(self.backend, store=dist.PrefixStore("pg/", store), rank=self.rank,
                                    world_size=self.world, timeout=wait)
        except Exception as exc:  # noqa: BLE001 - no peer, a port in use, a backend missing
            raise RegfwError(f"process {self.rank} could not join the other {self.world - 1}: {one_line(exc)}") from None
        self.store = dist.PrefixStore("regfw/", store)
        self.store.set(f"pid/{self.rank}", f"{socket.gethostname()} {os.getpid()}")
        if self.leader:
            return tracker, checkpoint_every, reporter
        return NullTracker(), None, None

    def tags(self) -> dict:
        return {T.WORLD_SIZE: self.world, T.DIST_BACKEND: self.backend}

    def shard(self, xb, yb):
        """This rank's rows of a global batch (remembered for the weighting in :meth:`step`)."""
        lo, hi = shard_bounds(len(xb), self.rank, self.world)
        self._rows, self._spare = len(xb), (xb[:1], yb[:1])
        return xb[lo:hi], yb[lo:hi]

    def step(self, state):
        """A plain eager step through the DDP-wrapped model (the fast paths would skip the
        all-reduce). ``state.model`` stays the bare module: checkpoints and summaries match a
        single-process run's."""
        from torch.nn.parallel import DistributedDataParallel

        model, loss_fn, optimizer = state.model, state.loss_fn, state.optimizer
        wrapped = DistributedDataParallel(model, device_ids=[state.device.index] if state.device.type == "cuda" else None)

        def ddp_step(xb, yb):
            empty = len(xb) == 0
            if empty:  # fewer rows than ranks: this one still joins the all-reduce, with weight 0
                xb, yb = self._spare
            out = wrapped(xb)
            loss = loss_fn(out, yb)
            weight = 0.0 if empty else len(xb) * self.world / self._rows
            optimizer.zero_grad(set_to_none=True)
            (loss * weight).backward()
            optimizer.step()
            return (out[:0], loss.detach() * 0) if empty else (out, loss)

        return ddp_step

    def sum(self, *values):
        """Each tensor summed over the ranks (None stays None), in one all-reduce."""
        import torch
        import torch.distributed as dist

        present = [v for v in values if v is not None]
        packed = torch.stack([v.reshape(()).to(present[0].dtype) for v in present])
        dist.all_reduce(packed)
        parts = iter(packed.unbind())
        return tuple(None if v is None else next(parts) for v in values)

    def settle(self, outcome) -> None:
        """How the run ended across ranks. Another rank leaves its ending in the store; rank 0,
        if it did not finish, waits briefly for those and turns KILLED or its own failure into
        FAILED when another rank failed or died (a Ctrl-C reaches every rank: KILLED stays)."""
        if self.store is None:
            return
        if not self.leader:
            if outcome.status != "FINISHED":
                try:
                    self.store.set(f"end/{self.rank}", f"{outcome.status} {outcome.error or ''}")
                except Exception:  # noqa: BLE001 - the store went with the launcher: nothing to tell
                    pass
            return
        if outcome.status == "FINISHED":
            return
        reports, dead = self._reports()
        failed = [(r, text[len("FAILED "):]) for r, text in sorted(reports.items()) if text.startswith("FAILED")]
        if failed:
            rank, reason = failed[0]
            outcome.status, outcome.error = "FAILED", f"process {rank} of {self.world} failed: {squeeze(reason, 300)}"
        elif dead and outcome.exit_code != 130:
            # Not after a Ctrl-C here: torchrun hands SIGINT to every rank, and one that ended may be
            # gone before its report reached the store (which torchrun's agent, shutting down, holds).
            outcome.status = "FAILED"
            outcome.error = (f"process {dead[0]} of {self.world} died (killed or crashed) at epoch "
                             f"{outcome.history.epochs_done + 1}")
        if outcome.status == "FAILED" and outcome.exit_code in (0, 130, 143):
            outcome.exit_code = 1

    def _reports(self) -> tuple[dict, list]:
        """The other ranks' endings, waiting up to :data:`REPORT_GRACE` s; and the ranks whose
        process is gone without one (known on this machine only)."""
        others = [r for r in range(self.world) if r != self.rank]
        reports, deadline = {}, time.monotonic() + REPORT_GRACE
        while True:
            for r in others:
                if r not in reports and self.store.check([f"end/{r}"]):
                    reports[r] = self.store.get(f"end/{r}").decode()
            dead = [r for r in others if r not in reports and not self._alive(r)]
            if len(reports) + len(dead) == len(others) or time.monotonic() > deadline:
                return reports, dead
            time.sleep(0.05)

    def _alive(self, rank: int) -> bool:
        try:
            host, pid = self.store.get(f"pid/{rank}").decode().split()
        except Exception:  # noqa: BLE001
            return True  # unknown: assume alive, the report may still come
        if host != socket.gethostname():
            return True
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return False
        except OSError:
            return True
        try:  # a zombie has exited but is not reaped yet
            return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z"
        except OSError:
            return True

    def close(self, clean: bool = True) -> None:
        """Leave the process group. After a failure the process exits instead: tearing down a
        group with a dead peer can block (NCCL), and exiting frees it all the same."""
        if not clean:
            return
        import torch.distributed as dist

        try:
            if dist.is_initialized():
                dist.destroy_process_group()
        except Exception:  # noqa: BLE001 - leaving is best effort
            pass


def refuse_what_cannot_run_parallel(config) -> None:
    """The settings no data-parallel run can train with, whatever its rank: one line."""
    spec = config.device
    if config.train["grad"] == "formula":
        raise RegfwError("train.grad=formula computes gradients outside autograd, which DDP cannot all-reduce; "
                         "run it in one process")
    if spec.startswith("cuda:"):
        raise RegfwError(f"under torchrun each process trains on cuda:LOCAL_RANK; give --device cuda, not {spec}")
    if spec == "mps":
        raise RegfwError("data-parallel runs need --device cuda or cpu (no process-group backend for mps)")


def check_launch(config, nproc: int) -> None:
    """Before torchrun starts anything: what every rank would refuse alike is refused once, here
    (each rank printed the same line, and a rank that failed first had torchrun SIGTERM the
    others, so the command could end 143 for bad input)."""
    refuse_what_cannot_run_parallel(config)
    if config.device in ("cuda", "auto"):
        import torch

        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count and nproc > count:
            raise RegfwError(f"--nproc {nproc} needs a GPU per process, and this machine has {count} CUDA "
                             f"device(s); give --nproc {count} at most, or --device cpu")


def worker_argv(argv: list[str], option: str = "--nproc") -> list[str]:
    """The command line each process runs: this one without ``--nproc N`` (it would launch again)."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == option:
            skip = True
        elif not arg.startswith(option + "="):
            out.append(arg)
    return out


def launch(nproc: int, argv: list[str]) -> tuple[int, str | None]:
    """Run ``python -m regfw ARGV`` on ``nproc`` local processes through torch's elastic launcher
    (``torchrun --standalone``), in this process. Returns the exit code for this command (rank
    0's when it failed) and, when processes failed, one line saying how each ended."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    if nproc > 1:  # torchrun's own default for several processes per machine, without its banner about it
        os.environ.setdefault("OMP_NUM_THREADS", "1")
    args = parse_args(["--standalone", f"--nproc-per-node={nproc}", "--module", "regfw", *argv])
    try:
        run(args)
    except ChildFailedError as exc:
        # The ranks printed their own errors (rank 0 the run's); say which processes ended how.
        ended = ", ".join(f"process {rank}: {_how(f.exitcode)}" for rank, f in sorted(exc.failures.items()))
        codes = {rank: f.exitcode for rank, f in exc.failures.items()}
        code = codes.get(0, next(iter(codes.values())))
        if code < 0:  # rank 0 stopped by torchrun after another rank failed: that rank's code says why
            code = next((c for _, c in sorted(codes.items()) if c > 0), code)
        return (code if code > 0 else 128 - code), ended
    except SignalException as exc:  # Ctrl-C or SIGTERM: torchrun passed it to every rank
        return 128 + int(exc.sigval), None
    return 0, None


def _how(code: int) -> str:
    if code < 0:
        import signal

        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def resume_world(tags: dict, run_id: str, nproc: int | None, parallel) -> int:
    """The number of processes a resume of this run needs: the number it was trained on.
    Another number is refused in one line that says how to resume it."""
    trained = int(tags.get(T.WORLD_SIZE, 1))
    asked = parallel.world if parallel is not None else (nproc or trained)
    if asked != trained:
        how = f"`regfw resume {run_id}`" + (f" (or `torchrun --nproc-per-node {trained} -m regfw resume {run_id}`)"
                                             if trained > 1 else "")
        raise RegfwError(f"run {run_id} was trained on {trained} process(es), not {asked}: its checkpoint continues "
                         f"exactly only on as many; resume it with {how}, or start a new run")
    return trained
