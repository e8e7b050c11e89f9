"""Gaussian policy with a tanh-bounded mean and state-independent std (IQL, as in CORL's iql.py)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.distributions import Normal

from advrl import noise
from advrl.component import Component, option
from advrl.nn import ACTIVATIONS, mlp
from advrl.registry import register


@register("actor", "gaussian")
class GaussianActor(Component):
    """N(max_action * tanh(MLP(s)), exp(log_std)); acting uses the mean.

    The log-density of dataset actions is what IQL's advantage-weighted regression needs;
    the distribution is not squashed, so samples may leave the action box (clipped when acting).
    """

    @dataclass
    class Config:
        hidden_sizes: list[int] = option([256, 256], "widths of the hidden layers", ge=1)
        activation: str = option("relu", "hidden activation", choices=ACTIVATIONS)
        log_std_min: float = option(-20.0, "lower clamp of log std")
        log_std_max: float = option(2.0, "upper clamp of log std")

    reads = ("observation",)
    writes = ("policy_action", "policy_log_prob")

    def __init__(self, config: Config, spec):
        super().__init__(config, spec)
        self.net = mlp(spec.obs_dim, config.hidden_sizes, spec.action_dim, config.activation)
        self.log_std = nn.Parameter(torch.zeros(spec.action_dim))

    def distribution(self, obs: torch.Tensor) -> Normal:
        mean = self.spec.max_action * torch.tanh(self.net(obs))
        std = self.log_std.clamp(self.config.log_std_min, self.config.log_std_max).exp()
        # no argument validation: it checks the values on the host (a device sync every step)
        return Normal(mean, std, validate_args=False)

    def act(self, obs: torch.Tensor) -> torch.Tensor:
        return self.distribution(obs).mean.clamp(-self.spec.max_action, self.spec.max_action)

    def log_prob(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return self.distribution(obs).log_prob(action).sum(-1)

    def act_with_noise(self, obs: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """A sample drawn with the caller's standard-normal ``noise`` (see TanhGaussianActor)."""
        dist = self.distribution(obs)
        return (dist.mean + dist.stddev * noise).clamp(-self.spec.max_action, self.spec.max_action)

    def sample(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        dist = self.distribution(obs)
        action = dist.loc + noise.randn_like(dist.loc) * dist.scale  # Normal.rsample, drawn through advrl.noise
        return action, dist.log_prob(action).sum(-1)

    def compute(self, td, step):
        action, log_prob = self.sample(td["observation"])
        return {"policy_action": action, "policy_log_prob": log_prob}
