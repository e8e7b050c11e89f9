"""A2PO's components (behavior: cvae, advantage: tanh_q_minus_v, actor: latent, constraint:
advantage_aware_bc, value: td) on hand-set networks and written-out numbers, and the full A2PO
update sequence assembled from recipes/a2po.yaml: which parameters each update moves and when,
the loss routing of the joint critic + V update, and the critic's TD target through the current
CVAE decoder and the target latent actor (github.com/Plankson/A2PO at d9cd771, a2po.py,
OffRL.policy_train)."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import torch
from _helpers import (
    assert_all_changed,
    assert_unchanged,
    bind_all,
    make,
    parts,
    run,
    set_linear,
    set_linear_critic,
    small_transitions,
    snapshot,
    t,
    train_step,
)
from tensordict import TensorDict

from advrl import DataSpec
from advrl.components.behaviors.vae import gaussian_kl
from advrl.learner.assembly import build_components, build_updates
from advrl.recipe import load_recipe

REPO = Path(__file__).resolve().parents[2]
A2PO_RECIPE = REPO / "recipes" / "a2po.yaml"
ABLATIONS = sorted((REPO / "recipes" / "a2po" / "ablations").glob("*.yaml"))
CPU = torch.device("cpu")
SPEC1 = DataSpec(obs_dim=1, action_dim=1)
SPEC2 = DataSpec(obs_dim=1, action_dim=2)


def close(actual, expected, **kw):
    torch.testing.assert_close(actual, expected if torch.is_tensor(expected) else torch.as_tensor(expected, dtype=torch.float32), **kw)


# ==== behavior: cvae ================================================================================
def _hand_cvae(spec=SPEC2, **cfg):
    """obs 1, cond 1, action 2 -> latent 4; no hidden layers. Encoder input [s, c, a], decoder
    input [s, c, z]. Zero encoder weights with bias (mu | log sigma) = (0, 1, 0, -1 | 0, ln 2, 0, 0);
    zero decoder weights with bias atanh(0.5), atanh(-0.25): a_hat = (0.5, -0.25) whatever z, c are."""
    cvae = make("behavior", "cvae", spec, hidden_sizes=[], **cfg)
    set_linear(cvae.encoder[0], [[0.0] * 4] * 8, [0.0, 1.0, 0.0, -1.0, 0.0, math.log(2.0), 0.0, 0.0])
    set_linear(cvae.decoder[0], [[0.0] * 6] * 2, [math.atanh(0.5), math.atanh(-0.25)])
    return cvae


def _cvae_batch(**extra) -> TensorDict:
    # a_hat - a = [[0, -1], [1, 0], [0.5, -0.25]] -> squared [[0, 1], [1, 0], [0.25, 0.0625]], sum 2.3125
    data = {
        "observation": t([[0.3], [-2.0], [5.0]]),
        "action": t([[0.5, 0.75], [-0.5, -0.25], [0.0, 0.0]]),
        "xi": t([1.0, -0.5, 0.2]),
        **extra,
    }
    return TensorDict(data, batch_size=[3])


def test_cvae_defaults_follow_a2po():
    """750-750, latent 2A, condition 'xi' of size 1 (default 1.0), KL weight 1, log sigma in [-4, 15];
    encoder input s || c || a, decoder input s || c || z."""
    cvae = make("behavior", "cvae", DataSpec(obs_dim=4, action_dim=3))
    cfg = cvae.config
    assert (cfg.hidden_sizes, cfg.kl_weight, cfg.recon_weight, cfg.weight_key) == ([750, 750], 1.0, 1.0, None)
    assert (cfg.condition_key, cfg.condition_dim, cfg.default_condition) == ("xi", 1, 1.0)
    assert (cfg.log_std_min, cfg.log_std_max, cfg.prior_clip) == (-4.0, 15.0, 0.5)
    assert cvae.latent_dim == 6
    assert cvae.encoder[0].in_features == 4 + 1 + 3 and cvae.encoder[-1].out_features == 2 * 6
    assert cvae.decoder[0].in_features == 4 + 1 + 6 and cvae.decoder[-1].out_features == 3
    assert cvae.read_keys() == ["observation", "action", "xi"]
    assert cvae.write_keys() == [] and cvae.loss_keys() == ["loss_behavior"] and cvae.log_keys() == ["behavior_kl"]
    wide = make("behavior", "cvae", DataSpec(obs_dim=4, action_dim=3), hidden_sizes=[8], condition_dim=2, latent_dim=5)
    assert wide.encoder[0].in_features == 4 + 2 + 3 and wide.decoder[0].in_features == 4 + 2 + 5


def test_cvae_condition_broadcast():
    """condition(s, c): None -> default_condition, a float broadcasts to [..., condition_dim],
    [B] gains a trailing dim, [B, 1] is kept as is."""
    cvae = make("behavior", "cvae", SPEC2, hidden_sizes=[], default_condition=0.75)
    obs = torch.zeros(3, 1)
    close(cvae.condition(obs, None), torch.full((3, 1), 0.75))
    close(cvae.condition(obs, -0.5), torch.full((3, 1), -0.5))
    close(cvae.condition(obs, t([1.0, -1.0, 0.2])), t([[1.0], [-1.0], [0.2]]))
    close(cvae.condition(obs, t([[1.0], [-1.0], [0.2]])), t([[1.0], [-1.0], [0.2]]))
    close(cvae.condition(torch.zeros(1), None), t([0.75]))  # a single unbatched observation
    two = make("behavior", "cvae", SPEC2, hidden_sizes=[], condition_dim=2)
    close(two.condition(obs, 0.5), torch.full((3, 2), 0.5))
    close(two.condition(obs, None), torch.ones(3, 2))


def test_cvae_condition_zero_dim_tensor_broadcasts_like_a_float():
    """A 0-dim tensor condition is a scalar too: it broadcasts like the same float."""
    cvae = make("behavior", "cvae", SPEC2, hidden_sizes=[])
    obs, z = torch.zeros(3, 1), torch.zeros(3, 4)
    close(cvae.decode(obs, torch.tensor(0.5), z), cvae.decode(obs, 0.5, z))


def test_cvae_loss_by_hand():
    """loss = recon_weight * mean_{BxA}(a_hat - a)^2 + kl_weight * KL
    = 2 * 2.3125 / 6 + 0.5 * (5 - 2 ln 2) / 8; defaults (1, 1) give 2.3125 / 6 + KL."""
    kl = (5 - 2 * math.log(2)) / 8
    out = _hand_cvae(recon_weight=2.0, kl_weight=0.5).compute(_cvae_batch(), 1)
    close(out["behavior_kl"], kl)
    close(out["loss_behavior"], 2.0 * 2.3125 / 6 + 0.5 * kl)
    assert out["loss_behavior"].requires_grad and not out["behavior_kl"].requires_grad
    close(_hand_cvae().compute(_cvae_batch(), 1)["loss_behavior"], 2.3125 / 6 + kl)


def test_cvae_loss_by_hand_weighted():
    """weight_key w = [1, 0, 2] multiplies each sample's squared error: (1 + 0 + 2 * 0.3125) / 6;
    the KL term is not weighted."""
    cvae = _hand_cvae(kl_weight=0.25, weight_key="w")
    out = cvae.compute(_cvae_batch(w=t([1.0, 0.0, 2.0])), 1)
    close(out["loss_behavior"], 1.625 / 6 + 0.25 * (5 - 2 * math.log(2)) / 8)
    assert cvae.read_keys() == ["observation", "action", "xi", "w"]


def test_cvae_encoder_and_decoder_inputs_include_the_condition():
    """Encoder rows mu_0 = 2c, mu_1 = a_0 + 1, mu_2 = s; decoder a_hat = max_action * tanh([c, s + z_0])
    (max_action 2): the condition enters both networks at its own column."""
    spec = DataSpec(obs_dim=1, action_dim=2, max_action=2.0)
    cvae = make("behavior", "cvae", spec, hidden_sizes=[])
    enc_w = [[0.0] * 4 for _ in range(8)]
    enc_w[0][1], enc_w[1][2], enc_w[2][0] = 2.0, 1.0, 1.0
    set_linear(cvae.encoder[0], enc_w, [0.0, 1.0, 0.0, 0.0] + [0.0] * 4)
    set_linear(cvae.decoder[0], [[0.0, 1.0, 0.0, 0.0, 0.0, 0.0], [1.0, 0.0, 1.0, 0.0, 0.0, 0.0]], [0.0, 0.0])
    s, a, c = t([[0.5], [-1.0]]), t([[0.2, 0.0], [-0.6, 0.0]]), t([0.3, -0.8])
    mean, std = cvae.encode(s, a, c)
    close(mean, t([[0.6, 1.2, 0.5, 0.0], [-1.6, 0.4, -1.0, 0.0]]))
    close(std, torch.ones(2, 4))
    close(cvae.encode(s, a)[0][:, 0], t([2.0, 2.0]))  # no condition: default 1.0
    z = t([[0.1, 9.0, 9.0, 9.0], [-0.4, 9.0, 9.0, 9.0]])
    close(cvae.decode(s, c, z), 2.0 * torch.tanh(t([[0.3, 0.6], [-0.8, -1.4]])))
    close(cvae.decode(s, None, z), 2.0 * torch.tanh(t([[1.0, 0.6], [1.0, -1.4]])))
    close(cvae.decode(s, -1.0, z)[:, 0], 2.0 * torch.tanh(t([-1.0, -1.0])))


def test_cvae_changing_xi_changes_the_reconstruction():
    """With non-zero (random) weights and the noise replayed, reconstruct(s, a, xi) and the loss
    depend on xi; compute() reads xi from ``condition_key``."""
    cvae = make("behavior", "cvae", SPEC2, hidden_sizes=[8], condition_key="adv")
    td = _cvae_batch(adv=t([1.0, 1.0, 1.0]))
    s, a = td["observation"], td["action"]
    recon = {}
    for xi in (1.0, -1.0):
        torch.manual_seed(3)
        recon[xi], _, _ = cvae.reconstruct(s, a, xi)
    assert not torch.allclose(recon[1.0], recon[-1.0])
    z = torch.randn(3, 4)
    assert not torch.allclose(cvae.decode(s, 1.0, z), cvae.decode(s, -1.0, z))
    torch.manual_seed(3)
    loss_pos = cvae.compute(td, 1)["loss_behavior"]
    torch.manual_seed(3)
    rec, mean, std = cvae.reconstruct(s, a, 1.0)
    close(loss_pos, ((rec - a) ** 2).mean() + gaussian_kl(mean, std))
    td["adv"] = -torch.ones(3)
    torch.manual_seed(3)
    assert not torch.allclose(cvae.compute(td, 1)["loss_behavior"], loss_pos)
    assert cvae.read_keys() == ["observation", "action", "adv"]


def test_cvae_decode_accepts_an_external_latent():
    """decode(s, c, z) uses the given z (deterministic, any source, gradient flows into z);
    without z it samples the clipped prior (a fresh draw each call)."""
    cvae = _hand_cvae()
    with torch.no_grad():
        cvae.decoder[0].weight[0, 2] = 1.0  # a_hat_0 = tanh(atanh(0.5) + z_0)
    z = t([[0.3, 0.0, 0.0, 0.0]]).requires_grad_()
    out = cvae.decode(t([[1.0]]), 1.0, z)
    close(out, torch.tanh(t([[math.atanh(0.5) + 0.3, math.atanh(-0.25)]])))
    (grad,) = torch.autograd.grad(out[0, 0], z)
    close(grad, t([[1 - math.tanh(math.atanh(0.5) + 0.3) ** 2, 0.0, 0.0, 0.0]]))
    prior = cvae.decode(torch.zeros(200, 1), 1.0)
    z0 = torch.atanh(prior[:, 0]) - math.atanh(0.5)
    assert z0.abs().max() <= 0.5 + 1e-5 and not torch.equal(prior, cvae.decode(torch.zeros(200, 1), 1.0))


def test_cvae_condition_from_the_batch_is_detached():
    """The batch's xi carries a graph (it is tanh(Q - V) of some net): the CVAE loss sends no
    gradient back into it, while the CVAE's own parameters get one."""
    cvae = make("behavior", "cvae", SPEC2, hidden_sizes=[8])
    source = t([0.5, -2.0, 1.0]).requires_grad_()
    td = _cvae_batch()
    td["xi"] = torch.tanh(source)
    loss = cvae.compute(td, 1)["loss_behavior"]
    grads = torch.autograd.grad(loss, [source, *cvae.parameters()], allow_unused=True)
    assert grads[0] is None
    assert all(g is not None for g in grads[1:])


