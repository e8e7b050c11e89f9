"""advrl's SSAR on TD3+BC (recipes/ssar_td3bc.yaml) against the plain reference implementation
in benchmarks/reference_ssar_td3bc.py (CORL-style: two separate LayerNorm critics, one backward
and step per optimiser): from the same weights, with the same noise and selection mask, a few
steps give the same losses, parameters and threshold n, so the throughput benchmark times the
same update on both sides."""

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
BETA_LR, PERIOD = 1e-3, 2  # beta moves well above float noise; n is checked at every actor step
OVERRIDES = [f"updates.actor.optimize.coefficient.lr={BETA_LR}", f"components.threshold.period={PERIOD}"]


def close(actual, expected, atol=1e-6, **kw):
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=atol, **kw)


@torch.no_grad()
def _copy_weights(comps, ref) -> None:
    """advrl's actor, beta and critic ensemble (with target) into the reference (member m ->
    critic_{m+1}; ensemble weights are [in, out], nn.Linear's [out, in])."""
    ref.actor.net.load_state_dict(comps["actor"].net.state_dict())
    ref.actor_target.net.load_state_dict(comps["actor"].target_net.module.state_dict())
    ref.beta.net.load_state_dict(comps["coefficient"].net.state_dict())
    pairs = ((comps["critic"].net, (ref.critic_1, ref.critic_2)),
             (comps["critic"].target_net.module, (ref.critic_1_target, ref.critic_2_target)))
    for src, members in pairs:
        layers = [m for m in src if hasattr(m, "weight")]
        for member, critic in enumerate(members):
            targets = [m for m in critic.net if isinstance(m, nn.Linear | nn.LayerNorm)]
            assert len(targets) == len(layers)
            for layer, target in zip(layers, targets):
                target.weight.copy_(layer.weight[member].T if isinstance(target, nn.Linear) else layer.weight[member, 0])
                target.bias.copy_(layer.bias[member, 0])


def test_steps_match_the_reference_implementation():
    reference_ssar = benchmark_module("reference_ssar_td3bc")
    recipe = load_recipe(REPO / "recipes" / "ssar_td3bc.yaml", OVERRIDES, dataset_facts=FACTS)
    comps = build_components(recipe, DataSpec(**FACTS), bind=False)
    updates, _ = build_updates(recipe, comps, torch.device("cpu"))
    with torch.no_grad():  # targets apart from the online networks, so the backup must read them
        gen = torch.Generator().manual_seed(7)
        for p in (*comps["critic"].target_net.parameters(), *comps["actor"].target_net.parameters()):
            p.add_(0.05 * torch.randn(p.shape, generator=gen))
    trust = (torch.rand(16, generator=gen) < 0.5).float()
    comps["selector"].labels = trust  # the selection mask, as the IQL pre-training would have left it
    ref = reference_ssar.SSARTD3BC(5, 2, beta_lr=BETA_LR, update_period=PERIOD)
    _copy_weights(comps, ref)
    for step in range(1, 7):
        td = small_transitions(seed=100 + step)
        td["index"] = torch.arange(16)
        batch = [td["observation"], td["action"], td["reward"].unsqueeze(-1), td["next", "observation"],
                 td["terminated"].unsqueeze(-1), trust.unsqueeze(-1)]
        torch.manual_seed(step)
        ours = train_step(updates, td, step)
        torch.manual_seed(step)
        theirs = ref.train(batch)
        close(ours["loss_critic"], theirs["critic_loss"], msg=lambda m, s=step: f"step {s} critic: {m}")
        if step % 2 == 0:
            close(ours["loss_actor"] + ours["loss_bc"], theirs["actor_loss"], msg=lambda m, s=step: f"step {s} actor: {m}")
            close(ours["loss_coefficient"], theirs["beta_loss"], msg=lambda m, s=step: f"step {s} beta: {m}")

    # parameters within 1e-5: Adam divides by sqrt(v), so an element whose gradient is near zero
    # turns float noise into a visible (far below lr) difference; a wrong update differs by ~lr
    mirror = reference_ssar.SSARTD3BC(5, 2)
    _copy_weights(comps, mirror)
    for network in ("actor", "actor_target", "beta", "critic_1", "critic_2", "critic_1_target", "critic_2_target"):
        for (name, p), q in zip(getattr(mirror, network).named_parameters(), getattr(ref, network).parameters()):
            close(p, q, atol=1e-5, msg=lambda m, n=f"{network}.{name}": f"{n}: {m}")
    assert ref.n > 1.0, "the threshold check ran"
    close(comps["threshold"].value(7), torch.tensor(ref.n))  # advrl applies a check's outcome at the next step
