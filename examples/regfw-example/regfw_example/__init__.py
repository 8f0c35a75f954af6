"""regfw-example: a third-party regfw plugin, kept outside the regfw distribution.

It adds
- the ``sine`` experiment: fit y = A sin(f x + phase) + noise, with
- the ``sine`` dataset,
- the ``fourier`` model (a linear layer over sin/cos features), usable by any experiment whose
  inputs are a feature vector: ``regfw run linear --model fourier``,
- the ``lion`` optimizer (Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms"),
  usable by every experiment: ``regfw run linear --optimizer lion --lr 0.05``,
and reuses regfw's built-in ``mse`` loss by name.

This module only declares; torch is imported inside the factories, so installing the plugin
does not slow down ``regfw list``.
"""

from regfw import Param, hookimpl


def make_sine(generator, n_samples, n_test, amplitude, frequency, phase, noise):
    import math

    import torch

    from regfw.data import Data

    n = n_samples + n_test
    x = (torch.rand(n, 1, generator=generator) * 2 - 1) * math.pi
    y = amplitude * torch.sin(frequency * x + phase) + noise * torch.randn(n, 1, generator=generator)
    return Data(x[:n_samples], y[:n_samples], x[n_samples:], y[n_samples:], task="regression")


def make_fourier(in_features, out_features, n_terms, base_frequency):
    from regfw_example.fourier import Fourier

    return Fourier(in_features, out_features, n_terms, base_frequency)


def make_lion(parameters, lr, beta1, beta2, weight_decay):
    from regfw_example.lion import Lion

    return Lion(parameters, lr=lr, betas=(beta1, beta2), weight_decay=weight_decay)


def stacked_lion(optimizers, params):
    """Lion for ``regfw sweep --vectorize`` (see docs/plugins.md, "Vectorized sweeps")."""
    from regfw_example.lion import stacked

    return stacked(optimizers, params)


@hookimpl
def register_datasets(register):
    register("sine", make_sine, description="y = amplitude*sin(frequency*x + phase) + N(0, noise), x in [-pi, pi)",
             params={"n_samples": Param(200, min=2, help="training points"),
                     "n_test": Param(100, min=0, help="test points"),
                     "amplitude": 1.5, "frequency": 2.0, "phase": 0.5,
                     "noise": Param(0.1, min=0.0, help="std of the Gaussian noise")},
             dims=lambda params: {"in_features": 1, "out_features": 1})


@hookimpl
def register_models(register):
    register("fourier", make_fourier,
             description="Linear layer over sin(k f x), cos(k f x) for k = 1..n_terms of every input",
             params={"in_features": Param(None, type=int, min=1, help="default: from the dataset"),
                     "out_features": Param(None, type=int, min=1, help="default: from the dataset"),
                     "n_terms": Param(4, min=1, help="harmonics per input"),
                     "base_frequency": Param(1.0, gt=0.0, help="f, the frequency of the first harmonic")})


@hookimpl
def register_optimizers(register):
    register("lion", make_lion, description="Lion: sign of an interpolated momentum, decoupled weight decay",
             params={"lr": Param(1e-4, gt=0.0, help="step size (every coordinate moves by lr per step)"),
                     "beta1": Param(0.9, min=0.0, help="interpolation for the update direction"),
                     "beta2": Param(0.99, min=0.0, help="momentum decay"),
                     "weight_decay": Param(0.0, min=0.0, help="decoupled, scaled by lr")},
             extras={"vectorized": stacked_lion})  # how N stacked Lions step: regfw sweep --vectorize


@hookimpl
def register_experiments(register):
    register("sine", description="Fit a noisy sine wave with Fourier features, MSE and Lion",
             dataset="sine", model="fourier", loss="mse", optimizer=("lion", {"lr": 0.01}),
             train={"epochs": 400, "batch_size": "full"})