# ==== advantage: tanh_q_minus_v =====================================================================
def _xi_set(**cfg):
    """Online Q_0 = s + a, Q_1 = 2a; a target critic 5 s + 5 a + 10 that must not be used; V = 2 s - 1."""
    critic = make("critic", "q_ensemble", SPEC1, num_q=2, hidden_sizes=[])
    set_linear_critic(critic, [[1.0, 1.0], [0.0, 2.0]], [0.0, 0.0])
    set_linear_critic(critic, [[5.0, 5.0], [5.0, 5.0]], [10.0, 10.0], target=True)
    value = make("value", "td", SPEC1, hidden_sizes=[])
    set_linear(value.net[0], [[2.0]], [-1.0])
    return bind_all({"critic": critic, "value": value, "advantage": make("advantage", "tanh_q_minus_v", SPEC1, **cfg)})


def _xi_batch(**extra) -> TensorDict:
    # Q_0 = [0.5, 0, 4], Q_1 = [1, -2, 4], V = [-1, 1, 3]
    return TensorDict({"observation": t([[0.0], [1.0], [2.0]]), "action": t([[0.5], [-1.0], [2.0]]), **extra}, batch_size=[3])


def test_tanh_q_minus_v_by_hand():
    """Default q: q1 (the official code): xi = tanh(Q_0 - V) = tanh([1.5, -1, 1]); no gradient."""
    comps = _xi_set()
    adv = comps["advantage"]
    assert (adv.config.q, adv.config.discrete, adv.config.epsilon, adv.config.out_key) == ("q1", False, 0.0, "xi")
    out = adv.compute(_xi_batch(), 1)
    assert set(out) == {"xi"}
    close(out["xi"], torch.tanh(t([1.5, -1.0, 1.0])))
    assert not out["xi"].requires_grad
    assert any(p.requires_grad for p in comps["critic"].parameters())
    assert adv.read_keys() == ["observation", "action"] and adv.write_keys() == ["xi"]


