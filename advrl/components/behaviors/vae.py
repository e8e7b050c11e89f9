"""State-conditional VAE behaviour model (BCQ's VAE, Fujimoto et al. 2019), as A2PR trains it."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from advrl import noise
from advrl.component import Component, option
from advrl.nn import mlp
from advrl.registry import register


def gaussian_kl(mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, std) || N(0, 1)) averaged over batch and latent dims (A2PR: mean, not sum)."""
    return -0.5 * (1 + torch.log(std.pow(2)) - mean.pow(2) - std.pow(2)).mean()


@register("behavior", "vae")
class VAE(Component):
    """Encoder q(z|s,a) and decoder p(a|s,z) with a tanh-bounded output.

    loss = recon_weight * mean_{B x A}( w(s,a) * (a_hat - a)^2 ) + kl_weight * KL, with w read
    from ``weight_key`` (e.g. a selector's mask: A2PR trains only on actions with positive
    advantage) or 1. Defaults follow A2PR's code: 750-750 layers, latent 2A, log sigma
    clamped to [-4, 15], KL weight 0.5, KL mean-reduced.
    ``reconstruct(s, a)`` is the encoder -> reparameterised z -> decoder pass; ``decode(s)``
    samples z from the prior clipped to +-``prior_clip`` (BCQ).
    """

    @dataclass
    class Config:
        hidden_sizes: list[int] = option([750, 750], "widths of encoder and decoder hidden layers", ge=1)
        latent_dim: int | None = option(None, "latent size; null: 2 * action_dim", ge=1)
        log_std_min: float = option(-4.0, "lower clamp of the encoder log sigma")
        log_std_max: float = option(15.0, "upper clamp of the encoder log sigma")
        kl_weight: float = option(0.5, "weight of the KL term (A2PR: 0.5)", ge=0)
        recon_weight: float = option(1.0, "weight of the reconstruction term (A2PR's vae_weight)", ge=0)
        weight_key: str | None = option(None, "batch key of a per-sample weight on the reconstruction; null: 1")
        prior_clip: float = option(0.5, "clip of prior samples in decode() (BCQ: 0.5)", gt=0)

    reads = ("observation", "action", "{weight_key}")
    losses = ("loss_behavior",)
    logs = ("behavior_kl",)

    def __init__(self, config: Config, spec):
        super().__init__(config, spec)
        self.latent_dim = config.latent_dim or 2 * spec.action_dim
        self.encoder = mlp(spec.obs_dim + spec.action_dim, config.hidden_sizes, 2 * self.latent_dim)
        self.decoder = mlp(spec.obs_dim + self.latent_dim, config.hidden_sizes, spec.action_dim)

    def encode(self, obs: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_std = self.encoder(torch.cat([obs, action], -1)).chunk(2, dim=-1)
        return mean, log_std.clamp(self.config.log_std_min, self.config.log_std_max).exp()

    def decode(self, obs: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        if z is None:
            clip = self.config.prior_clip
            z = noise.randn(*obs.shape[:-1], self.latent_dim, device=obs.device).clamp(-clip, clip)
        return self.spec.max_action * torch.tanh(self.decoder(torch.cat([obs, z], -1)))

    def reconstruct(self, obs: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mean, std = self.encode(obs, action)
        z = mean + std * noise.randn_like(std)
        return self.decode(obs, z), mean, std

    def compute(self, td, step):
        cfg = self.config
        recon, mean, std = self.reconstruct(td["observation"], td["action"])
        squared = (recon - td["action"]) ** 2
        if cfg.weight_key is not None:
            squared = squared * td[cfg.weight_key].unsqueeze(-1)
        kl = gaussian_kl(mean, std)
        return {"loss_behavior": cfg.recon_weight * squared.mean() + cfg.kl_weight * kl, "behavior_kl": kl.detach()}


