"""Plain single-file PyTorch CQL update, CORL style, as the throughput reference for
recipes/cql.yaml.

Written for ``throughput.py`` from CQL(H) with importance sampling (Kumar et al. 2020) in the
shape of CORL's algorithms/offline/cql.py: a tanh-Gaussian actor with trainable log-std
multiplier and offset, two separate critic networks with ``copy.deepcopy`` targets, automatic
entropy tuning, the three losses computed from the parameters before the step and then one
``backward`` and ``step`` per optimiser, a Python soft-update loop. Same networks and
hyperparameters as advrl's recipe (3x256, alpha 10, 10 sampled actions per source, actor and
temperature lr 3e-5, critic lr 3e-4, no entropy term in the backup). The action samples are
drawn in the order advrl draws them (policy at s, policy at s' for the backup, then uniform,
policy at s, policy at s' for the penalty), so the two can be compared step by step
(tests/components/test_cql_reference.py).
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn


def soft_update(target: nn.Module, source: nn.Module, tau: float) -> None:
    for target_param, source_param in zip(target.parameters(), source.parameters()):
        target_param.data.copy_((1 - tau) * target_param.data + tau * source_param.data)


def mlp(in_dim: int, hidden: tuple[int, ...], out_dim: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(in_dim, width), nn.ReLU()]
        in_dim = width
    return nn.Sequential(*layers, nn.Linear(in_dim, out_dim))


class TanhGaussianPolicy(nn.Module):
    def __init__(self, state_dim: int, action_dim: int, hidden=(256, 256, 256)):
        super().__init__()
        self.net = mlp(state_dim, hidden, 2 * action_dim)
        nn.init.xavier_uniform_(self.net[-1].weight, gain=1e-2)
        nn.init.constant_(self.net[-1].bias, 0.0)
        self.log_std_multiplier = nn.Parameter(torch.tensor(1.0))
        self.log_std_offset = nn.Parameter(torch.tensor(-1.0))

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A reparameterised sample tanh(u), u ~ N(mean, std), and its log-density."""
        mean, raw = self.net(obs).chunk(2, dim=-1)
        log_std = (self.log_std_multiplier * raw + self.log_std_offset).clamp(-20.0, 2.0)
        std = log_std.exp()
        u = mean + std * torch.randn_like(mean)
        log_prob = -0.5 * ((u - mean) / std) ** 2 - log_std - 0.5 * math.log(2 * math.pi)
        log_prob = log_prob - 2.0 * (math.log(2.0) - u - F.softplus(-2.0 * u))  # tanh's Jacobian
        return torch.tanh(u), log_prob.sum(-1)


