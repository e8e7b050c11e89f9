"""SSAR components: the state-adaptive coefficient, the distribution-aware threshold, the
selectors, and the equivalence with TD3+BC when beta is constant."""

from __future__ import annotations

import copy
import dataclasses
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from _helpers import batch, bind_all, make, t
from tensordict import TensorDict

from advrl import DataSpec
from advrl.learner.assembly import build_components, build_updates
from advrl.recipe import load_recipe

SPEC = DataSpec(obs_dim=3, action_dim=2)
RECIPES = Path(__file__).resolve().parents[2] / "recipes"


def coefficient_set(**config):
    components = {
        "actor": make("actor", "deterministic", SPEC, hidden_sizes=[4]),
        "threshold": make("schedule", "distribution_aware_threshold", SPEC, start=1.0, end=3.0, period=10, increments=10),
        "coefficient": make("coefficient", "state_adaptive", SPEC, hidden_sizes=[8], **config),
    }
    return bind_all(components)


def test_beta_starts_at_init_everywhere_within_its_range():
    """Last bias ln 2: sigmoid(ln 2) * 1.5 * init = init; xavier weights keep it near init."""
    coefficient = coefficient_set(init=0.4)["coefficient"]
    with torch.no_grad():
        for layer in coefficient.net:
            if isinstance(layer, torch.nn.Linear):
                layer.weight.zero_()
    assert torch.allclose(coefficient(torch.randn(5, 3)), torch.full((5,), 0.4))
    assert coefficient.net[-1].bias.item() == pytest.approx(math.log(2.0))
    big = coefficient(torch.full((1, 3), 1e3))
    assert 0.0 < big.item() < 1.5 * 0.4 + 1e-6


def test_deterministic_loss_on_hand_computed_gap():
    """w = (0.1 n)^2 - mean_A min((p - a)^2, 1); loss = mean(w * beta * selected)."""
    components = coefficient_set(init=0.4, threshold=None, n=2.0, select_key="trust")
    coefficient = components["coefficient"]
    td = batch(SPEC, size=2)
    td["policy_action"] = t([[0.0, 0.0], [0.0, 0.0]])
    td["action"] = t([[0.1, 0.3], [2.0, 0.0]])  # per-dim squared: [0.01, 0.09] and [4 -> 1, 0]
    td["trust"] = t([1.0, 0.0])
    out = coefficient.compute(td, 1)
    gap = t([0.04 - 0.05, 0.04 - 0.5])
    assert torch.allclose(out["coefficient_gap"], gap)
    beta = coefficient(td["observation"]).detach()
    assert torch.allclose(out["loss_coefficient"], (gap * beta * t([1.0, 0.0])).mean())
    assert torch.allclose(out["coefficient"], beta) and not out["coefficient"].requires_grad
    assert out["coefficient_mean"].item() == pytest.approx(beta.mean().item())
    assert out["coefficient_n"].item() == 2.0
    out["loss_coefficient"].backward()
    assert all(p.grad is not None for p in coefficient.parameters())


def test_stochastic_gap_uses_density_thresholds():
    """With a tanh-Gaussian actor: w = mean_j(max(log pi_j(a_j), C_10,j) - C_n,j)."""
    spec = DataSpec(obs_dim=3, action_dim=2)
    components = bind_all({
        "actor": make("actor", "tanh_gaussian", spec, hidden_sizes=[4]),
        "coefficient": make("coefficient", "state_adaptive", spec, hidden_sizes=[8], threshold=None, n=1.0, init=10.0),
    })
    actor, coefficient = components["actor"], components["coefficient"]
    obs, action = torch.randn(4, 3), torch.rand(4, 2) * 1.8 - 0.9
    expected = (torch.maximum(actor.per_dim_log_prob(obs, action), actor.threshold_log_prob(obs, 10.0))
                - actor.threshold_log_prob(obs, 1.0)).mean(-1)
    td = TensorDict({"observation": obs, "action": action, "policy_action": action}, batch_size=[4])
    assert torch.allclose(coefficient.compute(td, 1)["coefficient_gap"], expected)
    # per-dimension log-densities add up to the joint log-density
    assert torch.allclose(actor.per_dim_log_prob(obs, action).sum(-1), actor.log_prob(obs, action), atol=1e-5)
    # the density at the policy mean is above the n-sigma threshold
    mean, _ = actor._mean_log_std(obs)
    assert torch.all(actor.per_dim_log_prob(obs, torch.tanh(mean)) >= actor.threshold_log_prob(obs, 1.0) - 1e-5)