@pytest.mark.parametrize("reduce, gap", [("min", [1.5, -3.0, 1.0]), ("mean", [1.75, -2.0, 1.0])])
def test_tanh_q_minus_v_reductions(reduce, gap):
    """q: min (the paper) -> min(Q_0, Q_1) - V = [1.5, -3, 1]; q: mean -> [1.75, -2, 1]; out_key renames."""
    out = _xi_set(q=reduce, out_key="cond")["advantage"].compute(_xi_batch(), 1)
    close(out["cond"], torch.tanh(t(gap)))


def _discrete_set(epsilon):
    """Q_0 = Q_1 = a, V = 0: the gap is the action itself."""
    critic = make("critic", "q_ensemble", SPEC1, num_q=2, hidden_sizes=[])
    set_linear_critic(critic, [[0.0, 1.0], [0.0, 1.0]], [0.0, 0.0])
    value = make("value", "td", SPEC1, hidden_sizes=[])
    set_linear(value.net[0], [[0.0]], [0.0])
    adv = make("advantage", "tanh_q_minus_v", SPEC1, discrete=True, epsilon=epsilon)
    return bind_all({"critic": critic, "value": value, "advantage": adv})["advantage"]


GAPS = [0.499, 0.501, -0.499, -0.501, 0.5, -0.5, 0.0, 3.0, -3.0]


def _gap_batch() -> TensorDict:
    return TensorDict({"observation": torch.randn(len(GAPS), 1), "action": t(GAPS).unsqueeze(-1)}, batch_size=[len(GAPS)])


def test_tanh_q_minus_v_discrete_dead_zone():
    """discrete: 1 where tanh(Q - V) > eps, -1 where tanh(Q - V) < -eps, else 0: with eps = 0.5
    the gaps +-0.499, +-0.501 and +-0.5 all lie inside the dead zone (|tanh| < 0.47)."""
    out = _discrete_set(0.5).compute(_gap_batch(), 1)["xi"]
    close(out, t([0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, -1.0]))
    assert not out.requires_grad


