"""TD3 critic loss (Fujimoto et al. 2018): clipped double-Q target with target-policy smoothing."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from advrl.component import Component, option, slot
from advrl.registry import register


@register("objective", "td3_critic")
class TD3CriticLoss(Component):
    """y = r + gamma (1 - terminated) min_i Q'_i(s', clip(pi'(s') + clip(eps, +-c), +-max_action)),
    eps ~ N(0, sigma^2); loss = sum_i MSE(Q_i(s, a), y).

    Writes the target ``td_target`` and the smoothed target action ``next_action`` so that
    later terms of the same step (e.g. A2PR's value net) can reuse them.
    """

    @dataclass
    class Config:
        actor: str = slot("actor", "actor", "actor whose target network proposes next actions", needs=("target_act",))
        critic: str = slot("critic", "critic", "the Q ensemble to train")
        gamma: float = option(0.99, "discount factor", ge=0, le=1)
        policy_noise: float = option(0.2, "std of target-policy smoothing noise, in units of max_action", ge=0)
        noise_clip: float = option(0.5, "clip of the smoothing noise, in units of max_action", ge=0)

    reads = ("observation", "action", "reward", "next.observation", "terminated")
    writes = ("loss_critic", "td_target", "next_action")

    def compute(self, td, step):
        cfg, max_action = self.config, self.spec.max_action
        critic = self.ref("critic")
        next_obs = td["next", "observation"]
        with torch.no_grad():
            next_action = self.ref("actor").target_act(next_obs)
            noise = (torch.randn_like(next_action) * (cfg.policy_noise * max_action)).clamp(
                -cfg.noise_clip * max_action, cfg.noise_clip * max_action
            )
            next_action = (next_action + noise).clamp(-max_action, max_action)
            next_q = critic.target_q_all(next_obs, next_action).min(dim=0).values
            target = td["reward"] + cfg.gamma * (1.0 - td["terminated"]) * next_q
        q = critic.q_all(td["observation"], td["action"])
        loss = ((q - target) ** 2).mean(dim=1).sum()
        return {"loss_critic": loss, "td_target": target, "next_action": next_action}
