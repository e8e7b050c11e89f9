"""The network shared by state-value components: V(s) = MLP(s), one output per state."""

from __future__ import annotations

import torch

from advrl.component import Component
from advrl.nn import mlp


class StateValueNet(Component):
    """Base of ``value`` components: builds ``self.net`` from ``config.hidden_sizes`` and
    ``config.activation``; subclasses add their loss in ``compute``."""

    def __init__(self, config, spec):
        super().__init__(config, spec)
        self.net = mlp(spec.obs_dim, config.hidden_sizes, 1, config.activation)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs).squeeze(-1)
