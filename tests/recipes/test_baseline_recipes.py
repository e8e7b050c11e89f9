"""Like-for-like baselines: each advantage-guided recipe ships its backbone with the same
networks, data transforms, training and evaluation settings (recipes/<method>/baseline_*.yaml),
checked by diffing the resolved recipes: only the method's own parts may differ."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from advrl.component import DataSpec
from advrl.learner.assembly import build_components, build_updates
from advrl.recipe import load_recipe, recipe_diff

RECIPES = Path(__file__).resolve().parents[2] / "recipes"
SPEC = DataSpec(11, 3, 1.0)

# method recipe -> (its baseline, the keys that are the method's own: a difference anywhere
# else, e.g. in the critic, the actor's layers, data.* or train.*, makes the baseline unfair)
BASELINES = {
    "a2pr.yaml": (
        "a2pr/baseline_td3bc.yaml",
        ["name", "components.value", "components.advantage", "components.selector", "components.behavior",
         "components.constraint", "updates.value", "updates.behavior"],
    ),
    "a2po.yaml": (
        "a2po/baseline_td3bc.yaml",
        ["name", "components.behavior", "components.value", "components.advantage", "components.constraint",
         # the latent actor's CVAE wiring; its layers (hidden_sizes), activation and target stay
         "components.actor.name", "components.actor.behavior", "components.actor.condition_dim",
         "components.actor.act_condition", "components.actor.max_latent",
         "updates.critic.terms", "updates.critic.optimize.value", "updates.behavior", "updates.actor.terms"],
    ),
    "ssar_td3bc.yaml": (
        "ssar_td3bc/baseline_td3bc.yaml",
        ["name", "online.freeze", "online.anneal_slot", "components.selector", "components.threshold",
         "components.coefficient", "components.constraint", "updates.actor.terms", "updates.actor.optimize.coefficient"],
    ),
    "ssar_cql.yaml": (
        "ssar_cql/baseline_cql.yaml",
        ["name", "online.freeze", "online.anneal_slot", "components.selector", "components.threshold",
         "components.coefficient", "components.conservative", "updates.sac.terms", "updates.coefficient"],
    ),
}


def outside(differences, allowed) -> list[str]:
    return [key for key, _, _ in differences if not any(key == a or key.startswith(a + ".") for a in allowed)]


@pytest.mark.parametrize("method", sorted(BASELINES))
def test_baseline_assembles_and_differs_from_its_method_only_in_the_methods_parts(method):
    baseline_file, allowed = BASELINES[method]
    ours = load_recipe(RECIPES / method)
    baseline = load_recipe(RECIPES / baseline_file, dataset_facts=vars(SPEC))
    components = build_components(baseline, SPEC, bind=False)
    updates, _ = build_updates(baseline, components, torch.device("cpu"))
    assert all(u.loss_keys for u in updates)
    differences = recipe_diff(ours, load_recipe(RECIPES / baseline_file))
    assert not outside(differences, allowed), outside(differences, allowed)
    assert {key.split(".")[1] for key, _, _ in differences if key.startswith("components.")} - {"actor"}, "nothing removed"
    for shared in ("critic", "critic_loss", "actor_loss"):  # the backbone's networks and objectives
        if shared in ours.components:
            assert baseline.components[shared] == ours.components[shared], shared
    assert list(baseline.components.actor.hidden_sizes) == list(ours.components.actor.hidden_sizes)
    assert (baseline.data, baseline.train, baseline.eval, baseline.dataset.id) == (ours.data, ours.train, ours.eval, ours.dataset.id)


@pytest.mark.parametrize(
    ("per_dataset", "baseline"),
    [("a2pr/halfcheetah-medium-replay.yaml", "a2pr/baseline_td3bc.yaml"), ("ssar_td3bc/hopper-medium.yaml", "ssar_td3bc/baseline_td3bc.yaml"),
     ("ssar_cql/walker2d-medium-replay.yaml", "ssar_cql/baseline_cql.yaml")],
)
def test_per_dataset_baseline_is_the_per_dataset_recipe_then_the_baseline(per_dataset, baseline, tmp_path):
    """extends: [<method>/<dataset>.yaml, <method>/baseline_*.yaml] keeps the dataset and the
    per-dataset backbone settings (A2PR halfcheetah-medium-replay: alpha 40, gamma 0.995) and drops the rest."""
    method = per_dataset.split("/")[0] + ".yaml"
    combo = tmp_path / "combo.yaml"
    combo.write_text(f"extends: [advrl:{per_dataset}, advrl:{baseline}]\n")
    recipe = load_recipe(combo)
    tuned = load_recipe(RECIPES / per_dataset)
    assert recipe.name == "combo" and recipe.dataset.id == tuned.dataset.id
    assert not outside(recipe_diff(tuned, recipe), BASELINES[method][1])
    assert set(recipe.components) == set(load_recipe(RECIPES / baseline).components)
    if method == "a2pr.yaml":
        assert (recipe.components.actor_loss.alpha, recipe.components.critic_loss.gamma) == (40, 0.995)
        assert recipe.components.constraint == {"name": "bc_mse", "weight": 1.0, "coefficient_key": None, "mask_key": None}


def test_plain_bc_ablation_is_a2prs_baseline():
    plain = load_recipe(RECIPES / "a2pr" / "ablations" / "plain_bc.yaml")
    assert recipe_diff(load_recipe(RECIPES / "a2pr" / "baseline_td3bc.yaml"), plain) == [("name", "a2pr-baseline-td3bc", "a2pr-plain-bc")]


SMALL = {  # seconds-long runs: smaller layers for the slots a baseline has
    "actor": "components.actor.hidden_sizes=[16]",
    "critic": "components.critic.hidden_sizes=[16]",
    "conservative": "components.conservative.n_actions=2",
}


@pytest.mark.parametrize("method", sorted(BASELINES))
def test_baseline_trains_end_to_end(method, minari_root, tiny_overrides, tmp_path):
    import advrl

    path = RECIPES / BASELINES[method][0]
    slots = load_recipe(path).components
    result = advrl.train(path, [*tiny_overrides, *(o for s, o in SMALL.items() if s in slots)], run_dir=tmp_path / "run", progress=False)
    assert result.steps == 20 and result.final_score is not None
    assert set(advrl.load_run(tmp_path / "run").components) == set(slots)
