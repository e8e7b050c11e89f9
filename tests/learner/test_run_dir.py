"""A run folder is advrl's only if advrl marked it; no advice advrl gives loses a run's records."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import advrl
from advrl.cli import main
from advrl.data.dataset import DatasetError, OfflineData
from advrl.learner import trainer as trainer_module
from advrl.learner.checkpoint import CheckpointError
from advrl.learner.finetune import finetune
from advrl.learner.online import train_online
from advrl.learner.rundir import MARKER, RunDirError
from advrl.sweep import SweepRun

RECIPES = Path(__file__).resolve().parents[2] / "recipes"


def records(run_dir: Path, name: str = "metrics.jsonl") -> list[dict]:
    return [json.loads(line) for line in (run_dir / name).read_text().splitlines()]


def parameters(run_dir: Path, name: str = "last.pt") -> dict:
    return torch.load(run_dir / "checkpoints" / name, weights_only=True)["components"]


def crash_at_sample(monkeypatch, n: int) -> None:
    calls, original = {"n": 0}, OfflineData.sample

    def sample(self, batch_size):
        calls["n"] += 1
        if calls["n"] == n:
            raise KeyboardInterrupt("simulated kill")
        return original(self, batch_size)

    monkeypatch.setattr(OfflineData, "sample", sample)


def test_a_users_folder_is_never_written_into(minari_root, tiny_overrides, tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "recipe.yaml").write_text("my notes\n")
    (mine / "train.csv").write_text("my,data\n")
    with pytest.raises(RunDirError, match=rf"{mine} is not empty \(recipe.yaml, train.csv\) and not an advrl run .*empty or new --run-dir"):
        advrl.train(RECIPES / "bc.yaml", tiny_overrides, run_dir=mine, progress=False)
    with pytest.raises(RunDirError, match="not an advrl run"):
        train_online(RECIPES / "online" / "td3.yaml", ["online.env=Hopper-v5"], run_dir=mine, progress=False)
    assert main(["train", str(RECIPES / "bc.yaml"), *tiny_overrides, "--run-dir", str(mine), "--no-progress"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("advrl: error:") and "--run-dir" in err and len(err.splitlines()) == 1
    assert sorted(p.name for p in mine.iterdir()) == ["recipe.yaml", "train.csv"]  # not even a lock file
    assert (mine / "recipe.yaml").read_text() == "my notes\n" and (mine / "train.csv").read_text() == "my,data\n"


def test_a_run_killed_before_its_first_checkpoint_is_resumed_not_replaced(minari_root, tiny_overrides, tmp_path, monkeypatch):
    overrides = tiny_overrides + ["eval.episodes=0", "train.checkpoint_every=1000"]
    advrl.train(RECIPES / "td3bc.yaml", overrides, run_dir=tmp_path / "straight", progress=False)
    crash_at_sample(monkeypatch, 15)
    with pytest.raises(KeyboardInterrupt):
        advrl.train(RECIPES / "td3bc.yaml", overrides, run_dir=tmp_path / "killed", progress=False)
    monkeypatch.undo()
    killed = tmp_path / "killed"
    assert json.loads((killed / MARKER).read_text())["kind"] == "train" and not (killed / "checkpoints").exists()
    started = records(killed)
    assert [r["kind"] for r in started] == ["dataset", "train"]  # what it recorded before the kill
    with pytest.raises(RunDirError, match=rf"{killed} holds a run stopped before its first checkpoint.*advrl train --resume {killed}"):
        advrl.train(RECIPES / "td3bc.yaml", overrides, run_dir=killed, progress=False)
    assert records(killed) == started  # the refusal touched nothing
    assert advrl.resume(killed, progress=False).steps == 20  # from step 0, in its folder
    assert records(killed)[0] == started[0]  # its first record kept
    assert records(killed, "metrics.replaced.jsonl") == started[1:]  # the rest written again, and kept aside
    assert [r["step"] for r in records(killed)] == [r["step"] for r in records(tmp_path / "straight")]
    for slot, state in parameters(tmp_path / "straight").items():
        assert all(torch.equal(v, parameters(killed)[slot][k]) for k, v in state.items())


def test_a_damaged_last_checkpoint_resumes_from_the_previous_one(minari_root, tiny_overrides, tmp_path, monkeypatch, capsys):
    overrides = tiny_overrides + ["train.steps=40", "eval.every=10"]
    advrl.train(RECIPES / "td3bc.yaml", overrides, run_dir=tmp_path / "straight", progress=False)
    crash_at_sample(monkeypatch, 35)
    with pytest.raises(KeyboardInterrupt):
        advrl.train(RECIPES / "td3bc.yaml", overrides, run_dir=tmp_path / "run", progress=False)
    monkeypatch.undo()
    run, checkpoints = tmp_path / "run", tmp_path / "run" / "checkpoints"
    assert torch.load(checkpoints / "previous.pt", weights_only=True)["step"] == 20
    assert torch.load(checkpoints / "last.pt", weights_only=True)["step"] == 30
    (checkpoints / "last.pt").write_bytes(b"cut short")
    capsys.readouterr()
    before = records(run)
    assert advrl.resume(run, progress=False).steps == 40
    warning = capsys.readouterr().err
    assert "warning: Checkpoint" in warning and "corrupt or incomplete (not a file torch wrote); continuing from" in warning
    warnings = [line for line in warning.splitlines() if line.startswith("advrl: warning")]
    assert "previous.pt" in warning and len(warnings) == 1
    assert (checkpoints / "last.pt.damaged").read_bytes() == b"cut short"  # kept, and never rotated over previous.pt
    assert records(run, "metrics.replaced.jsonl") == [r for r in before if r["step"] > 20]  # no record lost
    assert [(r["kind"], r["step"]) for r in records(run)] == [(r["kind"], r["step"]) for r in records(tmp_path / "straight")]
    for slot, state in parameters(tmp_path / "straight").items():
        assert all(torch.equal(v, parameters(run)[slot][k]) for k, v in state.items())


def test_each_save_keeps_the_checkpoint_before_it(minari_root, tiny_overrides, tmp_path):
    advrl.train(RECIPES / "bc.yaml", tiny_overrides + ["eval.episodes=0", "train.steps=30"], run_dir=tmp_path / "run", progress=False)
    checkpoints = tmp_path / "run" / "checkpoints"
    steps = {p.name: torch.load(p, weights_only=True)["step"] for p in checkpoints.glob("*.pt")}
    assert steps == {"last.pt": 30, "previous.pt": 20}
    assert not list(checkpoints.glob(".*.tmp"))


@pytest.mark.parametrize("exists", [False, True], ids=["new-folder", "empty-folder"])
def test_a_failed_start_leaves_no_run_folder(minari_root, tiny_overrides, tmp_path, monkeypatch, exists):
    parent = tmp_path / "runs"
    run_dir = parent / "a" / "b" / "run"
    if exists:
        run_dir.mkdir(parents=True)
    with pytest.raises(DatasetError):  # fails while loading the data
        advrl.train(RECIPES / "bc.yaml", tiny_overrides + ["dataset.id=nobody/nothing-v0"], run_dir=run_dir, progress=False)

    def broken(*args, **kwargs):
        raise advrl.RecipeError("a component that does not build")

    monkeypatch.setattr(trainer_module, "build_components", broken)
    with pytest.raises(advrl.RecipeError, match="does not build"):  # fails building the components
        advrl.train(RECIPES / "bc.yaml", tiny_overrides, run_dir=run_dir, progress=False)
    monkeypatch.undo()
    if exists:
        assert run_dir.is_dir() and not list(run_dir.iterdir())  # it was there, empty: it stays so
    else:
        assert not parent.exists()  # and the parents made for it go too
    advrl.train(RECIPES / "bc.yaml", tiny_overrides + ["eval.episodes=0"], run_dir=run_dir, progress=False)  # free to use


def test_a_folder_holding_only_the_mark_is_free(minari_root, tiny_overrides, tmp_path):
    """A start killed before it wrote anything but the mark has nothing to lose (and no recipe to resume)."""
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / MARKER).write_text("{}")
    with pytest.raises(RunDirError, match=r"stopped before its run saved its recipe.*advrl train RECIPE \.\.\. --run-dir"):
        advrl.resume(tmp_path / "run", progress=False)
    assert advrl.train(RECIPES / "bc.yaml", tiny_overrides + ["eval.episodes=0"], run_dir=tmp_path / "run", progress=False).steps == 20


def test_a_run_of_an_older_advrl_resumes_and_is_marked(minari_root, tiny_overrides, tmp_path):
    run = tmp_path / "run"
    advrl.train(RECIPES / "bc.yaml", tiny_overrides + ["eval.episodes=0", "train.steps=30"], run_dir=run, progress=False)
    (run / MARKER).unlink()
    (run / "checkpoints" / "last.pt").unlink()
    (run / "checkpoints" / "previous.pt").rename(run / "checkpoints" / "last.pt")  # as an older advrl left it at step 20
    assert advrl.resume(run, progress=False).steps == 30
    assert json.loads((run / MARKER).read_text())["kind"] == "train"


def test_sweep_resumes_a_point_stopped_before_its_first_checkpoint(tmp_path):
    point = SweepRun(RECIPES / "bc.yaml", ["seed=0"], tmp_path / "seed=0")
    assert point.command()[3] == "train" and "--resume" not in point.command()
    point.run_dir.mkdir()
    (point.run_dir / MARKER).write_text("{}")
    (point.run_dir / "recipe.yaml").write_text("name: bc\n")
    assert point.command()[3:5] == ["train", "--resume"]


FINETUNE = ["online.steps=20", "online.learning_starts=5", "eval.every=20", "eval.episodes=0", "train.log_every=10",
            "train.checkpoint_every=20", "train.batch_size=16"]


def test_finetune_follows_the_same_rules(minari_root, tiny_overrides, tmp_path):
    offline = tmp_path / "offline"
    advrl.train(RECIPES / "td3bc.yaml", tiny_overrides + ["eval.episodes=0"], run_dir=offline, progress=False)
    (offline / "finetune").mkdir()
    (offline / "finetune" / "notes.txt").write_text("mine")
    with pytest.raises(RunDirError, match="not an advrl run"):
        finetune(offline, FINETUNE, progress=False)
    assert sorted(p.name for p in (offline / "finetune").iterdir()) == ["notes.txt"]
    out = tmp_path / "tuned"
    (offline / "checkpoints" / "last.pt").rename(offline / "last.pt")  # its start fails: no offline checkpoint
    (offline / "checkpoints" / "previous.pt").unlink()
    with pytest.raises(CheckpointError, match="No checkpoint"):
        finetune(offline, FINETUNE, run_dir=out, progress=False)
    assert not out.exists()
    (offline / "last.pt").rename(offline / "checkpoints" / "last.pt")
    assert finetune(offline, FINETUNE, run_dir=out, progress=False).steps == 20
    assert json.loads((out / MARKER).read_text())["kind"] == "finetune"
    with pytest.raises(RunDirError, match=f"already holds a run; continue it with `advrl finetune --resume {out}`"):
        finetune(offline, FINETUNE, run_dir=out, progress=False)


def crash_at_env_step(monkeypatch, n: int) -> None:
    from advrl.data.replay import ReplayBuffer

    calls, original = {"n": 0}, ReplayBuffer.add

    def add(self, *args):
        calls["n"] += 1
        if calls["n"] == n:
            raise KeyboardInterrupt("simulated kill")
        return original(self, *args)

    monkeypatch.setattr(ReplayBuffer, "add", add)


def test_online_and_finetune_runs_stopped_before_a_checkpoint_resume_from_step_0(minari_root, tiny_overrides, tmp_path, monkeypatch):
    from advrl.learner.finetune import resume_finetune
    from advrl.learner.online import resume_online

    online = ["online.env=Hopper-v5", "online.steps=30", "online.learning_starts=10", "online.buffer_size=100", "eval.episodes=0",
              "train.batch_size=16", "train.log_every=10", "train.checkpoint_every=30", "components.actor.hidden_sizes=[16]",
              "components.critic.hidden_sizes=[16]"]
    crash_at_env_step(monkeypatch, 25)
    with pytest.raises(KeyboardInterrupt):
        train_online(RECIPES / "online" / "td3.yaml", online, run_dir=tmp_path / "online", progress=False)
    monkeypatch.undo()
    with pytest.raises(RunDirError, match=f"before its first checkpoint.*advrl online --resume {tmp_path / 'online'}"):
        train_online(RECIPES / "online" / "td3.yaml", online, run_dir=tmp_path / "online", progress=False)
    assert resume_online(tmp_path / "online", progress=False).steps == 30

    offline = tmp_path / "offline"
    advrl.train(RECIPES / "td3bc.yaml", tiny_overrides + ["eval.episodes=0"], run_dir=offline, progress=False)
    finetune(offline, FINETUNE, run_dir=tmp_path / "straight", progress=False)
    crash_at_env_step(monkeypatch, 15)
    with pytest.raises(KeyboardInterrupt):
        finetune(offline, FINETUNE, progress=False)
    monkeypatch.undo()
    with pytest.raises(RunDirError, match=f"before its first checkpoint.*advrl finetune --resume {offline / 'finetune'}"):
        finetune(offline, FINETUNE, progress=False)
    assert resume_finetune(offline / "finetune", progress=False).steps == 20  # from the offline run's parameters again
    for slot, state in parameters(tmp_path / "straight").items():
        assert all(torch.equal(v, parameters(offline / "finetune")[slot][k]) for k, v in state.items())
