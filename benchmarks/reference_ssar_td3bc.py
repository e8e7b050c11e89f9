"""Plain single-file PyTorch SSAR-on-TD3+BC update, CORL style, as the throughput reference
for recipes/ssar_td3bc.yaml.

Written for ``throughput.py`` after the official update (github.com/QinwenLuo/SSAR, read at
9ce5d7f: td3_bc.py ``TD3_BC.train``, net.py ``ParaNet``; Luo, Xie, Wang & Huang, "Learning to
Trust Bellman Updates: Selective State-Adaptive Regularization for Offline RL", ICML 2025,
arXiv 2505.19923), in the shape of CORL's single-file TD3+BC (benchmarks/reference.py): two
separate critic networks, ``copy.deepcopy`` targets, a Python soft-update loop, default
``torch.optim.Adam``, ``loss.backward()`` per optimiser. Batches are
``(state, action, reward [B, 1], next_state, done [B, 1], trust [B, 1])``; ``trust`` is the 0/1
selection of the sub-dataset (SSAR's 'iql' selection: Q >= V of an IQL pre-trained before the
run, which is not part of the timed step, so the benchmark passes a fixed column).

One step, as the official code and advrl's recipe do it:

1. critic: TD3 target with target-policy smoothing, y = r + nd gamma min(Q'_1, Q'_2)(s', a'),
   sum of the two MSEs; critics 2x256 with LayerNorm after each hidden linear layer (SSAR's
   TD3+BC base);
2. every ``policy_freq``-th step, actor (3e-4): -lambda mean Q_1(s, pi) + mean_{B x A}(beta(s)
   trust (pi - a)^2) with lambda = 1 / mean |Q_1| (alpha moved into beta) and beta detached;
3. then beta (its own Adam, lr 3e-8, grad-norm clip 0.5): mean(w(s) beta(s) trust) with
   w = (sigma n)^2 - mean_A min((pi - a)^2, 1), pi from before the actor step; beta(s) =
   1.5 init sigmoid(MLP 3x512 (s)) (xavier weights, zero biases, last bias ln 2: beta = init).
   Every ``update_period`` steps n grows by (n_end - n_start) / 10 up to n_end, until the mean
   of w over selected samples is > 0, then it stays;
4. Polyak averaging of the actor and critic targets.

The official code evaluates beta(s) twice in a step (for the actor loss and for beta's loss);
beta's parameters do not change in between, so one evaluation gives the same values, and
advrl's recipe (and this reference) evaluate it once.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from reference import Actor, soft_update
from torch import nn


class Critic(nn.Module):
    def __init__(self, state_dim: int, action_dim: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(state_dim + action_dim, 256), nn.LayerNorm(256), nn.ReLU(),
            nn.Linear(256, 256), nn.LayerNorm(256), nn.ReLU(),
            nn.Linear(256, 1),
        )

    def forward(self, state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([state, action], 1))


class Beta(nn.Module):
    """SSAR's ParaNet: beta(s) in (0, 1.5 init), equal to init everywhere at initialisation."""

    def __init__(self, state_dim: int, init: float = 0.4, hidden: int = 512):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(state_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
            nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1),
        )
        for layer in self.net:
            if isinstance(layer, nn.Linear):
                nn.init.xavier_uniform_(layer.weight)
                nn.init.zeros_(layer.bias)
        nn.init.constant_(self.net[-1].bias, math.log(2.0))
        self.max_value = 1.5 * init

    def forward(self, state: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.net(state)) * self.max_value


