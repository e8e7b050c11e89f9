"""advrl.component.describe and the declared reads/writes of every registered component."""

from __future__ import annotations

import dataclasses

import pytest

import advrl
from advrl import registry
from advrl.component import describe

ALL = [(kind, name) for kind in registry.KINDS for name in registry.names(kind)]


def test_every_builtin_kind_has_components():
    """The built-in components this suite tests are all registered."""
    found = set(ALL)
    for expected in [
        ("actor", "deterministic"),
        ("actor", "gaussian"),
        ("actor", "tanh_gaussian"),
        ("critic", "q_ensemble"),
        ("value", "expectile"),
        ("objective", "td3_critic"),
        ("objective", "td3_actor"),
        ("objective", "value_backup_critic"),
        ("objective", "sac_critic"),
        ("objective", "sac_actor"),
        ("constraint", "bc_mse"),
        ("constraint", "awr"),
        ("constraint", "cql_penalty"),
        ("coefficient", "sac_temperature"),
        ("coefficient", "constant"),
        ("advantage", "q_minus_v"),
        ("selector", "return_threshold"),
        ("schedule", "constant"),
        ("schedule", "linear"),
        ("schedule", "cosine"),
    ]:
        assert expected in found


# The keys each built-in component's card shows with its default config (reads, writes,
# losses, logs), written out: optional keys ({coefficient_key}: None) are left out, templated
# ones ({out_key}) resolved. A new component adds its line here, after checking it against
# its compute().
CARD_KEYS = {
    ("actor", "deterministic"): ("observation", "policy_action", "-", "-"),
    ("actor", "gaussian"): ("observation", "policy_action, policy_log_prob", "-", "-"),
    ("actor", "latent"): ("observation", "policy_action", "-", "-"),
    ("actor", "tanh_gaussian"): ("observation", "policy_action, policy_log_prob", "-", "-"),
    ("critic", "q_ensemble"): ("observation, action", "-", "-", "-"),
    ("value", "expectile"): ("observation, action", "state_value, value_target", "loss_value", "-"),
    ("value", "td"): ("observation, td_target", "state_value", "loss_value", "-"),
    ("value", "td_min"): ("observation, reward, next.observation, terminated, td_target, next_action", "state_value", "loss_value", "-"),
    ("behavior", "cvae"): ("observation, action, xi", "-", "loss_behavior", "behavior_kl"),
    ("behavior", "vae"): ("observation, action", "-", "loss_behavior", "behavior_kl"),
    ("objective", "sac_actor"): ("observation, policy_action, policy_log_prob, entropy_coef", "-", "loss_actor", "-"),
    ("objective", "sac_critic"): ("observation, action, reward, next.observation, terminated", "td_target", "loss_critic", "-"),
    ("objective", "td3_actor"): ("observation, policy_action", "-", "loss_actor", "lambda"),
    ("objective", "td3_critic"): ("observation, action, reward, next.observation, terminated", "td_target, next_action", "loss_critic", "-"),
    ("objective", "value_backup_critic"): ("observation, action, reward, next.observation, terminated", "td_target", "loss_critic", "-"),
    ("constraint", "a2pr_adaptive"): ("observation, action, policy_action, state_value, advantage", "bc_gate, target_is_behavior", "loss_bc", "-"),
    ("constraint", "advantage_aware_bc"): ("observation, action, xi", "-", "loss_bc", "-"),
    ("constraint", "awr"): ("observation, action, advantage", "awr_weight", "loss_awr", "-"),
    ("constraint", "bc_mse"): ("action, policy_action", "-", "loss_bc", "-"),
    ("constraint", "cql_penalty"): ("observation, action, next.observation", "cql_diff", "loss_cql", "-"),
    ("constraint", "generative_bc"): ("observation, policy_action", "-", "loss_bc", "-"),
    ("coefficient", "constant"): ("observation", "coefficient", "-", "-"),
    ("coefficient", "sac_temperature"): ("policy_log_prob", "entropy_coef", "loss_temperature", "-"),
    ("coefficient", "state_adaptive"): ("observation, action, policy_action", "coefficient, coefficient_gap", "loss_coefficient", "coefficient_mean, coefficient_n"),
    ("advantage", "q_minus_v"): ("observation, action, state_value", "advantage", "-", "-"),
    ("advantage", "tanh_q_minus_v"): ("observation, action", "xi", "-", "-"),
    ("selector", "advantage_threshold"): ("advantage", "mask", "-", "-"),
    ("selector", "all"): ("observation", "mask", "-", "-"),
    ("selector", "iql_advantage"): ("index", "trust", "-", "-"),
    ("selector", "return_threshold"): ("episode_return", "mask", "-", "-"),
    ("schedule", "constant"): ("-", "-", "-", "-"),
    ("schedule", "cosine"): ("-", "-", "-", "-"),
    ("schedule", "distribution_aware_threshold"): ("-", "-", "-", "-"),
    ("schedule", "linear"): ("-", "-", "-", "-"),
}


