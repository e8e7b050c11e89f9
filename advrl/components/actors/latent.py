"""A2PO's advantage-aware actor: a policy in a behaviour model's latent space (Qing et al. 2024)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from advrl.component import Component, option, slot
from advrl.nn import ACTIVATIONS, TargetCopy, mlp
from advrl.registry import register


@register("actor", "latent")
class LatentActor(Component):
    """z = max_latent * tanh(MLP(s, xi)); action = decoder(s, xi, z) of the behaviour model.

    As a term it writes ``policy_action`` with the optimal condition xi = ``act_condition``
    (1.0), the action the Q term maximises; acting and the critic's target policy use the
    same condition. ``conditioned_action(s, xi)`` serves the advantage-aware BC term. The
    decoder is evaluated but not trained through this actor (its slot is not optimised here).
    """

    @dataclass
    class Config:
        behavior: str = slot("behavior", "behavior", "conditional behaviour model decoding the latent", needs=("decode", "condition"))
        hidden_sizes: list[int] = option([256, 256], "widths of the hidden layers (A2PO: 2 x 256)", ge=1)
        activation: str = option("relu", "hidden activation", choices=ACTIVATIONS)
        condition_dim: int = option(1, "size of the condition xi", ge=1)
        act_condition: float = option(1.0, "xi used when acting and for the Q term (A2PO: 1)")
        max_latent: float = option(1.0, "bound of the latent (A2PO: max_action * tanh, i.e. 1)", gt=0)
        target: bool = option(True, "keep a Polyak-averaged target copy")

    reads = ("observation",)
    writes = ("policy_action",)

    def __init__(self, config: Config, spec):
        super().__init__(config, spec)
        self.latent_dim = 2 * spec.action_dim
        self.net = mlp(spec.obs_dim + config.condition_dim, config.hidden_sizes, self.latent_dim, config.activation)
        self.target_net = TargetCopy(self.net) if config.target else None

    def _condition(self, obs: torch.Tensor, xi) -> torch.Tensor:
        if xi is None:
            xi = self.config.act_condition
        if not torch.is_tensor(xi) or xi.dim() == 0:
            return obs.new_full((*obs.shape[:-1], self.config.condition_dim), float(xi))
        return xi.unsqueeze(-1) if xi.dim() == obs.dim() - 1 else xi

    def latent(self, obs: torch.Tensor, xi=None, target: bool = False) -> torch.Tensor:
        net = self.target_net if target else self.net
        return self.config.max_latent * torch.tanh(net(torch.cat([obs, self._condition(obs, xi)], -1)))

    def conditioned_action(self, obs: torch.Tensor, xi=None, target: bool = False) -> torch.Tensor:
        c = self._condition(obs, xi)
        return self.ref("behavior").decode(obs, c, self.latent(obs, c, target))

    def act(self, obs: torch.Tensor) -> torch.Tensor:
        return self.conditioned_action(obs)

    def target_act(self, obs: torch.Tensor) -> torch.Tensor:
        return self.conditioned_action(obs, target=self.target_net is not None)

    def compute(self, td, step):
        return {"policy_action": self.conditioned_action(td["observation"])}

    def update_targets(self, tau: float) -> None:
        if self.target_net is None:
            super().update_targets(tau)
        self.target_net.soft_update(self.net, tau)
