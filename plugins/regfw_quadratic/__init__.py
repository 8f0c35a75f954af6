"""``quadratic-param`` and ``quadratic-linear``: quadratic regression two ways (source document 001).

Data (dataset ``quadratic-1d``): 100 points x = linspace(-2, 12), shape (100, 1);
y = (x - 4)(x - 8) + N(0, 1) noise, i.e. a·x² + b·x + c with (a, b, c) = (1, -12, 32).

``quadratic-param`` (part 1 of the document): three raw ``nn.Parameter`` a, b, c, each initialised
randn(1, 1), forward a·x² + b·x + c (model ``quadratic``); MSE, SGD lr 2e-5, 500000 full-batch epochs.

``quadratic-linear`` (part 2): the product of two ``nn.Linear(1, 1)``, (w1·x + b1)(w2·x + b2)
(model ``linear-product``, torch's default initialisation), MSE, SGD lr 2e-5, 20000 full-batch epochs.

What regfw fixes or adds:
- The document's expansion line has a typo: the x² coefficient of the product is w1·w2. The
  ``linear-product`` model reports the expanded a = w1·w2, b = w1·b2 + w2·b1, c = b1·b2 besides
  w1, b1, w2, b2 (as ``learned.*`` metrics and in learned_parameters.json).
- Both models expose ``feature_basis(x) = [x², x, 1]``: their function class lies within the
  quadratics, so every run logs the least-squares optimum of a·x² + b·x + c on the same training data
  (``optimum_loss``) and how far the optimizer is from it (``excess_loss``).
- The document's hand-written loop (forward, loss, backward, step, print every 100 epochs) is the
  engine's full-batch loop with torch's SGD; the loss is logged as ``train_loss`` per epoch.

``quadratic-param-fast`` (not in the document): the same data and model with x standardised inside
the model (``model.center=5``, ``model.scale=4``, so it fits a·z² + b·z + c with z = (x - 5) / 4 and
reports a, b, c for x), trained by SGD with lr 0.3 for 200 full-batch steps. It changes only the
coordinates SGD walks in: the condition number of the problem drops from about 11000 to about 8, and
the run reaches the least-squares optimum (excess below 1e-6) in well under a second instead of
the document's 500000 steps.

The components are general: ``quadratic-1d`` takes any coefficients, range, size and noise, and both
models take any 1-D dataset (``regfw run linear --model quadratic``); any optimizer swaps in
(``regfw run quadratic-param --optimizer adam --set optimizer.lr=0.1``).
"""

from regfw import Param, hookimpl

ONE_D = {"in_features": 1, "out_features": 1, "task": "regression"}
SIZE = Param(None, type=int, min=1, help="must be 1 (default: from the dataset)")


def make_data(generator, n_samples, a, b, c, noise, x_min, x_max):
    import torch

    from regfw.data import Data

    x = torch.linspace(x_min, x_max, n_samples).unsqueeze(1)
    y = a * x**2 + b * x + c + noise * torch.randn(x.shape, generator=generator)
    return Data(x, y)


def make_quadratic(in_features, out_features, init_std, center, scale):
    from regfw_quadratic.models import Quadratic, check_one_d

    check_one_d("quadratic", in_features, out_features)
    return Quadratic(init_std, center, scale)


def make_linear_product(in_features, out_features):
    from regfw_quadratic.models import LinearProduct, check_one_d

    check_one_d("linear-product", in_features, out_features)
    return LinearProduct()


@hookimpl
def register_datasets(register):
    register("quadratic-1d", make_data,
             description="y = a*x^2 + b*x + c + noise*N(0,1) on linspace(x_min, x_max)",
             params={"n_samples": Param(100, min=2), "a": 1.0, "b": -12.0, "c": 32.0,
                     "noise": Param(1.0, min=0.0, help="std of the Gaussian noise"),
                     "x_min": -2.0, "x_max": 12.0},
             dims=lambda p: dict(ONE_D))


@hookimpl
def register_models(register):
    register("quadratic", make_quadratic,
             description="a*x^2 + b*x + c from three raw nn.Parameters (1-D in and out)",
             params={"in_features": SIZE, "out_features": SIZE,
                     "init_std": Param(1.0, gt=0.0, help="a, b, c ~ N(0, init_std) (randn)"),
                     "center": Param(0.0, help="the model sees z = (x - center) / scale"),
                     "scale": Param(1.0, gt=0.0, help="see center; a, b, c are reported for x")})
    register("linear-product", make_linear_product,
             description="(w1*x + b1)(w2*x + b2): a quadratic as the product of two nn.Linear(1, 1)",
             params={"in_features": SIZE, "out_features": SIZE})


@hookimpl
def register_experiments(register):
    register("quadratic-param",
             description="Quadratic y = (x-4)(x-8) + noise fitted with raw parameters a, b, c (document 001)",
             dataset="quadratic-1d", model="quadratic", loss="mse", optimizer=("sgd", {"lr": 2e-5}),
             train={"epochs": 500_000, "batch_size": "full"})
    # Not the document's recipe: its model and data, with x standardised inside the model. The raw
    # basis [x², x, 1] on x in [-2, 12] has a Hessian condition number of about 11000, which is why
    # SGD needs 500000 steps of 2e-5; with z = (x - 5) / 4 (the mean and about the std of x) it is
    # about 8, and 100 steps of lr 0.3 reach the same least-squares optimum. a, b, c are reported for x.
    register("quadratic-param-fast",
             description="quadratic-param with x standardised in the model (center 5, scale 4): "
                         "SGD lr 0.3 reaches the least-squares optimum in 200 steps",
             dataset="quadratic-1d", model=("quadratic", {"center": 5.0, "scale": 4.0}), loss="mse",
             optimizer=("sgd", {"lr": 0.3}), train={"epochs": 200, "batch_size": "full"})
    register("quadratic-linear",
             description="The same quadratic as the product of two linear layers (document 001, part 2)",
             dataset="quadratic-1d", model="linear-product", loss="mse", optimizer=("sgd", {"lr": 2e-5}),
             train={"epochs": 20_000, "batch_size": "full"})