class SSARTD3BC:
    def __init__(self, state_dim, action_dim, max_action=1.0, discount=0.99, tau=0.005, policy_noise=0.2,
                 noise_clip=0.5, policy_freq=2, init_beta=0.4, beta_lr=3e-8, beta_clip=0.5, sigma=0.1,
                 n_start=1.0, n_end=3.0, update_period=50_000, device="cpu"):
        self.actor = Actor(state_dim, action_dim, max_action).to(device)
        self.actor_target = copy.deepcopy(self.actor)
        self.actor_optimizer = torch.optim.Adam(self.actor.parameters(), lr=3e-4)
        self.critic_1 = Critic(state_dim, action_dim).to(device)
        self.critic_1_target = copy.deepcopy(self.critic_1)
        self.critic_1_optimizer = torch.optim.Adam(self.critic_1.parameters(), lr=3e-4)
        self.critic_2 = Critic(state_dim, action_dim).to(device)
        self.critic_2_target = copy.deepcopy(self.critic_2)
        self.critic_2_optimizer = torch.optim.Adam(self.critic_2.parameters(), lr=3e-4)
        self.beta = Beta(state_dim, init_beta).to(device)
        self.beta_optimizer = torch.optim.Adam(self.beta.parameters(), lr=beta_lr)
        self.max_action, self.discount, self.tau = max_action, discount, tau
        self.policy_noise, self.noise_clip, self.policy_freq = policy_noise, noise_clip, policy_freq
        self.beta_clip, self.sigma, self.update_period = beta_clip, sigma, update_period
        self.n, self.n_end, self.n_increase = n_start, n_end, (n_end - n_start) / 10
        self.update_threshold = True
        self.total_it = 0

    def train(self, batch) -> dict[str, torch.Tensor]:
        log_dict = {}
        self.total_it += 1
        state, action, reward, next_state, done, trust = batch
        not_done = 1 - done

        # 1. critic
        with torch.no_grad():
            noise = (torch.randn_like(action) * self.policy_noise * self.max_action).clamp(
                -self.noise_clip * self.max_action, self.noise_clip * self.max_action
            )
            next_action = (self.actor_target(next_state) + noise).clamp(-self.max_action, self.max_action)
            target_q = torch.min(self.critic_1_target(next_state, next_action), self.critic_2_target(next_state, next_action))
            target_q = reward + not_done * self.discount * target_q
        critic_loss = F.mse_loss(self.critic_1(state, action), target_q) + F.mse_loss(self.critic_2(state, action), target_q)
        log_dict["critic_loss"] = critic_loss
        self.critic_1_optimizer.zero_grad()
        self.critic_2_optimizer.zero_grad()
        critic_loss.backward()
        self.critic_1_optimizer.step()
        self.critic_2_optimizer.step()

        if self.total_it % self.policy_freq == 0:
            # 2. actor: lambda without alpha, BC weighted by beta(s) on the selected samples
            pi = self.actor(state)
            q = self.critic_1(state, pi)
            lmbda = 1 / q.abs().mean().detach()
            beta = self.beta(state)
            action_mse = (pi - action) ** 2
            actor_loss = -lmbda * q.mean() + (beta.detach() * trust * action_mse).mean()
            log_dict["actor_loss"] = actor_loss
            self.actor_optimizer.zero_grad()
            actor_loss.backward()
            self.actor_optimizer.step()

            # 3. beta: falls where pi stays within sigma n of the data, rises where it does not
            beta_weight = (self.sigma * self.n) ** 2 - action_mse.detach().clamp(max=1.0).mean(-1, keepdim=True)
            beta_loss = (beta_weight * beta * trust).mean()
            log_dict["beta_loss"] = beta_loss
            if self.update_threshold and self.total_it % self.update_period == 0:  # a host sync, once a period
                if beta_weight[trust == 1].mean() > 0:
                    self.update_threshold = False
                else:
                    self.n = min(self.n_end, self.n + self.n_increase)
            self.beta_optimizer.zero_grad()
            beta_loss.backward()
            torch.nn.utils.clip_grad_norm_(self.beta.parameters(), self.beta_clip)
            self.beta_optimizer.step()

            # 4. targets
            soft_update(self.critic_1_target, self.critic_1, self.tau)
            soft_update(self.critic_2_target, self.critic_2, self.tau)
            soft_update(self.actor_target, self.actor, self.tau)
        return log_dict
