"""Plain single-file PyTorch A2PR update, CORL style, as the throughput reference.

Written for ``throughput.py`` after the official update (github.com/ltlhuuu/A2PR at f92a2a4,
A2PR.py, ``A2PR.train``, networks in core/network/; Liu et al., ICML 2024, arXiv 2405.19909), in the
shape of CORL's single-file algorithms: separate modules (actor 3x256; one twin-critic
module, each Q with 4 hidden layers of 256; V 4x256 without target; VAE 750-750 with latent
2A), ``copy.deepcopy`` targets, a Python soft-update loop, default ``torch.optim.Adam``
(VAE lr 1e-3, the rest 3e-4), ``loss.backward()`` per optimiser, batches already on the
device as ``(state, action, reward [B, 1], next_state, done [B, 1])``.

One step, in the official order:

1. critic: TD3 target with target-policy smoothing, y_Q = r + nd gamma min(Q'_1, Q'_2)(s', a');
2. V: regress V(s) onto min(r + nd gamma min(Q_1, Q_2)(s', a') with the *just updated*
   online critic, y_Q); V(s) (pre-update values) is reused below;
3. VAE: mean_{B x A}(vae_weight 1[Q_1(s, a) > V(s)] (a_hat - a)^2) + 0.5 KL (mean-reduced);
4. every ``policy_freq``-th step, actor: -lambda mean Q_1(s, pi) + mean(g (pi - t)^2) with
   a~ = VAE(s, pi) (full reconstruction of the policy action), t = a~ if
   A(a~) >= A(a) else a (ties to a~, t *not* detached), g = mask 1[A(a~) >= 0 or A(a) > 0];
   then Polyak averaging of the actor and critic targets.

Hidden sizes and learning rates are arguments only so that tests can build a tiny, fast-moving
copy; the defaults are the published ones.
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
    def __init__(self, state_dim: int, action_dim: int, max_action: float = 1.0, hidden: Sequence[int] = (256, 256, 256)):
        super().__init__()
        self.net = mlp(state_dim, hidden, action_dim)
        self.max_action = max_action

    def forward(self, state: torch.Tensor) -> torch.Tensor:
        return self.max_action * torch.tanh(self.net(state))


class TwinCritic(nn.Module):
    """Both Q networks in one module (one optimiser), as the official code has it."""

    def __init__(self, state_dim: int, action_dim: int, hidden: Sequence[int] = (256, 256, 256, 256)):
        super().__init__()
        self.q1_net = mlp(state_dim + action_dim, hidden, 1)
        self.q2_net = mlp(state_dim + action_dim, hidden, 1)

    def forward(self, state: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        sa = torch.cat([state, action], 1)
        return self.q1_net(sa), self.q2_net(sa)

    def q1(self, state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return self.q1_net(torch.cat([state, action], 1))


class Value(nn.Module):
    def __init__(self, state_dim: int, hidden: Sequence[int] = (256, 256, 256, 256)):
        super().__init__()
        self.net = mlp(state_dim, hidden, 1)

    def forward(self, state: torch.Tensor) -> torch.Tensor:
        return self.net(state)


class VAE(nn.Module):
    """q(z | s, a) = N(mean, std) with log std clamped to [-4, 15]; a_hat = max_action tanh(dec(s, z))."""

    def __init__(self, state_dim: int, action_dim: int, latent_dim: int, max_action: float = 1.0,
                 hidden: Sequence[int] = (750, 750)):
        super().__init__()
        self.encoder = mlp(state_dim + action_dim, hidden[:-1], hidden[-1])
        self.mean = nn.Linear(hidden[-1], latent_dim)
        self.log_std = nn.Linear(hidden[-1], latent_dim)
        self.decoder = mlp(state_dim + latent_dim, hidden, action_dim)
        self.latent_dim, self.max_action = latent_dim, max_action

    def forward(self, state: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        h = F.relu(self.encoder(torch.cat([state, action], 1)))
        mean = self.mean(h)
        std = self.log_std(h).clamp(-4, 15).exp()
        z = mean + std * torch.randn_like(std)
        return self.decode(state, z), mean, std

    def decode(self, state: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        if z is None:  # prior sample, clipped (BCQ); A2PR never takes this path
            z = torch.randn(state.shape[0], self.latent_dim, device=state.device).clamp(-0.5, 0.5)
        return self.max_action * torch.tanh(self.decoder(torch.cat([state, z], 1)))


class A2PR:
    def __init__(self, state_dim, action_dim, max_action=1.0, discount=0.99, tau=0.005, policy_noise=0.2,
                 noise_clip=0.5, policy_freq=2, alpha=2.5, mask=0.5, vae_weight=1.0, device="cpu",
                 actor_hidden=(256, 256, 256), critic_hidden=(256, 256, 256, 256), value_hidden=(256, 256, 256, 256),
                 vae_hidden=(750, 750), lr=3e-4, vae_lr=None):
        self.actor = Actor(state_dim, action_dim, max_action, actor_hidden).to(device)
        self.actor_target = copy.deepcopy(self.actor)
        self.actor_optimizer = torch.optim.Adam(self.actor.parameters(), lr=lr)
        self.critic = TwinCritic(state_dim, action_dim, critic_hidden).to(device)
        self.critic_target = copy.deepcopy(self.critic)
        self.critic_optimizer = torch.optim.Adam(self.critic.parameters(), lr=lr)
        self.value = Value(state_dim, value_hidden).to(device)
        self.value_optimizer = torch.optim.Adam(self.value.parameters(), lr=lr)
        self.vae = VAE(state_dim, action_dim, 2 * action_dim, max_action, vae_hidden).to(device)
        # the official code passes no lr: Adam's default, 1e-3
        self.vae_optimizer = torch.optim.Adam(self.vae.parameters()) if vae_lr is None else torch.optim.Adam(self.vae.parameters(), lr=vae_lr)
        self.max_action, self.discount, self.tau = max_action, discount, tau
        self.policy_noise, self.noise_clip, self.policy_freq = policy_noise, noise_clip, policy_freq
        self.alpha, self.mask, self.vae_weight = alpha, mask, vae_weight
        self.total_it = 0

    def train(self, batch) -> dict[str, torch.Tensor]:
        log_dict = {}
        self.total_it += 1
        state, action, reward, next_state, done = batch
        not_done = 1 - done

        # 1. critic
        with torch.no_grad():
            noise = (torch.randn_like(action) * self.policy_noise * self.max_action).clamp(
                -self.noise_clip * self.max_action, self.noise_clip * self.max_action
            )
            next_action = (self.actor_target(next_state) + noise).clamp(-self.max_action, self.max_action)
            target_q1, target_q2 = self.critic_target(next_state, next_action)
            target_q = reward + not_done * self.discount * torch.min(target_q1, target_q2)
        current_q1, current_q2 = self.critic(state, action)
        critic_loss = F.mse_loss(current_q1, target_q) + F.mse_loss(current_q2, target_q)
        log_dict["critic_loss"] = critic_loss
        self.critic_optimizer.zero_grad()
        critic_loss.backward()
        self.critic_optimizer.step()

        # 2. value: the smaller of the online-critic (just updated) and target-critic TD targets
        with torch.no_grad():
            online_q1, online_q2 = self.critic(next_state, next_action)
            online_target = reward + not_done * self.discount * torch.min(online_q1, online_q2)
            value_target = torch.min(online_target, target_q)
        v = self.value(state)
        value_loss = F.mse_loss(v, value_target)
        log_dict["value_loss"] = value_loss
        self.value_optimizer.zero_grad()
        value_loss.backward()
        self.value_optimizer.step()
        v = v.detach()  # V(s) with the pre-update values, reused below

        # 3. VAE on positive-advantage dataset actions (EPBL)
        with torch.no_grad():
            data_q1 = self.critic.q1(state, action)
        recon, mean, std = self.vae(state, action)
        weight = self.vae_weight * (data_q1 > v).float()
        recon_loss = (weight * (recon - action) ** 2).mean()
        kl = -0.5 * (1 + torch.log(std.pow(2)) - mean.pow(2) - std.pow(2)).mean()
        vae_loss = recon_loss + 0.5 * kl
        log_dict["vae_loss"] = vae_loss
        self.vae_optimizer.zero_grad()
        vae_loss.backward()
        self.vae_optimizer.step()

        # 4. delayed actor update with the adaptive advantage-guided BC target
        if self.total_it % self.policy_freq == 0:
            pi = self.actor(state)
            q = self.critic.q1(state, pi)
            lmbda = self.alpha / q.abs().mean().detach()
            vae_pi, _, _ = self.vae(state, pi)  # reconstruction of the policy's own action
            with torch.no_grad():
                adv_vae = self.critic.q1(state, vae_pi) - v
            adv_data = data_q1 - v  # the critic has not moved since step 3
            target = torch.where(adv_vae >= adv_data, vae_pi, action)  # not detached
            gate = self.mask * ((adv_vae >= 0) | (adv_data > 0)).float()
            actor_loss = -lmbda * q.mean() + (gate * (pi - target) ** 2).mean()
            log_dict["actor_loss"] = actor_loss
            self.actor_optimizer.zero_grad()
            actor_loss.backward()  # also leaves stray grads on the critic and VAE, zeroed before their next step
            self.actor_optimizer.step()
            soft_update(self.critic_target, self.critic, self.tau)
            soft_update(self.actor_target, self.actor, self.tau)
        return log_dict
