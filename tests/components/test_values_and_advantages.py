"""value: expectile, advantage: q_minus_v, selector: return_threshold, coefficient: constant,
schedule: constant / linear / cosine."""

from __future__ import annotations

import math

import pytest
import torch
from _helpers import bind_all, make, set_linear, set_linear_critic, t
from tensordict import TensorDict

from advrl import DataSpec
from advrl.components.values.expectile import expectile_loss

SPEC1 = DataSpec(obs_dim=1, action_dim=1)


# ---- expectile -----------------------------------------------------------------------------------
def test_expectile_loss_by_hand():
    """mean |tau - 1[u < 0]| u^2: u = [1, -2], tau 0.7 -> (0.7 * 1 + 0.3 * 4) / 2 = 0.95."""
    torch.testing.assert_close(expectile_loss(t([1.0, -2.0]), 0.7), torch.tensor(0.95))
    torch.testing.assert_close(expectile_loss(t([1.0, -2.0]), 0.9), torch.tensor((0.9 + 0.1 * 4) / 2))
    # tau = 0.5 is half the mean squared error
    u = t([0.3, -1.5, 2.0, 0.0])
    torch.testing.assert_close(expectile_loss(u, 0.5), 0.5 * (u**2).mean())


def test_expectile_loss_asymmetry():
    """tau > 0.5 penalises V below Q (u > 0) more than V above Q by the same amount."""
    assert expectile_loss(t([1.0]), 0.8) > expectile_loss(t([-1.0]), 0.8)
    torch.testing.assert_close(expectile_loss(t([1.0]), 0.8) / expectile_loss(t([-1.0]), 0.8), torch.tensor(4.0))


def _value_set(**cfg):
    """Online critic Q_0 = s + a, Q_1 = 2a; target Q'_0 = s, Q'_1 = a + 1; V(s) = 2s - 1."""
    critic = make("critic", "q_ensemble", SPEC1, num_q=2, hidden_sizes=[])
    set_linear_critic(critic, [[1.0, 1.0], [0.0, 2.0]], [0.0, 0.0])
    set_linear_critic(critic, [[1.0, 0.0], [0.0, 1.0]], [0.0, 1.0], target=True)
    value = make("value", "expectile", SPEC1, hidden_sizes=[], **cfg)
    set_linear(value.net[0], [[2.0]], [-1.0])
    return bind_all({"critic": critic, "value": value})


def _sa_batch() -> TensorDict:
    # s = [1, 2, 0], a = [0.5, -1, 2]
    return TensorDict({"observation": t([[1.0], [2.0], [0.0]]), "action": t([[0.5], [-1.0], [2.0]])}, batch_size=[3])


def test_expectile_value_compute_by_hand():
    """Target-critic min: Q' = min([1, 2, 0], [1.5, 0, 3]) = [1, 0, 0]; V = [1, 3, -1];
    u = [0, -3, 1]; tau 0.7: mean(0, 0.3 * 9, 0.7 * 1) = 3.4 / 3."""
    comps = _value_set(expectile=0.7)
    out = comps["value"].compute(_sa_batch(), 1)
    torch.testing.assert_close(out["value_target"], t([1.0, 0.0, 0.0]))
    torch.testing.assert_close(out["state_value"], t([1.0, 3.0, -1.0]))
    torch.testing.assert_close(out["loss_value"], torch.tensor(3.4 / 3))
    assert not out["value_target"].requires_grad


def test_expectile_state_value_is_detached_pre_update_v():
    """state_value is V(s) with this step's parameters, detached; the loss carries V's gradient."""
    comps = _value_set()
    value = comps["value"]
    out = value.compute(_sa_batch(), 1)
    assert not out["state_value"].requires_grad
    torch.testing.assert_close(out["state_value"], value(_sa_batch()["observation"]).detach())
    (grad_b,) = torch.autograd.grad(out["loss_value"], [value.net[0].bias])
    # d/dV of mean w u^2 with u = Q - V: -2 w u / B -> -(2/3)(0 + 0.3*(-3) + 0.7*1) = 0.1333..
    torch.testing.assert_close(grad_b, torch.tensor([2 / 15]))
    with torch.no_grad():  # an update of V afterwards does not alter the returned tensor
        value.net[0].bias.fill_(100.0)
    torch.testing.assert_close(out["state_value"], t([1.0, 3.0, -1.0]))


def test_expectile_value_online_critic_and_reduction():
    """use_target_critic=False reads the online critic; q='mean' averages members.

    Online Q_0 = s + a = [1.5, 1, 2], Q_1 = 2a = [1, -2, 4] -> mean [1.25, -0.5, 3]."""
    comps = _value_set(use_target_critic=False, q="mean")
    out = comps["value"].compute(_sa_batch(), 1)
    torch.testing.assert_close(out["value_target"], t([1.25, -0.5, 3.0]))


def test_expectile_rejects_bad_tau():
    """expectile must lie strictly inside (0, 1)."""
    for bad in (0.0, 1.0, 1.5):
        with pytest.raises(ValueError, match="expectile"):
            make("value", "expectile", SPEC1, expectile=bad, hidden_sizes=[])


# ---- q_minus_v -----------------------------------------------------------------------------------
def _adv_set(**cfg):
    comps = _value_set()
    comps["advantage"] = make("advantage", "q_minus_v", SPEC1, **cfg)
    return bind_all(comps)


