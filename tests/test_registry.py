"""Registry: registration, lookup errors with close matches, plug-ins, building by name."""

from __future__ import annotations

import sys
import textwrap
from dataclasses import dataclass

import pytest
from omegaconf import OmegaConf

import advrl
from advrl import registry
from advrl.component import Component, DataSpec, describe, option
from advrl.recipe import component_config


def test_builtin_kinds_and_names_are_listed():
    listing = advrl.list_components()
    assert set(registry.KINDS) <= set(listing)
    assert {"deterministic", "gaussian", "tanh_gaussian"} <= set(listing["actor"])
    assert {"bc_mse", "awr", "cql_penalty"} <= set(listing["constraint"])


def test_unknown_name_names_kind_closest_match_and_how_to_list():
    with pytest.raises(registry.RegistryError) as err:
        registry.get("constraint", "bc_mes")
    message = str(err.value)
    assert "Unknown constraint 'bc_mes'" in message
    assert "'bc_mse'" in message
    assert "advrl components" in message
    assert "`advrl components --recipe RECIPE`" in message  # where a plug-in module's components come from


def test_unknown_kind_suggests_kind():
    with pytest.raises(registry.RegistryError, match="Did you mean 'critic'"):
        registry.get("critc", "q_ensemble")


def test_duplicate_registration_names_the_holder_and_force_replaces():
    @advrl.register("schedule", "test_dup_schedule")
    class First(Component):
        @dataclass
        class Config:
            pass

    with pytest.raises(registry.RegistryError, match=r"already registered by .*First"):

        @advrl.register("schedule", "test_dup_schedule")
        class Second(Component):
            @dataclass
            class Config:
                pass

    @advrl.register("schedule", "test_dup_schedule", force=True)
    class Third(Component):
        @dataclass
        class Config:
            pass

    assert registry.get("schedule", "test_dup_schedule") is Third


def test_make_builds_with_validated_config():
    actor = advrl.make("actor", "deterministic", spec=DataSpec(5, 2), hidden_sizes=[8])
    assert actor.net[0].out_features == 8
    with pytest.raises(advrl.RecipeError, match="hidden_size"):
        advrl.make("actor", "deterministic", spec=DataSpec(5, 2), hidden_size=[8])


def test_describe_lists_fields_defaults_and_keys():
    card = describe(registry.get("constraint", "bc_mse"))
    for text in ("weight: float = 1.0", "coefficient_key", "mask_key", "reads (batch):", "action, policy_action", "losses:         loss_bc"):
        assert text in card


