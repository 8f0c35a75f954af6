"""``binary``: two Gaussian classes separated by an MLP (document 003, part 2).

Recipe: 200 features. Class 1: 10000 samples from N(2, 1), label 1; class 0: 10000 samples from
N(-2, 1), label 0 (dataset ``two-gaussians``). Train = the first 7000 of each class (14000), test =
the last 3000 of each (6000). Model 200 → 100 → 1 with ReLU (the shared ``mlp`` model with
``hidden=[100]``), weights N(0, 1), biases zero; ``BCEWithLogitsLoss`` (loss ``bce-with-logits``);
shuffled mini-batches of 50; 100 epochs. Targets are floats of shape (n, 1), the task is
``binary``, and accuracy (logit > 0) is logged per epoch for train and test beside the loss.

How the hand-written parts map onto torch components:
- The document's step ``p -= lr * grad / batch_size`` with lr 0.01 on a mean loss is SGD with
  lr 0.01 / 50 = 2e-4, the default here.

What regfw fixes:
- The document builds class 0's training features from class 1's samples (``x2_train = x1[:7000]``),
  so the two classes are indistinguishable and the reported losses (0.851 / 0.834 after 100 epochs)
  measure nothing. Here each class uses its own samples, and the classes separate.

The dataset is general (``n_features``, ``n_per_class``, ``n_train_per_class``, ``mean``, ``std``)
and any model or optimizer swaps in (``regfw run binary --model linear --optimizer adam``).
"""

from regfw import Param, hookimpl


def make_data(generator, n_features, n_per_class, n_train_per_class, mean, std):
    import torch

    from regfw.data import Data
    from regfw.errors import RegfwError

    if n_train_per_class >= n_per_class:
        raise RegfwError(f"dataset.n_train_per_class ({n_train_per_class}) must be smaller than "
                         f"dataset.n_per_class ({n_per_class})")
    ones = mean + std * torch.randn(n_per_class, n_features, generator=generator)
    zeros = -mean + std * torch.randn(n_per_class, n_features, generator=generator)
    k = n_train_per_class
    x_train = torch.cat([ones[:k], zeros[:k]])
    x_test = torch.cat([ones[k:], zeros[k:]])
    label = lambda n, value: torch.full((n, 1), value)  # noqa: E731
    y_train = torch.cat([label(k, 1.0), label(k, 0.0)])
    y_test = torch.cat([label(n_per_class - k, 1.0), label(n_per_class - k, 0.0)])
    return Data(x_train, y_train, x_test, y_test, task="binary")


@hookimpl
def register_datasets(register):
    register("two-gaussians", make_data,
             description="Binary classes: label 1 ~ N(mean, std), label 0 ~ N(-mean, std) in n_features dimensions",
             params={"n_features": Param(200, min=1), "n_per_class": Param(10000, min=2),
                     "n_train_per_class": Param(7000, min=1, help="the first samples of each class train, the rest test"),
                     "mean": 2.0, "std": Param(1.0, min=0.0)},
             dims=lambda p: {"in_features": p["n_features"], "out_features": 1, "task": "binary"})


@hookimpl
def register_experiments(register):
    register("binary",
             description="Two Gaussian classes in 200-D, 200-100-1 ReLU MLP with BCE-with-logits (document 003)",
             dataset="two-gaussians", model=("mlp", {"hidden": [100], "init_std": 1.0}), loss="bce-with-logits",
             optimizer=("sgd", {"lr": 0.01 / 50}),
             train={"epochs": 100, "batch_size": 50, "shuffle": True, "metrics": ["accuracy"]})
