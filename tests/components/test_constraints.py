"""constraint: bc_mse, awr, cql_penalty — per-sample weighting, clamps and the CQL logsumexp."""

from __future__ import annotations

import math

import pytest
import torch
from _helpers import batch, bind_all, make, set_constant_critic, set_linear, set_linear_critic, t
from tensordict import TensorDict
from torch.distributions import Normal

from advrl import DataSpec

# ---- bc_mse --------------------------------------------------------------------------------------


def _bc_batch(**extra) -> TensorDict:
    """(pi - a)^2 = [[1, 0], [1, 4]]: mean over B x A = 6/4 = 1.5."""
    return TensorDict(
        {"policy_action": t([[0.0, 1.0], [1.0, 1.0]]), "action": t([[1.0, 1.0], [0.0, -1.0]]), **extra}, batch_size=[2]
    )


def test_bc_mse_plain_and_weight():
    """loss = weight * mean_{B x A}(pi - a)^2."""
    bc = make("constraint", "bc_mse", DataSpec(1, 2))
    torch.testing.assert_close(bc.compute(_bc_batch(), 1)["loss_bc"], torch.tensor(1.5))
    bc2 = make("constraint", "bc_mse", DataSpec(1, 2), weight=2.0)
    torch.testing.assert_close(bc2.compute(_bc_batch(), 1)["loss_bc"], torch.tensor(3.0))
    assert bc.read_keys() == ["action", "policy_action"]


def test_bc_mse_coefficient_key():
    """c = [2, 0.5] scales each sample's row: [[2, 0], [0.5, 2]] -> 4.5 / 4."""
    bc = make("constraint", "bc_mse", DataSpec(1, 2), coefficient_key="beta")
    out = bc.compute(_bc_batch(beta=t([2.0, 0.5])), 1)
    torch.testing.assert_close(out["loss_bc"], torch.tensor(1.125))
    assert bc.read_keys() == ["action", "policy_action", "beta"]


def test_bc_mse_mask_key():
    """m = [0, 1] drops sample 0 but still averages over all B x A entries: 5 / 4."""
    bc = make("constraint", "bc_mse", DataSpec(1, 2), mask_key="mask")
    torch.testing.assert_close(bc.compute(_bc_batch(mask=t([0.0, 1.0])), 1)["loss_bc"], torch.tensor(1.25))


def test_bc_mse_coefficient_and_mask():
    """Both: c * m = [0, 0.5] -> [[0, 0], [0.5, 2]] -> 2.5 / 4; weight 2 doubles it."""
    bc = make("constraint", "bc_mse", DataSpec(1, 2), coefficient_key="beta", mask_key="mask", weight=2.0)
    out = bc.compute(_bc_batch(beta=t([2.0, 0.5]), mask=t([0.0, 1.0])), 1)
    torch.testing.assert_close(out["loss_bc"], torch.tensor(1.25))
    assert bc.read_keys() == ["action", "policy_action", "beta", "mask"]


def test_bc_mse_gradient():
    """d loss / d pi = 2 (pi - a) / (B A) (no gradient into the dataset action)."""
    bc = make("constraint", "bc_mse", DataSpec(1, 2))
    td = _bc_batch()
    pi = td["policy_action"].clone().requires_grad_()
    td["policy_action"] = pi
    (grad,) = torch.autograd.grad(bc.compute(td, 1)["loss_bc"], [pi])
    torch.testing.assert_close(grad, 2 * (pi.detach() - td["action"]) / 4)


# ---- awr -----------------------------------------------------------------------------------------


def _gaussian_actor(spec):
    """Gaussian actor, no hidden layer: mean = max * tanh(W s + b), log_std = [-0.5, 0.25]."""
    actor = make("actor", "gaussian", spec, hidden_sizes=[])
    set_linear(actor.net[0], [[0.5, -1.0], [1.0, 0.25]], [0.1, -0.2])
    with torch.no_grad():
        actor.log_std.copy_(t([-0.5, 0.25]))
    return actor


