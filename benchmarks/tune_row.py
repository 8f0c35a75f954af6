"""Row 13 of benchmarks/run.py: ``regfw tune`` against what a user writes today for a search.

The anchor is Optuna's ``study.optimize`` whose objective trains a plain PyTorch loop (the same
data, model, initial weights and batches as a regfw run, built by the same factories once), with
the same sampler (TPE, multivariate, the same seed), the same space, trial count and pruner
(regfw's median pruner: the same startup and warm-up, at the same report points), the study in a
SQLite storage and each trial an MLflow run (its params, the value and the reported curve). The
peer for distributed search is Ray Tune over the same loop: its Optuna search (the same sampler)
and, with a pruner, its ASHA scheduler (FIFO without), on a local Ray instance started inside the
timed process; beside it, ``regfw tune --backend ray`` (its trials as Ray tasks on a local instance,
as many at once as the machine has CPUs, pruned from the driver). Every variant is a whole process, timed end to end (imports, the study, tracking),
into its own fresh store. Each reports its best value; quadratic-linear's least-squares optimum is
known (the best quadratic on the same data; the product of two linear layers reaches it), so its
excess is reported too.

Run alone as ``python benchmarks/tune_row.py anchor|raytune ...`` it is one such process.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path

# The searches: the space as regfw's --space forms and as Optuna distributions.
SEARCHES = {
    "quadratic-linear": {"space": {"optimizer.lr": ("log", 1e-5, 1e-4), "optimizer.momentum": ("float", 0.0, 0.95)},
                         "metric": "final_train_loss"},
    "mlp-regression": {"space": {"optimizer.lr": ("log", 1e-4, 3e-2), "optimizer.momentum": ("float", 0.0, 0.9),
                                 "train.batch_size": ("choice", 50, 100, 200)},
                       "metric": "final_test_loss"},
}


def space_args(experiment: str) -> list[str]:
    out = []
    for key, (kind, *values) in SEARCHES[experiment]["space"].items():
        form = (f"log({values[0]:g},{values[1]:g})" if kind == "log" else
                f"float({values[0]:g},{values[1]:g})" if kind == "float" else f"choice({','.join(map(str, values))})")
        out += ["--space", f"{key}={form}"]
    return out


def suggest(trial, experiment: str) -> dict:
    values = {}
    for key, (kind, *bounds) in SEARCHES[experiment]["space"].items():
        if kind == "choice":
            values[key] = trial.suggest_categorical(key, list(bounds))
        else:
            values[key] = trial.suggest_float(key, bounds[0], bounds[1], log=kind == "log")
    return values


def report_every(epochs: int) -> int:
    """regfw tune's default report interval (about 20 report points, at the log points)."""
    log_every = max(1, math.ceil(epochs / 1000))
    return log_every * max(1, math.ceil(epochs / 20 / log_every))


def least_squares_optimum(data) -> float:
    """The smallest MSE any quadratic reaches on the training data (float64 least squares)."""
    import torch

    x, y = data.x_train.double().reshape(-1), data.y_train.double().reshape(-1)
    basis = torch.stack([x * x, x, torch.ones_like(x)], dim=1)
    coef = torch.linalg.lstsq(basis, y.unsqueeze(1)).solution
    return float(((basis @ coef).squeeze(1) - y).pow(2).mean())


# -- the anchor's and Ray's process: a plain loop ---------------------------------------------------

def plain_parts(experiment: str, epochs: int):
    """The resolved config and the data, built once as a run builds them."""
    from regfw.build import build_data
    from regfw.config import parse_set, resolve
    from regfw.plugins import get_plugins

    registry = get_plugins().registry
    config = resolve(registry, experiment, sets=parse_set([f"train.epochs={epochs}"]), flags={"device": "cpu"})
    return registry, config, build_data(config, registry)