def test_every_registered_component_has_its_expected_card_keys():
    assert sorted(ALL) == sorted(CARD_KEYS)


@pytest.mark.parametrize("kind,name", ALL)
def test_describe_lists_fields_and_keys(kind, name):
    """The card names the component, every config field with its default (and slot kind), and
    the declared keys of CARD_KEYS."""
    cls = registry.get(kind, name)
    card = describe(cls)
    lines = card.splitlines()
    assert lines[0].startswith(f"{kind} {name!r}")
    for f in dataclasses.fields(cls.Config):
        field_lines = [line for line in lines if line.startswith(f"  {f.name}: ")]
        assert len(field_lines) == 1, f"field {f.name} missing from the card"
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        assert f"= {default!r}" in field_lines[0]
        if "slot" in f.metadata:
            assert field_lines[0].endswith(f"-> {f.metadata['slot']} slot")
        if f.metadata.get("help"):
            assert f"      {f.metadata['help']}" in lines
    labels = {"reads": "reads (batch):", "writes": "writes (batch):", "losses": "losses:", "logs": "logs (scalars):"}
    for label, keys in zip(labels.values(), CARD_KEYS[(kind, name)]):
        assert f"{label:<16}{keys}" in lines


def test_describe_examples():
    """Concrete cards: optional keys switched off disappear, templated keys resolve."""
    bc = describe(registry.get("constraint", "bc_mse"))
    assert "reads (batch):  action, policy_action" in bc.splitlines()
    assert "losses:         loss_bc" in bc.splitlines()
    assert "writes (batch): -" in bc.splitlines()
    assert "  coefficient_key: str | None = None" in bc.splitlines()
    coef = describe(registry.get("coefficient", "constant")).splitlines()
    assert "writes (batch): coefficient" in coef
    cql = describe(registry.get("constraint", "cql_penalty")).splitlines()
    assert "  critic: str = 'critic' -> critic slot" in cql
    assert "  n_actions: int = 10  (>= 1)" in cql  # an option's allowed values follow its default
    assert "reads (batch):  observation, action, next.observation" in cql
    assert "writes (batch): cql_diff" in cql and "losses:         loss_cql" in cql
    sched = describe(registry.get("schedule", "linear")).splitlines()
    assert "reads (batch):  -" in sched and "writes (batch): -" in sched and "losses:         -" in sched


def test_read_write_keys_follow_config():
    """read_keys/write_keys substitute config fields into templated keys."""
    spec = advrl.DataSpec(obs_dim=2, action_dim=1)
    sel = advrl.make("selector", "return_threshold", spec=spec, out_key="good")
    assert sel.read_keys() == ["episode_return"] and sel.write_keys() == ["good"]
    adv = advrl.make("advantage", "q_minus_v", spec=spec, q_key="value_target")
    assert adv.read_keys() == ["observation", "action", "state_value", "value_target"]
    assert advrl.make("advantage", "q_minus_v", spec=spec).read_keys() == ["observation", "action", "state_value"]
