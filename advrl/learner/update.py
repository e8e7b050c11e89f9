"""One update of a recipe: compute its terms in order, route each loss to the parameters it
trains, step the optimisers, then Polyak-update the listed target networks.

The loop that calls updates knows no algorithm: TD3+BC, IQL, CQL and the rest differ only
in which updates their recipe declares.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from tensordict import TensorDict

from advrl.component import Component, ContractError, tdkey
from advrl.device import autocast, fused_optimizers_supported
from advrl.learner.fused_adam import FusedAdam, clip_grad_norm
from advrl.recipe import OptimizerConfig, UpdateConfig, component_config

OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}


class NonFiniteLossError(FloatingPointError):
    """A loss became NaN or infinite; the message names it and the step."""


@dataclass
class ParamGroup:
    slot: str
    params: list[torch.nn.Parameter]
    optimizer: torch.optim.Optimizer
    loss_keys: list[str] | None  # None: every loss of the update
    clip_grad_norm: float | None
    lr_scheduler: torch.optim.lr_scheduler.LRScheduler | None


def make_optimizer(params: list[torch.nn.Parameter], cfg: OptimizerConfig, device: torch.device) -> torch.optim.Optimizer:
    if cfg.name not in OPTIMIZERS:
        raise ValueError(f"Unknown optimizer {cfg.name!r}; choose one of {', '.join(OPTIMIZERS)}.")
    kwargs = dict(lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, weight_decay=cfg.weight_decay)
    if fused_optimizers_supported(device):  # one kernel for all parameters (see fused_adam.py)
        return FusedAdam(params, decoupled_weight_decay=cfg.name == "adamw", **kwargs)
    return OPTIMIZERS[cfg.name](params, foreach=True, **kwargs)


def make_lr_scheduler(optimizer, schedule_cfg: dict | None, spec):
    if schedule_cfg is None:
        return None
    from omegaconf import OmegaConf

    cls, config = component_config("lr_schedule", OmegaConf.create({"kind": "schedule", **schedule_cfg}))
    schedule = cls(config, spec)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: schedule.value(step))


def _routes(term: Component) -> dict[str, tuple[str | tuple[str, ...], bool]]:
    """Where each key ``term.compute`` returns goes: (batch key or scalar name, per-sample?)."""
    routes = {key: (tdkey(term.renamed(key)), True) for key in term.declared("writes")}
    routes.update({key: (term.renamed(key), False) for ns in ("losses", "logs") for key in term.declared(ns)})
    return routes


class _RenamedReads:
    """The batch as a term that reads renamed keys sees it: its own key names, the recipe's data."""

    __slots__ = ("_td", "_names")

    def __init__(self, td: TensorDict, names: dict):
        self._td, self._names = td, names

    def __getitem__(self, key):
        return self._td[self._names.get(key, key)]


def _read_view(term: Component):
    """None when the term reads its keys under their own names (the batch is passed as is)."""
    names = {tdkey(k): tdkey(term.renamed(k)) for k in term.declared("reads") if term.renamed(k) != k}
    return None if not names else (lambda td: _RenamedReads(td, names))


def check_outputs(where: str, term: Component, out: dict, batch_size: torch.Size) -> None:
    """What ``compute`` returned must be exactly what the component declares, with the
    declared shapes: a loss returned but not declared would silently go untrained."""
    label = f"{where} ({term.kind} {term.name!r})"
    namespaces = {key: ns for ns in ("writes", "losses", "logs") for key in term.declared(ns)}
    for key in out:
        if key not in namespaces:
            where_to = "`losses` (optimised)" if key.startswith("loss_") else "`writes` (per-sample batch key) or `logs` (scalar)"
            raise ContractError(f"{label} returned {key!r}, which it does not declare; declare it in {where_to}.")
    missing = [key for key in namespaces if key not in out]
    if missing:
        raise ContractError(f"{label} declares {', '.join(map(repr, missing))} but did not return it.")
    for key, value in out.items():
        per_sample = namespaces[key] == "writes"
        if not isinstance(value, torch.Tensor):
            raise ContractError(f"{label} returned {key!r} as {type(value).__name__}, not a tensor.")
        if per_sample and (value.dim() == 0 or value.shape[: len(batch_size)] != batch_size):
            raise ContractError(
                f"{label} declares {key!r} in `writes` (per-sample, leading shape {list(batch_size)}) but returned "
                f"shape {list(value.shape)}; declare a scalar in `logs`."
            )
        if not per_sample and value.dim() != 0:
            raise ContractError(
                f"{label} declares {key!r} in `{namespaces[key]}` (a scalar) but returned shape {list(value.shape)}; "
                "reduce it (e.g. .mean()) or declare a per-sample key in `writes`."
            )