def _official_discrete_xi(gap: torch.Tensor, epsilon: float) -> torch.Tensor:
    """Plankson/A2PO a2po.py OffRL.policy_train, transcribed: adv = tanh(Q1 - V), then
    torch.where(adv < l, -1, torch.where(adv > r, 1, 0)) with main.py's l, r = -epsilon, epsilon."""
    adv = torch.tanh(gap)
    l_thresold, r_thresold = -epsilon, epsilon
    return torch.where(adv < l_thresold, torch.tensor(-1.0), torch.where(adv > r_thresold, torch.tensor(1.0), torch.tensor(0.0)))


# around atanh(0.5) = 0.549: Q - V > 0.5 but tanh(Q - V) < 0.5 for +-0.52 and +-0.54; likewise
# +-1.2 for eps = 0.9 (atanh(0.9) = 1.47)
THRESHOLD_GAPS = [0.52, -0.52, 0.54, -0.54, 0.56, -0.56, 0.2, -0.2, 0.0, 1.2, -1.2, 3.0, -3.0]


@pytest.mark.parametrize("epsilon", [0.5, 0.0, -0.5, 0.9])
def test_tanh_q_minus_v_discrete_follows_the_official_thresholds(epsilon):
    """The official code thresholds tanh(Q1 - V), not Q - V: on gaps between eps and atanh(eps)
    the two differ (they agree only at eps = 0), and advrl's xi is the official one."""
    gaps = t(THRESHOLD_GAPS)
    td = TensorDict({"observation": torch.randn(len(gaps), 1), "action": gaps.unsqueeze(-1)}, batch_size=[len(gaps)])
    out = _discrete_set(epsilon).compute(td, 1)["xi"]
    expected = _official_discrete_xi(gaps, epsilon)
    assert torch.equal(out, expected)
    if epsilon > 0:  # the batch separates the two readings of epsilon
        on_gap = (gaps > epsilon).float() - (gaps < -epsilon).float()
        assert not torch.equal(expected, on_gap)


def test_tanh_q_minus_v_discrete_zero_epsilon():
    """eps = 0: sign(Q - V), and exactly 0 for a zero gap."""
    out = _discrete_set(0.0).compute(_gap_batch(), 1)["xi"]
    close(out, t([1.0, 1.0, -1.0, -1.0, 1.0, -1.0, 0.0, 1.0, -1.0]))


def test_tanh_q_minus_v_evaluates_the_current_networks():
    """xi is recomputed from the networks as they are at call time (e.g. after the critic update),
    not read from stale batch keys (xi, state_value, td_target)."""
    comps = _xi_set()
    adv = comps["advantage"]
    td = _xi_batch(xi=t([9.0, 9.0, 9.0]), state_value=t([100.0, 100.0, 100.0]), td_target=t([-5.0, -5.0, -5.0]))
    close(adv.compute(td, 1)["xi"], torch.tanh(t([1.5, -1.0, 1.0])))
    set_linear_critic(comps["critic"], [[0.0, 1.0], [0.0, 2.0]], [0.5, 0.0])  # Q_0 = a + 0.5 = [1, -0.5, 2.5]
    set_linear(comps["value"].net[0], [[1.0]], [0.0])  # V = s = [0, 1, 2]
    close(adv.compute(td, 2)["xi"], torch.tanh(t([1.0, -1.5, 0.5])))


# ==== actor: latent ==================================================================================
def _latent_set(max_latent=1.0, target=True):
    """obs 1, action 1 -> latent 2 (= 2A). Actor: z = ml * tanh([s + 2 xi, 0.5 - xi]); target
    actor: z' = ml * tanh([0.5 s + xi + 0.1, 0]); decoder: a = tanh(0.5 c + z_0 - z_1)."""
    behavior = make("behavior", "cvae", SPEC1, hidden_sizes=[])
    actor = make("actor", "latent", SPEC1, hidden_sizes=[], max_latent=max_latent, target=target)
    set_linear(actor.net[0], [[1.0, 2.0], [0.0, -1.0]], [0.0, 0.5])
    if target:
        set_linear(actor.target_net.module[0], [[0.5, 1.0], [0.0, 0.0]], [0.1, 0.0])
    set_linear(behavior.decoder[0], [[0.0, 0.5, 1.0, -1.0]], [0.0])
    return bind_all({"behavior": behavior, "actor": actor})


def _latent(s, xi, ml=1.0):
    return [ml * math.tanh(s + 2 * xi), ml * math.tanh(0.5 - xi)]


def _action(s, xi, ml=1.0):
    z = _latent(s, xi, ml)
    return math.tanh(0.5 * xi + z[0] - z[1])


OBS = t([[-1.0], [0.0], [0.5]])


def test_latent_actor_shapes_and_defaults():
    """The latent has size 2A from an MLP of (s || xi): 256-256, act_condition 1, max_latent 1, target."""
    actor = make("actor", "latent", DataSpec(obs_dim=3, action_dim=2))
    cfg = actor.config
    assert (cfg.hidden_sizes, cfg.act_condition, cfg.max_latent, cfg.target, cfg.condition_dim) == ([256, 256], 1.0, 1.0, True, 1)
    assert actor.latent_dim == 4 and actor.net[0].in_features == 3 + 1 and actor.net[-1].out_features == 4
    assert actor.read_keys() == ["observation"] and actor.write_keys() == ["policy_action"]
    assert all(not p.requires_grad for p in actor.target_net.parameters())


@pytest.mark.parametrize("max_latent", [1.0, 0.5])
def test_latent_is_bounded_tanh_of_s_and_xi(max_latent):
    """latent(s, xi) = max_latent * tanh(net(s || xi)); xi defaults to act_condition = 1."""
    actor = _latent_set(max_latent)["actor"]
    xi = t([1.0, -1.0, 0.3])
    close(actor.latent(OBS, xi), t([_latent(s, x, max_latent) for s, x in zip([-1.0, 0.0, 0.5], [1.0, -1.0, 0.3])]))
    close(actor.latent(OBS), t([_latent(s, 1.0, max_latent) for s in [-1.0, 0.0, 0.5]]))


