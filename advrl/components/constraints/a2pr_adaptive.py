"""A2PR's adaptive advantage-guided policy constraint (Liu et al., ICML 2024, arXiv 2405.19909)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from advrl.component import Component, option, slot
from advrl.registry import register

GATES = ("or", "and", "none")


@register("constraint", "a2pr_adaptive")
class A2PRAdaptive(Component):
    """BC towards whichever of the dataset action a and the behaviour model's reconstruction
    a~ = VAE(s, pi(s)) of the policy action has the larger advantage Q(s, .) - V(s):

        t = a~ if A(s, a~) >= A(s, a) else a
        g = weight * 1[A(s, a~) >= 0  or  A(s, a) > 0]
        loss = mean_{B x A}( g * (pi(s) - t)^2 )

    Reads A(s, a) from the batch key ``advantage`` and V(s) from ``state_value``; A(s, a~) is
    evaluated by the advantage estimator named by ``advantage`` (official: Q1(s, a~) - V(s) with
    the online critic, the estimator that also writes A(s, a): ltlhuuu/A2PR, A2PR.py,
    ``train``). Defaults reproduce the official code, each a documented switch:
    ties go to a~ (``ties_to_behavior``), the gate is an OR (``gate``), and t is not detached
    (``detach_target``: the BC gradient also flows through the VAE reconstruction into pi(s);
    only the actor's parameters are stepped). With ``behavior: null`` the target is always
    the dataset action and the gate is 1[A(s, a) > 0] (the no-behaviour-model ablation).
    """

    @dataclass
    class Config:
        advantage: str | None = slot(
            "advantage", "advantage", "advantage estimator evaluating A(s, a~); null only with behavior: null", needs=("estimate",)
        )
        behavior: str | None = slot("behavior", "behavior", "behaviour model reconstructing pi(s); null: none", needs=("reconstruct",))
        weight: float = option(0.5, "BC weight (A2PR's `mask`, per-dataset in the paper's settings)", ge=0)
        ties_to_behavior: bool = option(True, "A(s, a~) == A(s, a) picks a~ (official) instead of a")
        gate: str = option("or", "or (official): BC where either action beats V(s); and; none: always", choices=GATES)
        detach_target: bool = option(False, "stop the gradient through the target (official: false)")

    reads = ("observation", "action", "policy_action", "state_value", "advantage")
    writes = ("bc_gate", "target_is_behavior")
    losses = ("loss_bc",)

    def __init__(self, config: Config, spec):
        super().__init__(config, spec)
        if config.behavior is not None and config.advantage is None:
            raise ValueError("advantage must name an advantage slot to evaluate A(s, a~) while behavior is set.")

    def compute(self, td, step):
        cfg = self.config
        policy_action, action = td["policy_action"], td["action"]
        data_adv = td["advantage"]
        if cfg.behavior is None:
            target = action
            chosen = torch.zeros_like(data_adv)
            open_gate = data_adv > 0
        else:
            recon, _, _ = self.ref("behavior").reconstruct(td["observation"], policy_action)
            recon_adv = self.ref("advantage").estimate(td["observation"], recon, td["state_value"])
            pick = recon_adv >= data_adv if cfg.ties_to_behavior else recon_adv > data_adv
            target = torch.where(pick.unsqueeze(-1), recon, action)
            chosen = pick.to(data_adv.dtype)
            if cfg.gate == "or":
                open_gate = (recon_adv >= 0) | (data_adv > 0)
            else:
                open_gate = (recon_adv >= 0) & (data_adv > 0)
        gate = torch.ones_like(data_adv) if cfg.gate == "none" else open_gate.to(data_adv.dtype)
        if cfg.detach_target:
            target = target.detach()
        squared = (policy_action - target) ** 2
        loss = cfg.weight * (gate.unsqueeze(-1) * squared).mean()
        return {"loss_bc": loss, "bc_gate": gate, "target_is_behavior": chosen}
