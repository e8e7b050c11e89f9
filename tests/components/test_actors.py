"""actor: tanh_gaussian, gaussian, deterministic — densities against torch.distributions,
sampling, acting and target copies."""

from __future__ import annotations

import math

import pytest
import torch
from _helpers import make, set_linear, t
from tensordict import TensorDict
from torch.distributions import AffineTransform, Normal, TanhTransform, TransformedDistribution

from advrl import DataSpec


def _perturb(module, scale=0.5, seed=0):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * scale)


def _squashed(mean, log_std, max_action):
    transforms = [TanhTransform()]
    if max_action != 1.0:
        transforms.append(AffineTransform(0.0, max_action))
    return TransformedDistribution(Normal(mean, log_std.exp()), transforms)


# ---- tanh_gaussian -------------------------------------------------------------------------------
@pytest.mark.parametrize("max_action", [1.0, 2.5])
def test_tanh_gaussian_log_prob_matches_transformed_distribution(max_action):
    """log_prob(s, a) = log density of max_action * tanh(N(mu(s), sigma(s))), summed over dims."""
    spec = DataSpec(obs_dim=3, action_dim=2, max_action=max_action)
    actor = make("actor", "tanh_gaussian", spec, hidden_sizes=[8])
    _perturb(actor.net)
    obs = torch.randn(6, 3)
    action = (torch.rand(6, 2) * 1.8 - 0.9) * max_action
    mean, log_std = actor._mean_log_std(obs)
    expected = _squashed(mean, log_std, max_action).log_prob(action).sum(-1)
    torch.testing.assert_close(actor.log_prob(obs, action), expected, rtol=1e-4, atol=1e-4)


def test_tanh_gaussian_log_std_parameterisation():
    """mean, raw = net(s).chunk(2); log_std = clamp(multiplier * raw + offset, min, max)."""
    spec = DataSpec(obs_dim=1, action_dim=2)
    actor = make("actor", "tanh_gaussian", spec, hidden_sizes=[], log_std_multiplier=2.0, log_std_offset=-1.0, log_std_max=1.5)
    set_linear(actor.net[0], [[1.0], [-1.0], [0.5], [3.0]], [0.0, 0.0, 0.25, 0.0])
    mean, log_std = actor._mean_log_std(t([[2.0]]))
    torch.testing.assert_close(mean, t([[2.0, -2.0]]))
    # raw = [1.25, 6]: 2 * 1.25 - 1 = 1.5 ; 2 * 6 - 1 = 11 -> clamped at 1.5
    torch.testing.assert_close(log_std, t([[1.5, 1.5]]))
    assert actor.log_std_multiplier.requires_grad and actor.log_std_offset.requires_grad


def test_tanh_gaussian_init():
    """Output layer: bias 0 and small xavier weights (gain 1e-2): bound gain * sqrt(6 / (in + out))."""
    actor = make("actor", "tanh_gaussian", DataSpec(obs_dim=3, action_dim=2), hidden_sizes=[8])
    last = actor.net[-1]
    assert torch.count_nonzero(last.bias) == 0
    assert last.weight.abs().max() <= 1e-2 * math.sqrt(6 / (8 + 4))
    assert actor.log_std_multiplier.item() == 1.0 and actor.log_std_offset.item() == -1.0


@pytest.mark.parametrize("max_action", [1.0, 2.0])
def test_tanh_gaussian_sample_consistent_with_log_prob(max_action):
    """sample() returns a = max * tanh(mu + sigma eps) (seeded) and a log-prob equal to
    log_prob(s, a) of the same action."""
    spec = DataSpec(obs_dim=3, action_dim=2, max_action=max_action)
    actor = make("actor", "tanh_gaussian", spec, hidden_sizes=[8])
    _perturb(actor.net, scale=0.3)
    obs = torch.randn(5, 3)
    torch.manual_seed(3)
    action, log_prob = actor.sample(obs)
    torch.manual_seed(3)
    eps = torch.randn(5, 2)
    mean, log_std = actor._mean_log_std(obs)
    torch.testing.assert_close(action, max_action * torch.tanh(mean + log_std.exp() * eps))
    assert action.abs().max() < max_action
    torch.testing.assert_close(log_prob, actor.log_prob(obs, action), rtol=1e-3, atol=1e-3)
    expected = _squashed(mean, log_std, max_action).log_prob(action).sum(-1)
    torch.testing.assert_close(log_prob, expected, rtol=1e-3, atol=1e-3)


def test_tanh_gaussian_sample_is_reparameterised():
    """Gradients flow from the sampled action into the policy network (rsample)."""
    actor = make("actor", "tanh_gaussian", DataSpec(obs_dim=3, action_dim=2), hidden_sizes=[4])
    action, log_prob = actor.sample(torch.randn(4, 3))
    grads = torch.autograd.grad(action.sum() + log_prob.sum(), list(actor.parameters()), allow_unused=True)
    assert all(g is not None for g in grads)


def test_tanh_gaussian_act_and_compute():
    """act = max * tanh(mean) (deterministic); compute writes a sample and its log-prob."""
    spec = DataSpec(obs_dim=3, action_dim=2, max_action=2.0)
    actor = make("actor", "tanh_gaussian", spec, hidden_sizes=[8])
    _perturb(actor.net)
    obs = torch.randn(4, 3)
    mean, _ = actor._mean_log_std(obs)
    torch.testing.assert_close(actor.act(obs), 2.0 * torch.tanh(mean))
    torch.testing.assert_close(actor.act(obs), actor.act(obs))
    torch.manual_seed(9)
    out = actor.compute(TensorDict({"observation": obs}, batch_size=[4]), 1)
    assert set(out) == {"policy_action", "policy_log_prob"}
    assert out["policy_action"].shape == (4, 2) and out["policy_log_prob"].shape == (4,)
    torch.manual_seed(9)
    action, log_prob = actor.sample(obs)
    torch.testing.assert_close(out["policy_action"], action)
    torch.testing.assert_close(out["policy_log_prob"], log_prob)