def test_latent_act_decodes_with_xi_one():
    """act(s) = decoder(s, 1, latent(s, 1)) by hand; equal to the behaviour model's decode call."""
    comps = _latent_set()
    actor, behavior = comps["actor"], comps["behavior"]
    expected = t([[_action(s, 1.0)] for s in [-1.0, 0.0, 0.5]])
    close(actor.act(OBS), expected)
    close(actor.act(OBS), behavior.decode(OBS, 1.0, actor.latent(OBS, 1.0)))
    close(actor.act(t([0.5])), t([_action(0.5, 1.0)]))  # a single unbatched observation


def test_latent_conditioned_action_per_sample_xi():
    """conditioned_action(s, xi) uses each sample's xi for both the latent net and the decoder;
    [B] and [B, 1] conditions agree."""
    actor = _latent_set()["actor"]
    xi = t([1.0, -1.0, 0.3])
    expected = t([[_action(s, x)] for s, x in zip([-1.0, 0.0, 0.5], [1.0, -1.0, 0.3])])
    close(actor.conditioned_action(OBS, xi), expected)
    close(actor.conditioned_action(OBS, xi.unsqueeze(-1)), expected)
    close(actor.conditioned_action(OBS, -1.0)[1], t([_action(0.0, -1.0)]))


def test_latent_target_act_uses_target_net_and_current_decoder():
    """target_act(s) = decoder(s, 1, ml * tanh(target_net(s || 1))); changing the decoder later
    changes target_act (there is no target decoder)."""
    comps = _latent_set()
    actor, behavior = comps["actor"], comps["behavior"]

    def expected(bias):
        out = []
        for s in [-1.0, 0.0, 0.5]:
            z = [math.tanh(0.5 * s + 1.0 + 0.1), 0.0]
            out.append([math.tanh(0.5 + z[0] - z[1] + bias)])
        return t(out)

    close(actor.target_act(OBS), expected(0.0))
    assert not torch.allclose(actor.target_act(OBS), actor.act(OBS))
    with torch.no_grad():
        behavior.decoder[0].bias.fill_(0.2)
    close(actor.target_act(OBS), expected(0.2))


def test_latent_compute_writes_policy_action_with_xi_one():
    """compute writes policy_action = act(s) (xi = 1, not the batch's xi), with gradient into the actor."""
    actor = _latent_set()["actor"]
    td = TensorDict({"observation": OBS, "xi": t([-1.0, -1.0, -1.0])}, batch_size=[3])
    out = actor.compute(td, 1)
    assert set(out) == {"policy_action"}
    close(out["policy_action"], t([[_action(s, 1.0)] for s in [-1.0, 0.0, 0.5]]))
    grads = torch.autograd.grad(out["policy_action"].sum(), list(actor.net.parameters()))
    assert all(torch.count_nonzero(g) > 0 for g in grads)


def test_latent_update_targets_polyak():
    """target <- (1 - tau) target + tau online: tau 0.25 on hand-set weights."""
    actor = _latent_set()["actor"]
    actor.update_targets(0.25)
    layer = actor.target_net.module[0]
    close(layer.weight, 0.75 * t([[0.5, 1.0], [0.0, 0.0]]) + 0.25 * t([[1.0, 2.0], [0.0, -1.0]]))
    close(layer.bias, 0.75 * t([0.1, 0.0]) + 0.25 * t([0.0, 0.5]))
    online = snapshot(actor.net)
    actor.update_targets(0.25)
    assert_unchanged(actor.net, online)


def test_latent_without_target():
    """target: false -> target_act uses the online net; update_targets raises."""
    actor = _latent_set(target=False)["actor"]
    assert actor.target_net is None
    close(actor.target_act(OBS), actor.act(OBS))
    with pytest.raises(TypeError, match="no target network"):
        actor.update_targets(0.5)


# ==== constraint: advantage_aware_bc =================================================================
def _bc_set(**cfg):
    comps = _latent_set()
    comps["constraint"] = make("constraint", "advantage_aware_bc", SPEC1, **cfg)
    return bind_all(comps)


def _bc_batch(**extra) -> TensorDict:
    return TensorDict({"observation": OBS, "action": t([[0.2], [-0.4], [0.9]]), "xi": t([1.0, -1.0, 0.3]), **extra}, batch_size=[3])


def _bc_by_hand(xis, weight=1.0):
    rows = zip([-1.0, 0.0, 0.5], xis, [0.2, -0.4, 0.9])
    return weight * sum((_action(s, x) - a) ** 2 for s, x, a in rows) / 3


def test_advantage_aware_bc_by_hand():
    """loss = weight * mean((decoder(s, xi, pi(s, xi)) - a)^2) with each sample's own xi
    (xi = 1 for every sample would give another number)."""
    comps = _bc_set(weight=2.0)
    bc = comps["constraint"]
    out = bc.compute(_bc_batch(), 1)
    assert set(out) == {"loss_bc"}
    close(out["loss_bc"], _bc_by_hand([1.0, -1.0, 0.3], 2.0))
    assert not math.isclose(_bc_by_hand([1.0, -1.0, 0.3]), _bc_by_hand([1.0, 1.0, 1.0]), rel_tol=1e-3)
    assert bc.read_keys() == ["observation", "action", "xi"]
    assert make("constraint", "advantage_aware_bc", SPEC1).config.weight == 1.0
    renamed = _bc_set(condition_key="cond")["constraint"]
    td = _bc_batch(cond=t([1.0, 1.0, 1.0]))
    close(renamed.compute(td, 1)["loss_bc"], _bc_by_hand([1.0, 1.0, 1.0]))
    assert renamed.read_keys() == ["observation", "action", "cond"]


