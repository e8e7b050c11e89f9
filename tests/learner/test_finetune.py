"""Offline-to-online fine-tuning: recipe adaptation, the seeded buffer, frozen and annealed beta."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import advrl
from advrl import DataSpec
from advrl.data.dataset import DatasetInfo
from advrl.data.replay import ReplayBuffer
from advrl.learner.finetune import anneal_factor, finetune, online_recipe, resume_finetune
from advrl.recipe import RecipeError, load_recipe

RECIPES = Path(__file__).resolve().parents[2] / "recipes"
SMALL = ["components.selector.pretrain_steps=5", "components.threshold.period=10", "components.coefficient.hidden_sizes=[16]"]
ONLINE = ["online.steps=40", "online.learning_starts=10", "online.anneal_steps=20", "eval.every=20", "eval.episodes=1", "eval.final_episodes=2",
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


# tests/conftest.py's tiny_overrides, for the module-scoped run below
TINY = ["dataset.id=advrl/hopper/random-v0", "train.steps=20", "train.batch_size=32", "train.log_every=10",
        "train.checkpoint_every=10", "train.device=cpu", "eval.every=20", "eval.episodes=1", "eval.final_episodes=2"]


@pytest.fixture(scope="module")
def ssar_finetuned(minari_root, tmp_path_factory):
    """SSAR-TD3+BC offline (20 steps, n checked every 10 steps), then 40 online steps (warm-up 10,
    linear anneal over 20), recording the coefficient every BC term read online. sigma = 1e-3
    makes the constraint fail at every check ((1e-3 n)^2 is below any policy-data distance),
    so n grows at each check it is told of."""
    from advrl.components.constraints.bc_mse import BCMSE

    root = tmp_path_factory.mktemp("ssar_finetune")
    offline, read = root / "offline", {}
    original = BCMSE.compute

    def recording(self, td, step):
        read[step] = (td["observation"].clone(), td["coefficient"].clone())
        return original(self, td, step)

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ADVRL_CACHE", str(root / "cache"))
        advrl.train(RECIPES / "ssar_td3bc.yaml", TINY + SMALL + ["components.coefficient.sigma=0.001"],
                    run_dir=offline, progress=False)
        patch.setattr(BCMSE, "compute", recording)
        result = finetune(offline, ONLINE + ["online.top_k=3"], progress=False)
    return SimpleNamespace(offline=offline, result=result, read=read)


def _checkpoint(run_dir: Path) -> dict:
    return torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)


def test_ssar_td3bc_finetune_freezes_and_anneals_beta(ssar_finetuned, monkeypatch, tmp_path):
    offline = ssar_finetuned.offline
    assert ssar_finetuned.result.steps == 40 and ssar_finetuned.result.final_score is not None
    # the fine-tuned policy gets its own end-of-training evaluation (advrl compare scores the run by it)
    assert ssar_finetuned.result.final_evaluation["episodes"] == 2
    assert '"final_eval"' in (offline / "finetune" / "metrics.jsonl").read_text()
    before, after = _checkpoint(offline)["components"], _checkpoint(offline / "finetune")
    for name, value in before["coefficient"].items():
        assert torch.equal(value, after["components"]["coefficient"][name]), "beta must stay frozen online"
    assert not torch.equal(before["actor"]["net.0.weight"], after["components"]["actor"]["net.0.weight"])
    replay = after["replay"]
    assert replay["offline_size"] > 0 and replay["size"] == replay["offline_size"] + 40
    assert torch.all(replay["columns"]["trust"][replay["offline_size"]:] == 1.0)
    monkeypatch.setenv("ADVRL_CACHE", str(tmp_path))
    resumed = resume_finetune(offline / "finetune", progress=False)
    assert resumed.steps == 40


def test_ssar_td3bc_finetune_bc_reads_the_linearly_annealed_beta(ssar_finetuned):
    """online.anneal linear over 20 steps after a 10-step warm-up: the BC term of online step
    N = step - 10 reads beta(s) (1 - N / 20), down to 0 from N = 20 (SSAR td3_bc.py
    decay_factor; its 4e5 decay steps never reach 0 in 250k online steps)."""
    read = ssar_finetuned.read
    assert sorted(read) == list(range(12, 41, 2))  # actor steps after the warm-up
    beta = advrl.make("coefficient", "state_adaptive", spec=DataSpec(11, 3), hidden_sizes=[16])
    beta.load_state_dict(_checkpoint(ssar_finetuned.offline)["components"]["coefficient"])
    expected = {12: 0.9, 20: 0.5, 26: 0.2, 30: 0.0, 40: 0.0}
    for step, (obs, coefficient) in read.items():
        factor = max(0.0, 1.0 - (step - 10) / 20)
        if step in expected:
            assert factor == pytest.approx(expected[step])
        with torch.no_grad():
            assert torch.allclose(coefficient, beta(obs) * factor, atol=1e-7), step
    assert read[12][1].abs().min() > 0  # beta itself is not zero: the scale is what is tested


def test_ssar_threshold_n_moves_offline_only(ssar_finetuned):
    """The official code checks n only in the beta step, which runs only while online_steps == 0
    (QinwenLuo/SSAR td3_bc.py / cql.py): offline, n grew 1 -> 1.2 at the check of step 10 and
    the step-20 check is pending (advrl applies a report after its step; the official code at
    once, so its final offline n is 1.4). Online the checks at 20, 30 and 40 must not move it."""
    offline, finetuned = ssar_finetuned.offline, ssar_finetuned.offline / "finetune"
    threshold = _checkpoint(offline)["components"]["threshold"]
    assert threshold["n"].item() == pytest.approx(1.2) and threshold["has_pending"].item()
    online = _checkpoint(finetuned)["components"]["threshold"]
    assert online["n"].item() == pytest.approx(1.4)
    assert not online["has_pending"].item() and not online["frozen"].item()
    rows = (finetuned / "train.csv").read_text().splitlines()
    column = rows[0].split(",").index("coefficient_n")
    assert [float(row.split(",")[column]) for row in rows[1:]] == pytest.approx([1.4] * (len(rows) - 1))


def test_frozen_slots_are_frozen_again_on_resume(ssar_finetuned, monkeypatch, tmp_path):
    """The coefficient's frozen state is a flag, not checkpointed: a resumed fine-tuning sets it."""
    from advrl.learner.finetune import FinetuneTrainer

    monkeypatch.setenv("ADVRL_CACHE", str(tmp_path))
    offline = ssar_finetuned.offline
    saved = load_recipe(offline / "finetune" / "recipe.yaml", check_flow=False)  # as resume_finetune loads it
    trainer = FinetuneTrainer(saved, offline / "finetune", offline,
                              load_recipe(offline / "recipe.yaml"), resume=True, progress=False)
    assert trainer.components["coefficient"].learning is False


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
