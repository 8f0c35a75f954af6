#!/usr/bin/env python
"""Regenerate the measured tables of docs/experiments.md from real runs (``make experiments``).

Each table lives in docs/experiments.md between ``<!-- generated: NAME -->`` and
``<!-- end generated: NAME -->``; this script trains the runs behind it through regfw's public
``regfw.testing.run_experiment`` (the same ``execute`` as ``regfw run``, nothing recorded in
MLflow) and replaces those blocks, and only them. Every block states the command, the date, the
torch version and the thread count it was measured with, so the figures cannot drift from the code.

    python docs/tools/experiments.py                      # everything, full size (about 15 min on one core)
    python docs/tools/experiments.py --only quadratic     # one group: fashion, mlp, quadratic
    python docs/tools/experiments.py --epochs 1 --seeds 0 --out /tmp/experiments.md   # a quick check

Sizes other than the recipes' (``--epochs``, ``--seeds``) are refused for the committed page:
write them to a copy with ``--out`` or to stdout with ``--print``.
"""

from __future__ import annotations

import argparse
import datetime
import re
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "experiments.md"
SEEDS = (0, 1, 2)
GROUPS = {"fashion": ("fashion-epochs", "fashion-seeds"), "mlp": ("mlp-regression",), "quadratic": ("quadratic",)}
BLOCK = "<!-- generated: {name} -->\n{body}<!-- end generated: {name} -->"


@dataclass
class Recipe:
    """One command: an experiment plus swaps and ``--set`` overrides, as ``regfw run`` takes them."""

    experiment: str
    swaps: tuple = ()  # (("dataset", "fashion-mnist"), ("optimizer", "adam"))
    sets: tuple = ()  # (("model.hidden", [256, 128, 100]), ...)
    idx: bool = False  # reads MNIST-format files: --data-root applies

    def command(self, threads: int, seed: int | None = None) -> str:
        words = ["regfw run", self.experiment] + [f"--{part} {name}" for part, name in self.swaps]
        words += [f"--set {key}={_text(value)}" for key, value in self.sets]
        words += [f"--threads {threads}"] + ([f"--seed {seed}"] if seed is not None else [])
        return " ".join(words)


def _text(value) -> str:
    return ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


FASHION_ADAM = Recipe("mnist", (("dataset", "fashion-mnist"), ("optimizer", "adam")),
                      (("model.hidden", [256, 128, 100]), ("train.batch_size", 128)), idx=True)
FASHION_MLP = Recipe("fashion-mlp", idx=True)
MLP_ADAM = Recipe("mlp-regression", (("optimizer", "adam"),))
MLP_TUNED = Recipe("mlp-regression-tuned")
QUADRATIC_FAST = Recipe("quadratic-param-fast")


@dataclass
class Runner:
    """Runs recipes once per (recipe, seed), whichever tables ask for them."""

    threads: int
    epochs: int | None
    data_root: str | None
    done: dict = field(default_factory=dict)

    def __call__(self, recipe: Recipe, seed: int):
        key = (recipe.command(self.threads), seed)
        if key not in self.done:
            from regfw.errors import RegfwError
            from regfw.testing import run_experiment

            sets = dict(recipe.sets) | {"train.threads": self.threads}
            if self.data_root and recipe.idx:
                sets |= {"dataset.root": self.data_root, "dataset.download": False}
            started = time.monotonic()
            result = run_experiment(recipe.experiment, epochs=self.epochs, seed=seed, sets=sets, track=False,
                                    check=False, **dict(recipe.swaps))
            if result.status == "KILLED":  # Ctrl-C ended the run: stop here, not at the next run
                raise KeyboardInterrupt
            if result.status != "FINISHED":
                raise RegfwError(f"{recipe.command(self.threads, seed)} ended {result.status}: {result.error}")
            print(f"  {recipe.command(self.threads, seed)}: {time.monotonic() - started:.0f} s", file=sys.stderr)
            self.done[key] = result
        return self.done[key]


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows]) + "\n"


def seed_rows(run: Runner, recipes, seeds, metric: str, fmt) -> list[list[str]]:
    rows = []
    for recipe in recipes:
        values = [run(recipe, s).metrics[metric] for s in seeds]
        rows.append([f"`{recipe.command(run.threads)}`"] + [fmt(v) for v in values] + [fmt(statistics.mean(values))])
    return rows


def fashion_epochs(run: Runner, seeds) -> str:
    result = run(FASHION_ADAM, seeds[0])
    names = ("train_loss", "train_accuracy", "test_loss", "test_accuracy")
    curves = {name: dict(result.curves[name]) for name in names}
    rows = [[str(e)] + [f"{curves[n][e]:.4f}" for n in names] for e in sorted(curves["test_accuracy"])]
    return (f"`{FASHION_ADAM.command(run.threads, seeds[0])}`, every epoch:\n\n"
            + table(["epoch", "train loss", "train accuracy", "test loss", "test accuracy"], rows))


def fashion_seeds(run: Runner, seeds) -> str:
    rows = seed_rows(run, (FASHION_ADAM, FASHION_MLP), seeds, "final_test_accuracy", lambda v: f"{v:.4f}")
    return ("Test accuracy after the last epoch:\n\n"
            + table(["command"] + [f"seed {s}" for s in seeds] + ["mean"], rows))


