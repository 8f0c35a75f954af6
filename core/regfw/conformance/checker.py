"""The :class:`Checker`: builds each component's context (:class:`Setup`) and runs one trial in it.

A component is checked in an experiment of the same plugin that uses it (so a model meets the data
it was written for), or else on a small synthetic problem (so a broken neighbour cannot fail it).
The checker holds what it built for one ``regfw check``: datasets (big ones cost seconds) and the
datasets that cannot be built here, so a missing download is not retried for every component.
"""

from __future__ import annotations

import warnings
from dataclasses import replace

from regfw.config import dataset_dims, fill_sizes
from regfw.conformance.contexts import (DEFAULT_IN, SYNTHETIC_ROWS, Probe, Setup, TrialConfig, build_data, built,
                                        defaults, finite_data, guarded, sample, seed, synthetic, train_settings,
                                        widths)
from regfw.conformance.results import Failed, Skipped
from regfw.errors import RegfwError, one_line
from regfw.registry import Entry

MAX_SEED = 2**32 - 1  # numpy's seeds end here


class Checker:
    """Checks components of one registry on one device, with one seed."""

    def __init__(self, plugins, device: str = "cpu", seed: int = 0):
        from regfw.device import resolve_device

        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
            raise RegfwError(f"seed must be an integer from 0 to {MAX_SEED}, got {seed!r}")
        self.plugins = plugins
        self.registry = plugins.registry
        self.device = resolve_device(device)
        self.seed = seed
        self._built: dict[tuple, object] = {}  # (plugin, dataset, params, seed) -> its sampled Data
        self._unavailable: dict[tuple, str] = {}  # (plugin, dataset, params) -> why it cannot be built here

    def data(self, entry: Entry, params: dict, seed_value: int):
        """The dataset ``entry`` with ``params``, sampled small; built once per checker."""
        key = (entry.plugin, entry.name, repr(sorted(params.items())))
        if key in self._unavailable:
            raise Skipped(self._unavailable[key])
        if key + (seed_value,) not in self._built:
            try:
                self._built[key + (seed_value,)] = sample(build_data(entry, params, seed_value))
            except Skipped as exc:
                self._unavailable[key] = str(exc)
                raise
        return self._built[key + (seed_value,)]

    def forget_data(self, entry: Entry) -> None:
        """Drop what was built of the dataset ``entry``: its next trial builds it again."""
        for key in [k for k in self._built if k[:2] == (entry.plugin, entry.name)]:
            del self._built[key]

    # The experiment of the same plugin that uses a component, if any: its context is the real one.
    def _home_experiment(self, entry: Entry) -> Entry | None:
        for exp in self.registry.all("experiment"):
            if exp.plugin == entry.plugin and exp.parts[entry.kind].name == entry.name:
                return exp
        return None

    def _experiment_config(self, exp: Entry):
        from regfw.config import resolve

        try:
            return resolve(self.registry, exp.name, flags={"device": "cpu"})
        except RegfwError as exc:
            raise Failed("build", f"experiment '{exp.name}' does not resolve: {exc}") from exc

    def _part_maker(self, part: str, name: str, params: dict):
        entry = self.registry.get(part, name)
        if part == "dataset":
            return lambda seed_value: self.data(entry, params, seed_value)
        # What each factory returns is checked as `regfw run` checks it, with the same sentence.
        if part == "model":
            def make_model(seed_value):
                seed(seed_value)
                return built(entry, guarded("build", f"model '{name}'", entry.factory, **params))
            return make_model
        if part == "loss":
            return lambda: built(entry, guarded("build", f"loss '{name}'", entry.factory, **params))
        return lambda parameters: built(entry, guarded("build", f"optimizer '{name}'", entry.factory, parameters,
                                                       **params))

    def setup_from_experiment(self, exp: Entry, swap: Entry | None = None) -> Setup:
        """The experiment's composition; ``swap`` (one of its own parts) goes in with its defaults."""
        config = self._experiment_config(exp)
        params = {part: dict(getattr(config, part).params) for part in ("dataset", "model", "loss", "optimizer")}
        if swap is not None:
            params[swap.kind] = defaults(swap)
            if swap.kind == "model":
                fill_sizes(params["model"], dataset_dims(self.registry.get("dataset", config.dataset.name),
                                                         params["dataset"]))
        makers = {part: self._part_maker(part, getattr(config, part).name, params[part])
                  for part in ("dataset", "model", "loss", "optimizer")}
        return Setup(makers["dataset"], makers["model"], makers["loss"], makers["optimizer"],
                     train_settings(config.train), f"experiment '{exp.name}'")

    def setup_for(self, entry: Entry) -> Setup:
        if entry.kind == "experiment":
            return self.setup_from_experiment(entry)
        home = self._home_experiment(entry)
        dims = {}
        if home is not None:
            setup = self.setup_from_experiment(home, swap=entry)
            if entry.kind == "dataset":
                return setup
            try:
                setup.make_data(self.seed)
                return setup
            except Skipped:
                # Its dataset cannot be built here (say, files not downloaded): check the component
                # on synthetic data of the dataset's declared sizes instead.
                config = self._experiment_config(home)
                dims = dataset_dims(self.registry.get("dataset", config.dataset.name), config.dataset.params)
        if entry.kind == "model":
            return self._synthetic_model(entry, dims)
        return getattr(self, f"_synthetic_{entry.kind}")(entry)

    def _synthetic_dataset(self, entry: Entry) -> Setup:
        params = defaults(entry)
        probe_data = self.data(entry, params, self.seed)
        in_width, out_width = widths(probe_data)
        task = probe_data.task
        return Setup(lambda seed_value: self.data(entry, params, seed_value),
                     lambda seed_value: Probe.model(in_width, out_width, seed_value),
                     lambda: Probe.loss(task), Probe.optimizer, train_settings(),
                     f"a linear probe model and a {task} loss")

    def _synthetic_model(self, entry: Entry, dims: dict) -> Setup:
        import torch

        params = fill_sizes(defaults(entry), dims)
        for key, fallback in (("in_features", DEFAULT_IN), ("out_features", 1)):
            if key in params and params[key] is None:  # no dataset says: a small width that fits
                params[key] = fallback
        make_model = self._part_maker("model", entry.name, params)
        model = make_model(self.seed)
        # Without an in_features parameter, the first layer that declares one says the width.
        first = next((m for m in model.modules() if isinstance(getattr(m, "in_features", None), int)), None)
        in_width = params.get("in_features") or (first.in_features if first is not None else 1)
        # The output width is whatever the model gives: find it with one forward pass.
        with torch.no_grad():
            out = guarded("forward", f"model '{entry.name}' on input [{SYNTHETIC_ROWS}, {in_width}]",
                          model, torch.zeros(SYNTHETIC_ROWS, in_width))
        out_width = int(out[0].numel()) if out.ndim > 1 else 1

        def make_data(seed_value):
            data = synthetic((in_width,), "regression", out_width, seed_value)
            return data if out.ndim > 1 else replace(data, y_train=data.y_train[:, 0])

        return Setup(make_data, make_model, lambda: Probe.loss("regression"), Probe.optimizer,
                     train_settings(), f"synthetic regression [{SYNTHETIC_ROWS}, {in_width}] -> {out_width}")

    def _synthetic_loss(self, entry: Entry) -> Setup:
        import torch

        make_loss = self._part_maker("loss", entry.name, defaults(entry))
        loss_fn = make_loss()
        tried = []
        for task, out_width in (("regression", 1), ("binary", 1), ("multiclass", 3)):
            data = synthetic((DEFAULT_IN,), task, out_width, self.seed)
            model = Probe.model(DEFAULT_IN, out_width, self.seed)
            try:
                out = model(data.x_train)
                with warnings.catch_warnings():  # e.g. mse's broadcasting warning on class targets
                    warnings.simplefilter("ignore")
                    value = loss_fn(out, data.y_train)
                ok = torch.is_tensor(value) and value.ndim == 0 and bool(torch.isfinite(value))
                # A loss that ignores the prediction (cross-entropy over one class) teaches nothing.
                ok = ok and bool(torch.autograd.grad(value, out)[0].abs().sum() > 0)
            except Exception as exc:  # noqa: BLE001 - try the next kind of target
                tried.append(f"{task}: {one_line(exc)}")
                continue
            if ok:
                return Setup(lambda seed_value, t=task, w=out_width: synthetic((DEFAULT_IN,), t, w, seed_value),
                             lambda seed_value, w=out_width: Probe.model(DEFAULT_IN, w, seed_value),
                             make_loss, Probe.optimizer, train_settings(), f"synthetic {task} targets")
            if not torch.is_tensor(value) or value.ndim:
                tried.append(f"{task}: gave {list(value.shape) if torch.is_tensor(value) else type(value).__name__}")
            else:
                tried.append(f"{task}: gave {float(value.detach())} with no gradient")
        raise Failed("finite loss", "no regression, binary or multiclass target gives a finite scalar ("
                     + "; ".join(tried) + ")")

    def _synthetic_optimizer(self, entry: Entry) -> Setup:
        return Setup(lambda seed_value: synthetic((DEFAULT_IN,), "regression", 1, seed_value),
                     lambda seed_value: Probe.model(DEFAULT_IN, 1, seed_value),
                     lambda: Probe.loss("regression"),
                     self._part_maker("optimizer", entry.name, defaults(entry)),
                     train_settings(), "a linear probe model on synthetic regression data")

    def trial(self, setup: Setup) -> dict:
        """Build everything with ``self.seed``, move it to the device and train two steps."""
        import torch

        from regfw.engine import train
        from regfw.recorder import Diverged, Recorder
        from regfw.state import RunState

        data = setup.make_data(self.seed)
        if not finite_data(data):
            raise Failed("build", "the dataset holds NaN or infinite values")
        model = setup.make_model(self.seed)
        if not isinstance(model, torch.nn.Module):
            raise Failed("build", f"the model is a {type(model).__name__}, not a torch.nn.Module")
        loss_fn = setup.make_loss()
        if not callable(loss_fn):
            raise Failed("build", f"the loss is a {type(loss_fn).__name__}, not callable")
        guarded("device", "model.to(device)", model.to, self.device)
        data = data.to(self.device)
        optimizer = setup.make_optimizer(model.parameters())
        for method in ("step", "zero_grad", "state_dict", "load_state_dict"):
            if not callable(getattr(optimizer, method, None)):
                raise Failed("build", f"the optimizer ({type(optimizer).__name__}) has no {method}()")

        x, y = data.x_train[:2], data.y_train[:2]
        with torch.no_grad():
            value = guarded("finite loss", "loss on the model's output", loss_fn,
                            guarded("forward", "model forward", model, x), y)
        if not torch.is_tensor(value) or value.ndim != 0:
            shape = list(value.shape) if torch.is_tensor(value) else type(value).__name__
            raise Failed("finite loss", f"the loss returns {shape}, not a scalar tensor")

        state = RunState(TrialConfig(setup.train), self.device, data, model, loss_fn, optimizer,
                         torch.Generator().manual_seed(self.seed + 1))
        try:
            train(state, Recorder(state.history, lambda rows: None))
        except Diverged as exc:
            raise Failed("finite loss", f"a training step gave a non-finite {exc.name} ({exc.value})") from exc
        except (Failed, Skipped):
            raise
        except Exception as exc:  # noqa: BLE001
            raise Failed("finite loss", f"a training step raised {one_line(exc)}") from exc
        for name, p in model.named_parameters():
            if not bool(torch.isfinite(p).all()):
                raise Failed("finite loss", f"parameter '{name}' is not finite after one step")
        return {"data": data, "model": model, "loss": loss_fn, "optimizer": optimizer, "history": state.history}
