"""N built points as one stacked program: parameters along dim 0, one vmapped forward.

Each point is built by :func:`regfw.build.build_state`, exactly as its single run builds it
(seed, data, model, loss, device, optimizer, shuffle generator), so the stacked program starts
from the same weights and data. The N models' parameters are stacked along dim 0 (as
``torch.func.stack_module_state`` would); ``vmap(functional_call)`` runs them as one; their losses are summed and ONE
``torch.autograd.grad`` gives every model exactly its own gradient (the models share nothing).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

from regfw.errors import one_line


@dataclass
class Stack:
    states: list  # the N RunStates (real modules: the trained values are copied back at the end)
    base: object  # a parameter-free copy of the model on the meta device: functional_call's template
    names: list  # parameter names, in the models' order
    leaves: list  # stacked parameters (N, ...), requires_grad
    buffers: dict  # stacked buffers
    loss_fn: object
    x: object  # (N, n, ...) or the one shared tensor
    y: object
    x_test: object = None
    y_test: object = None
    shared_data: bool = False
    direct: bool = False  # True once a forward runs without vmap (regfw.vectorize.direct)
    completed: int = 0  # the last step (epoch of a row that joined at the start) every row completed
    positions: list = field(default_factory=list)  # each row's position among the bucket's points
    # Per row: the steps the stack had taken when it joined (0 unless a search refilled the stack
    # with it while the others trained on): its own epoch at step t is t - offset.
    offsets: list = field(default_factory=list)
    row_epochs: int = 0  # epochs trained, summed over the rows: what the stack cost (pruned rows leave it)
    _vmapped: dict = field(default_factory=dict)  # shared -> the forward chosen for that data layout

    @property
    def size(self) -> int:
        return len(self.states)

    def keep(self, rows: list) -> None:
        """Only ``rows`` (row numbers, in order) train on: the others leave the stack, so they
        cost nothing from the next step (a search's pruned trials). Their trained values must be
        copied back first (:meth:`copy_back`); the forwards are rebuilt for the new size."""
        import torch

        index = torch.tensor(rows, dtype=torch.long, device=self.leaves[0].device)
        with torch.no_grad():
            self.leaves = [leaf.detach().index_select(0, index).requires_grad_(True) for leaf in self.leaves]
            self.buffers = {k: v.index_select(0, index) for k, v in self.buffers.items()}
            if not self.shared_data:
                self.x, self.y = self.x.index_select(0, index), self.y.index_select(0, index)
                if self.x_test is not None:
                    self.x_test, self.y_test = self.x_test.index_select(0, index), self.y_test.index_select(0, index)
        self.states = [self.states[r] for r in rows]
        self.positions = [self.positions[r] for r in rows]
        self.offsets = [self.offsets[r] for r in rows]
        self._vmapped = {}  # the vmap-free call is built for one size

    def join(self, states: list, positions: list, offset: int) -> None:
        """``states`` (built points of the stack's group) become new rows after the current ones,
        at their epoch 1 from the next step while the others train on: a search refilling the slots
        its finished or pruned trials left. Their data stays one shared tensor only when it equals
        the stack's."""
        import torch

        from regfw.vectorize import direct

        new = stack_states(states)
        transposed = direct.transposed_weights(self.states[0].model if self.states else states[0].model)
        with torch.no_grad():
            def cat(name, a, b):
                both = torch.cat([a.detach(), b.detach()])
                return both.transpose(1, 2).contiguous().transpose(1, 2) if name in transposed else both

            self.leaves = [cat(n, a, b).requires_grad_(True) for n, a, b in zip(self.names, self.leaves, new.leaves)]
            self.buffers = {k: torch.cat([v, new.buffers[k]]) for k, v in self.buffers.items()}
            if not self.states:  # every row had left: the newcomers' data is the stack's
                self.x, self.y, self.x_test, self.y_test = new.x, new.y, new.x_test, new.y_test
                self.shared_data = new.shared_data
            elif not (self.shared_data and new.shared_data and _same([self.x, new.x]) and _same([self.y, new.y])
                      and (self.x_test is None or (_same([self.x_test, new.x_test])
                                                   and _same([self.y_test, new.y_test])))):
                rows = lambda t, shared, n: t.expand(n, *t.shape) if shared else t  # noqa: E731
                pair = lambda a, b: torch.cat([rows(a, self.shared_data, self.size),  # noqa: E731
                                               rows(b, new.shared_data, new.size)])
                self.x, self.y = pair(self.x, new.x), pair(self.y, new.y)
                if self.x_test is not None:
                    self.x_test, self.y_test = pair(self.x_test, new.x_test), pair(self.y_test, new.y_test)
                self.shared_data = False
        self.states = self.states + list(states)
        self.positions = self.positions + list(positions)
        self.offsets = self.offsets + [offset] * len(states)
        self._vmapped = {}

    def forward(self, x, y, *, train: bool = True, shared: bool | None = None):
        """Per-point outputs and losses (N,); ``shared``: x and y are one tensor for every point."""
        import torch

        shared = self.shared_data if shared is None else shared
        fn = self._vmapped.get(shared)
        if self.base.training != train:  # a module walk only when the mode changes (evaluation)
            self.base.train(train)
        tensors = (*self.leaves, *self.buffers.values(), x, y)
        if fn is None:
            fn = self._make(shared)
            with torch.set_grad_enabled(train):
                result = fn(*tensors)
            self._vmapped[shared] = self._direct_or(fn, shared, tensors, result)
            return result
        if train:
            return fn(*tensors)
        with torch.no_grad():
            return fn(*tensors)

    def _direct_or(self, vmapped, shared: bool, tensors, result):
        """The vmap-free call (:mod:`regfw.vectorize.direct`) when it gives this first batch's
        result, else ``vmapped``."""
        import torch

        from regfw.vectorize import direct

        losses = direct.per_point_loss(self.loss_fn)
        base = direct.template(self.states[0].model) if losses is not None else None
        slots = _slots(base, self.names, list(self.buffers)) if base is not None else None
        if slots is None:
            return vmapped
        base.train(self.base.training)
        call = direct.make_call(base, slots, losses, self.size, shared)
        try:
            with torch.no_grad():
                same = direct.agrees(call(*tensors), result)
        except Exception:  # noqa: BLE001 - an op that does not broadcast: vmap it is
            same = False
        self.direct = self.direct or same
        return call if same else vmapped

    def _make(self, shared: bool):
        """The vmapped forward, built once: vmap's own set-up stays out of the step.

        Each call puts the (batched) tensors straight into the template's parameter and buffer
        slots and calls it: what ``functional_call`` does, without its per-call name mapping,
        untying and context managers (about a third of a tiny model's step). Tied parameters or
        parametrizations need that machinery: those models keep ``functional_call``."""
        from torch.func import functional_call, vmap

        base, loss_fn, names, buffer_names = self.base, self.loss_fn, self.names, list(self.buffers)
        count = len(names) + len(buffer_names)
        slots = _slots(base, names, buffer_names)

        if slots is None:
            def one(*tensors):
                state = dict(zip(names + buffer_names, tensors[:count]))
                out = functional_call(base, state, (tensors[count],))
                return out, loss_fn(out, tensors[count + 1])
        else:
            def one(*tensors):
                for (table, attr), tensor in zip(slots, tensors):
                    table[attr] = tensor
                out = base(tensors[count])
                return out, loss_fn(out, tensors[count + 1])

        dims = None if shared else 0
        return vmap(one, in_dims=(0,) * count + (dims, dims))

    def copy_back(self, rows=None) -> None:
        """The trained values into each point's own nn.Module (of ``rows``, default all), for
        summaries and artifacts."""
        import torch

        with torch.no_grad():
            for i, state in enumerate(self.states):
                if rows is not None and i not in rows:
                    continue
                params = dict(state.model.named_parameters())
                for name, leaf in zip(self.names, self.leaves):
                    params[name].copy_(leaf[i])
                for name, buf in state.model.named_buffers():
                    if name in self.buffers:
                        buf.copy_(self.buffers[name][i])


def _slots(base, names: list, buffer_names: list):
    """``(module._parameters or _buffers, attribute)`` for every name, or None when the model needs
    ``functional_call`` (a tensor registered twice, a parametrization)."""
    if len(list(base.named_parameters(remove_duplicate=False))) != len(names) or len(
            list(base.named_buffers(remove_duplicate=False))) != len(buffer_names):
        return None
    if any(hasattr(module, "parametrizations") for module in base.modules()):
        return None
    slots = []
    for kind, group in (("_parameters", names), ("_buffers", buffer_names)):
        for name in group:
            owner, _, attr = name.rpartition(".")
            slots.append((getattr(base.get_submodule(owner), kind), attr))
    return slots


def _same(tensors) -> bool:
    import torch

    first = tensors[0]
    return all(t is first or (t.shape == first.shape and torch.equal(t, first)) for t in tensors[1:])


def stack_states(states: list) -> Stack:
    """Stack N built points (same architecture; data of one shape)."""
    import torch

    from regfw.vectorize import direct

    models = [s.model for s in states]
    # What torch.func.stack_module_state does, without its "same class" test: a class a factory
    # defines anew on each call is a new class object per point (see same_definition).
    named = [dict(m.named_parameters()) for m in models]
    params = {name: torch.stack([table[name].detach() for table in named]) for name in named[0]}
    named = [dict(m.named_buffers()) for m in models]
    buffers = {name: torch.stack([table[name].detach() for table in named]) for name in named[0]}
    names = [name for name, _ in models[0].named_parameters()]
    transposed = direct.transposed_weights(models[0])
    leaves = [(params[name].transpose(1, 2).contiguous().transpose(1, 2) if name in transposed else params[name])
              .detach().requires_grad_(True) for name in names]
    buffers = {k: v.detach() for k, v in buffers.items()}
    base = copy.deepcopy(models[0]).to("meta").train()
    data = [s.data for s in states]
    shared = _same([d.x_train for d in data]) and _same([d.y_train for d in data]) and (
        not data[0].has_test or (_same([d.x_test for d in data]) and _same([d.y_test for d in data])))
    pick = (lambda ts: ts[0]) if shared else torch.stack
    stack = Stack(states, base, names, leaves, buffers, states[0].loss_fn,
                  pick([d.x_train for d in data]), pick([d.y_train for d in data]), shared_data=shared,
                  positions=list(range(len(states))), offsets=[0] * len(states))
    if data[0].has_test:
        stack.x_test, stack.y_test = pick([d.x_test for d in data]), pick([d.y_test for d in data])
    return stack


def _cells_match(a, b, own: tuple) -> bool:
    """Two methods' closures hold the same values (a cell holding the class itself, as ``super()``
    makes, matches the other's): a forward that closes over a factory argument only stacks when
    every point gave the same value."""
    cells_a, cells_b = a.__closure__ or (), b.__closure__ or ()
    if len(cells_a) != len(cells_b):
        return False
    for x, y in zip(cells_a, cells_b):
        x, y = x.cell_contents, y.cell_contents
        if x is y or (x in own and y in own):
            continue
        try:
            if type(x) is not type(y) or not bool(x == y):
                return False
        except Exception:  # noqa: BLE001 - e.g. tensors: not comparable as one truth value
            return False
    return True


def same_definition(a: type, b: type) -> bool:
    """One class statement: the same class, or the class a factory defines anew on each call (a
    new class object with the same name, bases and code, and closures holding equal values).
    Stacking runs the first point's forward for all, so this, not the class object, must match."""
    if a is b:
        return True
    if (a.__module__, a.__qualname__, a.__bases__) != (b.__module__, b.__qualname__, b.__bases__):
        return False
    methods = lambda t: {k: v for k, v in vars(t).items() if hasattr(v, "__code__")}  # noqa: E731
    ma, mb = methods(a), methods(b)
    return ma.keys() == mb.keys() and all(ma[k].__code__ == mb[k].__code__ and _cells_match(ma[k], mb[k], (a, b))
                                          for k in ma)


def class_reason(first, other) -> str | None:
    """Why two models cannot share one forward: a module of a different class, or None."""
    mods_a, mods_b = list(first.named_modules()), list(other.named_modules())
    if [n for n, _ in mods_a] != [n for n, _ in mods_b]:
        return "the models are made of different modules"
    for (name, a), (_, b) in zip(mods_a, mods_b):
        if not same_definition(type(a), type(b)):
            where = f"module '{name}'" if name else "the model"
            return (f"{where} is of different classes ({type(a).__qualname__} and {type(b).__qualname__}), or of "
                    "one class whose methods differ (a factory's class closing over different values)")
    return None


def shape_reason(states: list) -> str | None:
    """Why these built points cannot be stacked, or None."""
    first = states[0]
    shapes = lambda s: [(n, tuple(p.shape), p.dtype) for n, p in s.model.named_parameters()]  # noqa: E731
    data = lambda s: [None if t is None else (tuple(t.shape), t.dtype)  # noqa: E731
                      for t in (s.data.x_train, s.data.y_train, s.data.x_test, s.data.y_test)] + [s.data.task]
    for state in states[1:]:
        reason = class_reason(first.model, state.model)
        if reason:
            return reason
        if shapes(state) != shapes(first):
            return "the models' parameters differ in shape"
        if data(state) != data(first):
            return "the datasets differ in shape"
    return None


def probe(states: list) -> str | None:
    """Try one stacked forward and backward on a batch before anything trains: the reason the
    model cannot be vmapped (data-dependent control flow, in-place buffer updates such as
    BatchNorm's running statistics, randomness such as dropout), or None."""
    import torch

    if not list(states[0].model.parameters()):
        return "the model has no parameters"
    pair = states[:2] if len(states) > 1 else states * 2
    reason = shape_reason(pair)
    if reason:
        return reason
    try:
        stack = stack_states(pair)
        before = {k: v.clone() for k, v in stack.buffers.items()}
        batch = pair[0].config.train["batch_size"]
        rows = len(pair[0].data.x_train) if batch == "full" else min(int(batch), len(pair[0].data.x_train))
        x = stack.x[:rows] if stack.shared_data else stack.x[:, :rows]
        y = stack.y[:rows] if stack.shared_data else stack.y[:, :rows]
        out, losses = stack.forward(x, y)
        if losses.shape != (2,):
            return f"the loss is not one number per model (shape {tuple(losses.shape[1:])})"
        grads = torch.autograd.grad(losses.sum(), stack.leaves, allow_unused=True)
        missing = [name for name, g in zip(stack.names, grads) if g is None]
        if missing:
            return f"parameter {missing[0]} gets no gradient (a stacked optimizer would still move it)"
        if any(not torch.equal(before[k], v) for k, v in stack.buffers.items()):
            return "the model updates its buffers in place (e.g. BatchNorm's running statistics)"
    except Exception as exc:  # noqa: BLE001 - whatever torch.func refuses is the reason
        return f"torch.func cannot vmap the model: {one_line(exc)}"
    return None