class Critic(nn.Module):
    def __init__(self, state_dim: int, action_dim: int, hidden=(256, 256, 256)):
        super().__init__()
        self.net = mlp(state_dim + action_dim, hidden, 1)
        for layer in self.net[:-1]:
            if isinstance(layer, nn.Linear):
                nn.init.orthogonal_(layer.weight, gain=math.sqrt(2))
                nn.init.constant_(layer.bias, 0.0)
        nn.init.orthogonal_(self.net[-1].weight, gain=1e-2)
        nn.init.constant_(self.net[-1].bias, 0.0)

    def forward(self, state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """Q for [B, obs] with [B, A], or [B, n, A] (the state repeated for each of n actions)."""
        if action.dim() == 3:
            state = state.unsqueeze(1).expand(-1, action.shape[1], -1)
        return self.net(torch.cat([state, action], dim=-1)).squeeze(-1)


class CQL:
    def __init__(self, state_dim, action_dim, hidden=(256, 256, 256), discount=0.99, tau=5e-3, alpha=10.0,
                 n_actions=10, temperature=1.0, actor_lr=3e-5, critic_lr=3e-4, alpha_lr=3e-5, device="cpu"):
        self.actor = TanhGaussianPolicy(state_dim, action_dim, hidden).to(device)
        self.actor_optimizer = torch.optim.Adam(self.actor.parameters(), lr=actor_lr)
        self.critic_1, self.critic_2 = Critic(state_dim, action_dim, hidden).to(device), Critic(state_dim, action_dim, hidden).to(device)
        self.target_critic_1, self.target_critic_2 = copy.deepcopy(self.critic_1), copy.deepcopy(self.critic_2)
        self.critic_1_optimizer = torch.optim.Adam(self.critic_1.parameters(), lr=critic_lr)
        self.critic_2_optimizer = torch.optim.Adam(self.critic_2.parameters(), lr=critic_lr)
        self.log_alpha = nn.Parameter(torch.zeros((), device=device))
        self.alpha_optimizer = torch.optim.Adam([self.log_alpha], lr=alpha_lr)
        self.target_entropy = -float(action_dim)
        self.action_dim, self.discount, self.tau = action_dim, discount, tau
        self.cql_alpha, self.n_actions, self.temperature = alpha, n_actions, temperature

    def _cql_penalty(self, critic, observations, q_data, random_actions, current, next_) -> torch.Tensor:
        (current_actions, current_log_pi), (next_actions, next_log_pi) = current, next_
        random_density = math.log(0.5**self.action_dim)
        candidates = torch.cat([
            critic(observations, random_actions) - random_density,
            critic(observations, next_actions) - next_log_pi,
            critic(observations, current_actions) - current_log_pi,
        ], dim=1)
        ood = torch.logsumexp(candidates / self.temperature, dim=1) * self.temperature
        return self.cql_alpha * (ood - q_data).mean()

    def train(self, batch) -> dict[str, torch.Tensor]:
        observations, actions, rewards, next_observations, dones = batch
        rewards, dones = rewards.squeeze(-1), dones.squeeze(-1)

        new_actions, log_pi = self.actor(observations)
        alpha = self.log_alpha.exp().detach()
        alpha_loss = -(self.log_alpha * (log_pi.detach() + self.target_entropy)).mean()
        q_new = torch.min(self.critic_1(observations, new_actions), self.critic_2(observations, new_actions))
        policy_loss = (alpha * log_pi - q_new).mean()

        with torch.no_grad():
            next_actions, _ = self.actor(next_observations)
            target_q = torch.min(self.target_critic_1(next_observations, next_actions),
                                 self.target_critic_2(next_observations, next_actions))
            td_target = rewards + (1.0 - dones) * self.discount * target_q
        q1, q2 = self.critic_1(observations, actions), self.critic_2(observations, actions)
        td_loss = F.mse_loss(q1, td_target) + F.mse_loss(q2, td_target)

        batch_size = observations.shape[0]
        with torch.no_grad():  # the proposals only shape the penalty's logsumexp
            random_actions = torch.rand(batch_size, self.n_actions, self.action_dim, device=observations.device) * 2 - 1
            repeated = observations.unsqueeze(1).expand(-1, self.n_actions, -1)
            current = self.actor(repeated)
            next_ = self.actor(next_observations.unsqueeze(1).expand(-1, self.n_actions, -1))
        cql_loss = (self._cql_penalty(self.critic_1, observations, q1, random_actions, current, next_)
                    + self._cql_penalty(self.critic_2, observations, q2, random_actions, current, next_))
        critic_loss = td_loss + cql_loss

        self.alpha_optimizer.zero_grad()
        alpha_loss.backward()
        self.alpha_optimizer.step()
        self.actor_optimizer.zero_grad()
        policy_loss.backward(inputs=list(self.actor.parameters()))  # the actor's gradient only
        self.actor_optimizer.step()
        self.critic_1_optimizer.zero_grad()
        self.critic_2_optimizer.zero_grad()
        critic_loss.backward()
        self.critic_1_optimizer.step()
        self.critic_2_optimizer.step()
        soft_update(self.target_critic_1, self.critic_1, self.tau)
        soft_update(self.target_critic_2, self.critic_2, self.tau)
        return {"loss_temperature": alpha_loss, "loss_actor": policy_loss, "loss_critic": td_loss, "loss_cql": cql_loss}
