"""Row 10 of benchmarks/run.py: ``regfw landscape``'s grid, batched, against one Python step per point.

The time of ``regfw.landscape.loss_grid`` over a G x G grid around a freshly built model (random
filter-normalized directions; manual-gd with a bias: its two parameters), against the obvious loop
that sets the parameters by hand and evaluates the loss once per point. The loop is timed on one
grid row (G points) and multiplied by G; the batched grid is timed whole. Both are timed in CPU
seconds of this process (one thread: the work itself), steadier than wall time on a machine other
jobs share. Targets (issue 14), on one thread: mlp-regression's 41 x 41 under 10 s, the tiny
models' under 1 s.
"""

from __future__ import annotations

import time

CASES = (("manual-gd", [("model.bias", True)], "params", 1.0), ("quadratic-param", [], "random", 1.0),
         ("quadratic-linear", [], "random", 1.0), ("mlp-regression", [], "random", 10.0))


def row_landscape(args, parts, alternate, Row) -> list:
    import torch

    from regfw.landscape import loss_grid, make_plane

    grid = args.landscape_grid
    rows = []
    for name, sets, kind, target in CASES:
        p = parts(name, sets)
        model, x, y = p.model.eval(), p.data.x_train, p.data.y_train
        plane = make_plane(kind, model, seed=0)
        axes = [torch.linspace(c - 1, c + 1, grid, dtype=torch.float64) for c in plane.center]

        def batched():
            start = time.process_time()
            loss_grid(model, p.loss_fn, x, y, plane, axes)
            return time.process_time() - start

        def loop():
            params = list(model.parameters())
            saved = [q.detach().clone() for q in params]
            v = axes[1][grid // 2]
            start = time.process_time()
            with torch.no_grad():
                for u in axes[0]:
                    flat = plane.at(torch.tensor([[float(u), float(v)]], dtype=torch.float64))[0]
                    i = 0
                    for q in params:
                        q.copy_(flat[i:i + q.numel()].reshape(q.shape))
                        i += q.numel()
                    float(p.loss_fn(model(x), y))
                for q, s in zip(params, saved):
                    q.copy_(s)
            return (time.process_time() - start) * grid

        print(f"row 10: {name}, {grid}x{grid} landscape", flush=True)
        batched(), loop()  # warm-up
        times = alternate(args.pairs, {"loop, one step per point": loop, "regfw batched": batched}, name)
        rows.append(Row(10, f"{name}: {grid}x{grid} loss landscape ({kind} directions), CPU seconds; the "
                        "loop timed on one row, times the grid", "loop, one step per point", times,
                        target={"regfw batched": ("<=", target, "seconds")}, extra={"grid": grid}))
    return rows