def test_advantage_aware_bc_gradients():
    """The loss's gradient reaches the actor's net and (the decoder output is not detached) the
    decoder; the batch's xi is detached; the target network gets nothing."""
    comps = _bc_set()
    source = t([3.0, -3.0, 0.3]).requires_grad_()
    td = _bc_batch()
    td["xi"] = torch.tanh(source)
    loss = comps["constraint"].compute(td, 1)["loss_bc"]
    actor, decoder = list(comps["actor"].net.parameters()), list(comps["behavior"].decoder.parameters())
    grads = torch.autograd.grad(loss, [source, *actor, *decoder], allow_unused=True)
    assert grads[0] is None
    assert all(g is not None and torch.count_nonzero(g) > 0 for g in grads[1:])
    assert all(not p.requires_grad for p in comps["actor"].target_net.parameters())


# ==== value: td ======================================================================================
def test_td_value_loss_by_hand():
    """V = 2 s - 1 = [-1, 1, 3], y = td_target [0, 1, 5]: loss = (1 + 0 + 4) / 3; state_value = V
    detached; no gradient into td_target, gradient into V."""
    value = make("value", "td", SPEC1, hidden_sizes=[])
    set_linear(value.net[0], [[2.0]], [-1.0])
    y = t([0.0, 1.0, 5.0]).requires_grad_()
    td = TensorDict({"observation": t([[0.0], [1.0], [2.0]]), "td_target": y * 1.0}, batch_size=[3])
    out = value.compute(td, 1)
    close(out["loss_value"], 5.0 / 3.0)
    close(out["state_value"], t([-1.0, 1.0, 3.0]))
    assert not out["state_value"].requires_grad
    grads = torch.autograd.grad(out["loss_value"], [y, *value.parameters()], allow_unused=True)
    assert grads[0] is None and all(g is not None for g in grads[1:])
    assert value.read_keys() == ["observation", "td_target"] and value.write_keys() == ["state_value"] and value.loss_keys() == ["loss_value"]
    assert make("value", "td", SPEC1).config.hidden_sizes == [256, 256, 256]


# ==== the full A2PO update sequence from recipes/a2po.yaml =============================================
FACTS = {"obs_dim": 5, "action_dim": 2, "max_action": 1.0}
SMALL = [
    "components.behavior.hidden_sizes=[16,16]",
    "components.critic.hidden_sizes=[16]",
    "components.value.hidden_sizes=[16]",
    "components.actor.hidden_sizes=[16]",
    "train.steps=20",
]
K = 4  # int_mul(20, 0.2)


def build_a2po(*overrides):
    recipe = load_recipe(A2PO_RECIPE, [*SMALL, *overrides], dataset_facts=FACTS)
    comps = build_components(recipe, DataSpec(5, 2), bind=False)
    updates, _ = build_updates(recipe, comps, CPU)
    return comps, updates


def a2po_batch(size=16, seed=0) -> TensorDict:
    return small_transitions(seed, size)


def test_recipe_updates_schedules_and_routing():
    """critic (critic_loss -> critic, loss_value -> V) every step; behavior (advantage, cvae) at steps
    1..K; actor (advantage, actor, actor_loss, constraint) at even steps with Polyak of actor and critic."""
    comps, updates = build_a2po()
    assert [u.name for u in updates] == ["critic", "behavior", "actor"]
    assert [[name for name, _ in u.terms] for u in updates] == [
        ["critic_loss", "value"], ["advantage", "behavior"], ["advantage", "actor", "actor_loss", "constraint"]
    ]
    assert [[(g.slot, g.loss_keys) for g in u.groups] for u in updates] == [
        [("critic", ["loss_critic"]), ("value", ["loss_value"])], [("behavior", None)], [("actor", None)]
    ]
    assert all(g.optimizer.param_groups[0]["lr"] == 3e-4 for u in updates for g in u.groups)
    assert updates[1].stop == K
    assert [[s for s in range(1, 21) if u.active(s)] for u in updates] == [
        list(range(1, 21)), list(range(1, K + 1)), list(range(2, 21, 2))
    ]
    assert [type(c).__name__ for c in updates[2].targets] == ["LatentActor", "QEnsemble"] and updates[2].tau == 0.005
    assert not updates[0].targets and not updates[1].targets
    # the actor group holds only the latent net: neither the decoder nor any target network
    actor_params = {id(p) for p in updates[2].groups[0].params}
    assert actor_params == {id(p) for p in comps["actor"].net.parameters()}


def test_recipe_hyperparameters_follow_main_py():
    """Unshrunk recipe: alpha 1.0, q1, bc weight 1, KL weight 1, noise 0.2 / 0.5, gamma 0.99,
    3x256 critic and V, 2x256 actor, 750-750 CVAE, discrete off."""
    recipe = load_recipe(A2PO_RECIPE, dataset_facts=FACTS)
    c = recipe.components
    assert (c.actor_loss.alpha, c.actor_loss.q, c.actor_loss.normalize_q) == (1.0, "q1", True)
    assert (c.constraint.name, c.constraint.weight, c.behavior.kl_weight, c.behavior.hidden_sizes) == (
        "advantage_aware_bc", 1.0, 1.0, [750, 750]
    )
    assert (c.critic_loss.gamma, c.critic_loss.policy_noise, c.critic_loss.noise_clip) == (0.99, 0.2, 0.5)
    assert (c.critic.hidden_sizes, c.value.hidden_sizes, c.actor.hidden_sizes) == ([256] * 3, [256] * 3, [256] * 2)
    assert (c.advantage.q, c.advantage.discrete) == ("q1", False)
    assert recipe.updates.behavior.stop == 200_000 and recipe.updates.actor.every == 2


