"""The component contract: losses, per-sample batch keys and logged scalars are declared apart,
checked when a class is defined, on the first step of an update, and by the data-flow check;
every declared key can be renamed from the recipe."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from _helpers import batch
from omegaconf import OmegaConf

from advrl import Component, DataSpec, option
from advrl.component import ContractError
from advrl.learner.assembly import build_components, build_updates
from advrl.recipe import RecipeError, validate

SPEC = DataSpec(obs_dim=3, action_dim=2)
CPU = torch.device("cpu")


class _Term(Component):
    """A BC term whose outputs a test chooses (not registered: built directly)."""

    kind, name = "constraint", "test_term"

    @dataclass
    class Config:
        weight: float = option(1.0, "weight")

    reads = ("action", "policy_action")
    losses = ("loss_bc",)

    def outputs(self, td):
        return {"loss_bc": self.config.weight * ((td["policy_action"] - td["action"]) ** 2).mean()}

    def compute(self, td, step):
        return self.outputs(td)


def td3bc_recipe(**components) -> OmegaConf:
    base = {
        "name": "contract",
        "dataset": {"id": "none"},
        "components": {
            "actor": {"name": "deterministic", "hidden_sizes": [8], "target": True},
            "critic": {"name": "q_ensemble", "num_q": 2, "hidden_sizes": [8], "target": True},
            "critic_loss": {"kind": "objective", "name": "td3_critic"},
            "actor_loss": {"kind": "objective", "name": "td3_actor"},
            "constraint": {"name": "bc_mse"},
        },
        "updates": {
            "critic": {"terms": ["critic_loss"], "optimize": {"critic": {"lr": 1e-3}}},
            "actor": {"terms": ["actor", "actor_loss", "constraint"], "optimize": {"actor": {"lr": 1e-3}}},
        },
    }
    for slot, entry in components.items():
        base["components"][slot] = entry
    return validate(OmegaConf.create(base))


def assemble(recipe, replace: dict | None = None):
    components = build_components(recipe, SPEC, bind=False)
    components.update(replace or {})
    updates, _ = build_updates(recipe, components, CPU)
    return components, updates


def actor_step(updates, step=1):
    td = batch(SPEC, size=4)
    for update in updates:
        update.run(td, step, torch.tensor(step))
    return td


# ---- declarations checked when the class is defined -------------------------------------------
def test_a_loss_declared_as_a_batch_key_fails_when_the_class_is_defined():
    with pytest.raises(ContractError, match="declares 'loss_l1' in `writes`: declare it in `losses`"):

        class _Old(Component):
            writes = ("loss_l1",)


def test_a_loss_must_carry_the_loss_prefix():
    with pytest.raises(ContractError, match="declares 'penalty' in `losses`"):

        class _Bad(Component):
            losses = ("penalty",)


# ---- outputs checked on the first step ----------------------------------------------------------
def test_an_undeclared_loss_is_refused_on_the_first_step_instead_of_going_untrained():
    """The plug-in mistake of issue 23: a term returning loss_bc without declaring it trained
    nothing, silently. Now the first step names the component and the key."""

    class Undeclared(_Term):
        losses = ()

    recipe = td3bc_recipe()
    _, updates = assemble(recipe, {"constraint": Undeclared(Undeclared.Config(), SPEC)})
    with pytest.raises(ContractError, match=r"components.constraint \(constraint 'test_term'\) returned 'loss_bc', which it does not declare; declare it in `losses`"):
        actor_step(updates)


def test_a_declared_key_that_is_not_returned_is_refused():
    class Forgetful(_Term):
        logs = ("bc_distance",)

    _, updates = assemble(td3bc_recipe(), {"constraint": Forgetful(Forgetful.Config(), SPEC)})
    with pytest.raises(ContractError, match="declares 'bc_distance' but did not return it"):
        actor_step(updates)


@pytest.mark.parametrize(
    ("namespace", "value", "message"),
    [
        ("logs", torch.zeros(4), r"declares 'extra' in `logs` \(a scalar\) but returned shape \[4\]"),
        ("writes", torch.zeros(()), r"declares 'extra' in `writes` \(per-sample, leading shape \[4\]\) but returned shape \[\]"),
        ("writes", torch.zeros(3), r"but returned shape \[3\]"),
    ],
)
def test_outputs_of_the_wrong_shape_for_their_namespace_are_refused(namespace, value, message):
    class Shaped(_Term):
        def compute(self, td, step):
            return {**self.outputs(td), "extra": value}

    setattr(Shaped, namespace, ("extra",))
    _, updates = assemble(td3bc_recipe(), {"constraint": Shaped(Shaped.Config(), SPEC)})
    with pytest.raises(ContractError, match=message):
        actor_step(updates)


def test_per_sample_keys_go_into_the_batch_and_logged_scalars_come_back_with_the_losses():
    """TD3+BC's actor update: policy_action is written into the batch for later terms; the
    actor term's logged lambda is returned beside the losses and never enters the batch."""
    components, updates = assemble(td3bc_recipe())
    td = actor_step(updates)
    scalars = updates[1].run(td, 2, torch.tensor(2))
    assert set(scalars) == {"loss_actor", "lambda", "loss_bc"}
    assert td["policy_action"].shape == (4, 2) and "lambda" not in td.keys()