def test_threshold_grows_until_the_constraint_holds_then_freezes():
    schedule = make("schedule", "distribution_aware_threshold", SPEC, start=1.0, end=2.0, period=10, increments=4)
    assert schedule.value(1).item() == 1.0
    schedule.observe(5, torch.tensor(-1.0))  # not a check step: ignored
    assert schedule.value(6).item() == 1.0
    schedule.observe(10, torch.tensor(-1.0))  # violated at a check: n grows after the step
    assert schedule.value(10).item() == 1.0  # same step: unchanged for every term
    assert schedule.value(11).item() == pytest.approx(1.25)
    schedule.observe(20, torch.tensor(-1.0))
    schedule.observe(20, torch.tensor(0.5))  # the last report of a step wins: holds
    assert schedule.value(21).item() == pytest.approx(1.25)
    schedule.observe(30, torch.tensor(-1.0))  # frozen for good
    assert schedule.value(31).item() == pytest.approx(1.25)
    assert schedule.frozen.item()


def test_threshold_is_capped_at_end():
    schedule = make("schedule", "distribution_aware_threshold", SPEC, start=1.0, end=1.5, period=1, increments=2)
    for step in range(1, 6):
        schedule.value(step)
        schedule.observe(step, torch.tensor(-1.0))
    assert schedule.value(6).item() == pytest.approx(1.5)


def test_frozen_coefficient_no_longer_reports_to_its_threshold():
    """Fine-tuning freezes beta (online.freeze); SSAR then stops checking n as well (the check is
    part of the offline-only beta step in td3_bc.py / cql.py): a violated check moves n no more."""
    components = coefficient_set(init=0.4)
    coefficient, threshold = components["coefficient"], components["threshold"]
    td = batch(SPEC, size=4, policy_action=torch.zeros(4, 2))
    td["action"] = torch.full((4, 2), 0.9)  # d = 0.81 > (0.1 n)^2: violated
    coefficient.compute(td, 10)
    assert threshold.value(11).item() == pytest.approx(1.2)
    coefficient.freeze()
    out = coefficient.compute(td, 20)
    assert threshold.value(21).item() == pytest.approx(1.2) and not threshold.has_pending.item()
    assert out["coefficient_n"].item() == pytest.approx(1.2)  # still logged


def test_cql_penalty_mask_zeroes_untrusted_states():
    components = bind_all({
        "actor": make("actor", "tanh_gaussian", SPEC, hidden_sizes=[4]),
        "critic": make("critic", "q_ensemble", SPEC, hidden_sizes=[4]),
        "penalty": make("constraint", "cql_penalty", SPEC, mask_key="trust", n_actions=2),
    })
    td = batch(SPEC, size=4, trust=t([0.0, 0.0, 0.0, 0.0]))
    assert components["penalty"].compute(td, 1)["loss_cql"].item() == 0.0