def test_twenty_steps_which_parameters_move_when():
    """Over 20 steps (K = 4): the CVAE changes at steps 1..K and never after; the critic and V change
    every step; the actor and both targets only at even steps; logged losses follow the schedule."""
    comps, updates = build_a2po()
    for step in range(1, 21):
        before = {k: snapshot(m) for k, m in parts(comps).items()}
        out = train_step(updates, a2po_batch(seed=step), step)
        moving = {"critic", "value"}
        if step <= K:
            moving.add("behavior")
        if step % 2 == 0:
            moving |= {"actor", "actor_target", "critic_target"}
        for k, module in parts(comps).items():
            (assert_all_changed if k in moving else assert_unchanged)(module, before[k])
        assert {"loss_critic", "loss_value"} <= set(out)
        assert ("loss_behavior" in out) == (step <= K)
        assert ("loss_actor" in out and "loss_bc" in out) == (step % 2 == 0)


def test_critic_update_routes_loss_critic_to_critic_and_loss_value_to_value():
    """Replaying the critic update's terms on a copy (same noise): the critic's .grad is the
    gradient of loss_critic alone, V's that of loss_value alone; nothing else moves, and
    state_value is V before the step."""
    comps, updates = build_a2po()
    td = a2po_batch()
    replica, replay_td = copy.deepcopy(comps), td.clone()
    torch.manual_seed(5)
    scalars = {}
    for name in ("critic_loss", "value"):
        for key, value in replica[name].compute(replay_td, 1).items():
            if value.dim() == 0:
                scalars[key] = value
            else:
                replay_td[key] = value
    critic_p, value_p = list(replica["critic"].net.parameters()), list(replica["value"].parameters())
    expected_critic = torch.autograd.grad(scalars["loss_critic"], critic_p, retain_graph=True)
    expected_value = torch.autograd.grad(scalars["loss_value"], value_p, retain_graph=True)
    assert all(g is None for g in torch.autograd.grad(scalars["loss_value"], critic_p, retain_graph=True, allow_unused=True))
    assert all(g is None for g in torch.autograd.grad(scalars["loss_critic"], value_p, allow_unused=True))

    before = {k: snapshot(m) for k, m in parts(comps).items()}
    v_pre = comps["value"](td["observation"]).detach()
    torch.manual_seed(5)
    out = run(updates[0], td, 1)
    close(out["loss_critic"], scalars["loss_critic"])
    close(out["loss_value"], scalars["loss_value"])
    for p, g in zip(comps["critic"].net.parameters(), expected_critic):
        close(p.grad, g)
    for p, g in zip(comps["value"].parameters(), expected_value):
        close(p.grad, g)
    for k, module in parts(comps).items():
        (assert_all_changed if k in {"critic", "value"} else assert_unchanged)(module, before[k])
    close(td["state_value"], v_pre)
    assert not torch.allclose(comps["value"](td["observation"]), v_pre)
    close(out["loss_value"], ((v_pre - td["td_target"]) ** 2).mean())


def test_critic_td_target_uses_current_decoder_and_target_latent_actor():
    """With policy_noise 0: y = r + 0.99 (1 - d) min_i Q'_i(s', a*), a* = decoder_now(s', 1,
    latent_target(s', 1)). The decoder after 3 CVAE updates, not the initial one; the target latent
    net, not the online one; xi = 1, not 0."""
    comps, updates = build_a2po("components.critic_loss.policy_noise=0.0", "updates.behavior.optimize.behavior.lr=0.05")
    initial = copy.deepcopy(comps)
    for step in (1, 2, 3):
        train_step(updates, a2po_batch(seed=step), step)
    with torch.no_grad():
        for p in comps["actor"].net.parameters():  # online and target latent nets clearly apart
            p.add_(0.5 * torch.randn_like(p))
    td = a2po_batch(seed=4)
    s2, r, nd = td["next", "observation"], td["reward"], 1 - td["terminated"]
    actor, behavior, critic = comps["actor"], comps["behavior"], comps["critic"]

    def target_with(decoder_model, latent, xi=1.0):
        a_star = decoder_model.decode(s2, xi, latent).clamp(-1, 1)
        return a_star, r + 0.99 * nd * critic.target_q_all(s2, a_star).min(0).values

    with torch.no_grad():
        target_latent = actor.latent(s2, 1.0, target=True)
        a_star, y = target_with(behavior, target_latent)
        _, y_initial_decoder = target_with(initial["behavior"], target_latent)
        _, y_online_actor = target_with(behavior, actor.latent(s2, 1.0))
        _, y_xi_zero = target_with(behavior, actor.latent(s2, 0.0, target=True), xi=0.0)
    run(updates[0], td, 4)
    close(td["next_action"], a_star)
    close(td["td_target"], y)
    for other in (y_initial_decoder, y_online_actor, y_xi_zero):
        assert not torch.allclose(td["td_target"], other, rtol=1e-4, atol=1e-4)