def test_awr_weights_and_loss():
    """weight = min(exp(beta A), max_weight); loss = mean(weight * -log pi(a|s)).

    beta 2, A = [-1, 0, 1, 5], max_weight 10 -> weights [e^-2, 1, e^2, 10]."""
    spec = DataSpec(obs_dim=2, action_dim=2)
    actor = _gaussian_actor(spec)
    awr = make("constraint", "awr", spec, beta=2.0, max_weight=10.0)
    bind_all({"actor": actor, "awr": awr})
    advantage = t([-1.0, 0.0, 1.0, 5.0]).requires_grad_()
    td = batch(spec, size=4, advantage=advantage)
    out = awr.compute(td, 1)
    weights = t([math.exp(-2), 1.0, math.exp(2), 10.0])
    torch.testing.assert_close(out["awr_weight"], weights)

    obs, act = td["observation"], td["action"]
    mean = torch.tanh(obs @ t([[0.5, -1.0], [1.0, 0.25]]).T + t([0.1, -0.2]))
    log_prob = Normal(mean, t([-0.5, 0.25]).exp()).log_prob(act).sum(-1)
    torch.testing.assert_close(out["loss_awr"], (weights * -log_prob).mean())
    torch.testing.assert_close(actor.log_prob(obs, act), log_prob)

    # the advantage is a constant; the gradient flows to the actor
    grads = torch.autograd.grad(out["loss_awr"], [advantage, actor.log_std], allow_unused=True)
    assert grads[0] is None
    assert grads[1] is not None and grads[1].abs().sum() > 0


def test_awr_beta_zero_is_behaviour_cloning():
    """beta = 0: every weight is 1, the loss is the mean negative log-likelihood."""
    spec = DataSpec(obs_dim=2, action_dim=2)
    actor = _gaussian_actor(spec)
    awr = make("constraint", "awr", spec, beta=0.0)
    bind_all({"actor": actor, "awr": awr})
    td = batch(spec, size=3, advantage=t([-3.0, 0.0, 7.0]))
    out = awr.compute(td, 1)
    torch.testing.assert_close(out["awr_weight"], torch.ones(3))
    torch.testing.assert_close(out["loss_awr"], -actor.log_prob(td["observation"], td["action"]).mean())


def test_awr_requires_log_prob():
    """Binding awr to an actor without log_prob (deterministic) is refused."""
    spec = DataSpec(obs_dim=2, action_dim=2)
    awr = make("constraint", "awr", spec)
    with pytest.raises(TypeError, match="log_prob"):
        awr.bind({"actor": make("actor", "deterministic", spec, hidden_sizes=[4])})


# ---- cql_penalty ---------------------------------------------------------------------------------

SPEC_CQL = DataSpec(obs_dim=2, action_dim=2)


def _cql_set(critic_value: float | None = 0.7, num_q: int = 2, spec=SPEC_CQL, **cfg):
    critic = make("critic", "q_ensemble", spec, num_q=num_q, hidden_sizes=[4] if critic_value is not None else [])
    if critic_value is not None:
        set_constant_critic(critic, critic_value)
    comps = {
        "actor": make("actor", "tanh_gaussian", spec, hidden_sizes=[4]),
        "critic": critic,
        "cql": make("constraint", "cql_penalty", spec, **cfg),
    }
    return bind_all(comps)


@pytest.mark.parametrize("num_q,n,temp", [(2, 3, 1.0), (3, 2, 0.5)])
def test_cql_constant_critic_no_importance_sampling(num_q, n, temp):
    """Q = c everywhere: T logsumexp over 3n values c/T = c + T log(3n), so diff = T log(3n) per
    critic and sample, and loss = alpha * num_q * T log(3n)."""
    comps = _cql_set(critic_value=0.7, num_q=num_q, alpha=2.0, n_actions=n, temperature=temp, importance_sample=False)
    out = comps["cql"].compute(batch(SPEC_CQL, size=4), 1)
    diff = temp * math.log(3 * n)
    torch.testing.assert_close(out["cql_diff"], torch.full((4,), diff))
    torch.testing.assert_close(out["loss_cql"], torch.tensor(2.0 * num_q * diff))


def test_cql_coefficient_key_scales_per_sample():
    """coefficient_key: diff(s) * c(s), so loss = alpha * num_q * T log(3n) * mean(c)."""
    comps = _cql_set(alpha=1.5, n_actions=2, temperature=1.0, importance_sample=False, coefficient_key="beta")
    beta = t([0.0, 1.0, 2.0, 3.0])
    out = comps["cql"].compute(batch(SPEC_CQL, size=4, beta=beta), 1)
    diff = math.log(6)
    torch.testing.assert_close(out["cql_diff"], beta * diff)
    torch.testing.assert_close(out["loss_cql"], torch.tensor(1.5 * 2 * diff * 1.5))
    assert "beta" in comps["cql"].read_keys()


