"""``linear``: one-dimensional linear regression (source document 000).

Recipe: 100 points x = linspace(-1, 1); y = 3x + 10 + U[0,1) noise (mean 0.5, so the best fit is
about y = 3x + 10.5 with MSE about 1/12); ``nn.Linear(1, 1)``, MSE, SGD lr 0.01, 1000 full-batch
epochs. The document's "check for CUDA first, then use it" is regfw's ``--device auto``.
"""

from regfw import Param, hookimpl


def make_data(generator, n_samples, weight, bias, noise, x_min, x_max):
    import torch

    from regfw.data import Data

    x = torch.linspace(x_min, x_max, n_samples).unsqueeze(1)
    y = weight * x + bias + noise * torch.rand(x.shape, generator=generator)
    return Data(x, y)


def make_model(in_features, out_features):
    from regfw_linear.model import LinearRegression

    return LinearRegression(in_features or 1, out_features or 1)


@hookimpl
def register_datasets(register):
    register("linear-1d", make_data, description="y = weight*x + bias + noise*U[0,1) on linspace(x_min, x_max)",
             params={"n_samples": Param(100, min=2), "weight": 3.0, "bias": 10.0, "noise": Param(1.0, min=0.0),
                     "x_min": -1.0, "x_max": 1.0},
             dims=lambda p: {"in_features": 1, "out_features": 1, "task": "regression"})


@hookimpl
def register_models(register):
    register("linear", make_model, description="Affine map nn.Linear(in_features, out_features)",
             params={"in_features": Param(None, type=int, min=1, help="default: from the dataset"),
                     "out_features": Param(None, type=int, min=1, help="default: from the dataset")})


@hookimpl
def register_experiments(register):
    register("linear", description="1-D linear regression y = 3x + 10 + U[0,1) (document 000)",
             dataset="linear-1d", model="linear", loss="mse", optimizer=("sgd", {"lr": 0.01}),
             train={"epochs": 1000, "batch_size": "full"})
