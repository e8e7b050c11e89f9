"""Behaviour-cloning regulariser: mean squared distance between policy and dataset actions."""

from __future__ import annotations

from dataclasses import dataclass

from advrl.component import Component, option
from advrl.registry import register


@register("constraint", "bc_mse")
class BCMSE(Component):
    """loss = weight * mean_{B x A}( c(s) * m(s) * (pi(s) - a)^2 ).

    TD3+BC's regulariser (Fujimoto & Gu 2021, Eq. 3) with c = m = 1; alone it is plain BC.
    ``coefficient_key`` names a per-sample coefficient (e.g. SSAR's beta(s)) and
    ``mask_key`` a per-sample 0/1 selection written by a selector; both default to none.
    """

    @dataclass
    class Config:
        weight: float = option(1.0, "global weight of the term", ge=0)
        coefficient_key: str | None = option(None, "batch key of a per-sample coefficient; null: 1")
        mask_key: str | None = option(None, "batch key of a per-sample 0/1 mask; null: every sample")

    reads = ("action", "policy_action", "{coefficient_key}", "{mask_key}")
    losses = ("loss_bc",)

    def compute(self, td, step):
        squared = (td["policy_action"] - td["action"]) ** 2
        cfg = self.config
        if cfg.coefficient_key is not None:
            squared = squared * td[cfg.coefficient_key].unsqueeze(-1)
        if cfg.mask_key is not None:
            squared = squared * td[cfg.mask_key].unsqueeze(-1)
        return {"loss_bc": cfg.weight * squared.mean()}
