"""Offline-to-online fine-tuning: recipe adaptation, the seeded buffer, frozen and annealed beta."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

import advrl
from advrl.data.dataset import DatasetInfo
from advrl.data.replay import ReplayBuffer
from advrl.learner.finetune import anneal_factor, finetune, online_recipe, resume_finetune
from advrl.recipe import RecipeError, load_recipe

RECIPES = Path(__file__).resolve().parent.parent / "recipes"
SMALL = ["components.selector.pretrain_steps=5", "components.threshold.period=10", "components.coefficient.hidden_sizes=[16]"]
ONLINE = ["online.steps=40", "online.learning_starts=10", "online.anneal_steps=20", "eval.every=20", "eval.episodes=1",
          "train.log_every=10", "train.checkpoint_every=20", "train.batch_size=32"]


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ADVRL_CACHE", str(tmp_path / "cache"))


def test_anneal_factors():
    assert anneal_factor("linear", 100, 400) == pytest.approx(0.75)
    assert anneal_factor("linear", 800, 400) == 0.0
    assert anneal_factor("cosine", 200, 400) == pytest.approx(math.cos(math.pi / 4))
    assert anneal_factor("cosine", 0, 400) == 1.0  # warm-up: not annealed yet
    assert anneal_factor("none", 300, 400) == 1.0
    with pytest.raises(RecipeError, match="online.anneal"):
        anneal_factor("exp", 1, 2)


def test_online_recipe_drops_selectors_and_frozen_optimisers():
    cql = online_recipe(load_recipe(RECIPES / "ssar_cql.yaml"), [])
    assert "coefficient" not in cql.updates  # beta's own update trains nothing online
    assert "selector" not in cql.updates.sac.terms
    assert "coefficient" in cql.updates.sac.terms  # beta still feeds the penalty
    td3 = online_recipe(load_recipe(RECIPES / "ssar_td3bc.yaml"), [])
    assert set(td3.updates.actor.optimize) == {"actor"}
    with pytest.raises(RecipeError, match="slot 'beta'"):
        online_recipe(load_recipe(RECIPES / "ssar_td3bc.yaml"), ["online.anneal_slot=beta"])


def test_half_buffer_mixes_offline_and_online_rows():
    info = DatasetInfo("x", 2, 1, 1.0, 0, 0, None, None, None)
    buffer = ReplayBuffer(20, info, torch.device("cpu"), extra_defaults={"trust": 1.0}, offline_fraction=0.5)
    rows = {"observation": torch.zeros(10, 2), "action": torch.zeros(10, 1), "reward": torch.zeros(10),
            "next.observation": torch.zeros(10, 2), "terminated": torch.zeros(10), "truncated": torch.zeros(10),
            "trust": torch.zeros(10)}
    buffer.extend(rows, offline=True)
    buffer.add([1.0, 1.0], [0.5], 1.0, [1.0, 1.0], False, False)
    batch = buffer.sample(8)
    assert batch["reward"].sum().item() == 4.0  # half the batch from the single online row
    assert batch["trust"].sum().item() == 4.0  # online data is trusted, offline rows kept their 0 labels


def test_ssar_td3bc_finetune_freezes_and_anneals_beta(minari_root, tiny_overrides, tmp_path):
    offline = tmp_path / "offline"
    advrl.train(RECIPES / "ssar_td3bc.yaml", tiny_overrides + SMALL, run_dir=offline, progress=False)
    result = finetune(offline, ONLINE + ["online.top_k=3"], progress=False)
    assert result.steps == 40 and result.final_score is not None
    before = torch.load(offline / "checkpoints" / "last.pt", weights_only=True)["components"]
    after = torch.load(offline / "finetune" / "checkpoints" / "last.pt", weights_only=True)
    for name, value in before["coefficient"].items():
        assert torch.equal(value, after["components"]["coefficient"][name]), "beta must stay frozen online"
    assert not torch.equal(before["actor"]["net.0.weight"], after["components"]["actor"]["net.0.weight"])
    replay = after["replay"]
    assert replay["offline_size"] > 0 and replay["size"] == replay["offline_size"] + 40
    assert torch.all(replay["columns"]["trust"][replay["offline_size"]:] == 1.0)
    resumed = resume_finetune(offline / "finetune", progress=False)
    assert resumed.steps == 40


def test_top_k_keeps_the_best_trajectories(minari_root, tiny_overrides, tmp_path):
    from advrl.learner.finetune import FinetuneTrainer

    offline = tmp_path / "offline"
    advrl.train(RECIPES / "td3bc.yaml", tiny_overrides, run_dir=offline, progress=False)
    recipe = online_recipe(load_recipe(offline / "recipe.yaml"), ONLINE + ["online.top_k=2"])
    trainer = FinetuneTrainer(recipe, tmp_path / "ft", offline, load_recipe(offline / "recipe.yaml"), progress=False)
    data = trainer.offline.transitions
    kept = trainer._kept_offline_indices()
    kept_episodes = torch.unique(data["episode"][kept])
    assert len(kept_episodes) == 2
    best_two = torch.sort(torch.unique(data["episode_return"]), descending=True).values[:2]
    assert torch.allclose(torch.sort(torch.unique(data["episode_return"][kept]), descending=True).values, best_two)
    assert trainer.data.offline_size == len(kept)
