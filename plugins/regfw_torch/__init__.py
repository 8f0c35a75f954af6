"""torch's own losses, optimizers and a plain MLP, registered like any other plugin.

These are the shared building blocks every experiment can swap in (``--optimizer adam``).
torch is imported inside the factories only: loading this plugin costs nothing.
"""

from regfw import Param, hookimpl


def _loss(class_name):
    def factory(**params):
        import torch.nn

        return getattr(torch.nn, class_name)(**params)

    return factory


def _optimizer(class_name, rename=None):
    def factory(parameters, **params):
        import torch.optim

        params = dict(params)
        for ours, theirs in (rename or {}).items():
            params[theirs] = tuple(params.pop(k) for k in ours) if isinstance(ours, tuple) else params.pop(ours)
        return getattr(torch.optim, class_name)(parameters, **params)

    return factory


LR = Param(0.01, gt=0.0, help="learning rate")
DECAY = Param(0.0, min=0.0, help="L2 weight decay")
BETAS = {("beta1", "beta2"): "betas"}


@hookimpl
def register_losses(register):
    reduction = Param("mean", choices=("mean", "sum"))
    # extras["tasks"]: the dataset tasks (a dataset's dims "task") each loss means something on;
    # a mismatch (cross-entropy on a regression target trains at loss -0) is refused at resolve time.
    numeric = {"tasks": ("regression", "binary")}  # distances to 0/1 targets are a loss too (Brier)
    register("mse", _loss("MSELoss"), description="Mean squared error (torch.nn.MSELoss)",
             params={"reduction": reduction}, extras=numeric)
    register("l1", _loss("L1Loss"), description="Mean absolute error (torch.nn.L1Loss)",
             params={"reduction": reduction}, extras=numeric)
    register("huber", _loss("HuberLoss"), description="Huber loss (torch.nn.HuberLoss)",
             params={"reduction": reduction, "delta": Param(1.0, gt=0.0)}, extras=numeric)
    register("bce-with-logits", _loss("BCEWithLogitsLoss"),
             description="Binary cross-entropy on logits (torch.nn.BCEWithLogitsLoss)", params={"reduction": reduction},
             extras={"tasks": ("binary",)})
    register("cross-entropy", _loss("CrossEntropyLoss"),
             description="Multi-class cross-entropy on logits (torch.nn.CrossEntropyLoss)",
             params={"reduction": reduction, "label_smoothing": Param(0.0, min=0.0)}, extras={"tasks": ("multiclass",)})


@hookimpl
def register_optimizers(register):
    register("sgd", _optimizer("SGD"), description="Stochastic gradient descent (torch.optim.SGD)",
             params={"lr": LR, "momentum": Param(0.0, min=0.0), "weight_decay": DECAY, "nesterov": False})
    adam_params = {"lr": Param(0.001, gt=0.0), "beta1": Param(0.9, min=0.0), "beta2": Param(0.999, min=0.0),
                   "weight_decay": DECAY}
    register("adam", _optimizer("Adam", BETAS), description="Adam (torch.optim.Adam)", params=adam_params)
    register("adamw", _optimizer("AdamW", BETAS), description="Adam with decoupled weight decay (torch.optim.AdamW)",
             params=adam_params | {"weight_decay": Param(0.01, min=0.0)})
    register("rmsprop", _optimizer("RMSprop"), description="RMSprop (torch.optim.RMSprop)",
             params={"lr": LR, "alpha": Param(0.99, min=0.0), "momentum": Param(0.0, min=0.0), "weight_decay": DECAY})


@hookimpl
def register_models(register):
    register("mlp", _mlp, description="Multi-layer perceptron: Linear+ReLU layers, sizes from the dataset; "
             "inputs of more than two dims are flattened per sample",
             params={
                 "in_features": Param(None, type=int, min=1, help="input size (default: from the dataset)"),
                 "hidden": Param([256], type=list, item=int, min=1, help="hidden layer sizes"),
                 "out_features": Param(None, type=int, min=1, help="output size (default: from the dataset)"),
                 "init_std": Param(None, type=float, gt=0.0, help="weights ~ N(0, std), biases 0 (default: torch's)"),
             })


def _mlp(in_features, hidden, out_features, init_std):
    from regfw.errors import RegfwError

    if in_features is None or out_features is None:
        raise RegfwError("model 'mlp' needs in_features and out_features (set model.in_features=...)")
    import torch.nn as nn

    from regfw_torch.mlp import FlatMLP

    sizes = [in_features, *hidden, out_features]
    layers = []
    for i, (a, b) in enumerate(zip(sizes, sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    model = FlatMLP(*layers)
    if init_std is not None:
        for layer in model:
            if isinstance(layer, nn.Linear):
                nn.init.normal_(layer.weight, 0.0, init_std)
                nn.init.zeros_(layer.bias)
    return model
