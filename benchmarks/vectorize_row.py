"""Row 9 of benchmarks/run.py: ``regfw sweep --vectorize`` against the same points one after another.

End to end through ``run_sweep`` into the benchmark's SQLite store (child runs, metrics, artifacts,
statuses), points differing in seed. Also ``--jobs 2`` (two processes, points one after another in
each) and ``--vectorize --jobs 2`` at the largest N (two buckets of N/2, one per process). The one-after-another sweep costs the same per point at any N
(each point is its own run), so it is measured on the smallest N only and its points/s compared
with the vectorized sweep at every N. Besides points/s: µs per model-step of the stacked training
alone (the bucket's training time / epochs / steps an epoch / N) against a single run's and
against one model's matrix products alone, and the share of the vectorized sweep's time that is
not training (MLflow runs, metrics, artifacts and plots).
"""

from __future__ import annotations

import contextlib
import io
import statistics
import time

EXPERIMENTS = ("linear", "quadratic-param", "quadratic-linear", "mlp-regression")


def epochs_for(args, experiment: str) -> int:
    return {"linear": args.linear_epochs, "quadratic-param": args.vectorize_quadratic_epochs,
            "quadratic-linear": args.vectorize_quadratic_epochs, "mlp-regression": args.vectorize_mlp_epochs}[experiment]


def one_point(registry, experiment: str, epochs: int):
    """The first point built as its single run builds it, its batch rows and steps per epoch."""
    import math

    import torch

    from regfw.build import build_state
    from regfw.sweep import build_grid

    config = build_grid(registry, experiment, sets=[f"train.epochs={epochs}"]).points[0].config
    state = build_state(config, registry, torch.device("cpu"))
    n, batch = len(state.data.x_train), config.train["batch_size"]
    rows = n if batch == "full" else min(int(batch), n)
    return state, rows, math.ceil(n / rows)


def products_floor(state, rows: int, rounds: int = 200) -> float | None:
    """Seconds a training step of one model spends in its layers' matrix products alone (each
    nn.Linear's forward and weight gradient on one batch, as a single run computes them): the
    arithmetic no stacking removes. None for a model without nn.Linear layers."""
    import torch

    inputs = []
    hooks = [m.register_forward_hook(lambda m, args, out: inputs.append((m, args[0].detach(), out.detach())))
             for m in state.model.modules() if isinstance(m, torch.nn.Linear)]
    with torch.no_grad():
        state.model(state.data.x_train[:rows])
    for hook in hooks:
        hook.remove()
    if not inputs:
        return None

    def products():
        for module, x, out in inputs:
            torch.nn.functional.linear(x, module.weight.detach())
            out.t().mm(x)  # the weight's gradient has this shape and cost

    products()
    start = time.perf_counter()
    for _ in range(rounds):
        products()
    return (time.perf_counter() - start) / rounds


def row_vectorize(args, store, alternate, Row) -> list:
    from regfw.plugins import get_plugins
    from regfw.sweep import build_grid, run_sweep
    from regfw.vectorize import bucket_run

    registry = get_plugins().registry
    sizes = sorted({int(n) for n in args.vectorize_sizes.split(",")})
    wanted = [e for e in args.vectorize_experiments.split(",") if e]
    rows = []
    for experiment in wanted:
        epochs = epochs_for(args, experiment)
        state, batch_rows, steps = one_point(registry, experiment, epochs)  # steps: an epoch's mini-batches

        def grid(n):
            return build_grid(registry, experiment, sets=[f"train.epochs={epochs}"], seeds=f"0-{n - 1}")

        stepped: dict = {n: [] for n in sizes}
        shares: dict = {n: [] for n in sizes}
        singles: list = []

        few = args.vectorize_sequential_points or sizes[0]  # per point, the cost is the same at any N

        def sequential(n=few):
            start = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()):
                result = run_sweep(grid(n), store.uri, f"bench-{experiment}")
            singles.extend(r.summary["train_seconds"] / epochs / steps for r in result.results)
            return (time.perf_counter() - start) / n

        def two_jobs(n=max(2, few)):
            start = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()):
                run_sweep(grid(n), store.uri, f"bench-{experiment}", jobs=2)
            return (time.perf_counter() - start) / n

        def vectorized(n, jobs=1):
            def run():
                start = time.perf_counter()
                result = run_sweep(grid(n), store.uri, f"bench-{experiment}", vectorize=True, jobs=jobs,
                                   max_bucket=n // jobs)
                wall = time.perf_counter() - start
                if any(r.status != "FINISHED" for r in result.results):
                    raise RuntimeError(f"{experiment}: a vectorized point did not finish")
                if jobs == 1:  # the buckets' timings are only seen when they run in this process
                    timing = bucket_run.LAST_TIMING
                    stepped[n].append(timing.train / epochs / steps / n)
                    shares[n].append(1 - timing.train / wall)
                return wall / n
            return run

        variants = ({"one after another": sequential} | ({} if args.vectorize_no_jobs else {"--jobs 2": two_jobs})
                    | {f"--vectorize N={n}": vectorized(n) for n in sizes}
                    | ({} if args.vectorize_no_jobs else
                       {f"--vectorize --jobs 2 N={sizes[-1]}": vectorized(sizes[-1], jobs=2)}))
        print(f"row 9: {experiment}, {epochs} epochs, N = {', '.join(map(str, sizes))}", flush=True)
        times = alternate(args.pairs, variants, experiment)
        floor = products_floor(state, batch_rows)
        extra = {"epochs": epochs, "sizes": sizes, "sequential_points": few,
                 "points_per_s": {name: 1 / statistics.median(t) for name, t in times.items()},
                 "us_per_model_step": {"single run": 1e6 * statistics.median(singles)}
                 | {f"--vectorize N={n}": 1e6 * statistics.median(stepped[n]) for n in sizes}
                 | ({} if floor is None else {"matrix products alone (one model)": 1e6 * floor}),
                 "not_training_share": {f"--vectorize N={n}": statistics.median(shares[n]) for n in sizes}}
        rows.append(Row(9, f"{experiment}, {epochs} epochs, seeds 0..N-1: seconds per point end to end "
                           f"(one after another measured on {few} points)", "one after another", times,
                        unit="s/point", extra=extra,
                        note="points/s = 1 / median; µs per model-step and the non-training share in the JSON"))
    return rows
