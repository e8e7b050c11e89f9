"""advrl.learner.update.UpdateStage: which parameters each loss trains, optimiser steps,
Polyak targets, schedules of an update, and non-finite loss detection."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from _helpers import assert_all_changed, assert_unchanged, batch, bind_all, make, snapshot
from omegaconf import OmegaConf

from advrl import DataSpec
from advrl.component import tdkey
from advrl.learner.update import NonFiniteLossError, UpdateStage
from advrl.recipe import UpdateConfig

SPEC = DataSpec(obs_dim=3, action_dim=2)
CPU = torch.device("cpu")
LR = 1e-3


def update_cfg(**values):
    return OmegaConf.merge(OmegaConf.structured(UpdateConfig), values)


def td3bc_components():
    """The slots of recipes/td3bc.yaml with tiny networks."""
    return bind_all(
        {
            "actor": make("actor", "deterministic", SPEC, hidden_sizes=[8], target=True),
            "critic": make("critic", "q_ensemble", SPEC, num_q=2, hidden_sizes=[8], target=True),
            "critic_loss": make("objective", "td3_critic", SPEC, gamma=0.99, policy_noise=0.2, noise_clip=0.5),
            "actor_loss": make("objective", "td3_actor", SPEC, alpha=2.5, normalize_q=True, q="q1"),
            "constraint": make("constraint", "bc_mse", SPEC, weight=1.0),
        }
    )


def cql_components():
    """The slots of recipes/cql.yaml with tiny networks."""
    return bind_all(
        {
            "actor": make("actor", "tanh_gaussian", SPEC, hidden_sizes=[8]),
            "critic": make("critic", "q_ensemble", SPEC, num_q=2, hidden_sizes=[8], init="orthogonal"),
            "temperature": make("coefficient", "sac_temperature", SPEC, init_log_alpha=0.0),
            "actor_loss": make("objective", "sac_actor", SPEC, q="min"),
            "critic_loss": make("objective", "sac_critic", SPEC, gamma=0.99, temperature=None),
            "conservative": make("constraint", "cql_penalty", SPEC, alpha=10.0, n_actions=2, importance_sample=True),
        }
    )


def replay(components, terms, td, step=1):
    """Compute ``terms`` in order on ``td`` like an update does (declared per-sample outputs go
    into the batch for later terms) and return the losses and logged scalars."""
    scalars = {}
    for name in terms:
        per_sample = set(components[name].declared("writes"))
        for key, value in components[name].compute(td, step).items():
            if key in per_sample:
                td.set(tdkey(key), value)
            else:
                scalars[key] = value
    return scalars


def grads_of(loss, module):
    params = [p for p in module.parameters() if p.requires_grad]
    return [
        g if g is not None else torch.zeros_like(p)
        for g, p in zip(torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True), params)
    ]


def assert_grads_equal(module, expected):
    params = [p for p in module.parameters() if p.requires_grad]
    assert len(params) == len(expected)
    for p, g in zip(params, expected):
        actual = p.grad if p.grad is not None else torch.zeros_like(p)
        torch.testing.assert_close(actual, g, rtol=1e-5, atol=1e-7)


def run(stage, td, step=1):
    return stage.run(td, step, torch.tensor(step))


# ---- which parameters move -------------------------------------------------------------------------
def test_critic_update_changes_only_the_critic():
    """TD3 critic update: every online critic parameter moves; the actor, the actor target and
    the critic target stay bit-identical (no update_targets listed)."""
    comps = td3bc_components()
    stage = UpdateStage("critic", update_cfg(terms=["critic_loss"], optimize={"critic": {"lr": LR}}), comps, CPU)
    actor, critic = comps["actor"], comps["critic"]
    before = {n: snapshot(m) for n, m in [("actor", actor), ("critic_net", critic.net), ("critic_tgt", critic.target_net)]}
    out = run(stage, batch(SPEC, size=8))
    assert set(out) == {"loss_critic"}
    assert_all_changed(critic.net, before["critic_net"])
    assert_unchanged(critic.target_net, before["critic_tgt"])
    assert_unchanged(actor, before["actor"])
    assert all(p.grad is None for p in actor.parameters())


def test_actor_update_changes_only_the_actor():
    """TD3+BC actor update without update_targets: the actor's online net moves; the critic
    (though it is differentiated through) and both targets stay bit-identical."""
    comps = td3bc_components()
    cfg = update_cfg(terms=["actor", "actor_loss", "constraint"], optimize={"actor": {"lr": LR}})
    stage = UpdateStage("actor", cfg, comps, CPU)
    actor, critic = comps["actor"], comps["critic"]
    before_actor_net, before_actor_tgt, before_critic = snapshot(actor.net), snapshot(actor.target_net), snapshot(critic)
    out = run(stage, batch(SPEC, size=8))
    assert set(out) == {"loss_actor", "lambda", "loss_bc"}
    assert_all_changed(actor.net, before_actor_net)
    assert_unchanged(actor.target_net, before_actor_tgt)
    assert_unchanged(critic, before_critic)
    assert all(p.grad is None for p in critic.parameters())


def test_targets_change_only_through_update_targets():
    """With update_targets [actor, critic], after the optimiser step: target <- lerp(target,
    online, tau); the critic's online net did not move, so its target moves towards the old one."""
    comps = td3bc_components()
    tau = 0.1
    cfg = update_cfg(
        terms=["actor", "actor_loss", "constraint"], optimize={"actor": {"lr": LR}}, update_targets=["actor", "critic"], tau=tau
    )
    stage = UpdateStage("actor", cfg, comps, CPU)
    actor, critic = comps["actor"], comps["critic"]
    with torch.no_grad():  # make targets differ from the online nets so the average is visible
        for p in list(actor.target_net.parameters()) + list(critic.target_net.parameters()):
            p.add_(0.5)
    old_actor_tgt, old_critic_tgt = snapshot(actor.target_net), snapshot(critic.target_net)
    old_critic = snapshot(critic.net)
    run(stage, batch(SPEC, size=8))
    assert_unchanged(critic.net, old_critic)
    for (name, p), new_online in zip(actor.target_net.named_parameters(), actor.net.parameters()):
        expected = (1 - tau) * old_actor_tgt[name] + tau * new_online.detach()
        torch.testing.assert_close(p, expected, rtol=0, atol=1e-6)
    for (name, p), online in zip(critic.target_net.named_parameters(), critic.net.parameters()):
        torch.testing.assert_close(p, (1 - tau) * old_critic_tgt[name] + tau * online.detach(), rtol=0, atol=1e-6)