def plain_train(registry, config, data, values: dict, report) -> tuple[float, list]:
    """What a user writes: SGD on the model a run starts from, the value of the objective at the
    report points handed to ``report(epoch, value)`` (which may raise to stop), the final value."""
    import torch

    from regfw.build import build_loss, build_model, seed_everything

    seed_everything(config.seed)  # the initial weights of the run
    model, loss_fn = build_model(config, registry), build_loss(config, registry)
    opt = torch.optim.SGD(model.parameters(), lr=values["optimizer.lr"], momentum=values["optimizer.momentum"])
    epochs, every = config.train["epochs"], report_every(config.train["epochs"])
    x, y, n = data.x_train, data.y_train, len(data.x_train)
    batch = values.get("train.batch_size", config.train["batch_size"])
    batch = n if batch == "full" else min(int(batch), n)
    generator = torch.Generator().manual_seed(config.seed + 1)
    curve, value = [], math.nan
    for epoch in range(1, epochs + 1):
        if batch >= n:
            loss = loss_fn(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            epoch_loss = loss
        else:
            model.train()
            perm = torch.randperm(n, generator=generator)
            total = torch.zeros(())
            for i in range(0, n, batch):
                rows = perm[i:i + batch]
                loss = loss_fn(model(x[rows]), y[rows])
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += loss.detach() * len(rows)
            epoch_loss = total / n
        if epoch % every == 0 or epoch == epochs:
            if data.x_test is not None:
                model.eval()
                with torch.no_grad():
                    value = float(loss_fn(model(data.x_test), data.y_test))
            else:
                value = float(epoch_loss)
            if not math.isfinite(value):
                return value, curve
            curve.append((epoch, value))
            report(epoch, value)
    return value, curve


def anchor(opts) -> dict:
    """Optuna's study.optimize over the plain loop, each trial an MLflow run."""
    import mlflow
    import optuna
    from mlflow.entities import Metric, Param

    from regfw.tune.study import make_pruner

    registry, config, data = plain_parts(opts.experiment, opts.epochs)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    epochs = config.train["epochs"]
    pruner = make_pruner(opts.pruner, epochs, report_every(epochs)) or optuna.pruners.NopPruner()
    study = optuna.create_study(study_name="anchor", storage=opts.storage, direction="minimize",
                                sampler=optuna.samplers.TPESampler(seed=opts.seed, multivariate=True), pruner=pruner)
    client = mlflow.MlflowClient(opts.tracking_uri)
    experiment_id = client.create_experiment("anchor")
    metric = SEARCHES[opts.experiment]["metric"]

    def objective(trial):
        values = suggest(trial, opts.experiment)
        run = client.create_run(experiment_id, run_name=f"trial {trial.number}")

        def report(epoch, value):
            trial.report(value, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()

        status, value, curve = "FINISHED", math.nan, []
        try:
            value, curve = plain_train(registry, config, data, values, report)
            return value
        except optuna.TrialPruned:
            raise
        finally:
            stamp = int(time.time() * 1000)
            client.log_batch(run.info.run_id, params=[Param(k, str(v)) for k, v in values.items()],
                             metrics=[Metric(metric[len("final_"):], v, stamp, e) for e, v in curve]
                             + ([Metric(metric, value, stamp, epochs)] if math.isfinite(value) else []))
            client.set_terminated(run.info.run_id, status)

    study.optimize(objective, n_trials=opts.trials)
    return {"best": study.best_value, "states": _states(study)}


def raytune(opts) -> dict:
    """Ray Tune over the plain loop: its Optuna search (the same sampler) and ASHA (FIFO without a pruner)."""
    import optuna
    import ray
    from ray import tune
    from ray.tune.search.optuna import OptunaSearch

    registry, config, data = plain_parts(opts.experiment, opts.epochs)
    began = time.perf_counter()
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    started = time.perf_counter() - began
    epochs = config.train["epochs"]
    space = {}
    for key, (kind, *bounds) in SEARCHES[opts.experiment]["space"].items():
        space[key] = (tune.choice(list(bounds)) if kind == "choice" else
                      tune.loguniform(*bounds) if kind == "log" else tune.uniform(*bounds))

    def trainable(values, config=None, data=None):
        from regfw.plugins import get_plugins

        def report(epoch, value):
            tune.report({"value": value, "epoch": epoch})

        value, _ = plain_train(get_plugins().registry, config, data, values, report)
        if not math.isfinite(value):
            tune.report({"value": float("inf"), "epoch": epochs})

    search = OptunaSearch(metric="value", mode="min", sampler=optuna.samplers.TPESampler(seed=opts.seed,
                                                                                          multivariate=True))
    if opts.pruner == "none":
        scheduler = tune.schedulers.FIFOScheduler()
    else:
        every = report_every(epochs)
        scheduler = tune.schedulers.ASHAScheduler(time_attr="epoch", max_t=epochs, grace_period=every * 5)
    tuner = tune.Tuner(tune.with_parameters(trainable, config=config, data=data), param_space=space,
                       tune_config=tune.TuneConfig(search_alg=search, scheduler=scheduler, num_samples=opts.trials,
                                                   metric="value", mode="min"),
                       run_config=tune.RunConfig(storage_path=opts.ray_storage, verbose=0))
    results = tuner.fit()
    best = results.get_best_result(metric="value", mode="min", scope="last").metrics["value"]
    ray.shutdown()
    return {"best": best, "ray_start_s": started}


def _states(study) -> dict:
    out: dict = {}
    for trial in study.get_trials(deepcopy=False):
        out[trial.state.name.lower()] = out.get(trial.state.name.lower(), 0) + 1
    return out


# -- the row -------------------------------------------------------------------------------------

def row_tune(args, tmp: Path, alternate, Row) -> list:
    import statistics

    regfw = str(Path(sys.executable).with_name("regfw"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REGFW_", "RAY_")) and k != "MLFLOW_TRACKING_URI"}
    env["OMP_NUM_THREADS"] = str(args.threads or 1)
    sizes = {"quadratic-linear": (args.tune_quadratic_trials, args.tune_quadratic_epochs),
             "mlp-regression": (args.tune_mlp_trials, args.tune_mlp_epochs)}
    try:
        import ray  # noqa: F401 - only whether it is installed
        has_ray = not args.tune_no_ray
    except ImportError:
        has_ray = False
    rows = []
    for experiment in [e for e in args.tune_experiments.split(",") if e]:
        trials, epochs = sizes[experiment]
        for pruner in [p for p in args.tune_pruners.split(",") if p]:
            counter = [0]
            best: dict = {}
            extra_seen: dict = {}

            def process(name: str, command_for):
                def run() -> float:
                    counter[0] += 1
                    folder = tmp / f"tune-{experiment}-{pruner}-{counter[0]}"
                    folder.mkdir()
                    command = command_for(folder)
                    began = time.perf_counter()
                    done = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True)
                    wall = time.perf_counter() - began
                    if done.returncode != 0:
                        raise RuntimeError(f"{name} failed ({done.returncode}): {done.stderr[-2000:]}")
                    best.setdefault(name, []).append(_best_of(name, done.stdout, folder))
                    if "ray_start_s" in done.stdout:
                        extra_seen.setdefault("ray_start_s", []).append(json.loads(done.stdout.splitlines()[-1])["ray_start_s"])
                    if name.startswith("regfw"):  # how the trials were stacked, once
                        extra_seen.setdefault("plan " + name, [line.strip() for line in done.stdout.splitlines()
                                                               if line.lstrip().startswith(("stacked", "alone"))])
                    return wall / trials
                return run

            def own(mode):
                return lambda folder: [sys.executable, __file__, mode, "--experiment", experiment, "--trials",
                                       str(trials), "--epochs", str(epochs), "--pruner", pruner, "--seed", "0",
                                       "--storage", f"sqlite:///{folder / 'optuna.db'}",
                                       "--tracking-uri", f"sqlite:///{folder / 'mlflow.db'}",
                                       "--ray-storage", str(folder / "ray")]

            def regfw_tune(extra):
                return lambda folder: [regfw, "tune", experiment, *space_args(experiment), "--trials", str(trials),
                                       "--epochs", str(epochs), "--seed", "0", "--pruner", pruner,
                                       "--metric", SEARCHES[experiment]["metric"], "--study", "bench",
                                       "--tracking-uri", f"sqlite:///{folder / 'mlflow.db'}", *extra]

            batch = min(args.tune_batch, trials)
            variants = {"optuna + plain loop": process("optuna + plain loop", own("anchor"))}
            if has_ray:
                variants["ray tune"] = process("ray tune", own("raytune"))
            variants["regfw tune"] = process("regfw tune", regfw_tune([]))
            if has_ray:  # Ray Tune's peer: trials as Ray tasks on a local instance, pruned from the driver
                variants["regfw tune --backend ray"] = process("regfw tune --backend ray", regfw_tune(["--backend", "ray"]))
            variants[f"regfw tune --vectorize --batch {batch}"] = process(
                f"regfw tune --vectorize --batch {batch}", regfw_tune(["--vectorize", "--batch", str(batch)]))
            print(f"row 13: {experiment}, {trials} trials of {epochs} epochs, pruner {pruner}", flush=True)
            times = alternate(args.tune_rounds, variants, f"{experiment} {pruner}")
            vectorized = f"regfw tune --vectorize --batch {batch}"
            extra = {"trials": trials, "epochs": epochs, "pruner": pruner, "space": space_args(experiment),
                     "trials_per_s": {name: 1 / statistics.median(t) for name, t in times.items()},
                     "best": {name: min(values) for name, values in best.items()}}
            extra |= extra_seen
            if experiment == "quadratic-linear":
                sys.path.insert(0, str(Path(__file__).parent))
                _, _, data = plain_parts(experiment, epochs)
                optimum = least_squares_optimum(data)
                extra["least_squares_optimum"] = optimum
                extra["excess"] = {name: value - optimum for name, value in extra["best"].items()}
            anchor_best = extra["best"]["optuna + plain loop"]
            extra["best_vs_anchor"] = {name: value / anchor_best - 1 for name, value in extra["best"].items()}
            target = (">=", 10.0 if experiment == "quadratic-linear" else 2.0, "ratio")
            # The Row's ratio is time/base, so the speed target reads as time ratio <= 1/x.
            rows.append(Row(13, f"{experiment}, {trials} trials of {epochs} epochs, pruner {pruner}: seconds per "
                               "trial end to end (whole processes, each its own store)", "optuna + plain loop", times,
                            unit="s/trial", extra=extra,
                            target={vectorized: ("<=", 1 / target[1], "ratio")},
                            note=f"target: {vectorized} >= {target[1]:g}x the anchor's trials/s, best within 1% "
                                 "(best values, excess and Ray's start in the JSON)"))
    return rows


def _best_of(name: str, stdout: str, folder: Path) -> float:
    if name.startswith("regfw"):
        match = re.search(r"best trial \d+: \S+ (\S+),", stdout)
        if match is None:
            raise RuntimeError(f"{name}: no best trial in its output:\n{stdout[-2000:]}")
        return float(match.group(1))
    return json.loads(stdout.splitlines()[-1])["best"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="one process of row 13 (benchmarks/tune_row.py)")
    parser.add_argument("mode", choices=("anchor", "raytune"))
    parser.add_argument("--experiment", choices=tuple(SEARCHES), required=True)
    parser.add_argument("--trials", type=int, required=True)
    parser.add_argument("--epochs", type=int, required=True)
    parser.add_argument("--pruner", choices=("none", "median"), default="none")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--storage", required=True)
    parser.add_argument("--tracking-uri", required=True)
    parser.add_argument("--ray-storage", required=True)
    opts = parser.parse_args(argv)
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    for name in ("mlflow", "alembic", "sqlalchemy", "ray"):
        logging.getLogger(name).setLevel(logging.ERROR)
    out = anchor(opts) if opts.mode == "anchor" else raytune(opts)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
