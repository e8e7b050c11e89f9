"""Conditional VAE behaviour model: the VAE conditioned on an extra vector (A2PO's advantage xi)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from advrl import noise
from advrl.component import Component, option
from advrl.components.behaviors.vae import gaussian_kl
from advrl.nn import mlp
from advrl.registry import register


@register("behavior", "cvae")
class CVAE(Component):
    """Encoder q(z | s, c, a) and decoder p(a | s, c, z), c the condition read from ``condition_key``.

    loss = recon_weight * mean_{B x A}( w * (a_hat - a)^2 ) + kl_weight * KL (KL mean-reduced),
    as in A2PO's code (Qing et al. 2024: 750-750, latent 2A, log sigma in [-4, 15], KL weight 1).
    ``decode(s, c, z)`` accepts a latent from another module (A2PO's actor outputs one).
    Called without a condition (``reconstruct(s, a)``, e.g. by A2PR's constraint),
    ``default_condition`` is used: 1.0 is A2PO's "optimal" advantage.
    """

    @dataclass
    class Config:
        hidden_sizes: list[int] = option([750, 750], "widths of encoder and decoder hidden layers", ge=1)
        latent_dim: int | None = option(None, "latent size; null: 2 * action_dim", ge=1)
        condition_key: str = option("xi", "batch key of the condition (shape [B] or [B, condition_dim])")
        condition_dim: int = option(1, "size of the condition vector", ge=1)
        default_condition: float = option(1.0, "condition used when a caller gives none")
        log_std_min: float = option(-4.0, "lower clamp of the encoder log sigma")
        log_std_max: float = option(15.0, "upper clamp of the encoder log sigma")
        kl_weight: float = option(1.0, "weight of the KL term (A2PO: 1.0)", ge=0)
        recon_weight: float = option(1.0, "weight of the reconstruction term", ge=0)
        weight_key: str | None = option(None, "batch key of a per-sample weight on the reconstruction; null: 1")
        prior_clip: float = option(0.5, "clip of prior samples in decode() without z", gt=0)

    reads = ("observation", "action", "{condition_key}", "{weight_key}")
    losses = ("loss_behavior",)
    logs = ("behavior_kl",)

    def __init__(self, config: Config, spec):
        super().__init__(config, spec)
        self.latent_dim = config.latent_dim or 2 * spec.action_dim
        cond = config.condition_dim
        self.encoder = mlp(spec.obs_dim + cond + spec.action_dim, config.hidden_sizes, 2 * self.latent_dim)
        self.decoder = mlp(spec.obs_dim + cond + self.latent_dim, config.hidden_sizes, spec.action_dim)

    def condition(self, obs: torch.Tensor, value: torch.Tensor | float | None) -> torch.Tensor:
        """The condition as [..., condition_dim]: a scalar/None broadcasts, [B] gains a dim."""
        if value is None:
            value = self.config.default_condition
        if not torch.is_tensor(value) or value.dim() == 0:
            return obs.new_full((*obs.shape[:-1], self.config.condition_dim), float(value))
        return value.unsqueeze(-1) if value.dim() == obs.dim() - 1 else value

    def encode(self, obs, action, condition=None) -> tuple[torch.Tensor, torch.Tensor]:
        c = self.condition(obs, condition)
        mean, log_std = self.encoder(torch.cat([obs, c, action], -1)).chunk(2, dim=-1)
        return mean, log_std.clamp(self.config.log_std_min, self.config.log_std_max).exp()

    def decode(self, obs, condition=None, z: torch.Tensor | None = None) -> torch.Tensor:
        c = self.condition(obs, condition)
        if z is None:
            clip = self.config.prior_clip
            z = noise.randn(*obs.shape[:-1], self.latent_dim, device=obs.device).clamp(-clip, clip)
        return self.spec.max_action * torch.tanh(self.decoder(torch.cat([obs, c, z], -1)))

    def reconstruct(self, obs, action, condition=None):
        mean, std = self.encode(obs, action, condition)
        z = mean + std * noise.randn_like(std)
        return self.decode(obs, condition, z), mean, std

    def compute(self, td, step):
        cfg = self.config
        condition = td[cfg.condition_key].detach()
        recon, mean, std = self.reconstruct(td["observation"], td["action"], condition)
        squared = (recon - td["action"]) ** 2
        if cfg.weight_key is not None:
            squared = squared * td[cfg.weight_key].unsqueeze(-1)
        kl = gaussian_kl(mean, std)
        return {"loss_behavior": cfg.recon_weight * squared.mean() + cfg.kl_weight * kl, "behavior_kl": kl.detach()}