# ---- which gradient each slot receives ---------------------------------------------------------
def test_actor_gradient_is_sum_of_update_losses_and_adam_step():
    """losses: null trains the slot on every loss of the update (loss_actor + loss_bc): the
    actor's .grad equals autograd of that sum, and the first Adam step is -lr g / (|g| + eps)."""
    comps = td3bc_components()
    reference = copy.deepcopy(comps)
    terms = ["actor", "actor_loss", "constraint"]
    stage = UpdateStage("actor", update_cfg(terms=terms, optimize={"actor": {"lr": LR}}), comps, CPU)
    td = batch(SPEC, size=8)
    scalars = replay(reference, terms, td.clone())
    expected = grads_of(scalars["loss_actor"] + scalars["loss_bc"], reference["actor"])
    only_actor_term = grads_of(scalars["loss_actor"], reference["actor"])
    before = [p.detach().clone() for p in comps["actor"].parameters() if p.requires_grad]
    out = run(stage, td)
    torch.testing.assert_close(out["loss_actor"], scalars["loss_actor"])
    assert_grads_equal(comps["actor"], expected)
    assert not all(torch.allclose(a, b) for a, b in zip(expected, only_actor_term))  # the BC term matters
    trainable = [p for p in comps["actor"].parameters() if p.requires_grad]
    for p, old, g in zip(trainable, before, expected):
        torch.testing.assert_close(p.detach() - old, -LR * g / (g.abs() + 1e-8), rtol=1e-4, atol=1e-9)


def test_losses_key_restricts_a_slot_to_its_losses():
    """optimize.actor.losses: [loss_bc] trains the actor on the BC term alone."""
    comps = td3bc_components()
    reference = copy.deepcopy(comps)
    terms = ["actor", "actor_loss", "constraint"]
    cfg = update_cfg(terms=terms, optimize={"actor": {"lr": LR, "losses": ["loss_bc"]}})
    stage = UpdateStage("actor", cfg, comps, CPU)
    td = batch(SPEC, size=8)
    scalars = replay(reference, terms, td.clone())
    run(stage, td)
    assert_grads_equal(comps["actor"], grads_of(scalars["loss_bc"], reference["actor"]))


