"""End-to-end runs of recipes/a2po.yaml and every recipe in recipes/a2po/ablations/ on the tiny
local dataset (shrunk networks, 20 steps, one evaluation episode): each run finishes with a final
score, reopens with advrl.load_run, acts inside the action box, and logs its losses on the
schedule its recipe declares (CVAE for the first K steps, actor at even steps after its start)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

import advrl
from advrl.recipe import load_recipe

RECIPES = Path(__file__).resolve().parents[2] / "recipes"
A2PO_RECIPES = [RECIPES / "a2po.yaml", *sorted((RECIPES / "a2po" / "ablations").glob("*.yaml"))]
SHRINK = [
    "components.behavior.hidden_sizes=[16,16]",
    "components.critic.hidden_sizes=[16]",
    "components.value.hidden_sizes=[16]",
    "components.actor.hidden_sizes=[16]",
    "train.batch_size=16",
    "train.log_every=1",  # one train record per step: the schedule can be read off the logs
]


def shrink(path: Path) -> list[str]:
    """SHRINK for the slots ``path`` has (an override of a slot it removed would be a fragment)."""
    slots = load_recipe(path).components
    return [o for o in SHRINK if not o.startswith("components.") or o.split(".")[1] in slots]
STEPS = 20
K_FRACTIONS = {"k_1e5": 0.1, "k_2e5": 0.2, "k_1e6": 1.0}


@pytest.fixture(scope="module")
def _run_cache(tmp_path_factory) -> dict:
    return {"root": tmp_path_factory.mktemp("a2po_runs"), "runs": {}}


@pytest.fixture
def trained(_run_cache, minari_root, tiny_overrides):
    """name -> (run_dir, RunResult); each recipe is trained once per module."""

    def get(name: str):
        if name not in _run_cache["runs"]:
            path = next(p for p in A2PO_RECIPES if p.stem == name)
            run_dir = _run_cache["root"] / name
            result = advrl.train(path, [*tiny_overrides, *shrink(path)], run_dir=run_dir, progress=False)
            _run_cache["runs"][name] = (run_dir, result)
        return _run_cache["runs"][name]

    return get


def train_records(run_dir: Path) -> list[dict]:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r for r in records if r["kind"] == "train"]


def steps_with(records: list[dict], key: str) -> list[int]:
    return [r["step"] for r in records if key in r]


@pytest.mark.parametrize("name", [p.stem for p in A2PO_RECIPES])
def test_recipe_trains_end_to_end_and_acts_in_the_box(name, trained):
    """20 steps, a final evaluation with a score, the run directory's files; load_run's policy maps
    one or a batch of raw observations to actions in [-max_action, max_action]; the CVAE loss is
    logged at steps <= updates.behavior.stop, the actor loss at even steps > updates.actor.start."""
    run_dir, result = trained(name)
    assert result.steps == STEPS
    assert result.final_score is not None and np.isfinite(result.final_score)
    assert result.final_return is not None
    for produced in ("recipe.yaml", "metrics.jsonl", "train.csv", "eval.csv", "checkpoints/last.pt"):
        assert (run_dir / produced).exists(), produced
    run = advrl.load_run(run_dir)
    assert run.step == STEPS and run.evaluations[-1]["step"] == STEPS
    assert run.recipe.data.reward_scale == 100
    obs_dim, action_dim, max_action = run.info.obs_dim, run.info.action_dim, run.info.max_action
    rng = np.random.default_rng(0)
    single = run.policy(np.zeros(obs_dim, dtype=np.float32))
    assert single.shape == (action_dim,) and np.all(np.abs(single) <= max_action)
    many = run.policy(rng.normal(size=(4, obs_dim)).astype(np.float32) * 10)
    assert many.shape == (4, action_dim) and np.all(np.isfinite(many)) and np.all(np.abs(many) <= max_action)

    records = train_records(run_dir)
    assert [r["step"] for r in records] == list(range(1, STEPS + 1))
    updates = run.recipe.updates
    stop, start = updates.behavior.stop, updates.actor.start
    assert steps_with(records, "loss_behavior") == [s for s in range(1, STEPS + 1) if s <= stop]
    assert steps_with(records, "loss_actor") == [s for s in range(1, STEPS + 1) if s % 2 == 0 and s > start]
    assert steps_with(records, "loss_critic") == list(range(1, STEPS + 1))
    if "value" in run.recipe.components:  # vae_td3bc computes no advantage, so it has no V head
        assert steps_with(records, "loss_value") == list(range(1, STEPS + 1))  # in the critic update or its own


def test_pretrain_cvae_actor_losses_only_after_k(trained):
    """pretrain_cvae: the actor starts after K = int(20 * 0.2) = 4 steps, when the CVAE stops: in
    train.csv and metrics.jsonl, loss_actor / loss_bc appear first at step 6 (even, > K) and the
    CVAE loss only at steps 1..K."""
    run_dir, _ = trained("pretrain_cvae")
    run = advrl.load_run(run_dir)
    k = int(STEPS * 0.2)
    assert run.recipe.updates.actor.start == run.recipe.updates.behavior.stop == k
    records = train_records(run_dir)
    for key in ("loss_actor", "loss_bc", "lambda"):
        assert steps_with(records, key) == list(range(k + 2, STEPS + 1, 2)), key
    assert steps_with(records, "loss_behavior") == list(range(1, k + 1))
    with open(run_dir / "train.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["step"]) for r in rows] == list(range(1, STEPS + 1))
    for row in rows:
        step = int(row["step"])
        assert (row["loss_actor"] != "") == (step > k and step % 2 == 0), step
        assert (row["loss_bc"] != "") == (step > k and step % 2 == 0), step
        assert (row["loss_behavior"] != "") == (step <= k), step
    # the interleaved recipe, by contrast, trains the actor from step 2
    assert steps_with(train_records(trained("a2po")[0]), "loss_actor")[0] == 2


@pytest.mark.parametrize("name", sorted(K_FRACTIONS))
def test_k_ablation_resolves_cvae_stop(name, trained):
    """k_*: the resolved updates.behavior.stop (saved recipe.yaml, reopened run) equals
    int(train.steps * fraction); the CVAE loss is logged exactly at steps 1..stop."""
    run_dir, _ = trained(name)
    expected = int(STEPS * K_FRACTIONS[name])
    run = advrl.load_run(run_dir)
    assert run.recipe.train.steps == STEPS
    assert run.recipe.updates.behavior.stop == expected
    assert OmegaConf.load(run_dir / "recipe.yaml").updates.behavior.stop == expected
    assert steps_with(train_records(run_dir), "loss_behavior") == list(range(1, expected + 1))


@pytest.mark.parametrize("name", sorted(K_FRACTIONS))
@pytest.mark.parametrize("steps", [20, 1000, 1_000_000])
def test_k_ablation_stop_scales_with_train_steps(name, steps):
    """K = int(train.steps * fraction) for any run length (1e6 steps: the paper's 1e5 / 2e5 / 1e6)."""
    recipe = load_recipe(RECIPES / "a2po" / "ablations" / f"{name}.yaml", [f"train.steps={steps}"])
    assert recipe.updates.behavior.stop == int(steps * K_FRACTIONS[name])


def test_clip_target_takes_its_bounds_from_the_scaled_rewards(minari_root, tiny_overrides, tmp_path):
    """clip_target with null bounds (A2PO's --clip): the trainer prepares the critic objective with
    the offline data, which sets main.py's [min r, max r] / (1 - gamma) on the x100 rewards and
    records them."""
    import torch

    overrides = [*tiny_overrides, *SHRINK, "eval.episodes=0", "components.critic_loss.clip_target=true"]
    advrl.train(RECIPES / "a2po.yaml", overrides, run_dir=tmp_path / "run", progress=False)
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    (prepared,) = [r for r in records if r["kind"] == "preparation"]
    from advrl.data.dataset import load_offline_data

    recipe = load_recipe(tmp_path / "run" / "recipe.yaml")
    rewards = load_offline_data(recipe.dataset, recipe.data, torch.device("cpu")).transitions["reward"]
    assert prepared["slot"] == "critic_loss"
    assert prepared["target_min"] == pytest.approx(rewards.min().item() / 0.01, rel=1e-5)
    assert prepared["target_max"] == pytest.approx(rewards.max().item() / 0.01, rel=1e-5)
    assert rewards.abs().max() > 10  # the x100 scale is in
