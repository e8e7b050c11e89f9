"""Tanh-squashed Gaussian policy of SAC/CQL, as in CORL's cql.py (TanhGaussianPolicy)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from advrl import noise
from advrl.component import Component, option
from advrl.nn import ACTIVATIONS, mlp
from advrl.registry import register


@register("actor", "tanh_gaussian")
class TanhGaussianActor(Component):
    """a = max_action * tanh(u), u ~ N(mu(s), sigma(s)); acting uses tanh(mu).

    log sigma = multiplier * raw + offset with trainable scalars (CORL's ``Scalar``), clamped.
    The last layer is xavier-initialised with gain ``last_layer_gain`` (CORL: 1e-2).
    """

    @dataclass
    class Config:
        hidden_sizes: list[int] = option([256, 256, 256], "widths of the hidden layers", ge=1)
        activation: str = option("relu", "hidden activation", choices=ACTIVATIONS)
        log_std_multiplier: float = option(1.0, "initial trainable multiplier of the raw log std")
        log_std_offset: float = option(-1.0, "initial trainable offset of the log std")
        log_std_min: float = option(-20.0, "lower clamp of log std")
        log_std_max: float = option(2.0, "upper clamp of log std")
        last_layer_gain: float = option(1e-2, "xavier gain of the output layer", ge=0)

    reads = ("observation",)
    writes = ("policy_action", "policy_log_prob")

    def __init__(self, config: Config, spec):
        super().__init__(config, spec)
        self.net = mlp(spec.obs_dim, config.hidden_sizes, 2 * spec.action_dim, config.activation)
        nn.init.xavier_uniform_(self.net[-1].weight, gain=config.last_layer_gain)
        nn.init.constant_(self.net[-1].bias, 0.0)
        self.log_std_multiplier = nn.Parameter(torch.tensor(config.log_std_multiplier))
        self.log_std_offset = nn.Parameter(torch.tensor(config.log_std_offset))

    def _mean_log_std(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, raw = self.net(obs).chunk(2, dim=-1)
        log_std = (self.log_std_multiplier * raw + self.log_std_offset).clamp(self.config.log_std_min, self.config.log_std_max)
        return mean, log_std

    @staticmethod
    def _log_prob_pre_tanh(u: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
        gauss = -0.5 * ((u - mean) / log_std.exp()) ** 2 - log_std - 0.5 * math.log(2 * math.pi)
        # log|d tanh(u)/du| = 2 (log 2 - u - softplus(-2u)), the numerically stable form
        jacobian = 2.0 * (math.log(2.0) - u - F.softplus(-2.0 * u))
        return (gauss - jacobian).sum(-1)

    def sample(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_std = self._mean_log_std(obs)
        u = mean + log_std.exp() * noise.randn_like(mean)
        log_prob = self._log_prob_pre_tanh(u, mean, log_std) - math.log(self.spec.max_action) * u.shape[-1]
        return self.spec.max_action * torch.tanh(u), log_prob

    def log_prob(self, obs: torch.Tensor, action: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
        mean, log_std = self._mean_log_std(obs)
        squashed = (action / self.spec.max_action).clamp(-1 + eps, 1 - eps)
        u = torch.atanh(squashed)
        return self._log_prob_pre_tanh(u, mean, log_std) - math.log(self.spec.max_action) * u.shape[-1]

    def per_dim_log_prob(self, obs: torch.Tensor, action: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
        """log-density of each action dimension [..., A] (the policy factorises over dims)."""
        mean, log_std = self._mean_log_std(obs)
        u = torch.atanh((action / self.spec.max_action).clamp(-1 + eps, 1 - eps))
        gauss = -0.5 * ((u - mean) / log_std.exp()) ** 2 - log_std - 0.5 * math.log(2 * math.pi)
        jacobian = 2.0 * (math.log(2.0) - u - F.softplus(-2.0 * u))
        return gauss - jacobian - math.log(self.spec.max_action)

    def threshold_log_prob(self, obs: torch.Tensor, n) -> torch.Tensor:
        """SSAR's C_n per dimension: min(log p(a+), log p(a-)), a+- = tanh(mu +- n sigma) clamped
        to +-0.99999 and kept within +-0.1 n of tanh(mu) (SSAR action_selection.py)."""
        mean, log_std = self._mean_log_std(obs)
        center = torch.tanh(mean)
        spread = n * log_std.exp()
        bound = 0.1 * n
        upper = torch.minimum(torch.tanh(mean + spread).clamp(-0.99999, 0.99999), center + bound)
        lower = torch.maximum(torch.tanh(mean - spread).clamp(-0.99999, 0.99999), center - bound)
        scale = self.spec.max_action
        return torch.minimum(self.per_dim_log_prob(obs, upper * scale), self.per_dim_log_prob(obs, lower * scale))

    def act(self, obs: torch.Tensor) -> torch.Tensor:
        mean, _ = self._mean_log_std(obs)
        return self.spec.max_action * torch.tanh(mean)

    def act_with_noise(self, obs: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """A sample drawn with the caller's standard-normal ``noise`` (shape of the action), so
        that a seeded outside generator makes the roll-out reproducible (dataset collection)."""
        mean, log_std = self._mean_log_std(obs)
        return self.spec.max_action * torch.tanh(mean + log_std.exp() * noise)

    def compute(self, td, step):
        action, log_prob = self.sample(td["observation"])
        return {"policy_action": action, "policy_log_prob": log_prob}
