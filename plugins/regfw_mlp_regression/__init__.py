"""``mlp-regression``: high-dimensional linear data fitted by a one-hidden-layer MLP (document 003, part 1).

Recipe: 10000 samples with 500 features X ~ N(0, 1); labels X·w + b with w = 0.0056 for every
feature and b = 0.028, plus N(0, 0.01) noise (dataset ``linear-features``). The first 7000 samples
train, the last 3000 test. Model 500 → 256 → 1 with ReLU (the shared ``mlp`` model with
``hidden=[256]``), weights N(0, 0.01), biases zero; MSE; shuffled mini-batches of 50; 100 epochs.

How the hand-written parts map onto torch components:
- The document's optimizer step is ``p -= lr * grad / batch_size`` with lr 0.01, on a loss that is
  already the batch mean. That is plain SGD with lr 0.01 / 50 = 2e-4, which is the default here
  (``optimizer: sgd, lr: 2e-4``). Its per-epoch train and test losses are the engine's
  ``train_loss`` (mean over the epoch's batches) and ``test_loss`` (the whole test split).

What regfw fixes:
- The document's biases have shape (1,): one scalar shared by every unit of a layer. regfw uses
  per-unit biases (``nn.Linear``'s own), initialised to zero as the document intends.

The label variance is about 500·0.0056² ≈ 0.0157 and the noise floor 1e-4, so this recipe (tiny
weights, step 2e-4) barely learns in 100 epochs: the document reports 0.013773 train / 0.014170
test. ``--optimizer adam`` or ``--lr 0.01`` shows how far it could go. The dataset is general:
``n_samples``, ``n_features``, ``n_train``, ``weight``, ``bias`` and ``noise`` are parameters, and
its sizes reach swapped-in models (``regfw run mlp-regression --model linear``).
"""

from regfw import Param, hookimpl


def make_data(generator, n_samples, n_features, n_train, weight, bias, noise):
    import torch

    from regfw.data import Data
    from regfw.errors import RegfwError

    if n_train >= n_samples:
        raise RegfwError(f"dataset.n_train ({n_train}) must be smaller than dataset.n_samples ({n_samples})")
    x = torch.randn(n_samples, n_features, generator=generator)
    w = torch.full((n_features, 1), weight)
    y = x @ w + bias + noise * torch.randn(n_samples, 1, generator=generator)
    return Data(x[:n_train], y[:n_train], x[n_train:], y[n_train:])


@hookimpl
def register_datasets(register):
    register("linear-features", make_data,
             description="y = X @ (weight, ...) + bias + noise*N(0,1), X ~ N(0,1) with n_features columns; train/test split",
             params={"n_samples": Param(10000, min=2), "n_features": Param(500, min=1),
                     "n_train": Param(7000, min=1, help="the first n_train samples train, the rest test"),
                     "weight": 0.0056, "bias": 0.028, "noise": Param(0.01, min=0.0, help="std of the label noise")},
             dims=lambda p: {"in_features": p["n_features"], "out_features": 1, "task": "regression"})


@hookimpl
def register_experiments(register):
    register("mlp-regression",
             description="500-feature linear data fitted by a 500-256-1 ReLU MLP, mini-batch SGD (document 003)",
             dataset="linear-features", model=("mlp", {"hidden": [256], "init_std": 0.01}), loss="mse",
             optimizer=("sgd", {"lr": 0.01 / 50}),
             train={"epochs": 100, "batch_size": 50, "shuffle": True})
