"""A conformance kit for component authors: ``check_component(kind, name, **config)``.

It builds the component (and, for each slot it references, a registered component of that
kind that provides what the slot ``needs``), feeds it a random batch holding exactly the keys
it declares in ``reads``, and checks what a recipe relies on:

* the config survives a round trip through the recipe format (YAML-able, same values back);
* ``compute`` reads no batch key it does not declare (the data-flow check would miss it);
* it returns exactly its declared ``writes`` / ``losses`` / ``logs`` with their shapes;
* every output is finite on random inputs;
* it never steps an optimiser or calls ``backward`` itself: no parameter and no ``.grad``
  changes during ``compute`` (the update routes each loss to the slots that list it);
* every declared loss reaches a trainable parameter or a differentiable input (a loss that
  reaches nothing trains nothing), and the losses of a component with parameters of its own
  reach them;
* the same in float64 (parameters and inputs cast), with float64 outputs;
* vectorised seeds (``advrl train --vectorize``) compute what single runs compute: ``compute``
  run for two seeds at once under ``torch.func.vmap`` gives each seed what it gives alone, so
  it draws its noise through ``advrl.noise`` (not torch's global generator), reduces only over
  its own batch and makes no Python decision on a tensor's value.

Use it in a plug-in's tests::

    from advrl.testing import check_component
    def test_my_term():
        check_component("constraint", "bc_l1", weight=2.0)

The test suite runs it over every built-in component (``tests/components/test_conformance.py``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch
from omegaconf import OmegaConf
from tensordict import TensorDict

from advrl import registry
from advrl.component import Component, ContractError, DataSpec, tdkey
from advrl.learner.update import check_outputs

# batch keys whose shape is known from the dataset; every other key is one float per sample
_OBSERVATION_KEYS = ("observation", "next.observation")
_ACTION_KEYS = ("action", "policy_action", "next_action")
_INTEGER_KEYS = ("index",)
_DIFFERENTIABLE_KEYS = ("policy_action", "policy_log_prob")  # outputs of an actor: losses may train through them


@dataclass
class ConformanceReport:
    """What the kit saw: declared keys that ``compute`` did not read (harmless, but the
    data-flow check then demands them), and which slots each loss reaches."""

    unread: list[str] = field(default_factory=list)
    loss_reaches: dict[str, list[str]] = field(default_factory=dict)


class _RecordingBatch:
    """The batch a component sees: only its declared reads; every access is recorded."""

    def __init__(self, td: TensorDict):
        self._td, self.read = td, set()

    def __getitem__(self, key):
        name = ".".join(key) if isinstance(key, tuple) else key
        if tdkey(name) not in self._td.keys(include_nested=True):
            raise KeyError(name)
        self.read.add(name)
        return self._td[key]


def check_component(kind: str, name: str, spec: DataSpec | None = None, batch_size: int = 8,
                    data=None, seed: int = 0, **config) -> ConformanceReport:
    """Run every check above on ``kind``/``name`` built with ``config``; raise
    :class:`~advrl.component.ContractError` naming the first check that fails. ``data`` (an
    offline dataset) is passed to ``prepare`` for components that pre-compute from it."""
    spec = spec or DataSpec(obs_dim=3, action_dim=2)
    cls = registry.get(kind, name)
    _check_config_round_trip(cls, kind, name, config)
    torch.manual_seed(seed)
    components = build_with_partners(kind, name, spec, config)
    component = components["_checked"]
    if data is not None:
        component.prepare(data, {"seed": seed, "device": torch.device("cpu")})
    if not component.is_term:
        return ConformanceReport()
    report = _check_compute(component, components, spec, batch_size, torch.float32, seed)
    _check_vectorised(kind, name, spec, config, batch_size, data, seed)
    for module in components.values():
        module.double()
    _check_compute(component, components, spec, batch_size, torch.float64, seed)
    return report


# ---- building ----------------------------------------------------------------------------------
def build_with_partners(kind: str, name: str, spec: DataSpec, config: dict) -> dict[str, Component]:
    """The component under the slot name ``_checked``, plus one registered partner for every
    slot it references (and theirs), bound to each other."""
    from advrl import make

    components = {"_checked": make(kind, name, spec=spec, **config)}
    pending = ["_checked"]
    while pending:
        component = components[pending.pop()]
        for field_name, f in component.slot_fields().items():
            target = getattr(component.config, field_name)
            if target is not None and target not in components:
                components[target] = _partner(f.metadata["slot"], f.metadata["needs"], spec)
                pending.append(target)
    for component in components.values():
        component.bind(components)
    return components


# partners tried first: the plainest component of each kind
_PREFERRED = {"actor": "deterministic", "behavior": "vae", "critic": "q_ensemble", "value": "td",
              "advantage": "q_minus_v", "coefficient": "constant", "schedule": "constant"}


def _partner(kind: str, needs: tuple[str, ...], spec: DataSpec) -> Component:
    """A registered component of ``kind`` providing ``needs``, with a target network where it
    can have one (some objectives read target actions)."""
    from advrl import make

    names = registry.names(kind)
    ordered = sorted(names, key=lambda n: n != _PREFERRED.get(kind))
    for candidate in ordered:
        cls = registry.get(kind, candidate)
        if all(hasattr(cls, method) for method in needs):
            fields = {f.name for f in dataclasses.fields(cls.Config)}
            return make(kind, candidate, spec=spec, **({"target": True} if "target" in fields else {}))
    raise ContractError(f"no registered {kind} provides {', '.join(needs)}; register one to check this component.")


def _check_config_round_trip(cls, kind: str, name: str, config: dict) -> None:
    """A config written to a recipe (``advrl recipe show``, a run's recipe.yaml) and read back
    must give the same values, or a resumed run would train another component."""
    from advrl.recipe import component_config

    _, built = component_config(name, OmegaConf.create({"kind": kind, "name": name, **config}))
    text = OmegaConf.to_yaml(OmegaConf.structured(built))
    _, again = component_config(name, OmegaConf.create({"kind": kind, "name": name, **OmegaConf.to_container(OmegaConf.create(text))}))
    if dataclasses.asdict(again) != dataclasses.asdict(built):
        raise ContractError(f"{kind} {name!r}: its config does not survive a round trip through YAML ({built} -> {again}).")


# ---- computing ---------------------------------------------------------------------------------
def random_batch(component: Component, spec: DataSpec, batch_size: int, dtype: torch.dtype, seed: int) -> TensorDict:
    """Exactly the keys ``component`` declares it reads, with plausible shapes and values."""
    gen = torch.Generator().manual_seed(seed)
    td = TensorDict({}, batch_size=[batch_size])
    for key in component.read_keys():
        if key in _INTEGER_KEYS:
            value = torch.randint(0, batch_size, (batch_size,), generator=gen)
        else:
            width = spec.obs_dim if key in _OBSERVATION_KEYS else spec.action_dim if key in _ACTION_KEYS else None
            shape = (batch_size,) if width is None else (batch_size, width)
            value = torch.rand(shape, generator=gen, dtype=dtype) * 1.8 - 0.9  # inside any action bound
            value.requires_grad_(key in _DIFFERENTIABLE_KEYS)
        td.set(tdkey(key), value)
    return td


def _check_compute(component, components, spec, batch_size, dtype, seed) -> ConformanceReport:
    label = f"{component.kind} {component.name!r}"
    td = random_batch(component, spec, batch_size, dtype, seed)
    batch = _RecordingBatch(td)
    before = _parameter_snapshot(components)
    try:
        out = component.compute(batch, 1)
    except KeyError as err:
        raise ContractError(f"{label} reads batch key {err.args[0]!r} without declaring it in `reads`.") from None
    check_outputs("check_component", component, out, td.batch_size)
    _check_untouched(label, components, before)
    for key, value in out.items():
        if value.is_floating_point() and value.dtype != dtype:
            raise ContractError(f"{label} returned {key!r} as {value.dtype} from {dtype} inputs and parameters.")
        if not bool(torch.isfinite(value.detach()).all()):
            raise ContractError(f"{label} returned non-finite values in {key!r} on random inputs.")
    unread = sorted(set(component.read_keys()) - batch.read)
    return ConformanceReport(unread=unread, loss_reaches=_check_gradients(label, component, components, td, out))


def _parameter_snapshot(components) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]]:
    return [(p, p.detach().clone(), p.grad) for c in components.values() for p in c.parameters()]


def _check_untouched(label: str, components, before) -> None:
    for param, value, grad in before:
        if not torch.equal(param.detach(), value):
            raise ContractError(f"{label} changed a parameter inside compute; leave optimiser steps to the update.")
        if param.grad is not grad:
            raise ContractError(f"{label} set .grad inside compute (called backward?); return losses instead.")


def _check_gradients(label: str, component, components, td, out) -> dict[str, list[str]]:
    """Which slots (or differentiable inputs) each loss reaches."""
    named = [(slot, p) for slot, c in components.items() for p in c.parameters() if p.requires_grad]
    inputs = [(key, td[tdkey(key)]) for key in component.read_keys() if td[tdkey(key)].requires_grad]
    reaches = {}
    for key in component.declared("losses"):
        targets = named + inputs if out[key].requires_grad else []
        grads = torch.autograd.grad(out[key], [t for _, t in targets], allow_unused=True, retain_graph=True) if targets else []
        reached = sorted({where for (where, _), g in zip(targets, grads) if g is not None})
        if not reached:
            raise ContractError(f"{label}'s loss {key!r} reaches no trainable parameter or input: it would train nothing.")
        reaches[key] = reached
    own = any(p.requires_grad for p in component.parameters())
    if own and reaches and not any("_checked" in slots for slots in reaches.values()):
        raise ContractError(f"{label} has trainable parameters, but none of its losses reaches them.")
    return reaches


def _check_vectorised(kind: str, name: str, spec: DataSpec, config: dict, batch_size: int, data, seed: int) -> None:
    """Two seeds at once (stacked as ``advrl train --vectorize`` stacks them) must each compute
    what that seed computes alone, from the same parameters, batch rows and random stream."""
    from advrl.learner.replicas import ReplicaStack

    label = f"{kind} {name!r}"
    replicas = []
    for k in range(2):
        torch.manual_seed(seed + k)
        components = build_with_partners(kind, name, spec, config)
        if data is not None:
            components["_checked"].prepare(data, {"seed": seed + k, "device": torch.device("cpu")})
        replicas.append(components)
    streams = [torch.Generator().manual_seed(1000 + k) for k in range(2)]
    start = [g.get_state() for g in streams]
    batches = [random_batch(replicas[k]["_checked"], spec, batch_size, torch.float32, seed + k) for k in range(2)]
    stack = ReplicaStack(replicas, streams, [seed, seed + 1])
    stacked = stack.components["_checked"]
    try:
        together = stack.map(lambda td: stacked.compute(td, 1))(torch.stack(batches))
    except RuntimeError as err:
        if "randomness" in str(err):
            raise ContractError(f"{label} draws random numbers from torch's global generator inside compute; draw them "
                                "through advrl.noise (noise.randn_like(x), noise.rand(...)) so that each vectorised seed "
                                "has its own stream, as its single run does.") from None
        raise ContractError(f"{label} cannot run vectorised (torch.func.vmap over seeds): {str(err).splitlines()[0]}. "
                            "Avoid Python decisions on tensor values (.item(), if tensor) inside compute.") from None
    for k in range(2):
        with torch.random.fork_rng(devices=[]):
            torch.set_rng_state(start[k])
            alone = replicas[k]["_checked"].compute(batches[k], 1)
        for key, value in alone.items():
            if not torch.allclose(together[key][k].detach(), value.detach(), rtol=1e-4, atol=1e-5):
                raise ContractError(f"{label} returns another {key!r} for seed {k} when two seeds run vectorised than "
                                    "when it runs alone: reduce over the batch dimension only, and keep no per-call "
                                    "state outside its parameters and buffers.")
