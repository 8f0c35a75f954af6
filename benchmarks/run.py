#!/usr/bin/env python
"""regfw benchmarks: each row a ratio measured side by side in one run.

Every comparison alternates its variants (A B, then B A, ...; with three variants the order
rotates), at least five rounds, and reports the median time of each variant, the median of the
per-round ratios and their spread (min-max). Benchmarks assert nothing: they write
``benchmarks/results.md`` and ``benchmarks/results.json`` with the machine, the versions and the
command that reproduces them. ``make bench`` runs this file with its defaults (the issue's epoch
counts); ``--quick`` runs everything smaller to check the script itself.

Rows:
 1. framework overhead: regfw's engine.train with MLflow tracking on (temp SQLite store, default
    log interval), timed from the call to the last metric written, against a hand-written loop
    doing the same work (same data, initial weights, optimizer and batches; per-epoch loss kept in a
    Python list with ``loss.item()``), timed from loop start to loop end;
 2. tracking overhead: ``quadratic-param`` through regfw's runner, MLflow store against ``--no-track``,
    in one process (with the CPU of the tracker's own calls and artifacts) and as whole processes
    (benchmarks/tracking_row.py: CPU and wall, a second ``--no-track`` as the control, and the
    first run into a new store);
 3. data path: batch fetching alone and a whole epoch, in-memory slicing against DataLoader;
 4. tiny full-batch steps: µs per step, the documents' eager loop against regfw's default path;
 5. start-up wall time of ``regfw --help`` and ``regfw list``;
 6. a peer: PyTorch Lightning's Trainer (lean, then defaults) against regfw;
 8. data-parallel: one mnist-shaped epoch on 1 and on 2 CPU processes (``--nproc 2``), a functional figure.
 9. vectorized sweeps (benchmarks/vectorize_row.py): points/s of ``--vectorize`` against one after another.
10. loss landscapes (benchmarks/landscape_row.py): a 41x41 grid batched against one Python step per point.
12. sweeps on Ray (benchmarks/ray_row.py): 16 tiny points, ``--backend ray`` against ``--jobs 2``, Ray's start apart.
13. searches (benchmarks/tune_row.py): ``regfw tune`` against Optuna over a plain loop and Ray Tune, trials/s and best.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
REGFW = Path(sys.executable).with_name("regfw")
perf = time.perf_counter


# -- measuring ---------------------------------------------------------------------------------------

@dataclass
class Row:
    """One comparison: times per variant (seconds, one per round) and ratios against ``base``."""

    row: int
    name: str
    base: str
    times: dict[str, list[float]]
    unit_work: float = 1.0  # divide times by this for the per-unit figure (e.g. steps)
    unit: str = "s"
    target: dict = field(default_factory=dict)  # {variant: (op, value)} on the ratio variant/base or absolute
    note: str = ""
    extra: dict = field(default_factory=dict)

    def ratios(self, variant: str) -> list[float]:
        return [v / b for v, b in zip(self.times[variant], self.times[self.base])]

    def summary(self) -> dict:
        out = {"row": self.row, "name": self.name, "base": self.base, "rounds": len(self.times[self.base]),
               "unit": self.unit, "note": self.note, "variants": {}, **self.extra}
        for variant, times in self.times.items():
            per = [t / self.unit_work for t in times]
            entry = {"median": statistics.median(per), "min": min(per), "max": max(per), "times_s": times}
            if variant != self.base:
                ratios = self.ratios(variant)
                entry["ratio_median"] = statistics.median(ratios)
                entry["ratio_min"], entry["ratio_max"] = min(ratios), max(ratios)
            if variant in self.target:
                op, value, what = self.target[variant]
                got = entry["ratio_median"] if what == "ratio" else entry["median"]
                entry["target"] = f"{what} {op} {value}"
                entry["holds"] = got <= value if op == "<=" else got >= value
            out["variants"][variant] = entry
        return out


THREADS = [0]  # the intra-op thread count every variant starts with (set in main)


def alternate(rounds: int, variants: dict, progress: str = "") -> dict[str, list[float]]:
    """Run each variant once per round, rotating the order every round; each returns seconds."""
    import torch

    names = list(variants)
    times = {name: [] for name in names}
    for r in range(rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        if r % 2 == 1 and len(names) == 2:
            order = names[::-1]
        for name in order:
            torch.set_num_threads(THREADS[0])  # a variant may change it (Lightning does): reset every time
            times[name].append(variants[name]())
        if progress:
            shown = "  ".join(f"{n} {times[n][-1]:.3f}s" for n in names)
            print(f"  {progress} round {r + 1}/{rounds}: {shown}", flush=True)
    return times


# -- building the parts exactly as regfw's runner does -------------------------------------------

_DATA_CACHE: dict = {}


def parts(name: str, sets=(), *, data=None, device: str = "cpu"):
    """Resolved config, data (cached), and a fresh model, loss and optimizer: seeded like a run."""
    import torch

    from regfw.config import resolve
    from regfw.plugins import get_plugins
    from regfw.build import seed_everything

    plugins = get_plugins()
    registry = plugins.registry
    config = resolve(registry, name, sets=list(sets), flags={"device": "cpu"})

    def build(part, *args, **kwargs):
        chosen = getattr(config, part)
        return registry.get(part, chosen.name).factory(*args, **kwargs, **chosen.params)

    seed_everything(config.seed)
    key = (name, config.dataset.name, tuple(sorted((k, str(v)) for k, v in config.dataset.params.items())))
    if data is None:
        if key not in _DATA_CACHE:
            _DATA_CACHE[key] = build("dataset", generator=torch.Generator().manual_seed(config.seed))
        data = _DATA_CACHE[key]
        if device != "cpu":
            if (key, device) not in _DATA_CACHE:
                _DATA_CACHE[(key, device)] = data.to(device)
            data = _DATA_CACHE[(key, device)]
    model = build("model").to(device)
    return SimpleNamespace(config=config, data=data, model=model, loss_fn=build("loss"),
                           optimizer=build("optimizer", model.parameters()), device=device)


class Store:
    """One temp SQLite MLflow store for the whole benchmark, created before anything is timed."""

    def __init__(self, folder: Path):
        self.uri = f"sqlite:///{folder / 'mlflow.db'}"
        self.tracker("warm-up")  # creates the database and the experiment

    def tracker(self, experiment: str = "bench"):
        from regfw.store import MlflowTracker

        return MlflowTracker(self.uri, experiment).open()


def regfw_train(p, store: Store | None = None, on_epoch_end=None) -> tuple[float, object]:
    """regfw's training: ``engine.train`` plus writing the last metrics; run set-up is not timed."""
    import torch

    from regfw.engine import train
    from regfw.recorder import Recorder
    from regfw.state import RunState

    tracker = None
    sink = _discard
    if store is not None:
        tracker = store.tracker()
        tracker.start("bench", p.config.flat_params(), {"regfw.experiment": p.config.experiment})
        sink = tracker.log_metrics
    generator = torch.Generator().manual_seed(p.config.seed + 1)
    state = RunState(p.config, torch.device(p.device), p.data, p.model, p.loss_fn, p.optimizer, generator)
    recorder = Recorder(state.history, sink)
    history = state.history
    start = perf()
    train(state, recorder, on_epoch_end=on_epoch_end)
    if tracker is not None:
        tracker.flush()
    seconds = perf() - start
    if tracker is not None:
        tracker.end("FINISHED")
    return seconds, history


