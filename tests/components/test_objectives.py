"""objective: td3_critic, td3_actor, value_backup_critic, sac_critic, sac_actor and
coefficient: sac_temperature, checked on hand-set networks and written-out numbers."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from _helpers import batch, bind_all, make, set_linear, set_linear_critic, t
from tensordict import TensorDict

from advrl import DataSpec

SPEC1 = DataSpec(obs_dim=1, action_dim=1)


def _hand_batch(**extra) -> TensorDict:
    """Two transitions, 1-d states and actions: s=[1, 2], a=[0.5, -1], r=[1, 0], s'=[0.2, 3],
    the second terminal."""
    data = {
        "observation": t([[1.0], [2.0]]),
        "action": t([[0.5], [-1.0]]),
        "reward": t([1.0, 0.0]),
        "next": {"observation": t([[0.2], [3.0]])},
        "terminated": t([0.0, 1.0]),
        **extra,
    }
    return TensorDict(data, batch_size=[2])


def _hand_critic(spec=SPEC1):
    """Online Q_0 = s, Q_1 = a + 1; target Q'_0 = 2 s', Q'_1 = a' + 0.5."""
    critic = make("critic", "q_ensemble", spec, num_q=2, hidden_sizes=[])
    set_linear_critic(critic, [[1.0, 0.0], [0.0, 1.0]], [0.0, 1.0])
    set_linear_critic(critic, [[2.0, 0.0], [0.0, 1.0]], [0.0, 0.5], target=True)
    return critic


def _td3_set(spec=SPEC1, target_action: float = 0.5, **loss_cfg):
    actor = make("actor", "deterministic", spec, hidden_sizes=[])
    with torch.no_grad():  # target policy: a' = max_action * tanh(atanh(target_action / max)) = target_action
        actor.target_net.module[0].weight.zero_()
        actor.target_net.module[0].bias.fill_(math.atanh(target_action / spec.max_action))
    components = {
        "actor": actor,
        "critic": _hand_critic(spec) if spec == SPEC1 else make("critic", "q_ensemble", spec, hidden_sizes=[4]),
        "critic_loss": make("objective", "td3_critic", spec, **loss_cfg),
    }
    return bind_all(components)


# ---- td3_critic ------------------------------------------------------------------------------
def test_td3_critic_target_and_loss_by_hand():
    """policy_noise=0: y = r + gamma (1-d) min_i Q'_i(s', pi'(s')); loss = sum_i mean (Q_i - y)^2.

    a' = 0.5; Q'_0 = [0.4, 6], Q'_1 = [1, 1] -> min [0.4, 1]; gamma 0.9:
    y = [1 + 0.9 * 0.4, 0 + 0] = [1.36, 0]. Q_0 = [1, 2], Q_1 = [1.5, 0]:
    loss = ((1-1.36)^2 + 2^2)/2 + ((1.5-1.36)^2 + 0)/2 = 2.0648 + 0.0098 = 2.0746.
    """
    comps = _td3_set(gamma=0.9, policy_noise=0.0)
    out = comps["critic_loss"].compute(_hand_batch(), step=1)
    torch.testing.assert_close(out["next_action"], t([[0.5], [0.5]]))
    torch.testing.assert_close(out["td_target"], t([1.36, 0.0]))
    torch.testing.assert_close(out["loss_critic"], torch.tensor(2.0746))
    assert not out["td_target"].requires_grad
    assert out["loss_critic"].requires_grad


def test_td3_critic_uses_target_networks_not_online():
    """The bootstrap uses the target actor and target critic: changing the online actor or
    the online critic leaves td_target unchanged."""
    comps = _td3_set(gamma=0.9, policy_noise=0.0)
    before = comps["critic_loss"].compute(_hand_batch(), 1)["td_target"]
    with torch.no_grad():
        comps["actor"].net[0].bias.fill_(3.0)
        comps["critic"].net[0].bias.fill_(100.0)
    after = comps["critic_loss"].compute(_hand_batch(), 1)
    torch.testing.assert_close(after["td_target"], before)
    assert after["loss_critic"] > 1000  # but the online critic enters the regression


def test_td3_critic_target_clip_by_hand():
    """clip_target (A2PO's --clip): y = [1.36, 0] clamped to [0.5, 1] = [1, 0.5], and the loss
    regresses on the clamped y: ((1 - 1)^2 + (2 - 0.5)^2)/2 + ((1.5 - 1)^2 + (0 - 0.5)^2)/2 = 1.375."""
    comps = _td3_set(gamma=0.9, policy_noise=0.0, clip_target=True, target_min=0.5, target_max=1.0)
    out = comps["critic_loss"].compute(_hand_batch(), step=1)
    torch.testing.assert_close(out["td_target"], t([1.0, 0.5]))
    torch.testing.assert_close(out["loss_critic"], torch.tensor(1.375))
    off = _td3_set(gamma=0.9, policy_noise=0.0, target_min=0.5, target_max=1.0)  # bounds alone: no clip
    torch.testing.assert_close(off["critic_loss"].compute(_hand_batch(), 1)["td_target"], t([1.36, 0.0]))
    assert make("objective", "td3_critic", SPEC1).config.clip_target is False  # off by default, as official


def test_td3_critic_target_clip_bounds_from_the_rewards():
    """Unset bounds: A2PO main.py's min_v, max_v = min r / (1 - gamma), max r / (1 - gamma) over the
    dataset's training rewards; a bound set in the config is kept; no clip, no preparation."""
    data = SimpleNamespace(transitions={"reward": t([-0.5, 2.0, 0.25])})
    loss = _td3_set(gamma=0.9, clip_target=True)["critic_loss"]
    facts = loss.prepare(data, {"seed": 0})
    assert facts == pytest.approx({"target_min": -5.0, "target_max": 20.0})
    assert loss.bounds == pytest.approx((-5.0, 20.0))
    kept = _td3_set(gamma=0.9, clip_target=True, target_min=-100.0)["critic_loss"]  # e.g. medium-diverse: +-100
    kept.prepare(data, {"seed": 0})
    assert kept.bounds == pytest.approx((-100.0, 20.0))
    assert _td3_set(gamma=0.9)["critic_loss"].prepare(data, {"seed": 0}) is None
    with pytest.raises(RuntimeError, match="bounds are unknown"):
        _td3_set(gamma=0.9, clip_target=True)["critic_loss"].compute(_hand_batch(), 1)
    with pytest.raises(TypeError, match="offline data"):
        _td3_set(gamma=0.9, clip_target=True)["critic_loss"].prepare(SimpleNamespace(), {"seed": 0})


def test_td3_critic_terminal_transitions_do_not_bootstrap():
    """terminated = 1: y = r whatever s' is."""
    comps = _td3_set(gamma=0.99, policy_noise=0.0)
    td = _hand_batch()
    td["terminated"] = t([1.0, 1.0])
    torch.testing.assert_close(comps["critic_loss"].compute(td, 1)["td_target"], td["reward"])
    td["next", "observation"] = t([[50.0], [-70.0]])
    torch.testing.assert_close(comps["critic_loss"].compute(td, 1)["td_target"], td["reward"])


def test_td3_critic_gradient_only_through_online_q():
    """d loss / d b_i = 2 mean(Q_i - y) for the output bias of member i (target treated as const)."""
    comps = _td3_set(gamma=0.9, policy_noise=0.0)
    loss = comps["critic_loss"].compute(_hand_batch(), 1)["loss_critic"]
    (grad_bias,) = torch.autograd.grad(loss, [comps["critic"].net[0].bias])
    # member 0: Q - y = [-0.36, 2] -> 2 * 0.82 = 1.64 ; member 1: [0.14, 0] -> 0.14
    torch.testing.assert_close(grad_bias.flatten(), t([1.64, 0.14]))


def test_td3_critic_noise_reproduces_seeded_formula():
    """With noise: a' = clip(pi'(s') + clip(sigma*max*eps, +-c*max), +-max), eps ~ N(0, 1)
    drawn by randn_like; recomputed here from the same seed."""
    spec = DataSpec(obs_dim=2, action_dim=2, max_action=2.0)
    comps = _td3_set(spec, target_action=1.5, policy_noise=0.3, noise_clip=0.25)
    td = batch(spec, size=8)
    torch.manual_seed(123)
    out = comps["critic_loss"].compute(td, 1)
    torch.manual_seed(123)
    eps = torch.randn(8, 2)
    expected = (1.5 + (eps * 0.3 * 2.0).clamp(-0.5, 0.5)).clamp(-2.0, 2.0)
    torch.testing.assert_close(out["next_action"], expected)


@pytest.mark.parametrize("base", [0.0, 1.9, -1.9])
def test_td3_critic_noise_clipped_and_action_in_box(base):
    """Huge policy_noise: every |noise| is clipped at noise_clip * max_action, and the next
    action stays in [-max_action, max_action]."""
    spec = DataSpec(obs_dim=2, action_dim=2, max_action=2.0)
    comps = _td3_set(spec, target_action=base, policy_noise=50.0, noise_clip=0.5)
    out = comps["critic_loss"].compute(batch(spec, size=8), 1)
    next_action = out["next_action"]
    assert next_action.abs().max() <= 2.0
    noise = next_action - base
    assert noise.abs().max() <= 1.0 + 1e-6
    if base == 0.0:  # nothing hits the box, so every noise sample sits on the clip
        torch.testing.assert_close(noise.abs(), torch.ones_like(noise))
    else:  # noise towards the near edge is cut by the box at exactly +-max_action
        assert (next_action.abs() == 2.0).any()


# ---- td3_actor ---------------------------------------------------------------------------------
def _td3_actor_set(**cfg):
    critic = make("critic", "q_ensemble", SPEC1, num_q=2, hidden_sizes=[])
    # Q_0 = s + 2a, Q_1 = -10 (so min and q1 differ)
    set_linear_critic(critic, [[1.0, 2.0], [0.0, 0.0]], [0.0, -10.0])
    comps = {"critic": critic, "actor_loss": make("objective", "td3_actor", SPEC1, **cfg)}
    return bind_all(comps)


def _actor_batch():
    policy_action = t([[0.5], [0.25]]).requires_grad_()
    return TensorDict({"observation": t([[1.0], [-3.0]]), "policy_action": policy_action}, batch_size=[2]), policy_action


def test_td3_actor_normalised_lambda_by_hand():
    """lambda = alpha / mean|Q1(s, pi)| (detached), loss = -lambda mean Q1.

    Q1 = [2, -2.5] -> mean|Q1| = 2.25, lambda = 2.5/2.25; mean Q1 = -0.25 -> loss = lambda/4.
    """
    comps = _td3_actor_set(alpha=2.5, normalize_q=True, q="q1")
    td, policy_action = _actor_batch()
    out = comps["actor_loss"].compute(td, 1)
    lam = 2.5 / 2.25
    torch.testing.assert_close(out["lambda"], torch.tensor(lam))
    torch.testing.assert_close(out["loss_actor"], torch.tensor(lam * 0.25))
    # lambda is a constant for the gradient: d loss / d pi_b = -lambda * dQ1/da / B = -lambda
    (grad,) = torch.autograd.grad(out["loss_actor"], [policy_action])
    torch.testing.assert_close(grad, torch.full((2, 1), -lam))


def test_td3_actor_without_normalisation():
    """normalize_q=False: lambda = alpha, loss = -alpha mean Q1 = 0.25 alpha."""
    comps = _td3_actor_set(alpha=1.0, normalize_q=False)
    out = comps["actor_loss"].compute(_actor_batch()[0], 1)
    torch.testing.assert_close(out["lambda"], torch.tensor(1.0))
    torch.testing.assert_close(out["loss_actor"], torch.tensor(0.25))


def test_td3_actor_q_reduction_option():
    """q='min' ascends the ensemble minimum: here Q_1 = -10 everywhere, so loss = -lambda*(-10)
    with lambda = alpha / 10."""
    comps = _td3_actor_set(alpha=2.5, normalize_q=True, q="min")
    out = comps["actor_loss"].compute(_actor_batch()[0], 1)
    torch.testing.assert_close(out["lambda"], torch.tensor(0.25))
    torch.testing.assert_close(out["loss_actor"], torch.tensor(2.5))


# ---- value_backup_critic ---------------------------------------------------------------------
def test_value_backup_critic_by_hand():
    """y = r + gamma (1-d) V(s') with V(s) = 3 s + 1 (no policy); loss = sum_i MSE(Q_i, y).

    V(s') = [1.6, 10]; gamma 0.5: y = [1 + 0.8, 0] = [1.8, 0]. Q_0 = [1, 2], Q_1 = [1.5, 0]:
    loss = (0.64 + 4)/2 + (0.09 + 0)/2 = 2.32 + 0.045 = 2.365.
    """
    value = make("value", "expectile", SPEC1, hidden_sizes=[])
    set_linear(value.net[0], [[3.0]], [1.0])
    comps = bind_all(
        {"critic": _hand_critic(), "value": value, "critic_loss": make("objective", "value_backup_critic", SPEC1, gamma=0.5)}
    )
    out = comps["critic_loss"].compute(_hand_batch(), 1)
    torch.testing.assert_close(out["td_target"], t([1.8, 0.0]))
    torch.testing.assert_close(out["loss_critic"], torch.tensor(2.365))
    assert not out["td_target"].requires_grad
    (grad_v,) = torch.autograd.grad(out["loss_critic"], [value.net[0].weight], allow_unused=True)
    assert grad_v is None  # V is not trained by the critic loss


# ---- sac_critic --------------------------------------------------------------------------------
def _sac_set(temperature: bool, init_log_alpha: float = 0.0, multiplier: float = 1.0, gamma: float = 0.9):
    actor = make("actor", "tanh_gaussian", SPEC1, hidden_sizes=[4])
    comps = {"actor": actor, "critic": _hand_critic()}
    if temperature:
        comps["temperature"] = make("coefficient", "sac_temperature", SPEC1, init_log_alpha=init_log_alpha, multiplier=multiplier)
    comps["critic_loss"] = make("objective", "sac_critic", SPEC1, gamma=gamma, temperature="temperature" if temperature else None)
    return bind_all(comps)


def _expected_sac_target(comps, td, seed, alpha, gamma=0.9):
    torch.manual_seed(seed)
    with torch.no_grad():
        next_action, next_log_prob = comps["actor"].sample(td["next", "observation"])
    s_next, a_next = td["next", "observation"][:, 0], next_action[:, 0]
    min_q = torch.minimum(2 * s_next, a_next + 0.5)  # hand-set target critic
    return td["reward"] + gamma * (1 - td["terminated"]) * (min_q - alpha * next_log_prob)


def test_sac_critic_without_temperature():
    """No temperature slot: y = r + gamma (1-d) min_i Q'_i(s', a'), a' ~ pi(s') (same seed);
    loss = sum_i MSE(Q_i(s, a), y)."""
    comps = _sac_set(temperature=False)
    td = _hand_batch()
    torch.manual_seed(5)
    out = comps["critic_loss"].compute(td, 1)
    y = _expected_sac_target(comps, td, seed=5, alpha=0.0)
    torch.testing.assert_close(out["td_target"], y)
    q0, q1 = td["observation"][:, 0], td["action"][:, 0] + 1
    torch.testing.assert_close(out["loss_critic"], ((q0 - y) ** 2).mean() + ((q1 - y) ** 2).mean())
    assert out["td_target"][1] == 0.0  # terminal: no bootstrap, reward 0


@pytest.mark.parametrize("init_log_alpha,multiplier", [(math.log(0.5), 1.0), (0.0, 2.0)])
def test_sac_critic_soft_backup_with_temperature(init_log_alpha, multiplier):
    """With a temperature slot the backup is min Q' - alpha log pi(a'|s'), alpha = multiplier *
    exp(log_alpha); it differs from the plain backup by -gamma (1-d) alpha log pi."""
    alpha = multiplier * math.exp(init_log_alpha)
    comps = _sac_set(temperature=True, init_log_alpha=init_log_alpha, multiplier=multiplier)
    td = _hand_batch()
    torch.manual_seed(5)
    out = comps["critic_loss"].compute(td, 1)
    soft = _expected_sac_target(comps, td, seed=5, alpha=alpha)
    hard = _expected_sac_target(comps, td, seed=5, alpha=0.0)
    torch.testing.assert_close(out["td_target"], soft)
    assert not torch.allclose(soft[0], hard[0])
    torch.testing.assert_close(soft[1], hard[1])  # terminal: the entropy term is cut too


def test_sac_critic_temperature_slot_checked_at_bind():
    """A temperature slot naming a coefficient without value() must be refused at bind time."""
    comps = {
        "actor": make("actor", "tanh_gaussian", SPEC1, hidden_sizes=[4]),
        "critic": _hand_critic(),
        "temperature": make("coefficient", "constant", SPEC1, value=0.2),
    }
    loss = make("objective", "sac_critic", SPEC1, temperature="temperature")
    with pytest.raises(TypeError):
        loss.bind(comps)


# ---- sac_actor ---------------------------------------------------------------------------------
def test_sac_actor_loss_by_hand():
    """loss = mean(alpha * log pi - min_i Q_i(s, a~)).

    s=[1, 2], a~=[0.5, -1]: Q_0 = s = [1, 2], Q_1 = a + 1 = [1.5, 0] -> min [1, 0];
    alpha = [0.5, 0.5], log pi = [-1, 2]: mean([-0.5 - 1, 1 - 0]) = -0.25.
    """
    comps = bind_all({"critic": _hand_critic(), "actor_loss": make("objective", "sac_actor", SPEC1)})
    policy_action = t([[0.5], [-1.0]]).requires_grad_()
    td = TensorDict(
        {
            "observation": t([[1.0], [2.0]]),
            "policy_action": policy_action,
            "policy_log_prob": t([-1.0, 2.0]),
            "entropy_coef": t([0.5, 0.5]),
        },
        batch_size=[2],
    )
    out = comps["actor_loss"].compute(td, 1)
    torch.testing.assert_close(out["loss_actor"], torch.tensor(-0.25))
    # only sample 1 has the a-dependent member as the min: dQ/da = 1 -> grad -1/2
    (grad,) = torch.autograd.grad(out["loss_actor"], [policy_action])
    torch.testing.assert_close(grad, t([[0.0], [-0.5]]))


def test_sac_actor_q_option():
    """q='mean' uses the ensemble mean: mean Q = [1.25, 1] -> mean([-0.5 - 1.25, 1 - 1]) = -0.875."""
    comps = bind_all({"critic": _hand_critic(), "actor_loss": make("objective", "sac_actor", SPEC1, q="mean")})
    td = TensorDict(
        {
            "observation": t([[1.0], [2.0]]),
            "policy_action": t([[0.5], [-1.0]]),
            "policy_log_prob": t([-1.0, 2.0]),
            "entropy_coef": t([0.5, 0.5]),
        },
        batch_size=[2],
    )
    torch.testing.assert_close(comps["actor_loss"].compute(td, 1)["loss_actor"], torch.tensor(-0.875))


# ---- coefficient: sac_temperature ------------------------------------------------------------
def test_sac_temperature_loss_and_entropy_coef():
    """loss = -mean(log_alpha (log pi + target_entropy)), target_entropy = -action_dim by default;
    entropy_coef = exp(log_alpha) per sample, detached.

    log_alpha = 0.5, A = 3, log pi = [1, -2, 4]: -(0.5 * mean([-2, -5, 1])) = 1.0.
    """
    spec = DataSpec(obs_dim=2, action_dim=3)
    temp = make("coefficient", "sac_temperature", spec, init_log_alpha=0.5)
    assert temp.target_entropy == -3.0
    log_prob = t([1.0, -2.0, 4.0]).requires_grad_()
    out = temp.compute(TensorDict({"policy_log_prob": log_prob}, batch_size=[3]), 1)
    torch.testing.assert_close(out["loss_temperature"], torch.tensor(1.0))
    torch.testing.assert_close(out["entropy_coef"], torch.full((3,), math.exp(0.5)))
    assert not out["entropy_coef"].requires_grad
    # d loss / d log_alpha = -mean(log pi + target_entropy) = 2; no gradient into log pi
    grads = torch.autograd.grad(out["loss_temperature"], [temp.log_alpha, log_prob], allow_unused=True)
    torch.testing.assert_close(grads[0], torch.tensor(2.0))
    assert grads[1] is None


def test_sac_temperature_explicit_target_and_multiplier():
    """An explicit target_entropy (also 0.0) replaces -A; the multiplier scales alpha but not the loss."""
    spec = DataSpec(obs_dim=2, action_dim=3)
    temp = make("coefficient", "sac_temperature", spec, init_log_alpha=-1.0, target_entropy=0.0, multiplier=3.0)
    assert temp.target_entropy == 0.0
    out = temp.compute(TensorDict({"policy_log_prob": t([1.0, 3.0])}, batch_size=[2]), 1)
    torch.testing.assert_close(out["loss_temperature"], torch.tensor(2.0))  # -(-1 * 2)
    torch.testing.assert_close(out["entropy_coef"], torch.full((2,), 3.0 * math.exp(-1.0)))
    torch.testing.assert_close(temp.value(), torch.tensor(3.0 * math.exp(-1.0)))


def test_value_backup_critic_mean_reduction_halves_the_two_member_sum():
    """ensemble_reduction mean (CORL's IQL) is the sum over members divided by their number."""
    spec = DataSpec(obs_dim=2, action_dim=1)
    comps = {
        "critic": make("critic", "q_ensemble", spec, hidden_sizes=[4]),
        "value": make("value", "expectile", spec, hidden_sizes=[4]),
    }
    summed = make("objective", "value_backup_critic", spec)
    averaged = make("objective", "value_backup_critic", spec, ensemble_reduction="mean")
    comps.update(summed=summed, averaged=averaged)
    bind_all(comps)
    td = batch(spec, size=6)
    assert torch.allclose(averaged.compute(td, 1)["loss_critic"] * 2, summed.compute(td, 1)["loss_critic"])
    with pytest.raises(ValueError, match="ensemble_reduction"):
        make("objective", "value_backup_critic", spec, ensemble_reduction="max")
