"""TD3 critic loss (Fujimoto et al. 2018): clipped double-Q target with target-policy smoothing."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from advrl import noise
from advrl.component import Component, option, slot
from advrl.registry import register


@register("objective", "td3_critic")
class TD3CriticLoss(Component):
    """y = r + gamma (1 - terminated) min_i Q'_i(s', clip(pi'(s') + clip(eps, +-c), +-max_action)),
    eps ~ N(0, sigma^2); loss = sum_i MSE(Q_i(s, a), y).

    Writes the target ``td_target`` and the smoothed target action ``next_action`` so that
    later terms of the same step (e.g. A2PR's value net) can reuse them.

    ``clip_target`` clamps y to [target_min, target_max] before anything regresses on it, as
    A2PO's ``--clip`` flag does (Plankson/A2PO a2po.py ``TD3BC_critic_loss``: ``target_Q.clamp(
    self.min_v, self.max_v)``, with V's target the same clamped y). Unset bounds come from the
    training rewards, as main.py sets them: min r / (1 - gamma) and max r / (1 - gamma) over
    the dataset (after the recipe's reward transform: x100 for A2PO); main.py uses [-100, 100]
    instead on the medium/large-diverse AntMaze datasets. Off by default, as there.
    """

    @dataclass
    class Config:
        actor: str = slot("actor", "actor", "actor whose target network proposes next actions", needs=("target_act",))
        critic: str = slot("critic", "critic", "the Q ensemble to train")
        gamma: float = option(0.99, "discount factor", ge=0, le=1)
        policy_noise: float = option(0.2, "std of target-policy smoothing noise, in units of max_action", ge=0)
        noise_clip: float = option(0.5, "clip of the smoothing noise, in units of max_action", ge=0)
        clip_target: bool = option(False, "clamp y to [target_min, target_max] (A2PO's --clip; off as there)")
        target_min: float | None = option(None, "lower clamp of y; null: min dataset reward / (1 - gamma)")
        target_max: float | None = option(None, "upper clamp of y; null: max dataset reward / (1 - gamma)")

    reads = ("observation", "action", "reward", "next.observation", "terminated")
    writes = ("td_target", "next_action")
    losses = ("loss_critic",)

    def __init__(self, config: Config, spec):
        super().__init__(config, spec)
        # (low, high) once known: from the config, else from the data in prepare()
        self.bounds = (config.target_min, config.target_max)

    def prepare(self, data, context: dict) -> dict | None:
        """Fill the unset clamp bounds from the offline rewards (A2PO main.py's min_v, max_v)."""
        cfg = self.config
        if not cfg.clip_target or None not in self.bounds:
            return None
        transitions = getattr(data, "transitions", None)
        if transitions is None:
            raise TypeError("objective td3_critic: clip_target without target_min/target_max needs offline data "
                            "to take the reward range from; set both bounds.")
        rewards = transitions["reward"]
        low, high = (float(x) / (1.0 - cfg.gamma) for x in (rewards.min(), rewards.max()))
        self.bounds = (low if cfg.target_min is None else cfg.target_min,
                       high if cfg.target_max is None else cfg.target_max)
        return {"target_min": self.bounds[0], "target_max": self.bounds[1]}

    def _clip(self, target: torch.Tensor) -> torch.Tensor:
        if not self.config.clip_target:
            return target
        if None in self.bounds:
            raise RuntimeError("objective td3_critic: clip_target is on but its bounds are unknown "
                               "(set target_min/target_max, or let the trainer call prepare()).")
        return target.clamp(*self.bounds)

    def compute(self, td, step):
        cfg, max_action = self.config, self.spec.max_action
        critic = self.ref("critic")
        next_obs = td["next", "observation"]
        with torch.no_grad():
            next_action = self.ref("actor").target_act(next_obs)
            policy_noise = (noise.randn_like(next_action) * (cfg.policy_noise * max_action)).clamp(
                -cfg.noise_clip * max_action, cfg.noise_clip * max_action
            )
            next_action = (next_action + policy_noise).clamp(-max_action, max_action)
            next_q = critic.target_q_all(next_obs, next_action).min(dim=0).values
            target = self._clip(td["reward"] + cfg.gamma * (1.0 - td["terminated"]) * next_q)
        q = critic.q_all(td["observation"], td["action"])
        loss = ((q - target) ** 2).mean(dim=1).sum()
        return {"loss_critic": loss, "td_target": target, "next_action": next_action}