def _discard(rows):
    pass


def hand_loop(p) -> tuple[float, list]:
    """What a user writes by hand: the same data, model, optimizer and batches (regfw's shuffle
    order), ``zero_grad``/``backward``/``step``, the per-epoch loss in a list via ``loss.item()``,
    and the test loss each epoch when there is a test split."""
    import torch

    model, loss_fn, opt, data = p.model, p.loss_fn, p.optimizer, p.data
    settings = p.config.train
    epochs = settings["epochs"]
    x, y = data.x_train, data.y_train
    n = len(x)
    batch = n if settings["batch_size"] == "full" else min(settings["batch_size"], n)
    generator = torch.Generator().manual_seed(p.config.seed + 1)
    losses, test_losses = [], []
    start = perf()
    if batch >= n:
        for _ in range(epochs):
            out = model(x)
            loss = loss_fn(out, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
            if data.x_test is not None:
                with torch.no_grad():
                    test_losses.append(loss_fn(model(data.x_test), data.y_test).item())
    else:
        for _ in range(epochs):
            model.train()
            perm = torch.randperm(n, generator=generator)
            xs, ys = x[perm], y[perm]
            total = 0.0
            for i in range(0, n, batch):
                xb, yb = xs[i:i + batch], ys[i:i + batch]
                loss = loss_fn(model(xb), yb)
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += loss.item() * len(xb)
            losses.append(total / n)
            if data.x_test is not None:
                model.eval()
                with torch.no_grad():
                    test_losses.append(loss_fn(model(data.x_test), data.y_test).item())
    return perf() - start, losses


def max_param_diff(a, b) -> float:
    return max(float((p - q).abs().max()) for p, q in zip(a.parameters(), b.parameters()))


# -- row 1: framework overhead ---------------------------------------------------------------------

def row_overhead(args, store: Store) -> list[Row]:
    rows = []
    for name, epochs in (("linear", args.linear_epochs), ("quadratic-linear", args.quadratic_linear_epochs),
                         ("mlp-regression", args.mlp_epochs)):
        sets = [("train.epochs", epochs)]
        print(f"row 1: {name}, {epochs} epochs", flush=True)
        last = {}

        def regfw():
            p = parts(name, sets)
            seconds, last["regfw"] = regfw_train(p, store)[0], p
            return seconds

        def hand():
            p = parts(name, sets)
            seconds, last["hand"] = hand_loop(p)[0], p
            return seconds

        _warm_up(name, store)
        times = alternate(args.pairs, {"hand loop": hand, "regfw": regfw}, name)
        rows.append(Row(1, f"{name}, {epochs} epochs: regfw (tracking on) / hand-written loop", "hand loop", times,
                        target={"regfw": ("<=", 1.03, "ratio")},
                        extra={"epochs": epochs, "max_param_diff": max_param_diff(last["regfw"].model, last["hand"].model)}))
    return rows


def _warm_up(name: str, store: Store | None) -> None:
    """A few epochs of each path first: lazy imports and allocator growth stay out of the timing."""
    p = parts(name, [("train.epochs", 2)])
    regfw_train(p, store)
    hand_loop(parts(name, [("train.epochs", 2)]))


# -- row 2: tracking overhead ------------------------------------------------------------------------

def row_tracking(args, store: Store) -> list[Row]:
    from regfw.plugins import get_plugins
    from regfw.runner import execute
    from regfw.store import NullTracker

    from regfw.config import resolve

    epochs = args.quadratic_param_epochs
    plugins = get_plugins()
    config = resolve(plugins.registry, "quadratic-param", sets=[("train.epochs", epochs)], flags={"device": "cpu"})
    print(f"row 2: quadratic-param, {epochs} epochs", flush=True)
    walls = {"--no-track": [], "tracking on": []}
    cpus = {"--no-track": [], "tracking on": []}

    def run(tracker, label):
        start, cpu = perf(), time.process_time()
        with contextlib.redirect_stdout(io.StringIO()):
            outcome = execute(config, plugins, tracker, run_name="bench")
        walls[label].append(perf() - start)
        cpus[label].append(time.process_time() - cpu)
        if outcome.status != "FINISHED":
            raise RuntimeError(f"quadratic-param ended {outcome.status}: {outcome.error}")
        return outcome.summary["train_seconds"]

    sys.path.insert(0, str(HERE))
    from tracking_row import TimedTracker, new_spent, timed_artifacts, whole_processes

    from regfw.store import MlflowTracker

    warm = resolve(plugins.registry, "quadratic-param", sets=[("train.epochs", 100)], flags={"device": "cpu"})
    execute(warm, plugins, store.tracker("quadratic-param"), run_name="warm-up")
    spent = []  # per tracked run: CPU seconds in each tracker call, and in writing the artifacts

    def tracked():
        spent.append(new_spent())
        with timed_artifacts(spent[-1]):  # execute() opens the tracker: the store's open is counted
            return run(TimedTracker(MlflowTracker(store.uri, "quadratic-param"), spent[-1]), "tracking on")

    times = alternate(args.pairs, {"--no-track": lambda: run(NullTracker(), "--no-track"), "tracking on": tracked},
                      "quadratic-param")
    row = Row(2, f"quadratic-param, {epochs} epochs: tracking on / --no-track (train_seconds as regfw logs it)",
              "--no-track", times, target={"tracking on": ("<=", 1.05, "ratio")}, extra={"epochs": epochs})
    wall = Row(2, f"quadratic-param, {epochs} epochs: the same runs' execute() wall time, artifacts included",
               "--no-track", walls, extra={"epochs": epochs})
    cpu = Row(2, f"quadratic-param, {epochs} epochs: the same runs' CPU time (user + system, this process), "
                 "artifacts included: steadier than wall time on a shared machine", "--no-track", cpus,
              extra={"epochs": epochs})
    calls = sorted({name for one in spent for name in one})
    by_call = {name: statistics.median(one[name] for one in spent) for name in calls}
    own = Row(2, f"quadratic-param, {epochs} epochs: CPU seconds of the tracker's own calls and the run's artifacts "
                 "in the same tracked runs (absolute)", "tracker + artifacts",
              {"tracker + artifacts": [sum(one.values()) for one in spent]}, extra={"epochs": epochs, "by_call": by_call},
              note="median CPU s per call: " + ", ".join(f"{name} {seconds * 1e3:.1f} ms" for name, seconds in by_call.items()))
    return [row, wall, cpu, own, *whole_processes(args, Path.cwd(), REGFW, Row)]


# -- row 3: data path --------------------------------------------------------------------------------

def write_mnist_idx(folder: Path, n_train: int, n_test: int) -> Path:
    """MNIST-format IDX files (random 28x28 images, labels 0-9) in torchvision's layout."""
    import struct

    import torch

    raw = folder / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(0)
    for split, n in (("train", n_train), ("t10k", n_test)):
        images = torch.randint(0, 256, (n, 28, 28), generator=g, dtype=torch.uint8)
        labels = torch.randint(0, 10, (n,), generator=g, dtype=torch.uint8)
        for kind, array in (("images-idx3", images), ("labels-idx1", labels)):
            header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
            (raw / f"{split}-{kind}-ubyte").write_bytes(header + array.numpy().tobytes())
    return folder


def row_data(args, tmp: Path) -> list[Row]:
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from regfw.data import Data, shuffled

    rows = []
    mnist_root = write_mnist_idx(tmp / "idx", args.mnist_train, 10000 if not args.quick else 1000)
    cases = [("mlp-regression", [("train.epochs", 1)]),
             ("mnist", [("train.epochs", 1), ("dataset.root", str(mnist_root)), ("dataset.download", False)])]
    for name, sets in cases:
        p0 = parts(name, sets)
        data = Data(p0.data.x_train, p0.data.y_train, task=p0.data.task)  # train split only: one epoch of training
        batch = p0.config.train["batch_size"]
        x, y = data.x_train, data.y_train
        n = len(x)
        print(f"row 3: {name}, batch {batch}, {n} samples", flush=True)

        buffers = []

        def regfw_fetch():
            # As the engine does it: one shuffled copy per epoch, refilling the previous epoch's.
            g = torch.Generator().manual_seed(1)
            start = perf()
            xs, ys = shuffled(x, y, g, buffers[0] if buffers else None)
            for i in range(0, n, batch):
                xb, yb = xs[i:i + batch], ys[i:i + batch]
            seconds = perf() - start
            buffers[:] = [(xs, ys)]
            return seconds

        tensor_loader = DataLoader(TensorDataset(x, y), batch_size=batch, shuffle=True,
                                   generator=torch.Generator().manual_seed(1))

        def loader_fetch(loader):
            def run():
                start = perf()
                for xb, yb in loader:
                    pass
                return perf() - start
            return run

        fetch = {"regfw slicing": regfw_fetch, "DataLoader(TensorDataset)": loader_fetch(tensor_loader)}
        def regfw_epoch():
            # engine.train for two epochs; the second is timed (steady state, as the DataLoader's is).
            p = parts(name, [*sets, ("train.epochs", 2)], data=data)
            marks = []
            regfw_train(p, on_epoch_end=lambda epoch: marks.append(perf()))
            return marks[1] - marks[0]

        def loader_epoch(loader, flatten=False):
            def run():
                from regfw.fastpath import sgd_step

                p = parts(name, sets, data=data)
                step = sgd_step(p.model, p.loss_fn, p.optimizer) or _eager(p)
                p.model.train()
                start = perf()
                total = torch.zeros(())
                for xb, yb in loader:
                    if flatten:
                        xb = xb.reshape(len(xb), -1)
                    _, loss = step(xb, yb)
                    total += loss.detach() * len(xb)
                float(total / n)
                return perf() - start
            return run

        epoch = {"regfw epoch": regfw_epoch, "DataLoader(TensorDataset) epoch": loader_epoch(tensor_loader)}
        if name == "mnist":
            from torchvision import datasets, transforms

            vision = datasets.MNIST(str(mnist_root), train=True, transform=transforms.ToTensor(), download=False)
            if args.mnist_train < len(vision):
                vision = torch.utils.data.Subset(vision, range(args.mnist_train))
            vision_loader = DataLoader(vision, batch_size=batch, shuffle=True, generator=torch.Generator().manual_seed(1))
            fetch["torchvision MNIST + ToTensor()"] = loader_fetch(vision_loader)
            epoch["torchvision MNIST + ToTensor() epoch"] = loader_epoch(vision_loader, flatten=True)
        for f in list(fetch.values()) + list(epoch.values()):
            f()  # warm-up
        fetch_times = alternate(args.pairs, fetch, f"{name} fetch")
        epoch_times = alternate(args.pairs, epoch, f"{name} epoch")
        target_fetch = {k: (">=", 5.0, "ratio") for k in fetch if k != "regfw slicing"}
        rows.append(Row(3, f"{name} batch fetching, one epoch (batch {batch}, {n} samples): DataLoader / regfw",
                        "regfw slicing", fetch_times, target=target_fetch, extra={"samples": n, "batch": batch}))
        target_epoch = {"torchvision MNIST + ToTensor() epoch": (">=", 5.0, "ratio")} if name == "mnist" else {}
        rows.append(Row(3, f"{name} whole epoch (fetch + the same SGD step; regfw: its 2nd epoch in engine.train): "
                        "DataLoader / regfw", "regfw epoch",
                        epoch_times, target=target_epoch, extra={"samples": n, "batch": batch},
                        note="compute-bound on CPU" if name == "mlp-regression" else ""))
    return rows


def _eager(p):
    def step(xb, yb):
        out = p.model(xb)
        loss = p.loss_fn(out, yb)
        p.optimizer.zero_grad()
        loss.backward()
        p.optimizer.step()
        return out, loss
    return step


# -- row 4: tiny full-batch steps --------------------------------------------------------------------

PRINT_EVERY = {"linear": 20, "quadratic-param": 100, "quadratic-linear": 100}  # the documents' print interval


def documents_loop(p, epochs: int, every: int) -> float:
    """The documents' eager loop: forward, loss, zero_grad, backward, step; the loss read back
    (``loss.item()``, where the documents print it) every ``every`` epochs."""
    model, loss_fn, opt = p.model, p.loss_fn, p.optimizer
    x, y = p.data.x_train, p.data.y_train
    shown = []
    start = perf()
    for epoch in range(epochs):
        out = model(x)
        loss = loss_fn(out, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if epoch % every == 0:
            shown.append(loss.item())
    return perf() - start


def row_steps(args) -> list[Row]:
    rows = []
    steps = args.steps
    for name in ("linear", "quadratic-param", "quadratic-linear"):
        sets = [("train.epochs", steps)]
        print(f"row 4: {name}, {steps} full-batch steps", flush=True)
        documents_loop(parts(name, sets), 200, PRINT_EVERY[name])
        regfw_train(parts(name, [("train.epochs", 200)]))
        times = alternate(args.pairs, {
            "documents' loop": lambda: documents_loop(parts(name, sets), steps, PRINT_EVERY[name]),
            "regfw": lambda: regfw_train(parts(name, sets))[0],
        }, name)
        rows.append(Row(4, f"{name}: µs per full-batch step, documents' eager loop / regfw default path",
                        "regfw", times, unit_work=steps / 1e6, unit="µs/step",
                        target={"documents' loop": (">=", 1.3, "ratio")}, extra={"steps": steps}))
    return rows


# -- row 5: start-up ----------------------------------------------------------------------------------

def row_startup(args, tmp: Path) -> list[Row]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGFW_") and k != "MLFLOW_TRACKING_URI"}

    def timed(cmd):
        def run():
            start = perf()
            subprocess.run(cmd, cwd=tmp, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
            return perf() - start
        return run

    print("row 5: start-up", flush=True)
    variants = {"python -c pass": timed([sys.executable, "-c", "pass"]),
                "regfw --help": timed([str(REGFW), "--help"]),
                "regfw list": timed([str(REGFW), "list"])}
    for v in variants.values():
        v()
    times = alternate(max(args.pairs, 10), variants, "start-up")
    return [Row(5, "start-up wall time (absolute; python -c pass for reference)", "python -c pass", times,
                target={"regfw --help": ("<=", 0.3, "seconds"), "regfw list": ("<=", 0.6, "seconds")})]


# -- row 6: PyTorch Lightning ------------------------------------------------------------------------

def row_lightning(args, store: Store, tmp: Path) -> list[Row]:
    try:
        import lightning as L
    except ImportError:
        print("row 6 skipped: lightning is not installed (pip install -r benchmarks/requirements.txt)")
        return []
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="lightning")
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")

    class Module(L.LightningModule):
        def __init__(self, p):
            super().__init__()
            self.model, self.loss_fn, self.opt = p.model, p.loss_fn, p.optimizer

        def training_step(self, batch, batch_idx):
            x, y = batch
            loss = self.loss_fn(self.model(x), y)
            self.log("train_loss", loss, on_step=False, on_epoch=True)
            return loss

        def validation_step(self, batch, batch_idx):
            x, y = batch
            self.log("test_loss", self.loss_fn(self.model(x), y), on_step=False, on_epoch=True)

        def configure_optimizers(self):
            return self.opt

    rows = []
    for name, epochs in (("linear", args.linear_epochs), ("mlp-regression", args.lightning_mlp_epochs)):
        sets = [("train.epochs", epochs)]
        print(f"row 6: {name}, {epochs} epochs", flush=True)

        def lightning(lean: bool, epochs: int = epochs):
            def run():
                p = parts(name, [("train.epochs", epochs)])
                d = p.data
                bs = len(d.x_train) if p.config.train["batch_size"] == "full" else p.config.train["batch_size"]
                train_loader = DataLoader(TensorDataset(d.x_train, d.y_train), batch_size=bs,
                                          shuffle=p.config.train["batch_size"] != "full")
                val = None
                if d.x_test is not None:
                    val = DataLoader(TensorDataset(d.x_test, d.y_test), batch_size=len(d.x_test))
                options = dict(max_epochs=epochs, accelerator="cpu", devices=1, default_root_dir=str(tmp / "lightning"))
                if lean:
                    options |= dict(logger=False, enable_checkpointing=False, enable_progress_bar=False,
                                    enable_model_summary=False)
                with open(os.devnull, "w") as null, contextlib.redirect_stderr(null), contextlib.redirect_stdout(null):
                    trainer = L.Trainer(**options)
                    start = perf()
                    trainer.fit(Module(p), train_loader, val)
                    return perf() - start
            return run

        def regfw():
            return regfw_train(parts(name, sets), store)[0]

        _warm_up(name, store)
        lightning(True, 2)(), lightning(False, 2)()  # Lightning's first fit in a process sets things up
        lean, full = lightning(True), lightning(False)
        times = alternate(args.pairs, {"regfw": regfw, "Lightning lean": lean, "Lightning defaults": full}, name)
        rows.append(Row(6, f"{name}, {epochs} epochs: Lightning Trainer / regfw (tracking on)", "regfw", times,
                        extra={"epochs": epochs, "lightning": L.__version__}))
    return rows


# -- GPU rows (only where torch sees CUDA) -------------------------------------------------------------

def row_gpu(args, tmp: Path) -> list[Row]:
    """mnist 20 epochs wall time, tiny full-batch steps with and without CUDA graphs, DataLoader ratio.

    Written without a GPU at hand: nothing here has run on one yet."""
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    if not torch.cuda.is_available():
        return []
    from regfw import fastpath

    device = "cuda"
    sync = torch.cuda.synchronize
    rows = []
    for name in ("linear", "quadratic-param", "quadratic-linear"):
        sets = [("train.epochs", args.steps)]
        print(f"row 7 (GPU): {name}, {args.steps} full-batch steps", flush=True)

        def with_graphs(on: bool):
            def run():
                os.environ[fastpath.ENV_GRAPHS] = "1" if on else "0"
                try:
                    p = parts(name, sets, device=device)
                    sync()
                    seconds = regfw_train(p)[0]
                    sync()
                    return seconds
                finally:
                    os.environ.pop(fastpath.ENV_GRAPHS, None)
            return run

        def documents():
            p = parts(name, sets, device=device)
            sync()
            seconds = documents_loop(p, args.steps, PRINT_EVERY[name])
            sync()
            return seconds

        for f in (with_graphs(True), with_graphs(False), documents):
            f()
        times = alternate(args.pairs, {"regfw, CUDA graphs": with_graphs(True), "regfw, no graphs": with_graphs(False),
                                       "documents' loop": documents}, f"{name} cuda")
        rows.append(Row(7, f"GPU {name}: µs per full-batch step", "regfw, CUDA graphs", times,
                        unit_work=args.steps / 1e6, unit="µs/step",
                        target={"documents' loop": (">=", 5.0, "ratio")}, extra={"steps": args.steps}))
    mnist_root = tmp / "idx"
    if not (mnist_root / "MNIST" / "raw").exists():
        write_mnist_idx(mnist_root, args.mnist_train, 10000)
    sets = [("dataset.root", str(mnist_root)), ("dataset.download", False)]
    p0 = parts("mnist", [*sets, ("train.epochs", 1)], device=device)
    x, y, batch = p0.data.x_train, p0.data.y_train, p0.config.train["batch_size"]
    n = len(x)
    buffers = []

    def regfw_fetch():
        from regfw.data import shuffled

        g = torch.Generator().manual_seed(1)
        sync()
        start = perf()
        xs, ys = shuffled(x, y, g, buffers[0] if buffers else None)
        for i in range(0, n, batch):
            xb, yb = xs[i:i + batch], ys[i:i + batch]
        sync()
        buffers[:] = [(xs, ys)]
        return perf() - start

    cpu_loader = DataLoader(TensorDataset(x.cpu(), y.cpu()), batch_size=batch, shuffle=True, pin_memory=True)

    def loader_fetch():
        sync()
        start = perf()
        for xb, yb in cpu_loader:
            xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
        sync()
        return perf() - start

    regfw_fetch(), loader_fetch()
    times = alternate(args.pairs, {"regfw slicing on the GPU": regfw_fetch,
                                   "DataLoader(TensorDataset) + .to(cuda)": loader_fetch}, "mnist cuda fetch")
    rows.append(Row(7, f"GPU mnist batch fetching, one epoch (batch {batch}): DataLoader / regfw",
                    "regfw slicing on the GPU", times,
                    target={"DataLoader(TensorDataset) + .to(cuda)": (">=", 20.0, "ratio")}))

    def mnist_run():
        p = parts("mnist", [*sets, ("train.epochs", 20)], device=device)
        sync()
        seconds = regfw_train(p)[0]
        sync()
        return seconds

    print("row 7 (GPU): mnist, 20 epochs", flush=True)
    times = {"regfw mnist 20 epochs": [mnist_run() for _ in range(args.pairs)]}
    rows.append(Row(7, "GPU mnist, 20 epochs: wall time of engine.train (absolute)", "regfw mnist 20 epochs", times))
    return rows


# -- row 8: data-parallel (torchrun) -----------------------------------------------------------------

def row_parallel(args, tmp: Path) -> list[Row]:
    """One mnist-shaped epoch (generated images) in one process and in two (``--nproc 2``, gloo).
    A functional figure: the processes share this machine's cores, so it is no speed target."""
    import re

    mnist_root = tmp / "idx"
    if not (mnist_root / "MNIST" / "raw").exists():
        write_mnist_idx(mnist_root, args.mnist_train, 10000 if not args.quick else 1000)
    # One thread per process in both variants (torchrun's own default for its workers): an extra
    # process, not extra threads, is what this row measures.
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGFW_") and k != "MLFLOW_TRACKING_URI"}
    env["OMP_NUM_THREADS"] = "1"
    base = [str(REGFW), "run", "mnist", "--epochs", "1", "--no-track", "--device", "cpu",
            "--set", f"dataset.root={mnist_root}", "--set", "dataset.download=false"]
    train = {"1 process": [], "2 processes (--nproc 2)": []}

    def timed(name, extra):
        def run():
            out = subprocess.run(base + extra, cwd=tmp, env=env, capture_output=True, text=True, check=True).stdout
            train[name].append(float(re.search(r"after 1 epochs in ([0-9.]+) s", out).group(1)))
            return train[name][-1]
        return run

    print("row 8: data-parallel, one mnist epoch", flush=True)
    times = alternate(args.pairs, {"1 process": timed("1 process", []),
                                   "2 processes (--nproc 2)": timed("2 processes (--nproc 2)", ["--nproc", "2"])},
                      "nproc")
    return [Row(8, f"mnist-shaped epoch ({args.mnist_train} generated images, batch 32, CPU): training time as "
                   "regfw reports it, 2 processes / 1", "1 process", times,
                note="functional figure, not a target: one thread per process, on cores other work shares")]


def profile(args) -> int:
    """pyinstrument profile of regfw's training of one experiment, as text under --out."""
    from pyinstrument import Profiler

    name = args.profile
    sets = [("train.epochs", args.profile_epochs)]
    if name == "mnist":  # generated IDX files, as in row 3
        root = write_mnist_idx(Path(tempfile.mkdtemp(prefix="regfw-bench-")), args.mnist_train, 1000)
        sets += [("dataset.root", str(root)), ("dataset.download", False)]
    p = parts(name, sets)
    profiler = Profiler(interval=0.0002)
    profiler.start()
    seconds = regfw_train(p)[0]
    profiler.stop()
    text = profiler.output_text(unicode=True, color=False, show_all=False)
    args.out.mkdir(parents=True, exist_ok=True)
    target = args.out / f"profile-{name}.txt"
    target.write_text(f"# {name}, {args.profile_epochs} epochs, {seconds:.3f} s\n{text}", encoding="utf-8")
    print(text)
    print(f"written {target}")
    return 0


# -- report ------------------------------------------------------------------------------------------

def machine() -> dict:
    import torch

    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {"python": platform.python_version(), "torch": torch.__version__}
    for module in ("regfw", "mlflow", "torchvision", "lightning", "numpy"):
        try:
            versions[module] = __import__(module).__version__
        except Exception:  # noqa: BLE001
            pass
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    return {"cpu": cpu, "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "platform": platform.platform(), "cuda": torch.cuda.is_available(), "versions": versions,
            "git_commit": commit or None}


def write_report(out: Path, rows: list[Row], meta: dict) -> None:
    summaries = [r.summary() for r in rows]
    (out / "results.json").write_text(json.dumps({**meta, "rows": summaries}, indent=2) + "\n", encoding="utf-8")
    m = meta["machine"]
    lines = ["# regfw benchmark results", "",
             f"Reproduce: `{meta['command']}` (from the repository root; `make bench` runs the defaults).", "",
             f"Machine: {m['cpu']}, {m['cpus']} CPUs, torch threads {m['torch_threads']}, {m['platform']}, "
             f"CUDA {'yes' if m['cuda'] else 'no'}.  ",
             "Versions: " + ", ".join(f"{k} {v}" for k, v in m["versions"].items()) + f"; commit {m['git_commit']}.  ",
             f"Load average before / after: {meta['load_before']} / {meta['load_after']}; "
             f"started {meta['started']}, took {meta['seconds']:.0f} s.", "",
             "Each row alternates its variants (order rotated every round); figures are medians over the rounds, "
             "ratios are per-round ratios (median, then min–max). Ratio = variant / base.", ""]
    lines += ["| row | comparison | variant | median | ratio (median, min–max) | target | holds |",
              "|---|---|---|---|---|---|---|"]
    for s in summaries:
        first = True
        for variant, e in s["variants"].items():
            median = _fmt(e["median"], s["unit"])
            ratio = (f"{e['ratio_median']:.3f} ({e['ratio_min']:.3f}–{e['ratio_max']:.3f})"
                     if "ratio_median" in e else "base")
            holds = {True: "yes", False: "**no**"}.get(e.get("holds"), "")
            label = f"{s['name']} [{s['rounds']} rounds]" if first else ""
            lines.append(f"| {s['row'] if first else ''} | {label} | {variant} | {median} | {ratio} | "
                         f"{e.get('target', '')} | {holds} |")
            first = False
    notes = [f"- row {s['row']}: {s['name']}: max |Δparam| regfw vs hand loop = {s['max_param_diff']:.2e}"
             for s in summaries if "max_param_diff" in s]
    if notes:
        lines += ["", "Same work check (final parameters, regfw against the hand-written loop):", *notes]
    notes = [f"- row {s['row']}: {s['name']}: {s['note']}" for s in summaries if s.get("note")]
    if notes:
        lines += ["", "Notes:", *notes]
    lines += ["", "What is timed: see the docstring of `benchmarks/run.py` and docs/performance.md.", ""]
    (out / "results.md").write_text("\n".join(lines), encoding="utf-8")


def _fmt(value: float, unit: str) -> str:
    if unit == "µs/step":
        return f"{value:.1f} µs/step"
    return f"{value:.3f} s" if value >= 0.01 else f"{value * 1e3:.2f} ms"


def load_average() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def _row_vectorize(args, store: Store) -> list[Row]:
    """Row 9 (benchmarks/vectorize_row.py): --vectorize sweeps against one point after another."""
    sys.path.insert(0, str(HERE))
    from vectorize_row import row_vectorize

    return row_vectorize(args, store, alternate, Row)


def _row_landscape(args) -> list[Row]:
    """Row 10 (benchmarks/landscape_row.py): regfw landscape's batched grid against a per-point loop."""
    sys.path.insert(0, str(HERE))
    from landscape_row import row_landscape

    return row_landscape(args, parts, alternate, Row)


def _row_fixed_cost(args, tmp: Path) -> list[Row]:
    """Row 11 (benchmarks/fixed_cost_row.py): a run's cost besides training, whole processes."""
    sys.path.insert(0, str(HERE))
    from fixed_cost_row import row_fixed_cost

    return row_fixed_cost(args, tmp, REGFW, alternate, Row)


def _row_ray(args, tmp: Path) -> list[Row]:
    """Row 12 (benchmarks/ray_row.py): 16 tiny sweep points through Ray against --jobs 2."""
    sys.path.insert(0, str(HERE))
    from ray_row import row_ray

    return row_ray(args, tmp, alternate, Row)


def _row_tune(args, tmp: Path) -> list[Row]:
    """Row 13 (benchmarks/tune_row.py): regfw tune against Optuna + a plain loop and Ray Tune."""
    sys.path.insert(0, str(HERE))
    from tune_row import row_tune

    return row_tune(args, tmp, alternate, Row)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small epoch counts and 5 rounds: checks the script")
    parser.add_argument("--pairs", type=int, default=5, help="rounds per comparison (at least 5)")
    parser.add_argument("--rows", default="1,2,3,4,5,6,7,8,9,10,11,12,13", help="which rows to run, e.g. 1,4 (7: GPU rows, "
                        "only where CUDA is available; 8: one epoch on 1 and 2 processes; 9: --vectorize; 10: landscapes; "
                        "11: a run's fixed cost, whole processes; 12: --backend ray against --jobs 2; 13: regfw tune against "
                        "Optuna + a plain loop and Ray Tune)")
    parser.add_argument("--ray-epochs", type=int, default=20, help="row 12: epochs of each tiny linear point")
    parser.add_argument("--ray-rounds", type=int, default=3, help="row 12: rounds (each starts a local Ray instance)")
    parser.add_argument("--fixed-cost-epochs", type=int, default=200000, help="row 11: quadratic-param epochs")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch intra-op threads for every variant (0: torch's default); 1 keeps OpenMP "
                             "from stalling when other work shares the cores")
    parser.add_argument("--linear-epochs", type=int, default=1000)
    parser.add_argument("--quadratic-linear-epochs", type=int, default=20000)
    parser.add_argument("--mlp-epochs", type=int, default=100)
    parser.add_argument("--quadratic-param-epochs", type=int, default=500000)
    parser.add_argument("--tracking-process-epochs", type=int, default=200000,
                        help="row 2: quadratic-param epochs of the whole processes")
    parser.add_argument("--steps", type=int, default=20000, help="row 4: full-batch steps per measurement")
    parser.add_argument("--lightning-mlp-epochs", type=int, default=20,
                        help="row 6: mlp-regression epochs (Lightning takes minutes for 100)")
    parser.add_argument("--mnist-train", type=int, default=60000, help="row 3: generated MNIST training images")
    parser.add_argument("--vectorize-sizes", default="8,32", help="row 9: sweep sizes N (128 takes minutes)")
    parser.add_argument("--vectorize-experiments", default="linear,quadratic-param,quadratic-linear,mlp-regression")
    parser.add_argument("--vectorize-quadratic-epochs", type=int, default=20000, help="row 9: quadratic-* epochs")
    parser.add_argument("--vectorize-mlp-epochs", type=int, default=10, help="row 9: mlp-regression epochs")
    parser.add_argument("--vectorize-sequential-points", type=int, default=0,
                        help="row 9: points of the one-after-another and --jobs 2 sweeps (default: the smallest N)")
    parser.add_argument("--vectorize-no-jobs", action="store_true",
                        help="row 9: leave out the --jobs 2 variants (for very long points)")
    parser.add_argument("--tune-experiments", default="quadratic-linear,mlp-regression", help="row 13: searches")
    parser.add_argument("--tune-pruners", default="none,median", help="row 13: pruners (none, median)")
    parser.add_argument("--tune-quadratic-trials", type=int, default=64)
    parser.add_argument("--tune-quadratic-epochs", type=int, default=5000)
    parser.add_argument("--tune-mlp-trials", type=int, default=32)
    parser.add_argument("--tune-mlp-epochs", type=int, default=10)
    parser.add_argument("--tune-batch", type=int, default=16, help="row 13: --vectorize --batch N (trials per stack)")
    parser.add_argument("--tune-rounds", type=int, default=3, help="row 13: rounds (each variant a whole search)")
    parser.add_argument("--tune-no-ray", action="store_true", help="row 13: leave out Ray Tune")
    parser.add_argument("--landscape-grid", type=int, default=41, help="row 10: points per axis")
    parser.add_argument("--out", type=Path, default=HERE, help="folder for results.md and results.json")
    parser.add_argument("--profile", metavar="EXPERIMENT", help="profile regfw training EXPERIMENT with pyinstrument "
                        "instead of benchmarking (writes profile-EXPERIMENT.txt under --out)")
    parser.add_argument("--profile-epochs", type=int, default=20000)
    args = parser.parse_args(argv)
    if args.quick:
        args.linear_epochs, args.quadratic_linear_epochs, args.mlp_epochs = 1000, 2000, 2
        args.quadratic_param_epochs, args.steps, args.lightning_mlp_epochs = 20000, 5000, 2
        args.mnist_train = min(args.mnist_train, 6000)
        args.vectorize_quadratic_epochs, args.vectorize_mlp_epochs = 2000, 1
        args.fixed_cost_epochs = args.tracking_process_epochs = 20000
        args.tune_quadratic_trials, args.tune_quadratic_epochs, args.tune_mlp_trials, args.tune_mlp_epochs = 8, 500, 4, 1
    args.pairs = max(args.pairs, 5)
    args.out = args.out.resolve()  # the benchmark works inside a temp folder
    wanted = {int(r) for r in args.rows.split(",") if r.strip()}

    if args.threads > 0:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)  # before torch; Lightning also reads it
    import torch

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    THREADS[0] = torch.get_num_threads()
    for name in ("mlflow", "alembic", "sqlalchemy"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    if args.profile:
        return profile(args)
    started, load_before, t0 = time.strftime("%Y-%m-%d %H:%M:%S"), load_average(), perf()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="regfw-bench-") as folder:
        tmp = Path(folder)
        os.chdir(tmp)  # nothing lands in the repository's mlruns/
        store = Store(tmp)
        steps = [(1, lambda: row_overhead(args, store)), (2, lambda: row_tracking(args, store)),
                 (3, lambda: row_data(args, tmp)), (4, lambda: row_steps(args)), (5, lambda: row_startup(args, tmp)),
                 (6, lambda: row_lightning(args, store, tmp)), (7, lambda: row_gpu(args, tmp)),
                 (8, lambda: row_parallel(args, tmp)), (9, lambda: _row_vectorize(args, store)),
                 (10, lambda: _row_landscape(args)), (11, lambda: _row_fixed_cost(args, tmp)),
                 (12, lambda: _row_ray(args, tmp)), (13, lambda: _row_tune(args, tmp))]
        for number, run in steps:
            if number in wanted:
                rows.extend(run())
        os.chdir(ROOT)
    command = "python benchmarks/run.py" + ("" if argv is None and len(sys.argv) == 1 else
                                            " " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:])))
    meta = {"command": command, "machine": machine(), "started": started, "load_before": load_before,
            "load_after": load_average(), "seconds": perf() - t0,
            "args": {k: str(v) for k, v in vars(args).items() if k != "out"}}
    args.out.mkdir(parents=True, exist_ok=True)
    write_report(args.out, rows, meta)
    print((args.out / "results.md").read_text(encoding="utf-8"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