# ---- the data-flow check --------------------------------------------------------------------------
def test_reading_a_logged_scalar_as_a_batch_key_is_refused_before_training():
    """td3_actor logs lambda; a term reading it as a batch key used to pass the check and
    crash at step 2 with a raw KeyError."""

    class ReadsLambda(_Term):
        reads = ("action", "policy_action", "lambda")

    recipe = td3bc_recipe()
    components = build_components(recipe, SPEC, bind=False)
    components["constraint"] = ReadsLambda(ReadsLambda.Config(), SPEC)
    with pytest.raises(RecipeError, match=r"reads batch key 'lambda', but components.actor_loss returns 'lambda' as a scalar"):
        build_updates(recipe, components, CPU)


def test_two_terms_returning_one_loss_in_an_update_are_refused():
    recipe = td3bc_recipe(extra={"kind": "constraint", "name": "bc_mse", "weight": 2.0})
    recipe.updates.actor.terms.append("extra")
    with pytest.raises(RecipeError, match=r"components.constraint and components.extra both return 'loss_bc'"):
        assemble(recipe)
    recipe.components.extra["keys"] = {"loss_bc": "loss_bc_extra"}
    components, updates = assemble(recipe)
    td = actor_step(updates)
    scalars = updates[1].run(td, 2, torch.tensor(2))
    torch.testing.assert_close(scalars["loss_bc_extra"], 2.0 * scalars["loss_bc"])


# ---- renaming keys from the recipe ----------------------------------------------------------------
def test_two_advantage_estimators_of_one_kind_in_one_recipe():
    """Renaming keys lets one recipe hold two q_minus_v estimators; a term reading the renamed
    key sees the second estimator's values under its own name."""
    recipe = td3bc_recipe(
        value={"name": "expectile", "hidden_sizes": [8]},
        adv_q1={"kind": "advantage", "name": "q_minus_v", "q": "q1", "use_target_critic": False},
        adv_min={"kind": "advantage", "name": "q_minus_v", "q": "min", "keys": {"advantage": "advantage_min"}},
        positive={"kind": "selector", "name": "advantage_threshold", "out_key": "positive", "keys": {"advantage": "advantage_min"}},
    )
    recipe.updates.actor.terms = ["value", "adv_q1", "adv_min", "positive", "actor", "actor_loss", "constraint"]
    recipe.updates.actor.optimize = OmegaConf.merge(recipe.updates.actor.optimize, {"value": {"lr": 1e-3}})
    components, updates = assemble(recipe)
    assert components["positive"].read_keys() == ["advantage_min"]
    td = batch(SPEC, size=64)
    updates[1].run(td, 1, torch.tensor(1))
    obs, action, v = td["observation"], td["action"], td["state_value"]
    q_online = components["critic"].q_all(obs, action).detach()
    q_target = components["critic"].target_q_all(obs, action).detach()
    torch.testing.assert_close(td["advantage"], q_online[0] - v)
    torch.testing.assert_close(td["advantage_min"], q_target.min(0).values - v)
    torch.testing.assert_close(td["positive"], (td["advantage_min"] > 0).float())
    assert not torch.equal(td["positive"], (td["advantage"] > 0).float())


def test_renaming_an_undeclared_key_names_the_slot_and_the_declared_keys():
    recipe = td3bc_recipe(constraint={"name": "bc_mse", "keys": {"advantage": "a2"}})
    with pytest.raises(RecipeError, match=r"components.constraint \(constraint 'bc_mse'\): keys.advantage: .* declares no key 'advantage' \(it declares action, policy_action, loss_bc\)"):
        assemble(recipe)


def test_a_renamed_loss_keeps_its_prefix():
    recipe = td3bc_recipe(constraint={"name": "bc_mse", "keys": {"loss_bc": "bc"}})
    with pytest.raises(RecipeError, match="a loss keeps the prefix 'loss_'"):
        assemble(recipe)
