"""Plain single-file PyTorch A2PO update, CORL style, as the throughput reference.

Written for ``throughput.py`` after the official update (github.com/Plankson/A2PO at d9cd771,
a2po.py, ``OffRL.policy_train``; Qing et al., NeurIPS 2024, arXiv 2403.07262), in the shape of CORL's single-file algorithms: separate modules, ``copy.deepcopy``
targets, a Python soft-update loop, default ``torch.optim.Adam`` (every lr 3e-4; the StepLR
schedulers of the official code are never stepped, so they are left out), ``loss.backward()`` per
optimiser, batches already on the device as ``(state, action, reward [B, 1], next_state, done [B, 1])``.

Networks (no LayerNorm, PyTorch default init):

* actor: (s || xi) -> 256 -> 256 -> d_z = 2A, max_action tanh; its output is a CVAE latent;
* critic: one module with Q_1, Q_2: (s, a) -> 3 x 256 -> 1 and the V head s -> 3 x 256 -> 1,
  one Adam over all three (the Polyak target copies V too; the target V is never read);
* CVAE: encoder (s || xi || a) -> 750 -> 750 -> (mu, log sigma), log sigma clamped to [-4, 15];
  decoder (s || xi || z) -> 750 -> 750 -> A, max_action tanh.

One step, in the official order, with a*(s) = dec(s || 1, z) and z = actor(s || 1):

1. critic, Q_1, Q_2 and V jointly: y = r + nd gamma min(Q'_1, Q'_2)(s', clip(a*' + eps, +-max_action)),
   a*' decoded by the *current* decoder from the *target* actor's latent, eps ~ N(0, 0.2^2) clipped
   to +-0.5; L = MSE(Q_1(s, a), y) + MSE(Q_2(s, a), y) + MSE(V(s), y);
2. while step <= K (``vae_step``): xi = tanh(Q_1(s, a) - V(s)) from the critic just updated
   (detached), then the CVAE on (s, xi, a): mean_{B x A}(a_hat - a)^2 + kl_weight KL, the KL
   mean-reduced over batch and latent dims;
3. every ``policy_freq``-th step, actor: -lambda mean Q_1(s, a*(s)) + bc_weight mean_{B x A}(a_xi - a)^2,
   lambda = alpha / mean |Q_1(s, a*(s))| (detached), a_xi = dec(s || xi, actor(s || xi)) with each
   sample's own xi (the same xi as in step 2: nothing the critic reads has moved since). Only the
   actor is stepped (the decoder is frozen w.r.t. this loss); then Polyak averaging of the critic
   (with V) and actor targets.

Hidden sizes and learning rates are arguments only so that tests can build a tiny, fast-moving
copy; the defaults are the published ones (alpha 1.0 as ``main.py`` passes it, K = 200,000).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def soft_update(target: nn.Module, source: nn.Module, tau: float) -> None:
    for target_param, source_param in zip(target.parameters(), source.parameters()):
        target_param.data.copy_((1 - tau) * target_param.data + tau * source_param.data)


def mlp(in_dim: int, hidden: Sequence[int], out_dim: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(in_dim, width), nn.ReLU()]
        in_dim = width
    layers.append(nn.Linear(in_dim, out_dim))
    return nn.Sequential(*layers)


class Actor(nn.Module):
    """z = max_action tanh(MLP(s || xi)), a latent of the CVAE decoder, d_z = 2A."""

    def __init__(self, state_dim: int, latent_dim: int, max_action: float = 1.0, hidden: Sequence[int] = (256, 256)):
        super().__init__()
        self.net = mlp(state_dim + 1, hidden, latent_dim)
        self.max_action = max_action

    def forward(self, state: torch.Tensor, xi: torch.Tensor) -> torch.Tensor:
        return self.max_action * torch.tanh(self.net(torch.cat([state, xi], 1)))


class Critic(nn.Module):
    """Q_1, Q_2 and the V head in one module (one optimiser), as the official code has it."""

    def __init__(self, state_dim: int, action_dim: int, hidden: Sequence[int] = (256, 256, 256),
                 value_hidden: Sequence[int] = (256, 256, 256)):
        super().__init__()
        self.q1_net = mlp(state_dim + action_dim, hidden, 1)
        self.q2_net = mlp(state_dim + action_dim, hidden, 1)
        self.v_net = mlp(state_dim, value_hidden, 1)

    def forward(self, state: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        sa = torch.cat([state, action], 1)
        return self.q1_net(sa), self.q2_net(sa)

    def q1(self, state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return self.q1_net(torch.cat([state, action], 1))

    def v(self, state: torch.Tensor) -> torch.Tensor:
        return self.v_net(state)


class CVAE(nn.Module):
    """q(z | s, xi, a) = N(mean, std), log std clamped to [-4, 15]; a_hat = max_action tanh(dec(s, xi, z))."""

    def __init__(self, state_dim: int, action_dim: int, latent_dim: int, max_action: float = 1.0,
                 hidden: Sequence[int] = (750, 750)):
        super().__init__()
        self.encoder = mlp(state_dim + 1 + action_dim, hidden[:-1], hidden[-1])
        self.mean = nn.Linear(hidden[-1], latent_dim)
        self.log_std = nn.Linear(hidden[-1], latent_dim)
        self.decoder = mlp(state_dim + 1 + latent_dim, hidden, action_dim)
        self.latent_dim, self.max_action = latent_dim, max_action

    def forward(self, state: torch.Tensor, xi: torch.Tensor, action: torch.Tensor):
        h = F.relu(self.encoder(torch.cat([state, xi, action], 1)))
        mean = self.mean(h)
        std = self.log_std(h).clamp(-4, 15).exp()
        z = mean + std * torch.randn_like(std)
        return self.decode(state, xi, z), mean, std

    def decode(self, state: torch.Tensor, xi: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        if z is None:  # prior sample, clipped (the official cvae_action); training never takes this path
            z = torch.randn(state.shape[0], self.latent_dim, device=state.device).clamp(-0.5, 0.5)
        return self.max_action * torch.tanh(self.decoder(torch.cat([state, xi, z], 1)))


class A2PO:
    def __init__(self, state_dim, action_dim, max_action=1.0, discount=0.99, tau=0.005, policy_noise=0.2,
                 noise_clip=0.5, policy_freq=2, alpha=1.0, bc_weight=1.0, kl_weight=1.0, vae_step=200_000,
                 device="cpu", actor_hidden=(256, 256), critic_hidden=(256, 256, 256),
                 value_hidden=(256, 256, 256), vae_hidden=(750, 750), actor_lr=3e-4, critic_lr=3e-4, vae_lr=3e-4):
        latent_dim = 2 * action_dim
        self.actor = Actor(state_dim, latent_dim, max_action, actor_hidden).to(device)
        self.actor_target = copy.deepcopy(self.actor)
        self.actor_optimizer = torch.optim.Adam(self.actor.parameters(), lr=actor_lr)
        self.critic = Critic(state_dim, action_dim, critic_hidden, value_hidden).to(device)
        self.critic_target = copy.deepcopy(self.critic)
        self.critic_optimizer = torch.optim.Adam(self.critic.parameters(), lr=critic_lr)
        self.vae = CVAE(state_dim, action_dim, latent_dim, max_action, vae_hidden).to(device)
        self.vae_optimizer = torch.optim.Adam(self.vae.parameters(), lr=vae_lr)
        self.max_action, self.discount, self.tau = max_action, discount, tau
        self.policy_noise, self.noise_clip, self.policy_freq = policy_noise, noise_clip, policy_freq
        self.alpha, self.bc_weight, self.kl_weight, self.vae_step = alpha, bc_weight, kl_weight, vae_step
        self.total_it = 0

    def select_action(self, state: torch.Tensor) -> torch.Tensor:
        """Acting: decode(s || 1, actor(s || 1))."""
        with torch.no_grad():
            one = state.new_ones(state.shape[0], 1)
            return self.vae.decode(state, one, self.actor(state, one))

    def train(self, batch) -> dict[str, torch.Tensor]:
        log_dict = {}
        self.total_it += 1
        state, action, reward, next_state, done = batch
        not_done = 1 - done
        one, next_one = state.new_ones(state.shape[0], 1), next_state.new_ones(next_state.shape[0], 1)

        # 1. critic: Q_1, Q_2 and V on the same target
        with torch.no_grad():
            next_action = self.vae.decode(next_state, next_one, self.actor_target(next_state, next_one))
            noise = (torch.randn_like(next_action) * self.policy_noise * self.max_action).clamp(
                -self.noise_clip * self.max_action, self.noise_clip * self.max_action
            )
            next_action = (next_action + noise).clamp(-self.max_action, self.max_action)
            target_q1, target_q2 = self.critic_target(next_state, next_action)
            target_q = reward + not_done * self.discount * torch.min(target_q1, target_q2)
        current_q1, current_q2 = self.critic(state, action)
        current_v = self.critic.v(state)
        q_loss = F.mse_loss(current_q1, target_q) + F.mse_loss(current_q2, target_q)
        v_loss = F.mse_loss(current_v, target_q)
        critic_loss = q_loss + v_loss
        log_dict["critic_loss"], log_dict["q_loss"], log_dict["value_loss"] = critic_loss, q_loss, v_loss
        self.critic_optimizer.zero_grad()
        critic_loss.backward()
        self.critic_optimizer.step()

        train_vae = self.total_it <= self.vae_step
        train_actor = self.total_it % self.policy_freq == 0
        if not (train_vae or train_actor):
            return log_dict

        # the advantage condition from the just-updated critic and V
        with torch.no_grad():
            xi = torch.tanh(self.critic.q1(state, action) - self.critic.v(state))
        log_dict["xi"] = xi

        # 2. CVAE, only during the first K steps
        if train_vae:
            recon, mean, std = self.vae(state, xi, action)
            recon_loss = ((recon - action) ** 2).mean()
            kl = -0.5 * (1 + torch.log(std.pow(2)) - mean.pow(2) - std.pow(2)).mean()
            vae_loss = recon_loss + self.kl_weight * kl
            log_dict["vae_loss"] = vae_loss
            self.vae_optimizer.zero_grad()
            vae_loss.backward()
            self.vae_optimizer.step()

        # 3. delayed actor update: Q term with xi = 1, advantage-aware BC with each sample's xi
        if train_actor:
            best_action = self.vae.decode(state, one, self.actor(state, one))
            q = self.critic.q1(state, best_action)
            lmbda = self.alpha / q.abs().mean().detach()
            xi_action = self.vae.decode(state, xi, self.actor(state, xi))
            bc_loss = ((xi_action - action) ** 2).mean()
            actor_loss = -lmbda * q.mean() + self.bc_weight * bc_loss
            log_dict["actor_loss"], log_dict["bc_loss"] = actor_loss, bc_loss
            self.actor_optimizer.zero_grad()
            actor_loss.backward()  # stray grads on the critic and CVAE are zeroed before their next step
            self.actor_optimizer.step()
            soft_update(self.critic_target, self.critic, self.tau)
            soft_update(self.actor_target, self.actor, self.tau)
        return log_dict
