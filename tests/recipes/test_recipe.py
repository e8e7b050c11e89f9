"""Recipes: extends/override semantics, validation errors naming paths, data-flow checks."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

import advrl
from advrl.component import DataSpec
from advrl.learner.assembly import build_components, build_updates
from advrl.recipe import RecipeError, load_recipe

RECIPES = Path(__file__).resolve().parents[2] / "recipes"

SPEC = DataSpec(11, 3, 1.0)


def build(recipe):
    components = build_components(recipe, SPEC, bind=False)
    return components, build_updates(recipe, components, torch.device("cpu"))


@pytest.mark.parametrize("name", ["td3bc", "iql", "cql", "bc"])
def test_baseline_recipes_validate_and_assemble(name):
    recipe = load_recipe(RECIPES / f"{name}.yaml", dataset_facts=vars(SPEC))
    components, (updates, dataset_reads) = build(recipe)
    assert recipe.name == name
    assert {"observation", "action"} & dataset_reads
    assert all(u.loss_keys for u in updates)


def test_extends_merges_base_and_child_overrides_win(tmp_path):
    (tmp_path / "child.yaml").write_text(f"extends: {RECIPES / 'td3bc.yaml'}\nseed: 7\ncomponents:\n  actor_loss: {{alpha: 5.0}}\n")
    recipe = load_recipe(tmp_path / "child.yaml", ["train.steps=123"])
    assert recipe.seed == 7
    assert recipe.train.steps == 123
    assert recipe.components.actor_loss.alpha == 5.0
    assert recipe.components.actor_loss.name == "td3_actor"  # kept from the parent
    assert recipe.updates.actor.every == 2  # from td3bc.yaml
    assert recipe.eval.episodes == 10  # from base.yaml, two levels up


def test_overrides_apply_last_and_swap_drops_old_fields():
    recipe = load_recipe(RECIPES / "td3bc.yaml", ["components.constraint.name=bc_mse", "components.constraint.weight=2.0"])
    assert recipe.components.constraint.weight == 2.0
    # a swap to a component without 'weight' must not inherit bc_mse's weight
    swapped = load_recipe(
        RECIPES / "iql.yaml",
        ["components.constraint.name=bc_mse", "updates.actor.terms=[actor,advantage,constraint]"],
    )
    assert "beta" not in swapped.components.constraint
    assert swapped.components.constraint.name == "bc_mse"


def test_a_swap_keeps_the_slots_kind_and_batch_keys():
    ssar = RECIPES / "ssar_cql" / "hopper-medium-replay.yaml"
    recipe = load_recipe(ssar, ["components.selector.name=all"])
    # 'all' declares out_key: it keeps writing the 'trust' that the coefficient and penalty read
    assert recipe.components.selector == {"name": "all", "out_key": "trust"}
    # the slot 'threshold' is no kind: its kind comes along, n_start/n_end do not
    # (entries come back with every default of the new component filled in)
    swapped = load_recipe(ssar, ["components.threshold.name=constant"], check_flow=False)
    assert swapped.components.threshold == {"name": "constant", "kind": "schedule", "value": 1.0}
    # ... but beta's threshold is told of each check, which a constant schedule cannot take
    with pytest.raises(RecipeError, match="needs its threshold .schedule 'constant'. to provide observe"):
        load_recipe(ssar, ["components.threshold.name=constant"])
    # keys the new component does not declare are not carried (awr has no mask_key); awr's
    # input 'advantage' is missing, which the data-flow check would report, so it is skipped here
    swapped = load_recipe(ssar, ["components.conservative.name=awr"], check_flow=False).components.conservative
    assert swapped == {"name": "awr", "kind": "constraint", "actor": "actor", "beta": 3.0, "max_weight": 100.0}


def test_unknown_component_key_names_path_and_allowed_keys():
    with pytest.raises(RecipeError) as err:
        load_recipe(RECIPES / "td3bc.yaml", ["components.constraint.wieght=3"])
    message = str(err.value)
    assert "components.constraint.wieght" in message
    assert "Did you mean 'weight'" in message
    assert "Allowed keys: weight, coefficient_key, mask_key" in message


def test_unknown_top_level_key_and_wrong_type():
    with pytest.raises(RecipeError, match=r"'train.stepz'.*Did you mean 'steps'"):
        load_recipe(RECIPES / "td3bc.yaml", ["train.stepz=3"])
    with pytest.raises(RecipeError, match=r"'train.steps' has the wrong type"):
        load_recipe(RECIPES / "td3bc.yaml", ["train.steps=many"])
    with pytest.raises(RecipeError, match=r"components.critic.num_q' has the wrong type"):
        load_recipe(RECIPES / "td3bc.yaml", ["components.critic.num_q=two"])


def test_missing_required_key_is_named(tmp_path):
    (tmp_path / "r.yaml").write_text("components: {}\nupdates: {}\n")
    with pytest.raises(RecipeError, match="dataset.id"):
        load_recipe(tmp_path / "r.yaml")


def test_override_without_equals_and_missing_file(tmp_path):
    with pytest.raises(RecipeError, match="key=value"):
        load_recipe(RECIPES / "td3bc.yaml", ["train.steps"])
    with pytest.raises(RecipeError, match="does not exist"):
        load_recipe(tmp_path / "nope.yaml")
    with pytest.raises(RecipeError, match="is a folder, not a recipe file"):  # e.g. a run folder given for its recipe.yaml
        load_recipe(tmp_path)


def test_extends_cycle_is_reported(tmp_path):
    (tmp_path / "a.yaml").write_text("extends: b.yaml\n")
    (tmp_path / "b.yaml").write_text("extends: a.yaml\n")
    with pytest.raises(RecipeError, match="extends itself"):
        load_recipe(tmp_path / "a.yaml")


def test_slot_without_kind_needs_one(tmp_path):
    with pytest.raises(RecipeError, match="needs a 'kind'"):
        load_recipe(RECIPES / "td3bc.yaml", ["components.my_term.name=bc_mse"])


def test_unknown_slot_in_update_suggests_closest():
    with pytest.raises(RecipeError, match=r"'actorloss'.*Did you mean 'actor_loss'"):
        load_recipe(RECIPES / "td3bc.yaml", ["updates.actor.terms=[actor,actorloss]"])


def test_swapping_in_a_term_with_an_unsatisfied_key_names_key_and_provider():
    with pytest.raises(RecipeError) as err:  # when the recipe is loaded, before any data
        load_recipe(RECIPES / "td3bc.yaml", ["components.constraint.name=awr"])
    message = str(err.value)
    assert "reads batch key 'advantage'" in message
    assert "advantage.q_minus_v" in message


def test_swap_works_when_keys_are_satisfied():
    """IQL with its AWR constraint swapped for BC-MSE: one override plus listing the actor term
    (and removing the advantage, which nothing would read any more)."""
    recipe = load_recipe(
        RECIPES / "iql.yaml",
        ["components.constraint.name=bc_mse", "updates.actor.terms=[actor,constraint]", "components.advantage=null"],
        dataset_facts=vars(SPEC),
    )
    _, (updates, _) = build(recipe)
    assert updates[-1].loss_keys == ["loss_bc"]


def test_term_reading_a_key_from_a_sparser_update_is_rejected(tmp_path):
    (tmp_path / "r.yaml").write_text(
        f"extends: {RECIPES / 'iql.yaml'}\nupdates:\n  value: {{every: 2}}\n"
    )
    with pytest.raises(RecipeError, match="does not run at every step"):
        load_recipe(tmp_path / "r.yaml")


def test_interpolations_resolve_against_train_and_dataset_facts(tmp_path):
    (tmp_path / "r.yaml").write_text(
        f"extends: {RECIPES / 'td3bc.yaml'}\ncomponents:\n  critic: {{hidden_sizes: ['${{dataset.obs_dim}}']}}\n"
    )
    recipe = load_recipe(tmp_path / "r.yaml", ["train.steps=77"], dataset_facts=vars(SPEC))
    OmegaConf.resolve(recipe)
    assert list(recipe.components.critic.hidden_sizes) == [11]
    iql = load_recipe(RECIPES / "iql.yaml", ["train.steps=77"])
    assert OmegaConf.to_container(iql, resolve=True)["updates"]["actor"]["optimize"]["actor"]["lr_schedule"]["steps"] == 77


def test_builtin_recipes_are_named_by_prefix_from_any_folder(tmp_path, monkeypatch):
    """`advrl:REL` is the recipe shipped inside the package: as a path, in `extends:`, in a sweep."""
    from advrl import sweep
    from advrl.recipe import packaged_recipes

    monkeypatch.chdir(tmp_path)  # nothing relative to the repository resolves from here
    assert packaged_recipes().resolve() == RECIPES.resolve()  # the top-level recipes/ is the package's
    by_prefix = load_recipe("advrl:a2pr/hopper-medium.yaml")  # its own extends: ../a2pr.yaml resolves too
    assert by_prefix == load_recipe(RECIPES / "a2pr" / "hopper-medium.yaml")
    (tmp_path / "mine.yaml").write_text("extends: [advrl:td3bc.yaml]\nname: mine\ntrain: {steps: 7}\n")
    mine = load_recipe(tmp_path / "mine.yaml")
    assert (mine.name, mine.train.steps, mine.components.actor_loss.alpha) == ("mine", 7, 2.5)
    with pytest.raises(RecipeError, match="Closest built-in recipes: advrl:td3bc.yaml"):
        load_recipe("advrl:td3_bc.yaml")
    runs = sweep.plan("advrl:bc.yaml", ["seed=0,1"], tmp_path / "sweep")
    assert runs[0].command()[4] == str((RECIPES / "bc.yaml").resolve())


# ---- composition: extends lists, removals, unused components, recipe_diff ------------------
def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_extends_list_merges_each_file_once_so_a_later_parent_keeps_the_earlier_ones_settings(tmp_path):
    """A per-dataset recipe plus an ablation: the ablation (second) does not bring A2PR's defaults
    back over the per-dataset file (first), and its null removals apply to the merged tree."""
    combo = write(
        tmp_path / "hme_no_behavior.yaml",
        "extends: [advrl:a2pr/hopper-medium-expert.yaml, advrl:a2pr/ablations/no_behavior.yaml]\n",
    )
    recipe = load_recipe(combo)
    assert recipe.dataset.id == "advrl/hopper/medium-expert-v0"
    assert recipe.components.constraint.weight == 4.0 and recipe.components.constraint.behavior is None
    assert "behavior" not in recipe.components and "selector" not in recipe.components
    assert set(recipe.updates) == {"critic", "value", "actor"}
    assert list(recipe.updates.actor.terms) == ["advantage", "actor", "actor_loss", "constraint"]
    assert recipe.name == "hme_no_behavior"  # neither parent's name: the run is neither of them
    # the other order is refused: the per-dataset file would set fields of the removed VAE
    reverse = write(
        tmp_path / "reverse.yaml",
        "extends: [advrl:a2pr/ablations/no_behavior.yaml, advrl:a2pr/hopper-medium-expert.yaml]\n",
    )
    with pytest.raises(RecipeError, match=r"hopper-medium-expert.yaml sets fields of components.behavior, which no_behavior.yaml"):
        load_recipe(reverse)


def test_extends_graph_is_linearised_shared_ancestor_once_later_parent_wins(tmp_path):
    write(tmp_path / "root.yaml", f"extends: {RECIPES / 'td3bc.yaml'}\nseed: 1\ntrain: {{steps: 100, batch_size: 64}}\n")
    write(tmp_path / "left.yaml", "extends: root.yaml\ntrain: {steps: 200}\neval: {episodes: 3}\n")
    write(tmp_path / "right.yaml", "extends: root.yaml\ntrain: {batch_size: 32}\neval: {episodes: 4}\n")
    both = load_recipe(write(tmp_path / "both.yaml", "extends: [left.yaml, right.yaml]\nname: both\n"))
    # each parent contributes what its own file sets; where both set a key, the later wins
    assert (both.seed, both.train.steps, both.train.batch_size, both.eval.episodes) == (1, 200, 32, 4)
    assert both.components.actor_loss.alpha == 2.5  # td3bc.yaml, reached through both parents
    # parents whose own chains order two files in contradicting ways cannot be merged
    write(tmp_path / "lr.yaml", "extends: [left.yaml, right.yaml]\n")
    write(tmp_path / "rl.yaml", "extends: [right.yaml, left.yaml]\n")
    with pytest.raises(RecipeError, match="contradicting"):
        load_recipe(write(tmp_path / "cross.yaml", "extends: [lr.yaml, rl.yaml]\n"))
    with pytest.raises(RecipeError, match="extends must be a recipe path or a list of them"):
        load_recipe(write(tmp_path / "bad.yaml", "extends: {a: 1}\n"))


def test_a_component_nothing_uses_is_refused_naming_its_slot(tmp_path):
    # a slot no update lists and no component names
    with pytest.raises(RecipeError, match=r"components.extra \(constraint 'bc_mse'\) is not used"):
        load_recipe(RECIPES / "td3bc.yaml", ["components.extra.kind=constraint", "components.extra.name=bc_mse"])
    # the VAE still trained by updates.behavior after the constraint stopped reading it
    with pytest.raises(RecipeError, match=r"updates.behavior trains components.behavior \(behavior 'vae'\), but nothing else uses it"):
        load_recipe(RECIPES / "a2pr.yaml", ["components.constraint.behavior=null"])
    # a recipe built in Python gets the same checks when it is trained, before any folder is made
    recipe = load_recipe(RECIPES / "td3bc.yaml")
    recipe.components.extra = {"kind": "constraint", "name": "bc_mse"}
    with pytest.raises(RecipeError, match=r"components.extra \(constraint 'bc_mse'\) is not used"):
        advrl.train(recipe, run_dir=tmp_path / "run", progress=False)
    with pytest.raises(RecipeError, match=r"components.extra \(constraint 'bc_mse'\) is not used"):
        advrl.train_seeds(recipe, [0, 1], run_dir=tmp_path / "group", progress=False)
    assert not (tmp_path / "run").exists() and not (tmp_path / "group").exists()
    # removing both the VAE and its update is what no_behavior.yaml does: that loads
    assert "behavior" not in load_recipe(RECIPES / "a2pr" / "ablations" / "no_behavior.yaml").components


def test_recipe_diff_names_what_a_command_line_swap_left_at_its_defaults():
    """A swapped component's entry holds every default of the new component (so a saved recipe
    records them), and recipe_diff shows where they part from the shipped ablation."""
    from advrl.recipe import ABSENT, recipe_diff

    swapped = load_recipe(RECIPES / "a2pr.yaml", ["components.value.name=expectile"])
    assert set(swapped.components.value) >= {"name", "expectile", "hidden_sizes", "q", "use_target_critic"}
    shipped = load_recipe(RECIPES / "a2pr" / "ablations" / "expectile_value.yaml")
    assert recipe_diff(shipped, swapped) == [
        ("name", "a2pr-expectile-value", "a2pr"),
        ("components.value.hidden_sizes", [256, 256, 256, 256], [256, 256]),
    ]
    removed = dict((k, (a, b)) for k, a, b in recipe_diff(load_recipe(RECIPES / "a2pr.yaml"), load_recipe(RECIPES / "a2pr" / "ablations" / "no_behavior.yaml")))
    assert removed["components.behavior"][1] is ABSENT and removed["updates.behavior"][1] is ABSENT
    assert removed["components.constraint.behavior"] == ("behavior", None)
    # a run's saved recipe knows its dataset's facts, a recipe file does not: that is no difference
    saved = load_recipe(RECIPES / "a2pr.yaml", dataset_facts=vars(SPEC))
    assert recipe_diff(saved, load_recipe(RECIPES / "a2pr.yaml")) == []
