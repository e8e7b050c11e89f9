"""Online training (behaviour policies): the loop, snapshots, and resuming an interrupted run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from advrl.learner import online as online_module
from advrl.learner.online import OnlineTrainer, env_info, resume_online, train_online

RECIPES = Path(__file__).resolve().parents[2] / "recipes"
TINY = [
    "online.env=Hopper-v5", "online.steps=60", "online.learning_starts=20", "online.buffer_size=1000",
    "online.snapshot_every=30", "eval.every=30", "eval.episodes=1", "eval.final_episodes=2", "train.batch_size=16",
    "train.log_every=10", "train.checkpoint_every=30", "components.actor.hidden_sizes=[16]",
    "components.critic.hidden_sizes=[16]",
]


def test_env_info_has_d4rl_reference_scores():
    info = env_info("Hopper-v5")
    assert (info.obs_dim, info.action_dim, info.max_action) == (11, 3, 1.0)
    assert info.ref_max_score == pytest.approx(3234.3)


@pytest.mark.parametrize("recipe", ["td3.yaml", "sac.yaml"])
def test_online_run_learns_after_warmup_and_keeps_snapshots(recipe, tmp_path):
    result = train_online(RECIPES / "online" / recipe, TINY, run_dir=tmp_path / "run", progress=False)
    assert result.steps == 60 and result.final_score is not None
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    train_steps = [r["step"] for r in records if r["kind"] == "train"]
    assert train_steps and min(train_steps) > 20  # no updates during the warm-up
    assert any(r["kind"] == "episode" for r in records)
    snapshots = sorted((tmp_path / "run" / "snapshots").glob("step*.pt"))
    assert [p.name for p in snapshots] == ["step00000030.pt", "step00000060.pt"]
    assert "return_mean" in torch.load(snapshots[0], weights_only=True)["evaluation"]
    state = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)
    assert state["replay"]["size"] == 60


def _crash_at_step_45(monkeypatch, recipe: str, run_dir: Path) -> None:
    """Train an online recipe that is interrupted at step 45 (its last checkpoint: step 30)."""
    original = OnlineTrainer._train_step

    def crash_at_45(self, step, *args):
        if step == 45:
            raise KeyboardInterrupt("simulated crash")
        return original(self, step, *args)

    monkeypatch.setattr(online_module.OnlineTrainer, "_train_step", crash_at_45)
    with pytest.raises(KeyboardInterrupt):
        train_online(RECIPES / "online" / recipe, TINY, run_dir=run_dir, progress=False)
    monkeypatch.setattr(online_module.OnlineTrainer, "_train_step", original)


def test_interrupted_online_run_resumes_with_its_buffer(tmp_path, monkeypatch):
    _crash_at_step_45(monkeypatch, "td3.yaml", tmp_path / "run")
    assert torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)["replay"]["size"] == 30
    result = resume_online(tmp_path / "run", progress=False)
    assert result.steps == 60
    assert torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)["replay"]["size"] == 60


@pytest.mark.parametrize("recipe", ["td3.yaml", "sac.yaml"])
def test_a_resumed_online_run_continues_its_episode_and_ends_as_an_uninterrupted_one(recipe, tmp_path, monkeypatch):
    """Interrupted at step 45 with the checkpoint of step 30 taken mid-episode: the resumed run
    restores the environment (MuJoCo state, time limit, random generators), so its replay buffer
    and parameters equal those of a run that was never interrupted."""
    train_online(RECIPES / "online" / recipe, TINY, run_dir=tmp_path / "straight", progress=False)
    _crash_at_step_45(monkeypatch, recipe, tmp_path / "crashed")
    saved = torch.load(tmp_path / "crashed" / "checkpoints" / "last.pt", weights_only=True)
    assert saved["step"] == 30 and saved["episode"]["length"] > 0  # it stopped mid-episode
    resume_online(tmp_path / "crashed", progress=False)
    straight, crashed = (torch.load(tmp_path / run / "checkpoints" / "last.pt", weights_only=True) for run in ("straight", "crashed"))
    assert straight["replay"]["size"] == crashed["replay"]["size"] == 60
    for key, column in straight["replay"]["columns"].items():
        assert torch.equal(column, crashed["replay"]["columns"][key]), key
    for slot, params in straight["components"].items():
        for name, tensor in params.items():
            assert torch.equal(tensor, crashed["components"][slot][name]), f"{slot}.{name}"


def test_an_environment_state_of_another_model_is_refused_with_the_reason():
    import gymnasium as gym

    from advrl.learner import env_state
    from advrl.learner.checkpoint import CheckpointError

    hopper, walker = gym.make("Hopper-v5"), gym.make("Walker2d-v5")
    hopper.reset(seed=0)
    walker.reset(seed=0)
    with pytest.raises(CheckpointError, match="does not fit Walker2d-v5's MuJoCo model"):
        env_state.restore(walker, env_state.capture(hopper))