def _to_float32(out: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Losses, logs and written batch keys of a term computed under autocast, back in float32:
    losses are summed and differentiated, and later terms read the batch, in full precision."""
    return {key: value.float() if value.dtype in (torch.bfloat16, torch.float16) else value for key, value in out.items()}


class UpdateStage:
    def __init__(self, name: str, cfg: UpdateConfig, components: dict[str, Component], device: torch.device,
                 dtypes: dict[str, torch.dtype | None] | None = None, replicas=None):
        """``dtypes``: slot -> the dtype its compute runs in under autocast (None or absent: float32).
        ``replicas``: a ``ReplicaStack`` whose stacked components these are (vectorised seeds),
        or None for a single run."""
        self.name = name
        self.device = torch.device(device if device is not None else "cpu")
        # plain Python values: DictConfig attribute access is too slow for the per-step path
        self.every, self.start, self.stop, self.tau = int(cfg.every), int(cfg.start), cfg.stop, float(cfg.tau)
        self.terms = [(slot_name, components[slot_name]) for slot_name in cfg.terms]
        self._dtypes = [(dtypes or {}).get(slot_name) for slot_name in cfg.terms]
        self.targets = [components[slot_name] for slot_name in cfg.update_targets]
        self.groups: list[ParamGroup] = []
        for slot_name, opt_cfg in cfg.optimize.items():
            params = [p for p in components[slot_name].parameters() if p.requires_grad]
            if not params:
                raise ValueError(f"updates.{name}.optimize.{slot_name}: component {slot_name!r} has no trainable parameters.")
            optimizer = make_optimizer(params, opt_cfg, device)
            scheduler = make_lr_scheduler(optimizer, opt_cfg.lr_schedule, components[slot_name].spec)
            losses = list(opt_cfg.losses) if opt_cfg.losses is not None else None
            clip = float(opt_cfg.clip_grad_norm) if opt_cfg.clip_grad_norm is not None else None
            self.groups.append(ParamGroup(slot_name, params, optimizer, losses, clip, scheduler))
        self.loss_keys = [k for _, term in self.terms for k in term.loss_keys()]
        self._routes = [_routes(term) for _, term in self.terms]
        self._views = [_read_view(term) for _, term in self.terms]
        self._written = [target for routes in self._routes for target, per_sample in routes.values() if per_sample]
        self._outputs_checked = False
        self.replicas = replicas
        # per loss (and replica): the first step it was not finite, -1 while it has been
        shape = (len(self.loss_keys),) if replicas is None else (len(self.loss_keys), replicas.size)
        self._first_bad_step = torch.full(shape, -1, dtype=torch.long, device=device)
        self._compute_replicas = None if replicas is None else replicas.map(self._compute_replica)

    def active(self, step: int) -> bool:
        return step % self.every == 0 and step > self.start and (self.stop is None or step <= self.stop)

    def run(self, td: TensorDict, step: int, step_tensor: torch.Tensor) -> dict[str, torch.Tensor]:
        """One update on batch ``td``: each term's declared batch keys are written into ``td``
        for later terms; its losses and logged scalars are returned (vectorised seeds: batch
        ``[K, B]``, scalars ``[K]``, replica k's from its own parameters, batch and noise)."""
        if self.replicas is None:
            scalars = self._compute(td, step)
        else:
            scalars, written = self._compute_replicas(td, step)
            for key, value in written.items():  # later updates may read them
                td.set(key, value)
        self._outputs_checked = True
        self._apply(scalars, step_tensor)
        return scalars

    def _compute_replica(self, td: TensorDict, step: int):
        """One replica's terms (called under vmap): its scalars and the batch keys it wrote."""
        scalars = self._compute(td, step)
        return scalars, {key: td.get(key) for key in self._written}

    def _compute(self, td: TensorDict, step: int) -> dict[str, torch.Tensor]:
        scalars: dict[str, torch.Tensor] = {}
        for (slot_name, term), routes, view, dtype in zip(self.terms, self._routes, self._views, self._dtypes):
            if dtype is None:  # float32: exactly the code path of runs before train.precision existed
                out = term.compute(td if view is None else view(td), step)
            else:
                with autocast(self.device, dtype):
                    out = term.compute(td if view is None else view(td), step)
                out = _to_float32(out)
            if not self._outputs_checked:  # the contract is checked once, on the first step
                check_outputs(f"updates.{self.name}: components.{slot_name}", term, out, td.batch_size)
            for key, value in out.items():
                target, per_sample = routes[key]
                if per_sample:
                    td.set(target, value)
                else:
                    scalars[target] = value
        return scalars

    def _apply(self, scalars: dict[str, torch.Tensor], step_tensor: torch.Tensor) -> None:
        """Gradients of the losses, optimiser steps, target updates, the finiteness record."""
        per_replica = self.replicas is not None
        losses = [scalars[k] for k in self.loss_keys]
        # every group's gradient is taken before any parameter moves: all losses of an update
        # see the parameters from before it (CORL's CQL steps alpha, actor, critic this way)
        last = len(self.groups) - 1
        all_grads = []
        for i, group in enumerate(self.groups):
            keys = group.loss_keys if group.loss_keys is not None else self.loss_keys
            total = sum(scalars[k] for k in keys)
            if per_replica:  # replicas share no parameter: the sum's gradient is each replica's own
                total = total.sum()
            grads = list(torch.autograd.grad(total, group.params, retain_graph=i < last, allow_unused=True))
            if group.clip_grad_norm is not None:
                clip_grad_norm(grads, group.clip_grad_norm, per_replica)
            for param, grad in zip(group.params, grads):
                param.grad = grad  # kept for inspection; the optimiser takes grads directly
            all_grads.append(grads)
        for group, grads in zip(self.groups, all_grads):
            if isinstance(group.optimizer, FusedAdam):
                group.optimizer.step_with_grads(grads)
            else:
                group.optimizer.step()
            if group.lr_scheduler is not None:
                group.lr_scheduler.step()
        for component in self.targets:
            component.update_targets(self.tau)
        # remember, without a host sync, the first step at which each loss was not finite
        bad = ~torch.isfinite(torch.stack([loss.detach() for loss in losses]))
        self._first_bad_step = torch.where(bad & (self._first_bad_step < 0), step_tensor, self._first_bad_step)

    def check_finite(self) -> None:
        """Raise if any loss of this update was ever non-finite (one host sync)."""
        first_bad = self._first_bad_step.tolist()
        if self.replicas is None:
            bad = [(step, key, "") for step, key in zip(first_bad, self.loss_keys) if step >= 0]
        else:
            bad = [(step, key, f" in the replica with seed {seed}") for steps, key in zip(first_bad, self.loss_keys)
                   for step, seed in zip(steps, self.replicas.seeds) if step >= 0]
        if bad:
            step, key, where = min(bad)
            raise NonFiniteLossError(
                f"Loss {key!r} of update {self.name!r} became non-finite (NaN or inf){where} at step {step}. "
                "The run stopped without checkpointing anything computed from then on (earlier checkpoints, if any, "
                "are intact). Lower the learning rate or enable clip_grad_norm."
            )

    def state_dict(self) -> dict:
        return {
            group.slot: {
                "optimizer": group.optimizer.state_dict(),
                "lr_scheduler": group.lr_scheduler.state_dict() if group.lr_scheduler else None,
            }
            for group in self.groups
        }

    def load_state_dict(self, state: dict) -> None:
        for group in self.groups:
            group.optimizer.load_state_dict(state[group.slot]["optimizer"])
            if group.lr_scheduler is not None:
                group.lr_scheduler.load_state_dict(state[group.slot]["lr_scheduler"])
