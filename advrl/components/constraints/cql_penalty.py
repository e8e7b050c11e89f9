"""Conservative Q-learning penalty (Kumar et al. 2020, CQL(H)), following CORL's cql.py."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from advrl import noise
from advrl.component import Component, option, slot
from advrl.registry import register


@register("constraint", "cql_penalty")
class CQLPenalty(Component):
    """For each critic i: diff_i(s) = T log sum_j exp(Q_i(s, a_j) / T) - Q_i(s, a), with a_j drawn
    ``n_actions`` times each from Uniform(action box), pi(.|s) and pi(.|s') (evaluated at s);
    with importance sampling each sample is corrected by its log-density.
    loss = alpha * sum_i mean_B( c(s) * clip(diff_i, diff_min, diff_max) ).

    ``coefficient_key`` names a per-sample coefficient (SSAR's beta(s)) and ``mask_key`` a 0/1
    selection (SSAR's loosen_bound: no penalty on untrusted states); null means 1.
    """

    @dataclass
    class Config:
        actor: str = slot("actor", "actor", "stochastic actor proposing actions", needs=("sample",))
        critic: str = slot("critic", "critic", "the Q ensemble being penalised")
        alpha: float = option(10.0, "weight of the penalty (CORL MuJoCo: 10)", ge=0)
        n_actions: int = option(10, "sampled actions per source and state", ge=1)
        temperature: float = option(1.0, "temperature T of the logsumexp", gt=0)
        importance_sample: bool = option(True, "subtract the log-density of each proposal (CQL(H) IS form)")
        diff_min: float = option(float("-inf"), "lower clip of the per-sample penalty")
        diff_max: float = option(float("inf"), "upper clip of the per-sample penalty")
        coefficient_key: str | None = option(None, "batch key of a per-sample coefficient; null: 1")
        mask_key: str | None = option(None, "batch key of a per-sample 0/1 mask; null: every sample")

    reads = ("observation", "action", "next.observation", "{coefficient_key}", "{mask_key}")
    writes = ("cql_diff",)
    losses = ("loss_cql",)

    def compute(self, td, step):
        cfg, actor, critic = self.config, self.ref("actor"), self.ref("critic")
        obs, next_obs = td["observation"], td["next", "observation"]
        batch, n, act_dim = obs.shape[0], cfg.n_actions, self.spec.action_dim
        obs_rep = obs.unsqueeze(1).expand(batch, n, obs.shape[-1])
        next_rep = next_obs.unsqueeze(1).expand(batch, n, obs.shape[-1])

        max_action = self.spec.max_action
        random_actions = (noise.rand(batch, n, act_dim, device=obs.device) * 2 - 1) * max_action
        current_actions, current_log_prob = actor.sample(obs_rep)
        next_actions, next_log_prob = actor.sample(next_rep)
        current_actions, next_actions = current_actions.detach(), next_actions.detach()

        q_random = critic.q_all(obs_rep, random_actions)  # [E, B, n]
        q_current = critic.q_all(obs_rep, current_actions)
        q_next = critic.q_all(obs_rep, next_actions)
        if cfg.importance_sample:
            random_density = math.log((0.5 / max_action) ** act_dim)
            candidates = torch.cat(
                [q_random - random_density, q_next - next_log_prob.detach(), q_current - current_log_prob.detach()], dim=-1
            )
        else:
            candidates = torch.cat([q_random, q_next, q_current], dim=-1)
        ood = torch.logsumexp(candidates / cfg.temperature, dim=-1) * cfg.temperature  # [E, B]
        diff = (ood - critic.q_all(obs, td["action"])).clamp(cfg.diff_min, cfg.diff_max)
        if cfg.coefficient_key is not None:
            diff = diff * td[cfg.coefficient_key]
        if cfg.mask_key is not None:
            diff = diff * td[cfg.mask_key]
        return {"loss_cql": cfg.alpha * diff.mean(dim=1).sum(), "cql_diff": diff.mean(dim=0).detach()}