# ---- gaussian --------------------------------------------------------------------------------------
def test_gaussian_log_prob_matches_normal():
    """log_prob(s, a) = Normal(max * tanh(net(s)), exp(log_std)).log_prob(a).sum(-1), a unsquashed."""
    spec = DataSpec(obs_dim=3, action_dim=2, max_action=2.0)
    actor = make("actor", "gaussian", spec, hidden_sizes=[8])
    _perturb(actor.net)
    with torch.no_grad():
        actor.log_std.copy_(t([-0.7, 0.3]))
    obs, action = torch.randn(5, 3), torch.randn(5, 2) * 2
    expected = Normal(2.0 * torch.tanh(actor.net(obs)), t([-0.7, 0.3]).exp()).log_prob(action).sum(-1)
    torch.testing.assert_close(actor.log_prob(obs, action), expected)


def test_gaussian_log_prob_by_hand():
    """1-d, mean 0 (zero net), sigma = e^0 = 1: log N(a; 0, 1) = -a^2/2 - log(2 pi)/2."""
    actor = make("actor", "gaussian", DataSpec(obs_dim=1, action_dim=1), hidden_sizes=[])
    set_linear(actor.net[0], [[0.0]], [0.0])
    lp = actor.log_prob(t([[1.0], [1.0]]), t([[0.0], [2.0]]))
    torch.testing.assert_close(lp, t([-0.5 * math.log(2 * math.pi), -2.0 - 0.5 * math.log(2 * math.pi)]))


def test_gaussian_log_std_clamped():
    """The state-independent log_std is clamped to [log_std_min, log_std_max] before exp."""
    actor = make("actor", "gaussian", DataSpec(obs_dim=1, action_dim=2), hidden_sizes=[], log_std_min=-1.0, log_std_max=0.5)
    with torch.no_grad():
        actor.log_std.copy_(t([-5.0, 3.0]))
    torch.testing.assert_close(actor.distribution(torch.zeros(1, 1)).stddev, t([[math.exp(-1.0), math.exp(0.5)]]))


def test_gaussian_act_and_sample():
    """act is the (in-box) mean; sample returns a reparameterised action with its log-prob."""
    spec = DataSpec(obs_dim=3, action_dim=2, max_action=1.5)
    actor = make("actor", "gaussian", spec, hidden_sizes=[4])
    _perturb(actor.net)
    obs = torch.randn(4, 3)
    torch.testing.assert_close(actor.act(obs), 1.5 * torch.tanh(actor.net(obs)))
    action, log_prob = actor.sample(obs)
    torch.testing.assert_close(log_prob, actor.log_prob(obs, action))
    (grad,) = torch.autograd.grad(action.sum(), [actor.log_std])
    assert grad.abs().sum() > 0


def test_gaussian_act_with_noise_is_mean_plus_std_noise_in_the_box():
    spec = DataSpec(obs_dim=3, action_dim=2, max_action=1.5)
    actor = make("actor", "gaussian", spec, hidden_sizes=[4])
    with torch.no_grad():
        actor.log_std.fill_(math.log(0.5))
    obs = torch.randn(4, 3)
    noise = torch.tensor([[1.0, -1.0], [0.0, 2.0], [100.0, -100.0], [0.5, 0.5]])
    expected = (actor.act(obs) + 0.5 * noise).clamp(-1.5, 1.5)
    torch.testing.assert_close(actor.act_with_noise(obs, noise), expected)
    assert actor.act_with_noise(obs, noise)[2].abs().eq(1.5).all()


# ---- deterministic -------------------------------------------------------------------------------
def test_deterministic_actor_and_target():
    """a = max * tanh(net(s)); target_act uses the frozen copy, which follows by Polyak steps."""
    spec = DataSpec(obs_dim=1, action_dim=1, max_action=2.0)
    actor = make("actor", "deterministic", spec, hidden_sizes=[])
    set_linear(actor.net[0], [[1.0]], [0.5])
    obs = t([[0.0], [1.0]])
    torch.testing.assert_close(actor(obs), 2.0 * torch.tanh(t([[0.5], [1.5]])))
    torch.testing.assert_close(actor.act(obs), actor(obs))
    target_before = actor.target_act(obs)
    assert not target_before.requires_grad
    actor.update_targets(0.5)
    w0, b0 = actor.target_net.module[0].weight.item(), actor.target_net.module[0].bias.item()
    set_linear(actor.net[0], [[3.0]], [-1.0])
    actor.update_targets(0.5)
    tgt = actor.target_net.module[0]
    torch.testing.assert_close(tgt.weight, t([[0.5 * w0 + 1.5]]))
    torch.testing.assert_close(tgt.bias, t([0.5 * b0 - 0.5]))
    torch.testing.assert_close(actor.target_act(obs), 2.0 * torch.tanh(obs @ tgt.weight.T + tgt.bias))


def test_deterministic_without_target():
    """target=false: target_act falls back to the online net; update_targets raises."""
    actor = make("actor", "deterministic", DataSpec(obs_dim=2, action_dim=1), hidden_sizes=[4], target=False)
    obs = torch.randn(3, 2)
    torch.testing.assert_close(actor.target_act(obs), actor(obs))
    with pytest.raises(TypeError, match="no target network"):
        actor.update_targets(0.1)