def test_q_minus_v_critic_path_target_min():
    """A = min_i Q'_i(s, a) - state_value = [1, 0, 0] - [0.5, 0.5, 0.5]."""
    comps = _adv_set()
    td = _sa_batch()
    td["state_value"] = t([0.5, 0.5, 0.5])
    out = comps["advantage"].compute(td, 1)
    torch.testing.assert_close(out["advantage"], t([0.5, -0.5, -0.5]))


def test_q_minus_v_critic_path_online_q1():
    """q='q1', use_target_critic=False: A = Q_0(s, a) - V = [1.5, 1, 2] - [1, 3, -1]."""
    comps = _adv_set(q="q1", use_target_critic=False)
    td = _sa_batch()
    td["state_value"] = t([1.0, 3.0, -1.0])
    out = comps["advantage"].compute(td, 1)
    torch.testing.assert_close(out["advantage"], t([0.5, -2.0, 3.0]))
    assert not out["advantage"].requires_grad


def test_q_minus_v_q_key_path():
    """q_key: A = td[q_key] - state_value, no critic evaluation and no gradient through Q."""
    comps = _adv_set(q_key="value_target")
    q = t([4.0, -1.0, 2.5]).requires_grad_()
    td = _sa_batch()
    td["state_value"] = t([1.0, 1.0, 3.0])
    td["value_target"] = q
    with torch.no_grad():  # a broken critic must not matter on this path
        comps["critic"].target_net.module[0].bias.fill_(float("nan"))
    out = comps["advantage"].compute(td, 1)
    torch.testing.assert_close(out["advantage"], t([3.0, -2.0, -0.5]))
    assert not out["advantage"].requires_grad
    assert "value_target" in comps["advantage"].read_keys()


def test_value_then_advantage_like_iql():
    """IQL's chain: the value term's value_target/state_value feed q_minus_v(q_key=value_target),
    giving the same advantage as the critic path."""
    comps = _adv_set(q_key="value_target")
    td = _sa_batch()
    td.update({k: v for k, v in comps["value"].compute(td, 1).items() if v.dim() > 0})
    via_key = comps["advantage"].compute(td, 1)["advantage"]
    via_critic = make("advantage", "q_minus_v", SPEC1)
    via_critic.bind(comps)
    torch.testing.assert_close(via_key, via_critic.compute(td, 1)["advantage"])
    torch.testing.assert_close(via_key, t([0.0, -3.0, 1.0]))


# ---- selector / coefficient ------------------------------------------------------------------------
def test_return_threshold_mask():
    """mask = 1[G > threshold] (strict), written as float under out_key."""
    sel = make("selector", "return_threshold", SPEC1, threshold=0.5)
    td = TensorDict({"episode_return": t([-1.0, 0.5, 0.6, 30.0])}, batch_size=[4])
    out = sel.compute(td, 1)
    assert set(out) == {"mask"}
    assert out["mask"].dtype == torch.float32
    torch.testing.assert_close(out["mask"], t([0.0, 0.0, 1.0, 1.0]))
    renamed = make("selector", "return_threshold", SPEC1, out_key="top")
    assert renamed.write_keys() == ["top"]
    torch.testing.assert_close(renamed.compute(td, 1)["top"], t([0.0, 1.0, 1.0, 1.0]))


def test_constant_coefficient():
    """Writes `value` once per sample under out_key, without gradient."""
    coef = make("coefficient", "constant", SPEC1, value=0.4, out_key="beta")
    out = coef.compute(TensorDict({"observation": torch.zeros(3, 1)}, batch_size=[3]), 1)
    assert coef.write_keys() == ["beta"]
    torch.testing.assert_close(out["beta"], torch.full((3,), 0.4))
    assert not out["beta"].requires_grad
    assert list(coef.parameters()) == []


# ---- schedules -------------------------------------------------------------------------------------
def test_constant_schedule():
    """value(step) = value for every step."""
    sched = make("schedule", "constant", SPEC1, value=0.3)
    assert [sched.value(s) for s in (0, 1, 10**6)] == [0.3, 0.3, 0.3]


def test_linear_schedule():
    """start + (end - start) clip((step - begin) / steps, 0, 1): 1 -> 0.2 over steps 10..50."""
    sched = make("schedule", "linear", SPEC1, start=1.0, end=0.2, steps=40, begin=10)
    for step, expected in [(0, 1.0), (10, 1.0), (20, 0.8), (30, 0.6), (50, 0.2), (1000, 0.2)]:
        assert sched.value(step) == pytest.approx(expected)


def test_cosine_schedule():
    """end + (start - end)(1 + cos(pi min(step/steps, 1)))/2: start, midpoint, quarter, end, after."""
    sched = make("schedule", "cosine", SPEC1, start=2.0, end=0.0, steps=100)
    assert sched.value(0) == pytest.approx(2.0)
    assert sched.value(50) == pytest.approx(1.0)
    assert sched.value(25) == pytest.approx(1.0 + math.cos(math.pi / 4))
    assert sched.value(100) == pytest.approx(0.0, abs=1e-12)
    assert sched.value(500) == pytest.approx(0.0, abs=1e-12)
    rising = make("schedule", "cosine", SPEC1, start=0.5, end=1.5, steps=10)
    assert rising.value(5) == pytest.approx(1.0)
