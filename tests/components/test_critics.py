"""critic: q_ensemble — batched ensemble evaluation, reductions, target copy, initialisation."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from _helpers import make, set_linear_critic, t

from advrl import DataSpec
from advrl.nn import EnsembleLayerNorm, EnsembleLinear

SPEC = DataSpec(obs_dim=3, action_dim=2)


def _perturb(module: torch.nn.Module, scale: float = 0.3, seed: int = 1) -> None:
    """Move every parameter away from its init (LayerNorm affines included) so member
    mix-ups and forgotten affine terms show up."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * scale)


def _explicit_q(net: torch.nn.Sequential, member: int, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
    """Member ``member`` as a plain MLP: x @ W[member] + b[member], LayerNorm with the member's
    affine, ReLU."""
    x = torch.cat([obs, act], dim=-1)
    for layer in net:
        if isinstance(layer, EnsembleLinear):
            x = x @ layer.weight[member] + layer.bias[member, 0]
        elif isinstance(layer, EnsembleLayerNorm):
            mu = x.mean(-1, keepdim=True)
            var = x.var(-1, unbiased=False, keepdim=True)
            x = (x - mu) / torch.sqrt(var + 1e-5) * layer.weight[member, 0] + layer.bias[member, 0]
        else:
            assert isinstance(layer, torch.nn.ReLU)
            x = torch.clamp(x, min=0.0)
    return x.squeeze(-1)


@pytest.mark.parametrize("layer_norm", [False, True])
def test_q_all_equals_per_member_mlp(layer_norm):
    """q_all[i] is member i's MLP with its own weight slice W[i] ([in, out]) and bias b[i]."""
    critic = make("critic", "q_ensemble", SPEC, num_q=3, hidden_sizes=[4, 5], layer_norm=layer_norm)
    _perturb(critic.net)
    obs, act = torch.randn(6, 3), torch.randn(6, 2)
    q_all = critic.q_all(obs, act)
    assert q_all.shape == (3, 6)
    for member in range(3):
        torch.testing.assert_close(q_all[member], _explicit_q(critic.net, member, obs, act), rtol=1e-5, atol=1e-5)


def test_linear_critic_by_hand():
    """With no hidden layer Q_i(s, a) = w_i . [s, a] + b_i, checked on written-out numbers."""
    critic = make("critic", "q_ensemble", DataSpec(1, 1), num_q=2, hidden_sizes=[])
    set_linear_critic(critic, [[1.0, 2.0], [-1.0, 0.5]], [0.5, 3.0])
    obs, act = t([[1.0], [2.0]]), t([[0.0], [-2.0]])
    # member 0: s + 2a + 0.5 -> [1.5, -1.5]; member 1: -s + 0.5a + 3 -> [2.0, 0.0]
    torch.testing.assert_close(critic.q_all(obs, act), t([[1.5, -1.5], [2.0, 0.0]]))
    torch.testing.assert_close(critic.q(obs, act, reduce="min"), t([1.5, -1.5]))
    torch.testing.assert_close(critic.q(obs, act, reduce="mean"), t([1.75, -0.75]))
    torch.testing.assert_close(critic.q(obs, act, reduce="q1"), t([1.5, -1.5]))


@pytest.mark.parametrize("layer_norm", [False, True])
@pytest.mark.parametrize("target", [False, True])
def test_q1_equals_first_member(layer_norm, target):
    """The q1 fast path (one member only) equals q_all[0], online and target."""
    critic = make("critic", "q_ensemble", SPEC, num_q=3, hidden_sizes=[4, 5], layer_norm=layer_norm)
    _perturb(critic.net, seed=2)
    _perturb(critic.target_net, seed=3)
    obs, act = torch.randn(5, 3), torch.randn(5, 2)
    full = critic.target_q_all(obs, act) if target else critic.q_all(obs, act)
    torch.testing.assert_close(critic.q(obs, act, reduce="q1", target=target), full[0], rtol=1e-5, atol=1e-6)


def test_q1_with_extra_leading_dims():
    """Inputs [B, n, D] (as the CQL penalty passes) give [E, B, n], each entry equal to the
    evaluation of that single (s, a)."""
    critic = make("critic", "q_ensemble", SPEC, num_q=2, hidden_sizes=[4])
    obs, act = torch.randn(2, 3, 3), torch.randn(2, 3, 2)
    q_all = critic.q_all(obs, act)
    assert q_all.shape == (2, 2, 3)
    flat = critic.q_all(obs.reshape(6, 3), act.reshape(6, 2)).reshape(2, 2, 3)
    torch.testing.assert_close(q_all, flat)
    torch.testing.assert_close(critic.q(obs, act, reduce="q1"), q_all[0], rtol=1e-5, atol=1e-6)


def test_reductions_min_mean():
    """reduce='min' / 'mean' are the elementwise min / mean over members; unknown names raise."""
    critic = make("critic", "q_ensemble", SPEC, num_q=3, hidden_sizes=[4])
    obs, act = torch.randn(4, 3), torch.randn(4, 2)
    q_all = critic.q_all(obs, act)
    torch.testing.assert_close(critic.q(obs, act, reduce="min"), torch.minimum(torch.minimum(q_all[0], q_all[1]), q_all[2]))
    torch.testing.assert_close(critic.q(obs, act, reduce="mean"), (q_all[0] + q_all[1] + q_all[2]) / 3)
    torch.testing.assert_close(critic.q(obs, act, reduce="min", target=True), critic.target_q_all(obs, act).min(0).values)
    with pytest.raises(ValueError, match="Unknown Q reduction"):
        critic.q(obs, act, reduce="max")


def test_target_starts_equal_and_is_frozen():
    """The target copy starts identical to the online net, is a separate tensor, and has no grad."""
    critic = make("critic", "q_ensemble", SPEC, num_q=2, hidden_sizes=[4])
    online = list(critic.net.parameters())
    target = list(critic.target_net.module.parameters())
    assert len(online) == len(target)
    for o, tg in zip(online, target):
        assert torch.equal(o, tg)
        assert o.data_ptr() != tg.data_ptr()
        assert o.requires_grad and not tg.requires_grad
    obs, act = torch.randn(4, 3), torch.randn(4, 2)
    assert torch.equal(critic.q_all(obs, act).detach(), critic.target_q_all(obs, act))


@pytest.mark.parametrize("tau", [0.0, 0.25, 1.0])
def test_update_targets_is_polyak(tau):
    """update_targets(tau): target <- (1 - tau) * target + tau * online, for every parameter."""
    critic = make("critic", "q_ensemble", SPEC, num_q=2, hidden_sizes=[4], layer_norm=True)
    _perturb(critic.net, seed=4)
    _perturb(critic.target_net, seed=5)
    online = [p.detach().clone() for p in critic.net.parameters()]
    before = [p.detach().clone() for p in critic.target_net.parameters()]
    critic.update_targets(tau)
    for o, b, after in zip(online, before, critic.target_net.parameters()):
        torch.testing.assert_close(after, (1 - tau) * b + tau * o, rtol=0, atol=1e-7)
    for o, p in zip(online, critic.net.parameters()):
        assert torch.equal(o, p)  # the online net is untouched


def test_members_initialised_differently_with_linear_bounds():
    """Each member gets its own draw from nn.Linear's U(-1/sqrt(in), 1/sqrt(in))."""
    critic = make("critic", "q_ensemble", SPEC, num_q=3, hidden_sizes=[8, 8])
    for layer in critic.net:
        if isinstance(layer, EnsembleLinear):
            in_dim = layer.weight.shape[1]
            bound = 1 / math.sqrt(in_dim)
            assert layer.weight.abs().max() <= bound and layer.bias.abs().max() <= bound
            for i in range(3):
                for j in range(i + 1, 3):
                    assert not torch.equal(layer.weight[i], layer.weight[j])
                    assert not torch.equal(layer.bias[i], layer.bias[j])
    obs, act = torch.randn(4, 3), torch.randn(4, 2)
    q_all = critic.q_all(obs, act)
    assert not torch.allclose(q_all[0], q_all[1])


def test_orthogonal_init():
    """init='orthogonal': each member's [out, in] weight is orthogonal with gain sqrt(2)
    (hidden) / 1e-2 (output), biases zero, members different."""
    critic = make("critic", "q_ensemble", SPEC, num_q=2, hidden_sizes=[8, 4], init="orthogonal")
    linears = [m for m in critic.net if isinstance(m, EnsembleLinear)]
    for k, layer in enumerate(linears):
        gain = 1e-2 if k == len(linears) - 1 else math.sqrt(2)
        assert torch.count_nonzero(layer.bias) == 0
        for member in range(2):
            w = layer.weight[member].T.detach()  # [out, in]
            gram = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w
            torch.testing.assert_close(gram, gain**2 * torch.eye(gram.shape[0]), rtol=0, atol=1e-5)
        assert not torch.equal(layer.weight[0], layer.weight[1])
    for o, tg in zip(critic.net.parameters(), critic.target_net.parameters()):
        assert torch.equal(o, tg)  # the target copies the orthogonal init


def test_gradients_reach_online_net_only():
    """q_all is differentiable w.r.t. the online net; target values carry no graph."""
    critic = make("critic", "q_ensemble", SPEC, num_q=2, hidden_sizes=[4])
    obs, act = torch.randn(4, 3), torch.randn(4, 2)
    critic.q_all(obs, act).sum().backward()
    assert all(p.grad is not None for p in critic.net.parameters())
    assert not critic.target_q_all(obs, act).requires_grad


def test_no_target_network():
    """target=false: no target copy; asking for target values or a Polyak step raises TypeError."""
    critic = make("critic", "q_ensemble", SPEC, num_q=2, hidden_sizes=[4], target=False)
    assert critic.target_net is None
    obs, act = torch.randn(2, 3), torch.randn(2, 2)
    with pytest.raises(TypeError, match="target=false"):
        critic.target_q_all(obs, act)
    with pytest.raises(TypeError, match="no target network"):
        critic.update_targets(0.5)
    with pytest.raises(TypeError, match="target=false"):
        critic.q(obs, act, reduce="min", target=True)


def test_q1_target_without_target_network_raises_type_error():
    """The q1 path must report a missing target network like the other reductions do."""
    critic = make("critic", "q_ensemble", SPEC, num_q=2, hidden_sizes=[4], target=False)
    with pytest.raises(TypeError, match="target=false"):
        critic.q(torch.randn(2, 3), torch.randn(2, 2), reduce="q1", target=True)


def test_invalid_config_rejected():
    """num_q < 1 and an unknown init are refused at construction."""
    with pytest.raises(ValueError, match="num_q"):
        make("critic", "q_ensemble", SPEC, num_q=0, hidden_sizes=[4])
    with pytest.raises(ValueError, match="init"):
        make("critic", "q_ensemble", SPEC, hidden_sizes=[4], init="xavier")


def test_layer_norm_uses_member_affine():
    """With layer_norm the normalised hidden features use member-specific scale/shift: setting
    member 1's LayerNorm scale to 0 and shift to c makes its Q independent of the input."""
    critic = make("critic", "q_ensemble", DataSpec(3, 2), num_q=2, hidden_sizes=[4], layer_norm=True)
    ln = critic.net[1]
    assert isinstance(ln, EnsembleLayerNorm)
    with torch.no_grad():
        ln.weight[1].zero_()
        ln.bias[1].fill_(1.0)
    out = critic.net[-1]
    expected = (F.relu(torch.ones(4)) @ out.weight[1] + out.bias[1, 0]).squeeze(-1)
    q1 = critic.q_all(torch.randn(3, 3), torch.randn(3, 2))[1]
    torch.testing.assert_close(q1, expected.expand(3))


@pytest.mark.parametrize("ensemble", [False, True])
def test_stack_forward_and_gradients_equal_nn_sequential(ensemble):
    """Stack's fast path (direct kernels, ReLU in place on a layer output it just made) computes
    what nn.Sequential computes, leaves the caller's input alone, and backpropagates the same."""
    from torch import nn

    from advrl.nn import Stack

    torch.manual_seed(0)
    linear = (lambda i, o: EnsembleLinear(i, o, 2)) if ensemble else nn.Linear
    layers = [nn.ReLU(), linear(4, 8), nn.ReLU(), linear(8, 8), nn.ReLU(), linear(8, 1)]  # a leading ReLU reads the input
    fast, plain = Stack(*layers), nn.Sequential(*layers)
    x = torch.randn(2, 5, 4) if ensemble else torch.randn(5, 4)
    x_fast, x_plain = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    out_fast, out_plain = fast(x_fast), plain(x_plain)
    assert torch.equal(out_fast, out_plain)
    assert torch.equal(x_fast.detach(), x)  # not modified in place
    grads_fast = torch.autograd.grad(out_fast.square().sum(), [x_fast, *fast.parameters()])
    grads_plain = torch.autograd.grad(out_plain.square().sum(), [x_plain, *plain.parameters()])
    for a, b in zip(grads_fast, grads_plain):
        assert torch.equal(a, b)