def test_iql_advantage_pretrains_caches_and_labels(minari_root, tmp_path, monkeypatch):
    monkeypatch.setenv("ADVRL_CACHE", str(tmp_path))
    from omegaconf import OmegaConf

    from advrl.data.dataset import OfflineData, load_offline_data
    from advrl.recipe import DataConfig, DatasetConfig

    data = load_offline_data(OmegaConf.structured(DatasetConfig(id="advrl/hopper/random-v0")),
                             OmegaConf.structured(DataConfig), torch.device("cpu"))
    spec = DataSpec(**data.info.facts())
    selector = make("selector", "iql_advantage", spec, pretrain_steps=5, batch_size=16)
    state = torch.get_rng_state()
    facts = selector.prepare(data, {"seed": 0, "device": torch.device("cpu")})
    assert torch.equal(torch.get_rng_state(), state)  # the run's random stream is untouched
    assert facts["from_cache"] is False and facts["pretrain_steps"] == 5 and facts["pretrain_seconds"] > 0
    assert facts["trusted_fraction"] == pytest.approx(float(selector.labels.mean()), abs=1e-4)
    assert selector.labels.shape == (data.size,)
    assert set(selector.labels.unique().tolist()) <= {0.0, 1.0}
    cache = selector.cache_path(data.info.id, 0)
    assert cache.is_file() and facts["cache"] == cache.relative_to(tmp_path).as_posix()  # what the harness parks
    again = make("selector", "iql_advantage", spec, pretrain_steps=5, batch_size=16)
    cached = again.prepare(data, {"seed": 0, "device": torch.device("cpu")})
    assert torch.equal(again.labels, selector.labels)
    assert cached == {**facts, "from_cache": True}  # the cost of making the labels, not of loading them
    rebuilt = OfflineData(data.transitions, dataclasses.replace(data.info, fingerprint="0" * 16), data.normalizer)
    remade = make("selector", "iql_advantage", spec, pretrain_steps=5, batch_size=16)
    assert remade.prepare(rebuilt, {"seed": 0, "device": torch.device("cpu")})["from_cache"] is False  # another build
    assert torch.load(cache, weights_only=True)["fingerprint"] == "0" * 16
    idx = torch.tensor([0, 5, 7])
    assert torch.equal(selector.compute(TensorDict({"index": idx}, batch_size=[3]), 1)["trust"], selector.labels[idx])


class _OfficialIQLQV:
    """QinwenLuo/SSAR action_selection.py ``IQL_qv.train``, one iteration per call, written out
    by hand: next_v = V(s') first, then the V step (expectile on the target twin-Q min), then
    the Q step (the two MSEs averaged) and the target Polyak (tau 0.005). ``v_first`` reads
    V(s') after the V step instead (advrl's order before the fix), to show the test tells
    the two apart."""

    def __init__(self, q_nets, v_net, expectile, v_first=False):
        self.qs, self.vf, self.expectile, self.v_first = q_nets, v_net, expectile, v_first
        self.q_target = copy.deepcopy(q_nets).requires_grad_(False)
        self.q_optimizer = torch.optim.Adam(q_nets.parameters(), lr=3e-4)
        self.v_optimizer = torch.optim.Adam(v_net.parameters(), lr=3e-4)

    def step(self, s, a, r, s2, d):
        sa = torch.cat([s, a], 1)
        with torch.no_grad():
            next_v = self.vf(s2).squeeze(-1)
            target_q = torch.min(*(q(sa).squeeze(-1) for q in self.q_target))
        v = self.vf(s).squeeze(-1)
        u = target_q - v
        v_loss = torch.mean(torch.abs(self.expectile - (u < 0).float()) * u**2)
        self.v_optimizer.zero_grad()
        v_loss.backward()
        self.v_optimizer.step()
        if self.v_first:
            with torch.no_grad():
                next_v = self.vf(s2).squeeze(-1)
        targets = r + (1.0 - d) * 0.99 * next_v
        q_loss = sum(F.mse_loss(q(sa).squeeze(-1), targets) for q in self.qs) / len(self.qs)
        self.q_optimizer.zero_grad()
        q_loss.backward()
        self.q_optimizer.step()
        with torch.no_grad():
            for target, online in zip(self.q_target.parameters(), self.qs.parameters()):
                target.mul_(1 - 0.005).add_(0.005 * online)


def _plain_q(ensemble_net):
    """advrl's twin Q ensemble as two plain nn.Linear MLPs with the same weights."""
    linears = [m for m in ensemble_net if hasattr(m, "weight")]
    q_nets = torch.nn.ModuleList()
    for member in range(2):
        layers = []
        for layer in linears:
            linear = torch.nn.Linear(*layer.weight.shape[1:])
            with torch.no_grad():
                linear.weight.copy_(layer.weight[member].T)
                linear.bias.copy_(layer.bias[member, 0])
            layers += [linear, torch.nn.ReLU()]
        q_nets.append(torch.nn.Sequential(*layers[:-1]))
    return q_nets


