"""Plain single-file PyTorch TD3+BC and IQL updates, CORL style, as the throughput reference.

Written for ``throughput.py`` from the papers' update rules (TD3+BC: Fujimoto & Gu 2021;
IQL: Kostrikov et al. 2022) in the shape of CORL's algorithms/offline/{td3_bc,iql}.py:
two separate critic networks, ``copy.deepcopy`` targets, a Python soft-update loop,
default ``torch.optim.Adam``, ``loss.backward()`` per optimiser, numpy-free batches
already on the device. Same networks and hyperparameters as advrl's recipes.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn


def soft_update(target: nn.Module, source: nn.Module, tau: float) -> None:
    for target_param, source_param in zip(target.parameters(), source.parameters()):
        target_param.data.copy_((1 - tau) * target_param.data + tau * source_param.data)


class Actor(nn.Module):
    def __init__(self, state_dim: int, action_dim: int, max_action: float = 1.0):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(state_dim, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, action_dim), nn.Tanh()
        )
        self.max_action = max_action

    def forward(self, state: torch.Tensor) -> torch.Tensor:
        return self.max_action * self.net(state)


class Critic(nn.Module):
    def __init__(self, state_dim: int, action_dim: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(state_dim + action_dim, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 1)
        )

    def forward(self, state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([state, action], 1))


class TD3BC:
    def __init__(self, state_dim, action_dim, max_action=1.0, discount=0.99, tau=0.005, policy_noise=0.2,
                 noise_clip=0.5, policy_freq=2, alpha=2.5):
        self.actor = Actor(state_dim, action_dim, max_action)
        self.actor_target = copy.deepcopy(self.actor)
        self.actor_optimizer = torch.optim.Adam(self.actor.parameters(), lr=3e-4)
        self.critic_1 = Critic(state_dim, action_dim)
        self.critic_1_target = copy.deepcopy(self.critic_1)
        self.critic_1_optimizer = torch.optim.Adam(self.critic_1.parameters(), lr=3e-4)
        self.critic_2 = Critic(state_dim, action_dim)
        self.critic_2_target = copy.deepcopy(self.critic_2)
        self.critic_2_optimizer = torch.optim.Adam(self.critic_2.parameters(), lr=3e-4)
        self.max_action, self.discount, self.tau = max_action, discount, tau
        self.policy_noise, self.noise_clip, self.policy_freq, self.alpha = policy_noise, noise_clip, policy_freq, alpha
        self.total_it = 0

    def train(self, batch) -> dict[str, float]:
        log_dict = {}
        self.total_it += 1
        state, action, reward, next_state, done = batch
        not_done = 1 - done
        with torch.no_grad():
            noise = (torch.randn_like(action) * self.policy_noise).clamp(-self.noise_clip, self.noise_clip)
            next_action = (self.actor_target(next_state) + noise).clamp(-self.max_action, self.max_action)
            target_q1 = self.critic_1_target(next_state, next_action)
            target_q2 = self.critic_2_target(next_state, next_action)
            target_q = torch.min(target_q1, target_q2)
            target_q = reward + not_done * self.discount * target_q
        current_q1 = self.critic_1(state, action)
        current_q2 = self.critic_2(state, action)
        critic_loss = F.mse_loss(current_q1, target_q) + F.mse_loss(current_q2, target_q)
        log_dict["critic_loss"] = critic_loss
        self.critic_1_optimizer.zero_grad()
        self.critic_2_optimizer.zero_grad()
        critic_loss.backward()
        self.critic_1_optimizer.step()
        self.critic_2_optimizer.step()
        if self.total_it % self.policy_freq == 0:
            pi = self.actor(state)
            q = self.critic_1(state, pi)
            lmbda = self.alpha / q.abs().mean().detach()
            actor_loss = -lmbda * q.mean() + F.mse_loss(pi, action)
            log_dict["actor_loss"] = actor_loss
            self.actor_optimizer.zero_grad()
            actor_loss.backward()
            self.actor_optimizer.step()
            soft_update(self.critic_1_target, self.critic_1, self.tau)
            soft_update(self.critic_2_target, self.critic_2, self.tau)
            soft_update(self.actor_target, self.actor, self.tau)
        return log_dict


class ValueFunction(nn.Module):
    def __init__(self, state_dim: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(state_dim, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 1))

    def forward(self, state: torch.Tensor) -> torch.Tensor:
        return self.net(state).squeeze(-1)


class TwinQ(nn.Module):
    def __init__(self, state_dim: int, action_dim: int):
        super().__init__()
        self.q1, self.q2 = Critic(state_dim, action_dim), Critic(state_dim, action_dim)

    def both(self, state, action):
        return self.q1(state, action).squeeze(-1), self.q2(state, action).squeeze(-1)

    def forward(self, state, action):
        return torch.min(*self.both(state, action))


class GaussianPolicy(nn.Module):
    def __init__(self, state_dim: int, action_dim: int, max_action: float = 1.0):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(state_dim, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, action_dim), nn.Tanh()
        )
        self.log_std = nn.Parameter(torch.zeros(action_dim, dtype=torch.float32))
        self.max_action = max_action

    def forward(self, obs: torch.Tensor) -> torch.distributions.Normal:
        mean = self.net(obs) * self.max_action
        std = torch.exp(self.log_std.clamp(-20.0, 2.0))
        return torch.distributions.Normal(mean, std)


class IQL:
    def __init__(self, state_dim, action_dim, max_action=1.0, iql_tau=0.7, beta=3.0, discount=0.99, tau=0.005,
                 max_steps=1_000_000):
        self.qf = TwinQ(state_dim, action_dim)
        self.q_target = copy.deepcopy(self.qf).requires_grad_(False)
        self.vf = ValueFunction(state_dim)
        self.actor = GaussianPolicy(state_dim, action_dim, max_action)
        self.v_optimizer = torch.optim.Adam(self.vf.parameters(), lr=3e-4)
        self.q_optimizer = torch.optim.Adam(self.qf.parameters(), lr=3e-4)
        self.actor_optimizer = torch.optim.Adam(self.actor.parameters(), lr=3e-4)
        self.actor_lr_schedule = torch.optim.lr_scheduler.CosineAnnealingLR(self.actor_optimizer, max_steps)
        self.iql_tau, self.beta, self.discount, self.tau = iql_tau, beta, discount, tau

    def train(self, batch) -> dict[str, torch.Tensor]:
        observations, actions, rewards, next_observations, dones = batch
        rewards, dones = rewards.squeeze(-1), dones.squeeze(-1)
        with torch.no_grad():
            target_q = self.q_target(observations, actions)
            next_v = self.vf(next_observations)
        v = self.vf(observations)
        adv = target_q - v
        weight = torch.abs(self.iql_tau - (adv < 0).float())
        v_loss = torch.mean(weight * adv**2)
        self.v_optimizer.zero_grad()
        v_loss.backward()
        self.v_optimizer.step()
        targets = rewards + (1.0 - dones) * self.discount * next_v
        qs = self.qf.both(observations, actions)
        q_loss = sum(F.mse_loss(q, targets) for q in qs) / len(qs)
        self.q_optimizer.zero_grad()
        q_loss.backward()
        self.q_optimizer.step()
        soft_update(self.q_target, self.qf, self.tau)
        exp_adv = torch.exp(self.beta * adv.detach()).clamp(max=100.0)
        bc_losses = -self.actor(observations).log_prob(actions).sum(-1)
        policy_loss = torch.mean(exp_adv * bc_losses)
        self.actor_optimizer.zero_grad()
        policy_loss.backward()
        self.actor_optimizer.step()
        self.actor_lr_schedule.step()
        return {"value_loss": v_loss, "q_loss": q_loss, "actor_loss": policy_loss}
