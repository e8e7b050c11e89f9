"""advrl's TD3+BC terms against torchrl's TD3BCLoss, on the same weights and batch.

torchrl is a well-kept reference implementation of the same paper: with target-policy noise
switched off both must give the same critic loss, actor Q term, lambda and BC term.
"""

from __future__ import annotations

import os

import pytest
import torch
from tensordict import TensorDict
from torch import nn

import advrl
from advrl.component import DataSpec

os.environ.setdefault("RL_WARNINGS", "False")  # the loss is used without a target updater on purpose
torchrl = pytest.importorskip("torchrl")

OBS, ACT, HIDDEN, BATCH = 3, 2, 8, 16


class QNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(OBS + ACT, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, 1))

    def forward(self, observation, action):
        return self.net(torch.cat([observation, action], -1))


def advrl_components():
    spec = DataSpec(OBS, ACT, 1.0)
    components = {
        "actor": advrl.make("actor", "deterministic", spec=spec, hidden_sizes=[HIDDEN]),
        "critic": advrl.make("critic", "q_ensemble", spec=spec, hidden_sizes=[HIDDEN]),
        "critic_loss": advrl.make("objective", "td3_critic", spec=spec, policy_noise=0.0),
        "actor_loss": advrl.make("objective", "td3_actor", spec=spec, alpha=2.5),
        "constraint": advrl.make("constraint", "bc_mse", spec=spec),
    }
    for component in components.values():
        component.bind(components)
    with torch.no_grad():  # make targets differ from the online networks
        for p in components["critic"].target_net.parameters():
            p.add_(0.05 * torch.randn_like(p))
        for p in components["actor"].target_net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return components


def torchrl_loss(components):
    from torchrl.data import Bounded
    from torchrl.modules import Actor, ValueOperator
    from torchrl.objectives import TD3BCLoss

    actor = Actor(nn.Sequential(nn.Linear(OBS, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, ACT), nn.Tanh()), in_keys=["observation"])
    loss = TD3BCLoss(
        actor, ValueOperator(QNet(), in_keys=["observation", "action"]), action_spec=Bounded(-1.0, 1.0, shape=(ACT,)),
        policy_noise=0.0, noise_clip=0.5, alpha=2.5, loss_function="l2",
    )
    loss.make_value_estimator(gamma=0.99)
    ours_actor, ours_critic = components["actor"], components["critic"]
    with torch.no_grad():
        for params, net in ((loss.actor_network_params, ours_actor.net), (loss.target_actor_network_params, ours_actor.target_net.module)):
            params["module", "0", "weight"].copy_(net[0].weight)
            params["module", "0", "bias"].copy_(net[0].bias)
            params["module", "2", "weight"].copy_(net[2].weight)
            params["module", "2", "bias"].copy_(net[2].bias)
        for params, net in ((loss.qvalue_network_params, ours_critic.net), (loss.target_qvalue_network_params, ours_critic.target_net.module)):
            # advrl stores each member's weight as [in, out]; nn.Linear as [out, in]
            params["module", "net", "0", "weight"].copy_(net[0].weight.transpose(1, 2))
            params["module", "net", "0", "bias"].copy_(net[0].bias.squeeze(1))
            params["module", "net", "2", "weight"].copy_(net[2].weight.transpose(1, 2))
            params["module", "net", "2", "bias"].copy_(net[2].bias.squeeze(1))
    return loss


def test_td3bc_losses_match_torchrl():
    torch.manual_seed(0)
    components = advrl_components()
    loss = torchrl_loss(components)
    obs, action = torch.randn(BATCH, OBS), torch.rand(BATCH, ACT) * 2 - 1
    reward, next_obs = torch.randn(BATCH), torch.randn(BATCH, OBS)
    terminated = (torch.rand(BATCH) < 0.3)
    ours = TensorDict(
        {"observation": obs, "action": action, "reward": reward, "next": {"observation": next_obs}, "terminated": terminated.float()},
        batch_size=[BATCH],
    )
    theirs = TensorDict(
        {
            "observation": obs, "action": action,
            "next": {"observation": next_obs, "reward": reward.unsqueeze(-1), "terminated": terminated.unsqueeze(-1),
                     "done": terminated.unsqueeze(-1)},
        },
        batch_size=[BATCH],
    )
    critic_out = components["critic_loss"].compute(ours, 1)
    their_critic, meta = loss.qvalue_loss(theirs.clone())
    assert torch.allclose(critic_out["td_target"], meta["target_value"], atol=1e-5)
    assert critic_out["loss_critic"].item() == pytest.approx(their_critic.item(), rel=1e-5)

    ours["policy_action"] = components["actor"](obs)
    actor_out = components["actor_loss"].compute(ours, 2)
    bc = components["constraint"].compute(ours, 2)["loss_bc"]
    their_actor, meta = loss.actor_loss(theirs.clone())
    assert actor_out["lambda"].item() == pytest.approx(meta["lmbd"].item(), rel=1e-5)
    assert bc.item() == pytest.approx(meta["bc_loss"].item(), rel=1e-5)
    assert (actor_out["loss_actor"] + bc).item() == pytest.approx(their_actor.item(), rel=1e-5)