def test_cql_diff_clipping():
    """diff is clipped to [diff_min, diff_max] before averaging."""
    comps = _cql_set(alpha=1.0, n_actions=2, importance_sample=False, diff_max=0.5)
    out = comps["cql"].compute(batch(SPEC_CQL, size=3), 1)
    torch.testing.assert_close(out["cql_diff"], torch.full((3,), 0.5))
    torch.testing.assert_close(out["loss_cql"], torch.tensor(1.0))


def _independent_cql(comps, td, seed, n, temp, alpha, max_action):
    """Straightforward recomputation: same random draws in the same order, a Python loop over
    critics and states, explicit importance weights."""
    actor, critic = comps["actor"], comps["critic"]
    obs, next_obs, act = td["observation"], td["next", "observation"], td["action"]
    batch_size, act_dim = obs.shape[0], act.shape[-1]
    torch.manual_seed(seed)
    with torch.no_grad():
        random_actions = (torch.rand(batch_size, n, act_dim) * 2 - 1) * max_action
        cur_a, cur_lp = actor.sample(obs.unsqueeze(1).expand(batch_size, n, -1))
        next_a, next_lp = actor.sample(next_obs.unsqueeze(1).expand(batch_size, n, -1))
    log_uniform = -act_dim * math.log(2 * max_action)  # density of Uniform([-m, m]^A)
    num_q = critic.config.num_q
    layer = critic.net[0]  # linear critic: Q_i(s, a) = [s, a] . w_i + b_i
    total = 0.0
    diffs = torch.zeros(num_q, batch_size)
    for i in range(num_q):
        w, b = layer.weight[i, :, 0].detach(), layer.bias[i, 0, 0].detach()

        def q(s, a, w=w, b=b):
            return torch.cat([s, a]) @ w + b

        for k in range(batch_size):
            values = []
            for j in range(n):
                values.append((q(obs[k], random_actions[k, j]) - log_uniform) / temp)
            for j in range(n):
                values.append((q(obs[k], next_a[k, j]) - next_lp[k, j]) / temp)
            for j in range(n):
                values.append((q(obs[k], cur_a[k, j]) - cur_lp[k, j]) / temp)
            ood = temp * torch.logsumexp(torch.stack(values), dim=0)
            diffs[i, k] = ood - q(obs[k], act[k])
        total = total + diffs[i].mean()
    return alpha * total, diffs.mean(0)


@pytest.mark.parametrize("max_action", [1.0, 2.0])
def test_cql_importance_sampling_against_loop(max_action):
    """importance_sample=True: candidates are Q(s, a_rand) - log U, Q(s, a'~pi(s')) - log pi(a'|s'),
    Q(s, a~pi(s)) - log pi(a|s) (all evaluated at s); compared with an explicit loop."""
    spec = DataSpec(obs_dim=2, action_dim=2, max_action=max_action)
    comps = _cql_set(critic_value=None, spec=spec, alpha=3.0, n_actions=3, temperature=0.7, importance_sample=True)
    set_linear_critic(comps["critic"], [[0.5, -1.0, 1.0, 0.3], [-0.2, 0.4, -0.6, 1.2]], [0.1, -0.3])
    td = batch(spec, size=3)
    torch.manual_seed(11)
    out = comps["cql"].compute(td, 1)
    loss, diff = _independent_cql(comps, td, seed=11, n=3, temp=0.7, alpha=3.0, max_action=max_action)
    torch.testing.assert_close(out["loss_cql"], loss, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out["cql_diff"], diff, rtol=1e-5, atol=1e-5)


def test_cql_gradient_reaches_critic_only():
    """Proposals and their log-densities are detached: the penalty trains the critic, not the actor."""
    comps = _cql_set(critic_value=None, alpha=1.0, n_actions=2, importance_sample=True)
    loss = comps["cql"].compute(batch(SPEC_CQL, size=3), 1)["loss_cql"]
    actor_params = list(comps["actor"].parameters())
    critic_params = list(comps["critic"].net.parameters())
    grads = torch.autograd.grad(loss, actor_params + critic_params, allow_unused=True)
    assert all(g is None for g in grads[: len(actor_params)])
    assert all(g is not None and g.abs().sum() > 0 for g in grads[len(actor_params) :])