def mlp_regression(run: Runner, seeds) -> str:
    fmt = lambda v: f"{v:.2e}".replace("e-0", "e-")  # noqa: E731 - 2.09e-4: three digits at every size
    rows = seed_rows(run, (MLP_ADAM, MLP_TUNED), seeds, "final_test_loss", fmt)
    floors = [least_squares_test_mse(run(MLP_TUNED, s).config) for s in seeds]
    noise = run(MLP_TUNED, seeds[0]).config.dataset.params["noise"]
    rows.append(["least squares (a linear model) on the same training data"] + [fmt(v) for v in floors]
                + [fmt(statistics.mean(floors))])
    return (f"Test MSE after the last epoch (the label noise alone costs {fmt(noise**2)}):\n\n"
            + table(["command"] + [f"seed {s}" for s in seeds] + ["mean"], rows))


def least_squares_test_mse(config) -> float:
    """The test MSE of the least-squares affine fit: what the best linear model reaches on these data."""
    import torch

    from regfw.build import build_data
    from regfw.plugins import load_plugins

    data = build_data(config, load_plugins().registry)
    design = lambda x: torch.cat([x, torch.ones(len(x), 1)], 1).double()  # noqa: E731
    solution = torch.linalg.lstsq(design(data.x_train), data.y_train.double()).solution
    return float(((design(data.x_test) @ solution - data.y_test.double()) ** 2).mean())


def quadratic(run: Runner, seeds) -> str:
    rows = []
    for s in seeds:
        m = run(QUADRATIC_FAST, s).metrics
        rows.append([str(s), f"{m['final_train_loss']:.7g}", f"{m['optimum_loss']:.7g}", f"{m['excess_loss']:.2g}",
                     f"{m['train_seconds']:.3f}"])
    return (f"`{QUADRATIC_FAST.command(run.threads)}`:\n\n"
            + table(["seed", "final train loss", "least-squares optimum", "excess", "train seconds"], rows))


SECTIONS = {"fashion-epochs": fashion_epochs, "fashion-seeds": fashion_seeds, "mlp-regression": mlp_regression,
            "quadratic": quadratic}


def stamp(argv: list[str], threads: int) -> str:
    import torch

    command = "python docs/tools/experiments.py " + " ".join(argv) if argv else "make experiments"
    return (f"*Generated by `{command}` on {datetime.date.today().isoformat()}: torch {torch.__version__}, CPU, "
            f"{threads} thread{'s' if threads > 1 else ''} (`--threads {threads}`). Do not edit by hand.*\n\n")


def replace_block(text: str, name: str, body: str) -> str:
    pattern = re.compile(re.escape(f"<!-- generated: {name} -->") + r"\n.*?" + re.escape(f"<!-- end generated: {name} -->"), re.S)
    if len(pattern.findall(text)) != 1:
        raise SystemExit(f"experiments.py: error: the page needs exactly one block '<!-- generated: {name} -->' ... "
                         f"'<!-- end generated: {name} -->'")
    return pattern.sub(lambda _: BLOCK.format(name=name, body=body), text)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default=",".join(GROUPS), help=f"comma-separated groups: {', '.join(GROUPS)}")
    parser.add_argument("--seeds", default=",".join(map(str, SEEDS)), help="comma-separated seeds (default 0,1,2)")
    parser.add_argument("--epochs", type=int, help="train every run this many epochs (a quick check)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run (default 1)")
    parser.add_argument("--data-root", help="folder with the Fashion-MNIST IDX files (dataset.root)")
    parser.add_argument("--out", type=Path, help="write this copy of docs/experiments.md instead")
    parser.add_argument("--print", action="store_true", help="print the blocks instead of writing them")
    args = parser.parse_args(argv)
    groups = [g.strip() for g in args.only.split(",") if g.strip()]
    unknown = [g for g in groups if g not in GROUPS]
    if unknown:
        parser.error(f"unknown group {', '.join(unknown)}; choose from {', '.join(GROUPS)}")
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        parser.error(f"--seeds takes comma-separated integers, got {args.seeds!r}")
    if not seeds or (args.epochs is not None and args.epochs < 1) or args.threads < 1:
        parser.error("--seeds needs at least one seed; --epochs and --threads at least 1")
    if (args.epochs is not None or tuple(seeds) != SEEDS) and args.out is None and not args.print:
        parser.error("--epochs and --seeds change the figures: write them to a copy (--out FILE) or --print")
    from regfw.errors import RegfwError  # after the argument checks: --help costs no import

    target = args.out or DOC
    text = target.read_text(encoding="utf-8")
    names = [name for g in groups for name in GROUPS[g]]
    for name in names:  # fail on a malformed page before minutes of training
        replace_block(text, name, "")
    run = Runner(args.threads, args.epochs, args.data_root)
    header = stamp(sys.argv[1:] if argv is None else list(argv), args.threads)
    for name in names:
        print(f"{name}:", file=sys.stderr)
        try:
            body = header + SECTIONS[name](run, seeds)
        except RegfwError as exc:  # e.g. no Fashion-MNIST files here: regfw's own one-line message
            print(f"experiments.py: error: {exc}", file=sys.stderr)
            return 1
        if args.print:
            print(BLOCK.format(name=name, body=body))
        else:  # each finished table is written at once (kept if a later one fails), into the page as it is now
            target.write_text(replace_block(target.read_text(encoding="utf-8"), name, body), encoding="utf-8")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # Ctrl-C: the tables finished so far are already written
        print("experiments.py: interrupted; tables finished before it are written", file=sys.stderr)
        sys.exit(130)
