"""advrl's A2PO (recipes/a2po.yaml) against the plain reference implementation in
benchmarks/reference_a2po.py, written separately from the official update (github.com/Plankson/A2PO
at d9cd771, a2po.py, OffRL.policy_train)
(CORL-style modules, Q_1/Q_2/V in one critic module with one Adam, backward per optimiser):
from the same weights with the same noise, six steps through the CVAE's stop step K and beyond
give the same losses, the same advantage condition xi and the same parameters."""

from __future__ import annotations

from pathlib import Path

import torch
from _helpers import benchmark_module, copy_actor_critic_into_reference, copy_vae_into_reference, train_step
from tensordict import TensorDict

from advrl import DataSpec
from advrl.learner.assembly import build_components, build_updates
from advrl.recipe import load_recipe

REPO = Path(__file__).resolve().parents[2]
A2PO_RECIPE = REPO / "recipes" / "a2po.yaml"
CPU = torch.device("cpu")
FACTS = {"obs_dim": 5, "action_dim": 2, "max_action": 1.0}
LR = 1e-3  # the same for every optimiser, so that each update's effect is well above float noise
SMALL = [
    "components.actor.hidden_sizes=[8,8]",
    "components.critic.hidden_sizes=[8,8,8]",
    "components.value.hidden_sizes=[8,8,8]",
    "components.behavior.hidden_sizes=[16,16]",
    "train.steps=15",  # K = int_mul(15, 0.2) = 3: the CVAE trains at steps 1..3 of the 6
    *[f"updates.{u}.optimize.{slot}.lr={LR}" for u, slot in [("critic", "critic"), ("critic", "value"), ("behavior", "behavior"), ("actor", "actor")]],
]
K = 3
TINY = {"actor_hidden": (8, 8), "critic_hidden": (8, 8, 8), "value_hidden": (8, 8, 8), "vae_hidden": (16, 16)}


def close(actual, expected, **kw):
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-6, **kw)


def build_a2po():
    recipe = load_recipe(A2PO_RECIPE, SMALL, dataset_facts=FACTS)
    comps = build_components(recipe, DataSpec(**FACTS), bind=False)
    updates, _ = build_updates(recipe, comps, CPU)
    return comps, updates


def a2po_batch(seed: int, size: int = 16) -> TensorDict:
    gen = torch.Generator().manual_seed(seed)
    return TensorDict(
        {
            "observation": torch.randn(size, 5, generator=gen) * 3.0,  # spread-out states: xi of both signs
            "action": torch.rand(size, 2, generator=gen) * 1.8 - 0.9,
            "reward": torch.randn(size, generator=gen),
            "next": {"observation": torch.randn(size, 5, generator=gen) * 3.0},
            "terminated": (torch.rand(size, generator=gen) < 0.25).float(),
        },
        batch_size=[size],
    )


@torch.no_grad()
def _copy_weights(comps, ref) -> None:
    """advrl's parameters into the reference's modules: ensemble member m -> q{m+1}_net, V into the
    critic module's V head (also the target's, which is never read), the CVAE encoder's last
    layer split into the mean and log-sigma heads."""
    copy_actor_critic_into_reference(comps, ref)
    for dst in (ref.critic, ref.critic_target):
        dst.v_net.load_state_dict(comps["value"].net.state_dict())
    copy_vae_into_reference(comps["behavior"], ref.vae)


@torch.no_grad()
def _spread(comps) -> None:
    """Targets clearly apart from the online nets (so the TD target must read the target critic and
    the target latent actor, and Polyak moves them visibly), and V shifted so that Q_1(s, a) - V(s)
    has both signs on the first batch (fresh small nets are nearly constant in s)."""
    gen = torch.Generator().manual_seed(7)
    for net in (comps["critic"].target_net, comps["actor"].target_net):
        for p in net.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=gen))
    td = a2po_batch(seed=101)
    s, a = td["observation"], td["action"]
    gap = comps["critic"].q(s, a, reduce="q1") - comps["value"](s)
    list(comps["value"].net.parameters())[-1].add_(gap.median())


def test_six_steps_match_the_reference_implementation():
    """Six steps (K = 3: CVAE at 1..3, actor and Polyak at 2, 4, 6) of the recipe and of
    benchmarks/reference_a2po.py, started from the same weights, with torch seeded identically
    before each step (both draw the target-policy noise [B, A], then the CVAE's reparameterisation
    noise [B, 2A], in that order): same losses, xi and parameters; the acting paths agree too."""
    reference_a2po = benchmark_module("reference_a2po")
    comps, updates = build_a2po()
    assert updates[1].stop == K
    _spread(comps)
    ref = reference_a2po.A2PO(5, 2, vae_step=K, actor_lr=LR, critic_lr=LR, vae_lr=LR, **TINY)
    _copy_weights(comps, ref)
    mixed_xi = 0
    for step in range(1, 7):
        td = a2po_batch(seed=100 + step)
        batch = [td["observation"], td["action"], td["reward"].unsqueeze(-1), td["next", "observation"], td["terminated"].unsqueeze(-1)]
        torch.manual_seed(step)
        ours = train_step(updates, td, step)
        torch.manual_seed(step)
        theirs = ref.train(batch)
        close(ours["loss_critic"], theirs["q_loss"])
        close(ours["loss_value"], theirs["value_loss"])
        assert ("loss_behavior" in ours) == ("vae_loss" in theirs) == (step <= K)
        if step <= K:
            close(ours["loss_behavior"], theirs["vae_loss"])
        assert ("loss_actor" in ours) == ("actor_loss" in theirs) == (step % 2 == 0)
        if step % 2 == 0:
            close(ours["loss_bc"], theirs["bc_loss"])
            close(ours["loss_actor"] + ours["loss_bc"], theirs["actor_loss"])
        if "xi" in theirs:
            close(td["xi"], theirs["xi"].squeeze(-1))
            mixed_xi += bool((td["xi"] > 0).any() and (td["xi"] < 0).any())
    assert mixed_xi >= 3  # the condition took both signs: BC really conditioned per sample
    assert ref.total_it == 6

    mirror = reference_a2po.A2PO(5, 2, **TINY)
    _copy_weights(comps, mirror)
    pairs = [
        (mirror.actor, ref.actor), (mirror.actor_target, ref.actor_target), (mirror.critic, ref.critic),
        (mirror.critic_target, ref.critic_target), (mirror.vae, ref.vae),
    ]
    for mine, theirs in pairs:
        for (name, p), q in zip(mine.named_parameters(), theirs.parameters()):
            if mine is mirror.critic_target and name.startswith("v_net"):
                continue  # advrl keeps no target V; the reference's is Polyak-averaged but never read
            close(p, q, msg=lambda m, n=name: f"{n}: {m}")
    states = a2po_batch(seed=200)["observation"]
    with torch.no_grad():
        close(comps["actor"].act(states), ref.select_action(states))