def test_recipe_imports_register_user_components(tmp_path, monkeypatch):
    module = tmp_path / "my_terms.py"
    module.write_text(
        textwrap.dedent(
            """
            from dataclasses import dataclass
            from advrl import Component, option, register

            @register("schedule", "user_step_schedule")
            class UserSchedule(Component):
                @dataclass
                class Config:
                    scale: float = option(2.0, "multiplier")

                def value(self, step):
                    return self.config.scale * step
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    registry.import_user_modules(["my_terms"])
    schedule = advrl.make("schedule", "user_step_schedule", spec=DataSpec(1, 1), scale=3.0)
    assert schedule.value(4) == 12.0
    with pytest.raises(ImportError, match="no_such_module_xyz"):
        registry.import_user_modules(["no_such_module_xyz"])
    sys.modules.pop("my_terms", None)


def test_entry_points_are_loaded(monkeypatch):
    loaded = []

    class FakeEntryPoint:
        def load(self):
            loaded.append(True)

    monkeypatch.setattr(registry, "_builtins_loaded", False)
    monkeypatch.setattr(registry.metadata, "entry_points", lambda group: [FakeEntryPoint()] if group == "advrl.components" else [])
    registry.load_builtins()
    assert loaded == [True]


def test_option_copies_mutable_defaults():
    @dataclass
    class Config:
        sizes: list[int] = option([1, 2], "x")

    a, b = Config(), Config()
    a.sizes.append(3)
    assert b.sizes == [1, 2]


@pytest.fixture
def penalty_kind():
    """A kind added the way a plug-in adds one, removed again afterwards."""
    yield advrl.register_kind("test_penalty", "extra per-sample penalties (test plug-in kind)")
    registry.KINDS.pop("test_penalty", None)
    registry._TABLES.pop("test_penalty", None)


def test_plugin_kind_is_listed_and_usable_as_recipe_slot(penalty_kind, tmp_path):
    @advrl.register(penalty_kind, "test_action_l2")
    class ActionL2(Component):
        @dataclass
        class Config:
            weight: float = option(0.5, "weight; larger -> smaller actions")

        reads = ("policy_action",)
        losses = ("loss_action_l2",)

        def compute(self, td, step):
            return {"loss_action_l2": self.config.weight * td["policy_action"].pow(2).mean()}

    assert advrl.list_components()["test_penalty"] == ["test_action_l2"]
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "extends: advrl:td3bc.yaml\n"
        "components:\n  shrink: {kind: test_penalty, name: test_action_l2, weight: 2.0}\n"
        "updates:\n  actor: {terms: [actor, actor_loss, constraint, shrink]}\n"
    )
    loaded = advrl.load_recipe(recipe)
    assert loaded.components.shrink.kind == "test_penalty" and loaded.components.shrink.weight == 2.0


def test_register_kind_is_idempotent_refuses_a_taken_kind_and_unknown_kinds_stay_errors(penalty_kind):
    assert advrl.register_kind("test_penalty", "extra per-sample penalties (test plug-in kind)") == "test_penalty"
    with pytest.raises(registry.RegistryError, match="'constraint' already exists"):
        advrl.register_kind("constraint", "something else")
    with pytest.raises(registry.RegistryError, match="identifier"):
        advrl.register_kind("two words", "x")
    # a kind nobody added is still an error with close matches, never a raw KeyError
    with pytest.raises(registry.RegistryError) as err:
        advrl.register("constrain", "x")
    assert "Did you mean 'constraint'" in str(err.value) and not str(err.value).startswith("'")
    with pytest.raises(advrl.RecipeError, match="Did you mean 'constraint'"):
        component_config("x", OmegaConf.create({"kind": "constrain", "name": "bc_mse"}))


def test_recipe_imports_resolve_beside_the_recipe_file(tmp_path):
    (tmp_path / "beside_terms.py").write_text(
        textwrap.dedent(
            """
            from dataclasses import dataclass
            from advrl import Component, register

            @register("schedule", "test_beside_schedule")
            class Beside(Component):
                @dataclass
                class Config:
                    pass
            """
        )
    )
    (tmp_path / "r.yaml").write_text("extends: advrl:bc.yaml\nimports: [beside_terms]\n")
    recipe = advrl.load_recipe(tmp_path / "r.yaml")
    # written as the module's path, so a run directory's copy of the recipe imports it too
    assert list(recipe.imports) == [str((tmp_path / "beside_terms.py").resolve())]
    assert "test_beside_schedule" in registry.names("schedule")
    assert str(tmp_path) not in sys.path  # the folder served that import only
    sys.modules.pop("beside_terms", None)


def test_imports_accumulate_along_extends(tmp_path):
    """A recipe that extends one with imports: and adds its own keeps both, so that its resolved
    copy (the one a run directory keeps) still registers the parent's components."""
    example = tmp_path / "example"
    example.mkdir()
    (example / "base_terms.py").write_text(
        "from dataclasses import dataclass\nfrom advrl import Component, register\n\n\n"
        "@register('schedule', 'test_base_terms')\nclass BaseTerms(Component):\n    @dataclass\n    class Config:\n        pass\n"
    )
    (example / "parent.yaml").write_text("extends: advrl:bc.yaml\nimports: [base_terms]\n")
    (tmp_path / "child_terms.py").write_text("")
    (tmp_path / "child.yaml").write_text("extends: example/parent.yaml\nimports: [child_terms]\n")
    recipe = advrl.load_recipe(tmp_path / "child.yaml")
    assert list(recipe.imports) == [str(example / "base_terms.py"), str(tmp_path / "child_terms.py")]
    sys.modules.pop("base_terms", None)
    sys.modules.pop("child_terms", None)
