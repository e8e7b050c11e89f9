"""advrl's CQL (recipes/cql.yaml) against the plain reference implementation in
benchmarks/reference_cql.py (CORL-style: two separate critics, one backward and step per
optimiser): from the same weights with the same noise, a few steps give the same losses and
the same parameters, so the throughput benchmark times the same update on both sides."""

from __future__ import annotations

from pathlib import Path

import torch
from _helpers import benchmark_module, small_transitions, train_step
from torch import nn

from advrl import DataSpec
from advrl.learner.assembly import build_components, build_updates
from advrl.recipe import load_recipe

REPO = Path(__file__).resolve().parents[2]
FACTS = {"obs_dim": 5, "action_dim": 2, "max_action": 1.0}
LR = 1e-3  # the same for every optimiser, so that each step moves the parameters well above float noise
SMALL = [
    "components.actor.hidden_sizes=[8,8]",
    "components.critic.hidden_sizes=[8,8]",
    "components.conservative.n_actions=3",
    *[f"updates.sac.optimize.{slot}.lr={LR}" for slot in ("temperature", "actor", "critic")],
]


def close(actual, expected, **kw):
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-6, **kw)


@torch.no_grad()
def _copy_weights(comps, ref) -> None:
    """advrl's actor, critic ensemble and target into the reference (ensemble member m ->
    critic_{m+1}; advrl stores ensemble weights [in, out], nn.Linear [out, in])."""
    ref.actor.net.load_state_dict(comps["actor"].net.state_dict())
    ref.actor.log_std_multiplier.copy_(comps["actor"].log_std_multiplier)
    ref.actor.log_std_offset.copy_(comps["actor"].log_std_offset)
    ref.log_alpha.copy_(comps["temperature"].log_alpha)
    pairs = ((comps["critic"].net, (ref.critic_1, ref.critic_2)),
             (comps["critic"].target_net.module, (ref.target_critic_1, ref.target_critic_2)))
    for src, members in pairs:
        layers = [m for m in src if hasattr(m, "weight")]
        for member, critic in enumerate(members):
            linears = [m for m in critic.net if isinstance(m, nn.Linear)]
            assert len(linears) == len(layers)
            for layer, linear in zip(layers, linears):
                linear.weight.copy_(layer.weight[member].T)
                linear.bias.copy_(layer.bias[member, 0])


def test_steps_match_the_reference_implementation():
    reference_cql = benchmark_module("reference_cql")
    recipe = load_recipe(REPO / "recipes" / "cql.yaml", SMALL, dataset_facts=FACTS)
    comps = build_components(recipe, DataSpec(**FACTS), bind=False)
    updates, _ = build_updates(recipe, comps, torch.device("cpu"))
    with torch.no_grad():  # a target apart from the online critic, so the backup must read it
        gen = torch.Generator().manual_seed(7)
        for p in comps["critic"].target_net.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=gen))
    ref = reference_cql.CQL(5, 2, hidden=(8, 8), n_actions=3, actor_lr=LR, critic_lr=LR, alpha_lr=LR)
    _copy_weights(comps, ref)
    for step in range(1, 5):
        td = small_transitions(seed=100 + step)
        batch = [td["observation"], td["action"], td["reward"].unsqueeze(-1), td["next", "observation"], td["terminated"].unsqueeze(-1)]
        torch.manual_seed(step)
        ours = train_step(updates, td, step)
        torch.manual_seed(step)
        theirs = ref.train(batch)
        for key in ("loss_temperature", "loss_actor", "loss_critic", "loss_cql"):
            close(ours[key], theirs[key], msg=lambda m, k=key, s=step: f"step {s} {k}: {m}")

    mirror = reference_cql.CQL(5, 2, hidden=(8, 8), n_actions=3)
    _copy_weights(comps, mirror)
    for mine, theirs in ((mirror.actor, ref.actor), (mirror.critic_1, ref.critic_1), (mirror.critic_2, ref.critic_2),
                         (mirror.target_critic_1, ref.target_critic_1), (mirror.target_critic_2, ref.target_critic_2)):
        for (name, p), q in zip(mine.named_parameters(), theirs.parameters()):
            close(p, q, msg=lambda m, n=name: f"{n}: {m}")
    close(mirror.log_alpha, ref.log_alpha)
    assert not torch.allclose(ref.log_alpha, torch.zeros(())), "the temperature was trained"