def test_cql_joint_update_routes_each_loss_to_its_slot():
    """recipes/cql.yaml's `sac` update: temperature <- loss_temperature, actor <- loss_actor,
    critic <- loss_critic + loss_cql, all from the same pre-step forward pass (same seed)."""
    comps = cql_components()
    reference = copy.deepcopy(comps)
    terms = ["actor", "temperature", "actor_loss", "critic_loss", "conservative"]
    cfg = update_cfg(
        terms=terms,
        optimize={
            "temperature": {"lr": 3e-5, "losses": ["loss_temperature"]},
            "actor": {"lr": 3e-5, "losses": ["loss_actor"]},
            "critic": {"lr": 3e-4, "losses": ["loss_critic", "loss_cql"]},
        },
        update_targets=["critic"],
    )
    stage = UpdateStage("sac", cfg, comps, CPU)
    td = batch(SPEC, size=8)

    torch.manual_seed(42)
    scalars = replay(reference, terms, td.clone())
    own = {
        "temperature": grads_of(scalars["loss_temperature"], reference["temperature"]),
        "actor": grads_of(scalars["loss_actor"], reference["actor"]),
        "critic": grads_of(scalars["loss_critic"] + scalars["loss_cql"], reference["critic"]),
    }
    everything = sum(v for k, v in scalars.items() if k.startswith("loss_"))
    critic_all = grads_of(everything, reference["critic"])

    torch.manual_seed(42)
    out = run(stage, td)
    for key in ("loss_temperature", "loss_actor", "loss_critic", "loss_cql"):
        torch.testing.assert_close(out[key], scalars[key], rtol=1e-5, atol=1e-6)
    for slot, expected in own.items():
        assert_grads_equal(comps[slot], expected)
    # loss_actor reaches the critic through Q(s, a~): routing, not luck, keeps it out
    assert not all(torch.allclose(a, b) for a, b in zip(critic_all, own["critic"]))
    # temperature's gradient by hand: -mean(log pi + target_entropy)
    torch.testing.assert_close(
        comps["temperature"].log_alpha.grad, -(td["policy_log_prob"].detach() + comps["temperature"].target_entropy).mean()
    )


# ---- schedule of an update, optimiser options, failure detection --------------------------------------
def test_active_steps():
    """Runs at steps with step % every == 0, step > start and step <= stop (steps count from 1)."""
    comps = td3bc_components()
    stage = UpdateStage("a", update_cfg(terms=["critic_loss"], optimize={"critic": {}}, every=2, start=2, stop=8), comps, CPU)
    assert [s for s in range(1, 12) if stage.active(s)] == [4, 6, 8]


def test_clip_grad_norm_and_lr_schedule():
    """clip_grad_norm bounds the slot's total grad norm; lr_schedule multiplies lr per run."""
    comps = td3bc_components()
    cfg = update_cfg(
        terms=["critic_loss"],
        optimize={
            "critic": {"lr": 0.5, "clip_grad_norm": 1e-3, "lr_schedule": {"name": "linear", "start": 1.0, "end": 0.0, "steps": 4}}
        },
    )
    stage = UpdateStage("critic", cfg, comps, CPU)
    optimizer = stage.groups[0].optimizer
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.5)
    td = batch(SPEC, size=8)
    run(stage, td)
    norm = math.sqrt(sum(float((p.grad**2).sum()) for p in comps["critic"].net.parameters()))
    assert norm == pytest.approx(1e-3, rel=1e-4)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.5 * 0.75)
    run(stage, td, step=2)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.25)


def test_slot_without_parameters_is_refused():
    """optimize names a slot with nothing to train -> ValueError naming it."""
    comps = td3bc_components()
    with pytest.raises(ValueError, match="no trainable parameters"):
        UpdateStage("u", update_cfg(terms=["constraint"], optimize={"constraint": {}}), comps, CPU)


def test_non_finite_loss_is_reported():
    """A NaN loss is remembered with its step; check_finite raises naming the loss and step."""
    comps = td3bc_components()
    stage = UpdateStage("critic", update_cfg(terms=["critic_loss"], optimize={"critic": {}}), comps, CPU)
    run(stage, batch(SPEC, size=4), step=1)
    stage.check_finite()  # all finite so far
    bad = batch(SPEC, size=4)
    bad["reward"][0] = float("nan")
    run(stage, bad, step=3)
    with pytest.raises(NonFiniteLossError, match=r"'loss_critic'.*'critic'.*step 3"):
        stage.check_finite()
