"""K seeds of one recipe trained in lockstep in one process: vectorised seeds.

Each seed is built exactly as a single run with that seed builds itself (a ``Trainer``: its
initialisation, preparation, folder, records, evaluations and checkpoints); then their
parameters, buffers and optimiser states are stacked along a new leading dimension, and every
update runs once for all K under ``torch.func.vmap``. Replica k reads its own rows of the
batch (indices drawn from its own generator), its own parameter slices and its own noise
(``advrl.noise``), so it computes what the single run with seed k computes; Adam is
elementwise, so one optimiser over the stacked tensors steps each replica as its own would.

The gain is speed: K small matrix products become one batched product, which pays most in
bf16 and on GPUs, where a 256-wide network uses a small part of the hardware.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import torch
from torch import nn

from advrl import noise
from advrl.component import Component
from advrl.nn import under_vmap


class _Root(nn.Module):
    """The stacked components under one module, so ``functional_call`` can swap every tensor."""

    def __init__(self, components: dict[str, Component]):
        super().__init__()
        self.components = nn.ModuleDict(components)

    def forward(self, fn: Callable, *args):
        return fn(*args)


class ReplicaStack:
    """The components of K replicas as one set whose tensors are stacked ``[K, ...]``.

    ``components`` (built from replica 0's) holds the stacked parameters and buffers: optimisers
    and target updates work on them as they are (elementwise), and ``map(fn)`` runs a function
    written for one replica on all K at once.
    """

    def __init__(self, replicas: Sequence[dict[str, Component]], generators: Sequence[torch.Generator],
                 seeds: Sequence[int]):
        if len(replicas) != len(generators) or len(replicas) != len(seeds):
            raise ValueError("one generator and one seed per replica")
        self.size, self.seeds, self.generators = len(replicas), list(seeds), list(generators)
        self.components = copy.deepcopy(dict(replicas[0]))  # references between components are kept
        self._root = _Root(self.components)
        _stack_tensors(self._root, [_Root(dict(r)) for r in replicas])
        self._params = dict(self._root.named_parameters())
        self._buffers = dict(self._root.named_buffers())
        tensors = [*self._params.values(), *self._buffers.values()]
        device = tensors[0].device if tensors else torch.device("cpu")
        self._token = torch.arange(self.size, device=device)  # replica k is entry k (see advrl.noise)

    def map(self, fn: Callable) -> Callable:
        """``fn(td, *args)`` written for one replica -> the same on K replicas: ``td`` with a
        leading K dimension, every tensor ``fn`` returns with one too. Other arguments are
        shared (not tensors)."""

        def one_replica(params, buffers, token, td, args):
            with noise.replicas(token, self.generators), under_vmap():
                return torch.func.functional_call(self._root, (params, buffers), (fn, td, *args))

        # randomness="error": a draw that bypasses advrl.noise would not be the single run's
        mapped = torch.func.vmap(one_replica, in_dims=(0, 0, 0, 0, None), randomness="error")
        return lambda td, *args: mapped(self._params, self._buffers, self._token, td, args)

    def replica_state(self, state, k: int, shared: tuple[str, ...] = ()):
        """Replica k's part of a state dict of the stacked components (every tensor stacked) or
        of their optimisers (``shared=OPTIMIZER_SHARED``)."""
        return _slice(state, k, shared)


# what an optimiser's state holds once for all replicas: Adam's step count (equal in lockstep,
# and the fused kernel takes one per parameter); its moments are per replica like the parameters
OPTIMIZER_SHARED = ("step",)


def _stack_tensors(stacked: nn.Module, replicas: list[nn.Module]) -> None:
    """Replace every parameter and buffer of ``stacked`` by the replicas' ones stacked along a
    new leading dimension (all modules have the same structure: built from one recipe)."""
    for modules in zip(stacked.modules(), *(r.modules() for r in replicas), strict=True):
        module, sources = modules[0], modules[1:]
        for name, param in list(module._parameters.items()):
            if param is not None:
                values = torch.stack([m._parameters[name].detach() for m in sources])
                module._parameters[name] = nn.Parameter(values, requires_grad=param.requires_grad)
        for name, buffer in list(module._buffers.items()):
            if buffer is not None:
                module._buffers[name] = torch.stack([m._buffers[name] for m in sources])


def _slice(state, k: int, shared: tuple[str, ...], key=None):
    """Entry k of every stacked tensor; tensors under a ``shared`` key and plain values as they are."""
    if isinstance(state, torch.Tensor):
        return state.clone() if key in shared else state[k].clone()
    if isinstance(state, dict):
        return type(state)((name, _slice(value, k, shared, name)) for name, value in state.items())
    if isinstance(state, list | tuple):
        return type(state)(_slice(value, k, shared, key) for value in state)
    return copy.deepcopy(state)


def stack_states(states: Sequence, shared: tuple[str, ...] = OPTIMIZER_SHARED, key=None):
    """The replicas' optimiser states as the stacked optimiser's (the inverse of
    ``replica_state``): tensors stacked, those under a ``shared`` key and plain values taken
    from the first replica (equal in lockstep)."""
    first = states[0]
    if isinstance(first, torch.Tensor):
        return first.clone() if key in shared else torch.stack(list(states))
    if isinstance(first, dict):
        return type(first)((name, stack_states([s[name] for s in states], shared, name)) for name in first)
    if isinstance(first, list | tuple):
        return type(first)(stack_states([s[i] for s in states], shared, key) for i in range(len(first)))
    return copy.deepcopy(first)
