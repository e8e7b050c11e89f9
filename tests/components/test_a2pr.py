"""A2PR's components (behavior: vae, value: td_min, selector: advantage_threshold,
constraint: a2pr_adaptive) on hand-set networks and written-out numbers, and one full A2PR
step assembled from recipes/a2pr.yaml: which parameters each update moves, and the update
order of the official A2PR.train (github.com/ltlhuuu/A2PR at f92a2a4, A2PR.py: critic -> V -> VAE ->
actor every 2nd step),
also checked against the plain reference implementation in benchmarks/reference_a2pr.py."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from _helpers import (
    assert_all_changed,
    assert_unchanged,
    benchmark_module,
    bind_all,
    copy_actor_critic_into_reference,
    copy_vae_into_reference,
    make,
    parts,
    run,
    set_linear,
    set_linear_critic,
    snapshot,
    t,
    train_step,
)
from omegaconf import OmegaConf
from tensordict import TensorDict
from torch import nn

from advrl import DataSpec
from advrl.component import Component, option
from advrl.components.behaviors.vae import gaussian_kl
from advrl.learner.assembly import build_components, build_updates
from advrl.learner.update import UpdateStage
from advrl.recipe import UpdateConfig, load_recipe

REPO = Path(__file__).resolve().parents[2]
A2PR_RECIPE = REPO / "recipes" / "a2pr.yaml"
CPU = torch.device("cpu")
SPEC1 = DataSpec(obs_dim=1, action_dim=1)
SPEC2 = DataSpec(obs_dim=1, action_dim=2)


def close(actual, expected, **kw):
    torch.testing.assert_close(actual, expected if torch.is_tensor(expected) else torch.as_tensor(expected, dtype=torch.float32), **kw)


# ==== behavior: vae ==================================================================================
def test_gaussian_kl_by_hand():
    """KL(N(mu, sigma) || N(0, 1)) = -1/2 mean(1 + log sigma^2 - mu^2 - sigma^2), mean over batch
    and latent dims: per-dim terms for (mu, sigma) = (0, 1), (1, 2), (0, 1), (-1, 1) are
    0, 2 ln 2 - 4, 0, -1 -> KL = (5 - 2 ln 2) / 8."""
    mean, std = t([[0.0, 1.0, 0.0, -1.0]]), t([[1.0, 2.0, 1.0, 1.0]])
    close(gaussian_kl(mean, std), (5 - 2 * math.log(2)) / 8)
    close(gaussian_kl(torch.zeros(3, 2), torch.ones(3, 2)), 0.0)
    # mean-reduced, not summed: stacking the same row twice gives the same KL
    close(gaussian_kl(mean.repeat(2, 1), std.repeat(2, 1)), (5 - 2 * math.log(2)) / 8)
    # one dim with sigma = e^-1, mu = 0: -1/2 (1 - 2 - 0 - e^-2)
    close(gaussian_kl(t([[0.0]]), t([[math.exp(-1.0)]])), -0.5 * (1 - 2 - 0 - math.exp(-2.0)))


def _hand_vae(**cfg):
    """obs 1, action 2 -> latent 4; no hidden layers. Zero encoder weights with bias
    (mu | log sigma) = (0, 1, 0, -1 | 0, ln 2, 0, 0); zero decoder weights with bias
    atanh(0.5), atanh(-0.25): a_hat = (0.5, -0.25) whatever z is."""
    vae = make("behavior", "vae", SPEC2, hidden_sizes=[], **cfg)
    set_linear(vae.encoder[0], [[0.0] * 3] * 8, [0.0, 1.0, 0.0, -1.0, 0.0, math.log(2.0), 0.0, 0.0])
    set_linear(vae.decoder[0], [[0.0] * 5] * 2, [math.atanh(0.5), math.atanh(-0.25)])
    return vae


def _vae_batch(**extra) -> TensorDict:
    # a_hat - a = [[0, -1], [1, 0], [0.5, -0.25]] -> squared [[0, 1], [1, 0], [0.25, 0.0625]]
    data = {"observation": t([[0.3], [-2.0], [5.0]]), "action": t([[0.5, 0.75], [-0.5, -0.25], [0.0, 0.0]]), **extra}
    return TensorDict(data, batch_size=[3])


def test_vae_defaults_follow_a2pr():
    """750-750, latent 2A, log sigma in [-4, 15], KL weight 0.5, recon weight 1, prior clip 0.5."""
    vae = make("behavior", "vae", DataSpec(obs_dim=4, action_dim=3))
    cfg = vae.config
    assert (cfg.hidden_sizes, cfg.kl_weight, cfg.recon_weight, cfg.weight_key) == ([750, 750], 0.5, 1.0, None)
    assert (cfg.log_std_min, cfg.log_std_max, cfg.prior_clip) == (-4.0, 15.0, 0.5)
    assert vae.latent_dim == 6
    assert vae.encoder[0].in_features == 4 + 3 and vae.encoder[-1].out_features == 2 * 6
    assert vae.decoder[0].in_features == 4 + 6 and vae.decoder[-1].out_features == 3
    explicit = make("behavior", "vae", DataSpec(obs_dim=4, action_dim=3), hidden_sizes=[8], latent_dim=5)
    assert explicit.latent_dim == 5 and explicit.decoder[0].in_features == 9 and explicit.encoder[-1].out_features == 10


def test_vae_loss_by_hand_unweighted():
    """loss = recon_weight * mean_{BxA}(a_hat - a)^2 + kl_weight * KL
    = 1.5 * 2.3125 / 6 + 0.5 * (5 - 2 ln 2) / 8."""
    vae = _hand_vae(recon_weight=1.5, kl_weight=0.5)
    out = vae.compute(_vae_batch(), 1)
    kl = (5 - 2 * math.log(2)) / 8
    close(out["behavior_kl"], kl)
    close(out["loss_behavior"], 1.5 * 2.3125 / 6 + 0.5 * kl)
    assert out["loss_behavior"].requires_grad and not out["behavior_kl"].requires_grad
    assert vae.read_keys() == ["observation", "action"]
    assert vae.loss_keys() == ["loss_behavior"] and vae.log_keys() == ["behavior_kl"] and set(out) == {"loss_behavior", "behavior_kl"}


def test_vae_loss_by_hand_weighted():
    """weight_key w = [1, 0, 2] multiplies each sample's squared error: (1 + 0 + 2 * 0.3125) / 6;
    the KL term is not weighted."""
    vae = _hand_vae(recon_weight=1.5, kl_weight=0.25, weight_key="w")
    out = vae.compute(_vae_batch(w=t([1.0, 0.0, 2.0])), 1)
    kl = (5 - 2 * math.log(2)) / 8
    close(out["loss_behavior"], 1.5 * 1.625 / 6 + 0.25 * kl)
    assert vae.read_keys() == ["observation", "action", "w"]
    # all-zero weights leave only the KL: the decoder gets no gradient at all
    out0 = vae.compute(_vae_batch(w=torch.zeros(3)), 1)
    close(out0["loss_behavior"], 0.25 * kl)
    grads = torch.autograd.grad(out0["loss_behavior"], list(vae.decoder.parameters()), allow_unused=True)
    assert all(g is None or torch.count_nonzero(g) == 0 for g in grads)


def test_vae_log_sigma_clamp():
    """log sigma is clamped to [log_std_min, log_std_max] (default [-4, 15]) before exp; mu is not."""
    vae = _hand_vae()
    with torch.no_grad():
        vae.encoder[0].bias.copy_(t([-30.0, 30.0, 0.0, 1.0, -10.0, 20.0, -3.5, 2.0]))
    mean, std = vae.encode(t([[0.0]]), t([[0.0, 0.0]]))
    close(mean, t([[-30.0, 30.0, 0.0, 1.0]]))
    close(std, torch.exp(t([[-4.0, 15.0, -3.5, 2.0]])))
    narrow = _hand_vae(log_std_min=-1.0, log_std_max=1.0)
    with torch.no_grad():
        narrow.encoder[0].bias.copy_(t([0.0, 0.0, 0.0, 0.0, -10.0, 20.0, -0.5, 0.5]))
    _, std = narrow.encode(t([[0.0]]), t([[0.0, 0.0]]))
    close(std, torch.exp(t([[-1.0, 1.0, -0.5, 0.5]])))


def test_vae_decode_without_z_samples_clipped_prior():
    """decode(s) draws z ~ N(0, I) clipped to +-prior_clip. A decoder a = tanh(z) (latent = A = 2)
    exposes z: every |z| <= 0.3, and about P(|N(0,1)| > 0.3) = 76% sit exactly on the clip."""
    vae = make("behavior", "vae", SPEC2, hidden_sizes=[], latent_dim=2, prior_clip=0.3)
    set_linear(vae.decoder[0], [[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], [0.0, 0.0])
    obs = torch.randn(4000, 1)
    action = vae.decode(obs)
    assert action.shape == (4000, 2)
    z = torch.atanh(action)
    assert z.abs().max() <= 0.3 + 1e-5
    on_clip = (z.abs() > 0.3 - 1e-5).float().mean()
    assert 0.72 < on_clip < 0.80
    assert ((z.abs() < 0.25).float().mean()) > 0.1  # the interior is sampled too
    assert not torch.equal(vae.decode(obs), action)  # a fresh draw each call
    # with z given, decode is deterministic: tanh(z)
    z_given = t([[0.2, -0.7]])
    close(vae.decode(t([[1.0]]), z_given), torch.tanh(z_given))


def test_vae_reconstruct_is_reparameterised_and_inside_action_box():
    """reconstruct(s, a) = decode(s, mu + sigma * eps) with (mu, sigma) = encode(s, a); outputs
    are max_action * tanh(.), so within [-max_action, max_action] (max_action 2 here) and
    saturated decoders reach beyond 1."""
    spec = DataSpec(obs_dim=3, action_dim=2, max_action=2.0)
    vae = make("behavior", "vae", spec, hidden_sizes=[16])
    obs, action = torch.randn(64, 3), torch.rand(64, 2) * 4 - 2
    torch.manual_seed(11)
    recon, mean, std = vae.reconstruct(obs, action)
    enc_mean, enc_std = vae.encode(obs, action)
    close(mean, enc_mean)
    close(std, enc_std)
    torch.manual_seed(11)
    eps = torch.randn_like(std)
    close(recon, vae.decode(obs, mean + std * eps))
    with torch.no_grad():
        for p in vae.decoder.parameters():
            p.mul_(100.0)
    recon, _, _ = vae.reconstruct(obs, action)
    assert recon.abs().max() <= 2.0
    assert recon.abs().max() > 1.9


# ==== value: td_min =================================================================================
def _td_min_set(gamma=0.5):
    """Online Q_0 = s + a, Q_1 = 2a; a target critic of 5 s + 5 a + 10 that must not be used;
    V(s) = 2 s - 1."""
    critic = make("critic", "q_ensemble", SPEC1, num_q=2, hidden_sizes=[])
    set_linear_critic(critic, [[1.0, 1.0], [0.0, 2.0]], [0.0, 0.0])
    set_linear_critic(critic, [[5.0, 5.0], [5.0, 5.0]], [10.0, 10.0], target=True)
    value = make("value", "td_min", SPEC1, hidden_sizes=[], gamma=gamma)
    set_linear(value.net[0], [[2.0]], [-1.0])
    return bind_all({"critic": critic, "value": value})


def _td_min_batch() -> TensorDict:
    return TensorDict(
        {
            "observation": t([[0.0], [1.0], [2.0]]),
            "reward": t([1.0, 0.0, -1.0]),
            "next": {"observation": t([[1.0], [2.0], [0.0]])},
            "terminated": t([0.0, 0.0, 1.0]),
            "td_target": t([2.0, -3.0, 0.0]),
            "next_action": t([[0.5], [-1.0], [2.0]]),
        },
        batch_size=[3],
    )


def test_td_min_target_and_loss_by_hand():
    """min_i Q_i(s', a') (online) = min([1.5, 1, 2], [1, -2, 4]) = [1, -2, 2];
    y_on = r + 0.5 (1 - term) [1, -2, 2] = [1.5, -1, -1]; y = min(y_on, td_target [2, -3, 0])
    = [1.5, -3, -1] (both branches of the min); V = [-1, 1, 3]; loss = (6.25 + 16 + 16) / 3."""
    comps = _td_min_set()
    value = comps["value"]
    out = value.compute(_td_min_batch(), 1)
    close(out["loss_value"], 12.75)
    close(out["state_value"], t([-1.0, 1.0, 3.0]))
    # d loss / d bias = 2/3 sum(V - y) = 2/3 * 5.5; d loss / d w = 2/3 sum((V - y) s) = 2/3 * 12
    grad_w, grad_b = torch.autograd.grad(out["loss_value"], [value.net[0].weight, value.net[0].bias])
    close(grad_b, t([11.0 / 3.0]))
    close(grad_w, t([[8.0]]))
    # the target is a constant: no gradient to the critic
    grads = torch.autograd.grad(out["loss_value"], list(comps["critic"].net.parameters()), allow_unused=True)
    assert all(g is None for g in grads)
    assert value.read_keys() == ["observation", "reward", "next.observation", "terminated", "td_target", "next_action"]


def test_td_min_uses_online_critic_and_gamma():
    """Changing the target critic changes nothing; gamma 1 gives y_on = [2, -2, -1] -> y = [2, -3, -1]."""
    comps = _td_min_set(gamma=1.0)
    before = comps["value"].compute(_td_min_batch(), 1)["loss_value"]
    set_linear_critic(comps["critic"], [[-9.0, 3.0], [1.0, 1.0]], [7.0, -7.0], target=True)
    after = comps["value"].compute(_td_min_batch(), 1)["loss_value"]
    close(before, after)
    close(after, ((-1 - 2.0) ** 2 + (1 + 3.0) ** 2 + (3 + 1.0) ** 2) / 3)


def test_td_min_state_value_is_pre_update_and_detached():
    """state_value = V(s) with the parameters before the update's optimiser step, detached;
    after the step V(s) has moved but the written tensor has not."""
    comps = _td_min_set()
    cfg = OmegaConf.merge(OmegaConf.structured(UpdateConfig), {"terms": ["value"], "optimize": {"value": {"lr": 0.1}}})
    stage = UpdateStage("value", cfg, comps, CPU)
    td = _td_min_batch()
    stage.run(td, 1, torch.tensor(1))
    assert not td["state_value"].requires_grad
    close(td["state_value"], t([-1.0, 1.0, 3.0]))
    moved = comps["value"](td["observation"]).detach()
    assert not torch.allclose(moved, td["state_value"])


# ==== selector: advantage_threshold =====================================================================
def test_advantage_threshold_strict_and_ties():
    """strict: 1[A > eps]; strict false: 1[A >= eps]; ties at eps differ; float 0/1 under out_key."""
    td = TensorDict({"advantage": t([-1.0, 0.0, 0.5, 2.0])}, batch_size=[4])
    strict = make("selector", "advantage_threshold", SPEC1)
    out = strict.compute(td, 1)
    assert set(out) == {"mask"} and out["mask"].dtype == torch.float32
    close(out["mask"], t([0.0, 0.0, 1.0, 1.0]))
    loose = make("selector", "advantage_threshold", SPEC1, strict=False)
    close(loose.compute(td, 1)["mask"], t([0.0, 1.0, 1.0, 1.0]))
    close(make("selector", "advantage_threshold", SPEC1, threshold=0.5).compute(td, 1)["mask"], t([0.0, 0.0, 0.0, 1.0]))
    close(
        make("selector", "advantage_threshold", SPEC1, threshold=0.5, strict=False).compute(td, 1)["mask"], t([0.0, 0.0, 1.0, 1.0])
    )


def test_advantage_threshold_out_key():
    sel = make("selector", "advantage_threshold", SPEC1, out_key="positive")
    assert sel.write_keys() == ["positive"] and sel.read_keys() == ["advantage"]
    out = sel.compute(TensorDict({"advantage": t([0.1, -0.1])}, batch_size=[2]), 1)
    assert set(out) == {"positive"}
    close(out["positive"], t([1.0, 0.0]))


# ==== constraint: a2pr_adaptive =========================================================================
class AffineBehavior(Component):
    """A behaviour model whose reconstruction is known by hand: a~ = scale * a + shift, with
    scale and shift trainable (so gradients through the reconstruction are visible).
    Test-only; it is given kind/name by hand instead of being put in the global registry."""

    kind, name = "behavior", "test_affine_reconstruction"

    @dataclass
    class Config:
        scale: float = option(0.5, "multiplies the action")
        shift: float = option(0.0, "added to the action")

    def __init__(self, config, spec):
        super().__init__(config, spec)
        self.scale = nn.Parameter(torch.tensor(config.scale))
        self.shift = nn.Parameter(torch.full((spec.action_dim,), config.shift))

    def reconstruct(self, obs, action):
        recon = self.scale * action + self.shift
        return recon, torch.zeros_like(recon), torch.ones_like(recon)


# Seven hand-made samples, A = 1; critic Q_0(s, a) = a, Q_1(s, a) = -a; a~ = 0.5 pi.
P = [0.5, 1.0, -0.5, 0.25, -0.5, 0.5, 1.0]
RECON = [0.25, 0.5, -0.25, 0.125, -0.25, 0.25, 0.5]
V = [0.0, 0.5, 0.0, 0.375, 0.25, 0.5, 0.25]
# A(a~) = Q_0(a~) - V =  [0.25, 0, -0.25, -0.25, -0.5, -0.25, 0.25]
ADV_DATA = [0.125, 0.0, -0.5, 0.5, -0.5, 0.0, 0.5]  # sample 1 and 4 are ties
ACTION = [0.0, -0.5, 0.75, -1.0, 0.5, -0.75, 0.25]
PICK_TIES_TO_BEHAVIOR = [1, 1, 1, 0, 1, 0, 0]
PICK_TIES_TO_DATA = [1, 0, 1, 0, 0, 0, 0]
GATE_OR = [1, 1, 0, 1, 0, 0, 1]  # A(a~) >= 0 (sample 1: 0 >= 0) or A(a) > 0 (sample 5: 0 > 0 false)
GATE_AND = [1, 0, 0, 0, 0, 0, 1]
GATE_DATA_ONLY = [1, 0, 0, 1, 0, 0, 1]  # behavior: null -> 1[A(a) > 0]


def _adaptive(behavior="behavior", q="q1", **cfg):
    critic = make("critic", "q_ensemble", SPEC1, num_q=2, hidden_sizes=[])
    set_linear_critic(critic, [[0.0, 1.0], [0.0, -1.0]], [0.0, 0.0])
    comps = {
        "critic": critic,
        "advantage": make("advantage", "q_minus_v", SPEC1, q=q, use_target_critic=False),
        "constraint": make("constraint", "a2pr_adaptive", SPEC1, behavior=behavior, **cfg),
    }
    if behavior is not None:
        comps["behavior"] = AffineBehavior(AffineBehavior.Config(), SPEC1)
    return bind_all(comps)


def _adaptive_batch(policy_action=None) -> TensorDict:
    p = t(P).unsqueeze(-1) if policy_action is None else policy_action
    return TensorDict(
        {
            "observation": t([[3.0], [-1.0], [0.0], [2.0], [1.0], [-2.0], [0.5]]),
            "action": t(ACTION).unsqueeze(-1),
            "policy_action": p,
            "state_value": t(V),
            "advantage": t(ADV_DATA),
        },
        batch_size=[7],
    )


def _expected_bc(pick, gate, weight):
    """weight * mean_{BxA}(gate (pi - t)^2), t = a~ where pick else a."""
    target = [r if k else a for r, a, k in zip(RECON, ACTION, pick)]
    return weight * sum(g * (p - tt) ** 2 for p, tt, g in zip(P, target, gate)) / len(P)


def test_adaptive_default_target_gate_and_loss_by_hand():
    """Official defaults (ties to a~, OR gate, q1, weight 0.5): per-sample squared errors
    0.0625 (a~), 0.25 (a~, tie), 0, 1.5625 (a), 0, 0, 0.5625 (a) -> 0.5 * 2.4375 / 7."""
    comps = _adaptive()
    out = comps["constraint"].compute(_adaptive_batch(), 1)
    close(out["target_is_behavior"], t(PICK_TIES_TO_BEHAVIOR))
    close(out["bc_gate"], t(GATE_OR))
    close(out["loss_bc"], 0.5 * 2.4375 / 7)
    close(out["loss_bc"], _expected_bc(PICK_TIES_TO_BEHAVIOR, GATE_OR, 0.5))
    assert comps["constraint"].loss_keys() == ["loss_bc"]
    assert set(out) == {"loss_bc", *comps["constraint"].write_keys()} == {"loss_bc", "bc_gate", "target_is_behavior"}


def test_adaptive_ties_to_dataset_action():
    """ties_to_behavior false: ties (samples 1 and 4) take the dataset action; sample 1's error
    becomes (1 - (-0.5))^2 = 2.25."""
    comps = _adaptive(ties_to_behavior=False)
    out = comps["constraint"].compute(_adaptive_batch(), 1)
    close(out["target_is_behavior"], t(PICK_TIES_TO_DATA))
    close(out["bc_gate"], t(GATE_OR))
    close(out["loss_bc"], _expected_bc(PICK_TIES_TO_DATA, GATE_OR, 0.5))
    close(out["loss_bc"], 0.5 * 4.4375 / 7)


def test_adaptive_gate_or_and_none():
    """gate 'and': A(a~) >= 0 and A(a) > 0; 'none': every sample; the target choice is the same."""
    comps_and = _adaptive(gate="and")
    out_and = comps_and["constraint"].compute(_adaptive_batch(), 1)
    close(out_and["bc_gate"], t(GATE_AND))
    close(out_and["target_is_behavior"], t(PICK_TIES_TO_BEHAVIOR))
    close(out_and["loss_bc"], 0.5 * 0.625 / 7)
    out_none = _adaptive(gate="none")["constraint"].compute(_adaptive_batch(), 1)
    close(out_none["bc_gate"], torch.ones(7))
    close(out_none["loss_bc"], _expected_bc(PICK_TIES_TO_BEHAVIOR, [1] * 7, 0.5))
    close(out_none["loss_bc"], 0.5 * 4.125 / 7)
    with pytest.raises(ValueError, match="gate=xor is not allowed: must be one of or, and, none"):
        make("constraint", "a2pr_adaptive", SPEC1, gate="xor")


def test_adaptive_weight_scales_loss_not_gate():
    """weight multiplies the loss (A2PR's `mask`); bc_gate stays 0/1."""
    for weight in (0.4, 1.0, 10.0):
        out = _adaptive(weight=weight)["constraint"].compute(_adaptive_batch(), 1)
        close(out["bc_gate"], t(GATE_OR))
        close(out["loss_bc"], _expected_bc(PICK_TIES_TO_BEHAVIOR, GATE_OR, weight))


def test_adaptive_q_reduction():
    """The advantage estimator's q: min uses min(Q_0, Q_1) = -|a~|: A(a~) = [-0.25, -1, -0.25, -0.5, -0.5, -0.75, -0.75]."""
    out = _adaptive(q="min")["constraint"].compute(_adaptive_batch(), 1)
    close(out["target_is_behavior"], t([0, 0, 1, 0, 1, 0, 0]))
    close(out["bc_gate"], t([1, 0, 0, 1, 0, 0, 1]))


def test_adaptive_without_behavior_model():
    """behavior: null -> target = dataset action, gate = 1[A(s, a) > 0] (sample 5, A = 0, is out)."""
    comps = _adaptive(behavior=None)
    assert "behavior" not in comps
    out = comps["constraint"].compute(_adaptive_batch(), 1)
    close(out["target_is_behavior"], torch.zeros(7))
    close(out["bc_gate"], t(GATE_DATA_ONLY))
    close(out["loss_bc"], _expected_bc([0] * 7, GATE_DATA_ONLY, 0.5))
    close(out["loss_bc"], 0.5 * 2.375 / 7)


def _grads(detach_target: bool):
    comps = _adaptive(detach_target=detach_target)
    policy_action = t(P).unsqueeze(-1).requires_grad_()
    loss = comps["constraint"].compute(_adaptive_batch(policy_action), 1)["loss_bc"]
    behavior, critic = comps["behavior"], comps["critic"]
    params = [policy_action, behavior.scale, behavior.shift, *critic.net.parameters()]
    return torch.autograd.grad(loss, params, allow_unused=True)


def test_adaptive_gradient_through_reconstruction():
    """d/d pi of w g (pi - t)^2 / B: with t detached 2 w g (pi - t) / B; with t = a~ = 0.5 pi
    not detached, the extra path -2 w g (pi - t) * (d a~ / d pi = 0.5) / B is added (so
    recon-target samples get exactly half), dataset-target samples are unchanged. The
    reconstruction's own parameters get a gradient only without detaching; the critic never
    does (the comparison is not differentiated)."""
    g_free, g_scale, g_shift, *g_critic = _grads(detach_target=False)
    g_det, d_scale, d_shift, *d_critic = _grads(detach_target=True)
    w, n = 0.5, len(P)
    target = [r if k else a for r, a, k in zip(RECON, ACTION, PICK_TIES_TO_BEHAVIOR)]
    direct = t([2 * w * g * (p - tt) / n for p, tt, g in zip(P, target, GATE_OR)]).unsqueeze(-1)
    through_recon = t([-2 * w * g * (p - tt) * 0.5 * k / n for p, tt, g, k in zip(P, target, GATE_OR, PICK_TIES_TO_BEHAVIOR)])
    close(g_det, direct)
    close(g_free - g_det, through_recon.unsqueeze(-1))
    assert torch.count_nonzero(through_recon) == 2  # samples 0 and 1: open gate, target a~
    # a~ = scale * pi + shift: d/d scale = sum -2 w g (pi - t) pi k / B, d/d shift = sum -2 w g (pi - t) k / B
    close(g_scale, sum(-2 * w * g * (p - tt) * p * k / n for p, tt, g, k in zip(P, target, GATE_OR, PICK_TIES_TO_BEHAVIOR)))
    close(g_shift, t([sum(-2 * w * g * (p - tt) * k / n for p, tt, g, k in zip(P, target, GATE_OR, PICK_TIES_TO_BEHAVIOR))]))
    assert d_scale is None and d_shift is None
    assert all(g is None for g in g_critic + d_critic)


def test_adaptive_gradient_through_real_vae():
    """Same with the real VAE (random weights, replayed noise): the difference of the policy-action
    gradients (not detached - detached) is the vector-Jacobian product of the reconstruction with
    -2 w g (pi - t) 1[t = a~] / (B A)."""
    spec = DataSpec(obs_dim=2, action_dim=2)
    critic = make("critic", "q_ensemble", spec, num_q=2, hidden_sizes=[])
    set_linear_critic(critic, [[0.0, 0.0, 1.0, 1.0], [0.0, 0.0, -1.0, 0.0]], [0.0, 0.0])  # Q_0 = a_1 + a_2
    vae = make("behavior", "vae", spec, hidden_sizes=[6])
    obs = torch.randn(12, 2)
    policy_action = torch.rand(12, 2, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.no_grad():  # dataset actions just above / below the reconstruction, alternately
        torch.manual_seed(5)
        action = vae.reconstruct(obs, policy_action)[0] + 0.05 * torch.tensor([1.0, -1.0]).repeat(6).unsqueeze(-1)
    td = TensorDict(
        {
            "observation": obs,
            "action": action,
            "state_value": torch.full((12,), -10.0),  # every gate open
            "advantage": action.sum(-1) + 10.0,  # A(a) = Q_0(s, a) - V
        },
        batch_size=[12],
    )
    grads, outs = {}, {}
    for detach in (False, True):
        advantage = make("advantage", "q_minus_v", spec, q="q1", use_target_critic=False)
        constraint = make("constraint", "a2pr_adaptive", spec, detach_target=detach)
        comps = bind_all({"critic": critic, "behavior": vae, "advantage": advantage, "c": constraint})
        p = policy_action.clone().requires_grad_()
        td["policy_action"] = p
        torch.manual_seed(5)
        outs[detach] = comps["c"].compute(td, 1)
        grads[detach] = torch.autograd.grad(outs[detach]["loss_bc"], [p, *vae.parameters()], allow_unused=True)
    pick = outs[False]["target_is_behavior"]
    assert torch.equal(pick, outs[True]["target_is_behavior"])
    close(pick, t([0.0, 1.0] * 6))  # both targets occur
    p = td["policy_action"].detach().requires_grad_()
    torch.manual_seed(5)
    recon, _, _ = vae.reconstruct(obs, p)
    target = torch.where(pick.bool().unsqueeze(-1), recon, td["action"]).detach()
    upstream = -2 * 0.5 * (p.detach() - target) * pick.unsqueeze(-1) / p.numel()
    (vjp,) = torch.autograd.grad(recon, p, grad_outputs=upstream)
    close(grads[False][0] - grads[True][0], vjp, rtol=1e-5, atol=1e-7)
    assert all(g is not None for g in grads[False][1:])  # the BC gradient reaches the VAE...
    assert all(g is None for g in grads[True][1:])  # ...only when t is not detached


# ==== a full A2PR step assembled from recipes/a2pr.yaml ========================================================
FACTS = {"obs_dim": 5, "action_dim": 2, "max_action": 1.0}
SMALL = [
    "components.actor.hidden_sizes=[8,8,8]",
    "components.critic.hidden_sizes=[8,8,8,8]",
    "components.value.hidden_sizes=[8,8,8,8]",
    "components.behavior.hidden_sizes=[8,8]",
]


def build_a2pr(*overrides):
    recipe = load_recipe(A2PR_RECIPE, [*SMALL, *overrides], dataset_facts=FACTS)
    comps = build_components(recipe, DataSpec(**FACTS), bind=False)
    updates, _ = build_updates(recipe, comps, CPU)
    return comps, updates


def a2pr_batch(size=16, seed=0, obs_scale=1.0) -> TensorDict:
    gen = torch.Generator().manual_seed(seed)
    return TensorDict(
        {
            "observation": torch.randn(size, 5, generator=gen) * obs_scale,
            "action": torch.rand(size, 2, generator=gen) * 1.8 - 0.9,
            "reward": torch.randn(size, generator=gen),
            "next": {"observation": torch.randn(size, 5, generator=gen) * obs_scale},
            "terminated": (torch.rand(size, generator=gen) < 0.25).float(),
        },
        batch_size=[size],
    )


@torch.no_grad()
def center_value(comps, td):
    """Shift V's output bias so that V(s) sits at the median of Q_1(s, a) - V(s): about half of
    the batch then has a positive advantage (fresh small networks are nearly constant in s)."""
    s, a = td["observation"], td["action"]
    gap = comps["critic"].q(s, a, reduce="q1") - comps["value"](s)
    middle = len(gap) // 2
    comps["value"].net[-1].bias.add_(gap.sort().values[middle - 1 : middle + 1].mean())


def test_recipe_updates_and_schedules():
    """critic -> value -> behavior (advantage, selector, VAE) -> actor every 2nd step with Polyak."""
    _, updates = build_a2pr()
    assert [u.name for u in updates] == ["critic", "value", "behavior", "actor"]
    assert [[name for name, _ in u.terms] for u in updates] == [
        ["critic_loss"], ["value"], ["advantage", "selector", "behavior"], ["actor", "actor_loss", "constraint"]
    ]
    assert [[g.slot for g in u.groups] for u in updates] == [["critic"], ["value"], ["behavior"], ["actor"]]
    lrs = [u.groups[0].optimizer.param_groups[0]["lr"] for u in updates]
    assert lrs == [3e-4, 3e-4, 1e-3, 3e-4]
    assert [[s for s in range(1, 7) if u.active(s)] for u in updates] == [[1, 2, 3, 4, 5, 6]] * 3 + [[2, 4, 6]]
    actor = updates[3]
    assert [type(c).__name__ for c in actor.targets] == ["DeterministicActor", "QEnsemble"] and actor.tau == 0.005
    assert all(not u.targets for u in updates[:3])


@pytest.mark.parametrize("stage_index", [0, 1, 2, 3])
def test_each_update_moves_only_its_slot(stage_index):
    """At an even step: the critic update moves only the online critic, the value update only V,
    the behaviour update only the VAE, the actor update only the actor plus (Polyak) both targets."""
    comps, updates = build_a2pr()
    td = a2pr_batch()
    center_value(comps, td)
    for stage in updates[:stage_index]:
        run(stage, td, 2)
    moving = [{"critic"}, {"value"}, {"behavior"}, {"actor", "actor_target", "critic_target"}][stage_index]
    before = {k: snapshot(m) for k, m in parts(comps).items()}
    run(updates[stage_index], td, 2)
    if stage_index == 2:
        assert 0 < td["positive"].sum() < 16  # the decoder is trained on some samples
    for k, module in parts(comps).items():
        (assert_all_changed if k in moving else assert_unchanged)(module, before[k])


def test_actor_update_moves_only_actor_although_bc_gradient_reaches_vae():
    """Replaying the actor update's terms on a copy (same noise): loss_bc has a non-zero gradient
    on VAE parameters (t = a~ is not detached) and loss_actor + loss_bc on the critic, yet only the
    actor steps, with exactly the gradient of loss_actor + loss_bc; the VAE's .grad (from its own
    update) is left as it was."""
    comps, updates = build_a2pr()
    td = a2pr_batch()
    center_value(comps, td)
    for stage in updates[:3]:
        run(stage, td, 2)
    vae_grads_before = [p.grad.clone() for p in comps["behavior"].parameters()]
    copies = copy.deepcopy(comps)
    replay_td = td.clone()
    torch.manual_seed(3)
    scalars = {}
    for name in ("actor", "actor_loss", "constraint"):
        for key, value in copies[name].compute(replay_td, 2).items():
            if value.dim() == 0:
                scalars[key] = value
            else:
                replay_td[key] = value
    assert replay_td["target_is_behavior"].sum() > 0 and replay_td["bc_gate"].sum() > 0
    bc_on_vae = torch.autograd.grad(scalars["loss_bc"], list(copies["behavior"].parameters()), retain_graph=True, allow_unused=True)
    assert any(g is not None and torch.count_nonzero(g) > 0 for g in bc_on_vae)
    total = scalars["loss_actor"] + scalars["loss_bc"]
    on_critic = torch.autograd.grad(total, list(copies["critic"].net.parameters()), retain_graph=True, allow_unused=True)
    assert any(g is not None and torch.count_nonzero(g) > 0 for g in on_critic)
    expected_actor = torch.autograd.grad(total, list(copies["actor"].net.parameters()))

    before = {k: snapshot(m) for k, m in parts(comps).items()}
    torch.manual_seed(3)
    out = run(updates[3], td, 2)
    close(out["loss_bc"], scalars["loss_bc"])
    for p, g in zip(comps["actor"].net.parameters(), expected_actor):
        close(p.grad, g, rtol=1e-5, atol=1e-7)
    for name in ("critic", "value", "behavior"):
        assert_unchanged(parts(comps)[name], before[name])
    for p, g in zip(comps["behavior"].parameters(), vae_grads_before):
        assert torch.equal(p.grad, g)


def _logged(compute, name, log):
    def wrapper(td, step):
        log.append((step, name))
        return compute(td, step)

    return wrapper


def test_step_order_and_targets_only_on_actor_steps():
    """Trainer._train_step runs the terms critic_loss, value, advantage, selector, behavior and,
    at even steps only, actor, actor_loss, constraint; targets move only at even steps."""
    comps, updates = build_a2pr()
    log = []
    for name, comp in comps.items():
        if comp.is_term:
            comp.compute = _logged(comp.compute, name, log)
    targets = {k: m for k, m in parts(comps).items() if k.endswith("target")}
    every_step = ["critic_loss", "value", "advantage", "selector", "behavior"]
    for step in (1, 2, 3):
        log.clear()
        before = {k: snapshot(m) for k, m in targets.items()}
        actor_before = snapshot(comps["actor"].net)
        out = train_step(updates, a2pr_batch(seed=step), step)
        if step % 2 == 0:
            assert [n for _, n in log] == every_step + ["actor", "actor_loss", "constraint"]
            assert {"loss_actor", "loss_bc"} <= set(out)
            for k, m in targets.items():
                assert_all_changed(m, before[k])
        else:
            assert [n for _, n in log] == every_step
            assert "loss_actor" not in out and "loss_bc" not in out
            for k, m in targets.items():
                assert_unchanged(m, before[k])
            assert_unchanged(comps["actor"].net, actor_before)
        assert {s for s, _ in log} == {step}
        assert {"loss_critic", "loss_value", "loss_behavior"} <= set(out)


def test_value_reads_this_steps_critic_outputs_and_updated_critic():
    """The value term's td_target / next_action are the critic term's of the same step, and its
    online target uses the critic after this step's critic update:
    loss_value = mean((V_pre(s) - min(r + gamma nd min_i Q_i^new(s', a'), td_target))^2).
    With the pre-update critic (= the target critic here) the loss would differ."""
    comps, updates = build_a2pr("updates.critic.optimize.critic.lr=0.05")
    pre = copy.deepcopy(comps)
    td = a2pr_batch()
    td["reward"] = td["reward"] - 3.0  # the critic step lowers Q, so the online target matters
    s, s_next, r, nd = td["observation"], td["next", "observation"], td["reward"], 1 - td["terminated"]
    run(updates[0], td, 1)
    td_target, next_action = td["td_target"].clone(), td["next_action"].clone()
    with torch.no_grad():
        # the critic term's own target: target critics (still the initial ones), smoothed a'
        close(td_target, r + 0.99 * nd * pre["critic"].target_q_all(s_next, next_action).min(0).values)
        v_pre = pre["value"](s)
        y_new = torch.minimum(r + 0.99 * nd * comps["critic"].q_all(s_next, next_action).min(0).values, td_target)
        y_old = torch.minimum(r + 0.99 * nd * pre["critic"].q_all(s_next, next_action).min(0).values, td_target)
    out = run(updates[1], td, 1)
    close(out["loss_value"], ((v_pre - y_new) ** 2).mean())
    assert not torch.allclose(((v_pre - y_old) ** 2).mean(), out["loss_value"])
    assert torch.equal(td["td_target"], td_target) and torch.equal(td["next_action"], next_action)
    close(td["state_value"], v_pre)


def test_behavior_update_uses_updated_critic_and_pre_update_value():
    """advantage = Q_1^new(s, a) - V_pre(s) (online critic after its update, V before its own);
    positive = 1[advantage > 0]; loss_behavior = mean(positive (a_hat - a)^2) + 0.5 KL with the
    VAE's pre-update parameters (noise replayed)."""
    comps, updates = build_a2pr("updates.critic.optimize.critic.lr=0.05", "updates.value.optimize.value.lr=0.05")
    pre = copy.deepcopy(comps)
    td = a2pr_batch()
    s, a = td["observation"], td["action"]
    run(updates[0], td, 1)
    center_value(comps, td)
    pre["value"].load_state_dict(comps["value"].state_dict())
    run(updates[1], td, 1)
    torch.manual_seed(9)
    out = run(updates[2], td, 1)
    with torch.no_grad():
        v_pre, v_new = pre["value"](s), comps["value"](s)
        q1_new, q1_old = comps["critic"].q_all(s, a)[0], pre["critic"].q_all(s, a)[0]
    close(td["advantage"], q1_new - v_pre)
    assert not torch.allclose(td["advantage"], q1_old - v_pre)
    assert not torch.allclose(td["advantage"], q1_new - v_new)
    close(td["positive"], (td["advantage"] > 0).float())
    assert 0 < td["positive"].sum() < 16
    torch.manual_seed(9)
    recon, mean, std = pre["behavior"].reconstruct(s, a)
    expected = (td["positive"].unsqueeze(-1) * (recon - a) ** 2).mean() + 0.5 * gaussian_kl(mean, std)
    close(out["loss_behavior"], expected)


def test_actor_update_by_hand_uses_updated_vae():
    """At an even step the actor loss is -lambda mean Q_1(s, pi) + mean(g (pi - t)^2) with
    a~ = the *updated* VAE's reconstruction of pi, A(a) = the behaviour update's advantage and
    V(s) the value update's pre-update values (official A2PR.train, actor step)."""
    comps, updates = build_a2pr()
    td = a2pr_batch()
    center_value(comps, td)
    for stage in updates[:3]:
        run(stage, td, 2)
    assert 0 < td["positive"].sum() < 16
    snap = copy.deepcopy(comps)
    torch.manual_seed(4)
    out = run(updates[3], td, 2)
    s, a, v = td["observation"], td["action"], td["state_value"]
    p = snap["actor"](s)
    q = snap["critic"].q_all(s, p)[0]
    lam = 2.5 / q.abs().mean().detach()
    torch.manual_seed(4)
    recon, _, _ = snap["behavior"].reconstruct(s, p)
    adv_vae = snap["critic"].q_all(s, recon)[0] - v
    adv_data = snap["critic"].q_all(s, a)[0] - v
    close(adv_data, td["advantage"])
    pick = adv_vae >= adv_data
    target = torch.where(pick.unsqueeze(-1), recon, a)
    gate = 0.5 * ((adv_vae >= 0) | (adv_data > 0)).float()
    close(out["loss_actor"], -lam * q.mean())
    close(out["loss_bc"], (gate.unsqueeze(-1) * (p - target) ** 2).mean())
    close(td["target_is_behavior"], pick.float())


# ---- against the plain reference implementation (benchmarks/reference_a2pr.py) --------------------------
@torch.no_grad()
def _copy_weights(comps, ref):
    """advrl's parameters into the reference's modules (ensemble member m -> q{m+1}_net, the
    VAE encoder's last layer split into the mean and log-sigma heads)."""
    copy_actor_critic_into_reference(comps, ref)
    ref.value.net.load_state_dict(comps["value"].net.state_dict())
    copy_vae_into_reference(comps["behavior"], ref.vae)


TINY = {"actor_hidden": (8, 8, 8), "critic_hidden": (8, 8, 8, 8), "value_hidden": (8, 8, 8, 8), "vae_hidden": (8, 8)}
LR = 1e-3  # the same for every update, so that each update's effect is well above float noise


def test_six_steps_match_the_reference_implementation():
    """Six steps of the recipe and of benchmarks/reference_a2pr.py (separately written from
    the official A2PR.train: CORL-style modules, backward per optimiser), started from the same
    weights with the same noise, give the same losses and the same parameters."""
    reference_a2pr = benchmark_module("reference_a2pr")
    lrs = [f"updates.{u}.optimize.{slot}.lr={LR}" for u, slot in [("critic", "critic"), ("value", "value"), ("behavior", "behavior"), ("actor", "actor")]]
    comps, updates = build_a2pr(*lrs)
    center_value(comps, a2pr_batch(seed=101, obs_scale=3.0))
    with torch.no_grad():  # target critics unlike the online ones (centred): each TD target wins the min somewhere
        critic, probe = comps["critic"], a2pr_batch(seed=101, obs_scale=3.0)
        for p in critic.target_net.parameters():
            p.add_(0.2 * torch.randn_like(p))
        s_next = probe["next", "observation"]
        a_next = comps["actor"].target_act(s_next)
        gap = critic.target_q_all(s_next, a_next).min(0).values - critic.q_all(s_next, a_next).min(0).values
        list(critic.target_net.parameters())[-1].sub_(gap.median())
    ref = reference_a2pr.A2PR(5, 2, lr=LR, vae_lr=LR, **TINY)
    _copy_weights(comps, ref)
    mixed_masks = mixed_gates = online_wins = target_wins = 0
    for step in range(1, 7):
        td = a2pr_batch(seed=100 + step, obs_scale=3.0)  # spread-out states: advantages of both signs
        batch = [td["observation"], td["action"], td["reward"].unsqueeze(-1), td["next", "observation"], td["terminated"].unsqueeze(-1)]
        torch.manual_seed(step)
        ours = train_step(updates, td, step)
        mixed_masks += bool(0 < td["positive"].sum() < len(td))
        mixed_gates += step % 2 == 0 and bool(0 < td["bc_gate"].sum() < len(td))
        with torch.no_grad():  # the online TD target the value term saw (the critic has not moved since)
            next_q = comps["critic"].q_all(td["next", "observation"], td["next_action"]).min(0).values
            online = td["reward"] + 0.99 * (1 - td["terminated"]) * next_q
        online_wins += int((online < td["td_target"]).sum())
        target_wins += int((online > td["td_target"]).sum())
        torch.manual_seed(step)
        theirs = ref.train(batch)
        close(ours["loss_critic"], theirs["critic_loss"], rtol=1e-5, atol=1e-6)
        close(ours["loss_value"], theirs["value_loss"], rtol=1e-5, atol=1e-6)
        close(ours["loss_behavior"], theirs["vae_loss"], rtol=1e-5, atol=1e-6)
        if step % 2 == 0:
            close(ours["loss_actor"] + ours["loss_bc"], theirs["actor_loss"], rtol=1e-5, atol=1e-6)
        else:
            assert "actor_loss" not in theirs and "loss_actor" not in ours
    # the EPBL mask, the BC gate and both branches of the value target's min were exercised
    assert mixed_masks >= 3 and mixed_gates >= 1 and online_wins >= 3 and target_wins >= 3
    mirror = reference_a2pr.A2PR(5, 2, **TINY)
    _copy_weights(comps, mirror)
    for mine, theirs in [
        (mirror.actor, ref.actor), (mirror.actor_target, ref.actor_target), (mirror.critic, ref.critic),
        (mirror.critic_target, ref.critic_target), (mirror.value, ref.value), (mirror.vae, ref.vae),
    ]:
        for (name, p), q in zip(mine.named_parameters(), theirs.parameters()):
            close(p, q, rtol=1e-5, atol=1e-6, msg=lambda m, n=name: f"{n}: {m}")