def _iql_pretraining(steps, seed=0):
    """advrl's selector pre-training (the recipe of iql_advantage) on fixed small batches, and the
    official loop (and the V-first variant) from the same weights on the same batches."""
    from _helpers import small_transitions

    from advrl.components.selectors.iql_advantage import iql_recipe

    recipe = iql_recipe("x", 0.7)
    torch.manual_seed(seed)
    components = build_components(recipe, DataSpec(5, 2), bind=False)
    updates, _ = build_updates(recipe, components, torch.device("cpu"))
    critic, value = components["critic"].net, components["value"].net
    official = _OfficialIQLQV(_plain_q(critic), copy.deepcopy(value), 0.7)
    v_first = _OfficialIQLQV(_plain_q(critic), copy.deepcopy(value), 0.7, v_first=True)
    for step in range(1, steps + 1):
        td = small_transitions(step, size=32)
        td["reward"] = td["reward"] * 10  # V moves the Q target visibly within a few steps
        for update in updates:
            update.run(td, step, torch.tensor(step))
        for ref in (official, v_first):
            ref.step(td["observation"], td["action"], td["reward"], td["next", "observation"], td["terminated"])
    return components, official, v_first


def test_iql_pretraining_matches_the_official_loop_order():
    """Same weights, same batches: after 10 steps advrl's IQL pre-training has the official
    loop's Q, target Q and V parameters (to float precision), and not those of a loop that
    reads V(s') after the V step."""
    components, official, v_first = _iql_pretraining(steps=10)
    critic = components["critic"]
    pairs = [(_plain_q(critic.net), official.qs), (_plain_q(critic.target_net.module), official.q_target),
             (components["value"].net, official.vf)]
    for ours, theirs in pairs:
        for a, b in zip(ours.parameters(), theirs.parameters()):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
    gap = max((a - b).abs().max().item() for a, b in zip(official.qs.parameters(), v_first.qs.parameters()))
    assert gap > 1e-5  # the order is visible at this tolerance


def test_constant_beta_reproduces_the_td3bc_step():
    """SSAR's form with beta = 1/alpha = 0.4 and lambda = 1/mean|Q| is TD3+BC's loss divided by
    alpha: Adam's step is scale-invariant, so one step of each gives the same parameters."""
    facts = {"obs_dim": 3, "action_dim": 2, "max_action": 1.0}
    small = ["components.actor.hidden_sizes=[8]", "components.critic.hidden_sizes=[8]"]
    td3bc = load_recipe(RECIPES / "td3bc.yaml", small, dataset_facts=facts)
    ssar = load_recipe(
        RECIPES / "td3bc.yaml",
        small + [
            "components.actor_loss.alpha=1.0",
            "components.beta.kind=coefficient", "components.beta.name=constant", "components.beta.value=0.4",
            "components.constraint.coefficient_key=coefficient",
            "updates.actor.terms=[actor,beta,actor_loss,constraint]",
        ],
        dataset_facts=facts,
    )
    results = []
    for recipe in (td3bc, ssar):
        torch.manual_seed(0)
        components = build_components(recipe, DataSpec(3, 2), bind=False)
        updates, _ = build_updates(recipe, components, torch.device("cpu"))
        step_tensor = torch.zeros((), dtype=torch.long)
        for step in (1, 2):
            td = batch(DataSpec(3, 2), size=16, seed=step)
            for update in updates:
                if update.active(step):
                    update.run(td, step, step_tensor)
        results.append(components["actor"].state_dict())
    for key in results[0]:
        assert torch.allclose(results[0][key], results[1][key], atol=1e-6), key


def test_select_all_marks_every_sample_and_swaps_in_with_one_override():
    selector = make("selector", "all", SPEC, out_key="trust")
    assert torch.equal(selector.compute(batch(SPEC, size=3), 1)["trust"], torch.ones(3))
    recipe = load_recipe(
        RECIPES / "ssar_td3bc.yaml", ["components.selector.name=all", "components.selector.out_key=trust"],
        dataset_facts={"obs_dim": 3, "action_dim": 2, "max_action": 1.0},
    )
    components = build_components(recipe, DataSpec(3, 2), bind=False)
    build_updates(recipe, components, torch.device("cpu"))
    assert components["selector"].name == "all"