def test_clip_target_clamps_the_target_of_q_and_v():
    """A2PO's --clip on the recipe's critic objective: the one target y that Q1, Q2 and V regress
    on is clamped (a2po.py TD3BC_critic_loss: target_V = target_Q after the clamp)."""
    comps, updates = build_a2po("components.critic_loss.clip_target=true",
                                "components.critic_loss.target_min=-0.05", "components.critic_loss.target_max=0.05")
    td = a2po_batch()
    v_pre = comps["value"](td["observation"]).detach()
    unclipped_set = copy.deepcopy(comps)
    unclipped_set["critic_loss"].config.clip_target = False
    torch.manual_seed(5)  # the same target-policy noise in both
    unclipped = unclipped_set["critic_loss"].compute(td.clone(), 1)["td_target"]
    assert (unclipped.abs() > 0.05).sum() > 4  # the batch needs clamping
    torch.manual_seed(5)
    out = run(updates[0], td, 1)
    close(td["td_target"], unclipped.clamp(-0.05, 0.05))
    close(out["loss_value"], ((v_pre - td["td_target"]) ** 2).mean())
    assert load_recipe(A2PO_RECIPE, dataset_facts=FACTS).components.critic_loss.clip_target is False


def test_behavior_update_xi_uses_updated_critic_and_value():
    """In the behaviour update xi = tanh(Q_1^new(s, a) - V^new(s)), both after this step's critic
    update; loss_behavior = mean((a_hat - a)^2) + KL of the pre-update CVAE (noise replayed) under it."""
    comps, updates = build_a2po("updates.critic.optimize.critic.lr=0.05", "updates.critic.optimize.value.lr=0.05")
    pre = copy.deepcopy(comps)
    td = a2po_batch()
    s, a = td["observation"], td["action"]
    run(updates[0], td, 1)
    torch.manual_seed(9)
    out = run(updates[1], td, 1)
    with torch.no_grad():
        xi_new = torch.tanh(comps["critic"].q_all(s, a)[0] - comps["value"](s))
        xi_old = torch.tanh(pre["critic"].q_all(s, a)[0] - pre["value"](s))
        xi_min = torch.tanh(comps["critic"].q_all(s, a).min(0).values - comps["value"](s))
    close(td["xi"], xi_new)
    assert not torch.allclose(td["xi"], xi_old) and not torch.allclose(td["xi"], xi_min)
    torch.manual_seed(9)
    recon, mean, std = pre["behavior"].reconstruct(s, a, xi_new)
    close(out["loss_behavior"], ((recon - a) ** 2).mean() + gaussian_kl(mean, std))


def test_actor_update_by_hand_and_decoder_frozen():
    """At an even step: loss_actor = -lambda mean Q_1(s, a_best), a_best = dec(s, 1, pi(s, 1)),
    lambda = 1 / mean|Q_1(s, a_best)|; loss_bc = mean((dec(s, xi, pi(s, xi)) - a)^2) with
    xi = tanh(Q_1(s, a) - V(s)). loss_bc has a non-zero gradient on the decoder, yet the update moves
    only the actor (and, by Polyak, the targets); the CVAE's .grad from its own update is untouched."""
    comps, updates = build_a2po()
    td = a2po_batch()
    run(updates[0], td, 2)
    run(updates[1], td, 2)
    behavior_grads = [p.grad.clone() for p in comps["behavior"].parameters()]
    snap = copy.deepcopy(comps)
    before = {k: snapshot(m) for k, m in parts(comps).items()}
    out = run(updates[2], td, 2)
    s, a = td["observation"], td["action"]
    actor, dec, critic = snap["actor"], snap["behavior"], snap["critic"]
    a_best = dec.decode(s, 1.0, actor.latent(s, 1.0))
    q = critic.q_all(s, a_best)[0]
    lam = 1.0 / q.abs().mean().detach()
    with torch.no_grad():
        xi = torch.tanh(critic.q_all(s, a)[0] - snap["value"](s))
    close(td["xi"], xi)
    close(td["policy_action"], a_best)
    close(out["lambda"], lam)
    close(out["loss_actor"], -lam * q.mean())
    loss_bc = ((dec.decode(s, xi, actor.latent(s, xi)) - a) ** 2).mean()
    close(out["loss_bc"], loss_bc)
    bc_on_decoder = torch.autograd.grad(loss_bc, list(dec.decoder.parameters()))
    assert all(torch.count_nonzero(g) > 0 for g in bc_on_decoder)
    for k, module in parts(comps).items():
        (assert_all_changed if k in {"actor", "actor_target", "critic_target"} else assert_unchanged)(module, before[k])
    for p, g in zip(comps["behavior"].parameters(), behavior_grads):
        assert torch.equal(p.grad, g)


def test_pretrain_cvae_critic_target_follows_the_critic_during_pretraining():
    """pretrain_cvae trains the CVAE "and the critic it needs for xi" first: that critic's TD target
    network should track it (Polyak) during steps 1..K, as it does in the interleaved recipe."""
    recipe = load_recipe(REPO / "recipes" / "a2po" / "ablations" / "pretrain_cvae.yaml", SMALL, dataset_facts=FACTS)
    comps = build_components(recipe, DataSpec(5, 2), bind=False)
    updates, _ = build_updates(recipe, comps, CPU)
    before = snapshot(comps["critic"].target_net)
    for step in range(1, K + 1):
        train_step(updates, a2po_batch(seed=step), step)
    assert_all_changed(comps["critic"].target_net, before)


# ==== data: reward x100 ================================================================================
@pytest.mark.parametrize("path", [A2PO_RECIPE, *ABLATIONS], ids=lambda p: p.stem)
def test_rewards_scaled_by_100(path):
    """The official code multiplies every reward by 100 (and shifts nothing); ablations inherit it."""
    recipe = load_recipe(path)
    assert recipe.data.reward_scale == 100
    assert recipe.data.reward_shift == 0 and recipe.data.reward_normalization == "none"
