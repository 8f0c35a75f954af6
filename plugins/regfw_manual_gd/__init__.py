"""``manual-gd``, ``manual-sgd``, ``manual-minibatch``: gradient descent by hand, no autograd (document 002).

Recipe: x = [1, 2, 3], y = [2, 4, 6] (dataset ``line-points``); model ŷ = x·w without bias, w starting
at 1.0 (model ``manual-linear``); cost = mean squared error over the samples; gradient = mean of
2x(x·w − y), computed by the formula, not by autograd; w −= 0.01 · gradient; 100 epochs. The
prediction for x = 4 is reported before (4 · w_init) and after (``learned.prediction_at_4``): w → 2,
prediction → 8.

The three modes are the three ways the document (and its closing remark) updates w, i.e. batch sizes:
- ``manual-gd``: gradient descent, one update per epoch over all samples (``batch_size: full``);
- ``manual-sgd``: stochastic gradient descent, one update per sample with that sample's gradient
  2x(x·w − y), in the data's order as in the document (``batch_size: 1``, ``shuffle: false``);
- ``manual-minibatch``: mini-batch gradient descent, the compromise the document names at its end
  (``batch_size: 2``, reshuffled every epoch).
Any mode is also the others with an override: ``regfw run manual-gd --batch-size 1 --set train.shuffle=false``.

How the hand-written parts map onto regfw and torch:
- ``train.grad: formula``: the engine calls ``model.formula_grad(x, y)`` under ``torch.no_grad()``,
  which writes the MSE gradient by formula into ``w.grad`` (and ``b.grad``); no autograd graph is built.
- ``w -= 0.01 * grad`` is ``torch.optim.SGD`` with lr 0.01 applied to that gradient.
- The cost per epoch is ``train_loss`` (for SGD and mini-batches, the mean of the epoch's batch costs).

Experiment-specific artifacts (``register(..., artifacts=write_landscapes)``: regfw calls
``write_landscapes(folder, run)`` after the standard plots, ``run`` a :class:`regfw.RunView`):
- ``mse_grid_w.svg`` / ``mse_grid_w.json``: the exhaustive search, MSE of ŷ = x·w on the run's
  training data for w = 0.0, 0.1, ..., 4.0 (the document's first plot, minimum at w = 2);
- ``mse_surface_wb.svg`` / ``mse_surface_wb.json``: the exercise, MSE of ŷ = x·w + b on y = 3x + 2
  (x = [1, 2, 3], y = [5, 8, 11]) over w, b in 0.0..4.0 step 0.1, drawn as a 3D surface;
- ``predictions.json``: the prediction for x = 4 before and after training.

``manual-linear`` takes ``bias: true`` for ŷ = x·w + b (``regfw run manual-gd --set model.bias=true
--set dataset.bias=2 --set dataset.weight=3`` fits the exercise's line), works with autograd too
(``--set train.grad=autograd`` gives the same w), and with any 1-D dataset.
"""

from regfw import Param, hookimpl


def make_data(generator, x, weight, bias):
    import torch

    from regfw.data import Data

    xs = torch.tensor(x, dtype=torch.float32).unsqueeze(1)
    return Data(xs, weight * xs + bias)


def make_model(in_features, out_features, w_init, b_init, bias, predict_at):
    from regfw_manual_gd.model import ManualLinear

    for key, value in (("in_features", in_features), ("out_features", out_features)):
        if value not in (None, 1):
            from regfw.errors import RegfwError

            raise RegfwError(f"model 'manual-linear' is one-dimensional: {key} must be 1, got {value}")
    return ManualLinear(w_init, b_init if bias else None, predict_at)


def write_landscapes(folder, run):
    from regfw_manual_gd.plots import write_landscapes as write  # matplotlib only when a run ends

    write(folder, run)


SIZE = Param(None, type=int, min=1, help="must be 1 (default: from the dataset)")


@hookimpl
def register_datasets(register):
    register("line-points", make_data, description="A few exact points y = weight*x + bias at the given x values",
             params={"x": Param([1.0, 2.0, 3.0], type=list, item=float, help="the x values"),
                     "weight": 2.0, "bias": 0.0},
             dims=lambda p: {"in_features": 1, "out_features": 1, "task": "regression"})


@hookimpl
def register_models(register):
    register("manual-linear", make_model,
             description="y = x*w (+ b) with its MSE gradient by formula (formula_grad), for train.grad=formula",
             params={"in_features": SIZE, "out_features": SIZE,
                     "w_init": Param(1.0, help="initial w"), "b_init": Param(0.0, help="initial b (with bias)"),
                     "bias": Param(False, help="add a bias b"),
                     "predict_at": Param(4.0, type=float, help="also report the prediction at this x")})


def _experiment(register, name, description, train):
    register(name, description=description, dataset="line-points", model="manual-linear", loss="mse",
             optimizer=("sgd", {"lr": 0.01}),
             train={"epochs": 100, "grad": "formula", **train}, artifacts=write_landscapes)


@hookimpl
def register_experiments(register):
    _experiment(register, "manual-gd", "y = 2x fitted by gradient descent with the gradient by formula, no autograd (document 002)",
                {"batch_size": "full"})
    _experiment(register, "manual-sgd", "y = 2x by stochastic gradient descent, one sample per step, gradient by formula (document 002)",
                {"batch_size": 1, "shuffle": False})
    _experiment(register, "manual-minibatch", "y = 2x by mini-batch gradient descent (batches of 2), gradient by formula (document 002)",
                {"batch_size": 2, "shuffle": True})
