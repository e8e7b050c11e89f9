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


@pytest.mark.parametrize("kind,name", ALL)
def test_describe_lists_fields_and_keys(kind, name):
    """The card names the component, every config field with its default (and slot kind), and
    the resolved read/write keys."""
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
    config = cls.Config()
    reads = cls._resolve(cls.reads, config)
    writes = cls._resolve(cls.writes, config)
    assert f"reads:  {', '.join(reads) or '-'}" in lines
    assert f"writes: {', '.join(writes) or '-'}" in lines


def test_describe_examples():
    """Concrete cards: optional keys switched off disappear, templated keys resolve."""
    bc = describe(registry.get("constraint", "bc_mse"))
    assert "reads:  action, policy_action" in bc.splitlines()
    assert "writes: loss_bc" in bc.splitlines()
    assert "  coefficient_key: str | None = None" in bc.splitlines()
    coef = describe(registry.get("coefficient", "constant")).splitlines()
    assert "writes: coefficient" in coef
    cql = describe(registry.get("constraint", "cql_penalty")).splitlines()
    assert "  critic: str = 'critic' -> critic slot" in cql
    assert "  n_actions: int = 10  (>= 1)" in cql  # an option's allowed values follow its default
    assert "reads:  observation, action, next.observation" in cql
    assert "writes: loss_cql, cql_diff" in cql
    sched = describe(registry.get("schedule", "linear")).splitlines()
    assert "reads:  -" in sched and "writes: -" in sched


def test_read_write_keys_follow_config():
    """read_keys/write_keys substitute config fields into templated keys."""
    spec = advrl.DataSpec(obs_dim=2, action_dim=1)
    sel = advrl.make("selector", "return_threshold", spec=spec, out_key="good")
    assert sel.read_keys() == ["episode_return"] and sel.write_keys() == ["good"]
    adv = advrl.make("advantage", "q_minus_v", spec=spec, q_key="value_target")
    assert adv.read_keys() == ["observation", "action", "state_value", "value_target"]
    assert advrl.make("advantage", "q_minus_v", spec=spec).read_keys() == ["observation", "action", "state_value"]
