"""One update of a recipe: compute its terms in order, route each loss to the parameters it
trains, step the optimisers, then Polyak-update the listed target networks.

The loop that calls updates knows no algorithm: TD3+BC, IQL, CQL and the rest differ only
in which updates their recipe declares.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from tensordict import TensorDict

from advrl.component import Component, tdkey
from advrl.device import fused_optimizers_supported
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


class UpdateStage:
    def __init__(self, name: str, cfg: UpdateConfig, components: dict[str, Component], device: torch.device):
        self.name = name
        # plain Python values: DictConfig attribute access is too slow for the per-step path
        self.every, self.start, self.stop, self.tau = int(cfg.every), int(cfg.start), cfg.stop, float(cfg.tau)
        self.terms = [(slot_name, components[slot_name]) for slot_name in cfg.terms]
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
        self.loss_keys = self._loss_keys()
        self._first_bad_step = torch.full((len(self.loss_keys),), -1, dtype=torch.long, device=device)

    def _loss_keys(self) -> list[str]:
        keys = [k for _, term in self.terms for k in term.write_keys() if k.startswith("loss_")]
        return list(dict.fromkeys(keys))

    def active(self, step: int) -> bool:
        return step % self.every == 0 and step > self.start and (self.stop is None or step <= self.stop)

    def run(self, td: TensorDict, step: int, step_tensor: torch.Tensor) -> dict[str, torch.Tensor]:
        """One update on batch ``td``; per-sample outputs are written into ``td`` for later
        terms, scalar outputs (losses, diagnostics) are returned."""
        scalars: dict[str, torch.Tensor] = {}
        for _, term in self.terms:
            for key, value in term.compute(td, step).items():
                if value.dim() == 0:
                    scalars[key] = value
                else:
                    td.set(tdkey(key), value)
        losses = [scalars[k] for k in self.loss_keys]
        # every group's gradient is taken before any parameter moves: all losses of an update
        # see the parameters from before it (CORL's CQL steps alpha, actor, critic this way)
        last = len(self.groups) - 1
        all_grads = []
        for i, group in enumerate(self.groups):
            keys = group.loss_keys if group.loss_keys is not None else self.loss_keys
            total = sum(scalars[k] for k in keys)
            grads = list(torch.autograd.grad(total, group.params, retain_graph=i < last, allow_unused=True))
            if group.clip_grad_norm is not None:
                clip_grad_norm(grads, group.clip_grad_norm)
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
        return scalars

    def check_finite(self) -> None:
        """Raise if any loss of this update was ever non-finite (one host sync)."""
        first_bad = self._first_bad_step.tolist()
        bad = [(step, key) for step, key in zip(first_bad, self.loss_keys) if step >= 0]
        if bad:
            step, key = min(bad)
            raise NonFiniteLossError(
                f"Loss {key!r} of update {self.name!r} became non-finite (NaN or inf) at step {step}. "
                "The run stopped; its last checkpoint is intact. Lower the learning rate, enable "
                "clip_grad_norm, or check the data for NaNs."
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
