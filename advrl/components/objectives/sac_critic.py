"""Soft actor-critic critic loss (Haarnoja et al. 2018) as used by CQL (Kumar et al. 2020; CORL cql.py)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from advrl.component import Component, option, slot
from advrl.registry import register


@register("objective", "sac_critic")
class SACCriticLoss(Component):
    """y = r + gamma (1 - terminated) [min_i Q'_i(s', a') - alpha log pi(a'|s')], a' ~ pi(s');
    loss = sum_i MSE(Q_i(s, a), y).

    The entropy bonus in the backup is used only when ``temperature`` names a coefficient
    slot (SAC); CQL on MuJoCo leaves it out (CORL ``backup_entropy=False``).
    """

    @dataclass
    class Config:
        actor: str = slot("actor", "actor", "stochastic actor sampling next actions", needs=("sample",))
        critic: str = slot("critic", "critic", "the Q ensemble to train")
        temperature: str | None = slot("coefficient", None, "entropy temperature for the soft backup; null: none", needs=("value",))
        gamma: float = option(0.99, "discount factor", ge=0, le=1)

    reads = ("observation", "action", "reward", "next.observation", "terminated")
    writes = ("td_target",)
    losses = ("loss_critic",)

    def compute(self, td, step):
        critic = self.ref("critic")
        with torch.no_grad():
            next_action, next_log_prob = self.ref("actor").sample(td["next", "observation"])
            next_q = critic.target_q_all(td["next", "observation"], next_action).min(dim=0).values
            if self.config.temperature is not None:
                next_q = next_q - self.ref("temperature").value() * next_log_prob
            target = td["reward"] + self.config.gamma * (1.0 - td["terminated"]) * next_q
        q = critic.q_all(td["observation"], td["action"])
        loss = ((q - target) ** 2).mean(dim=1).sum()
        return {"loss_critic": loss, "td_target": target}
