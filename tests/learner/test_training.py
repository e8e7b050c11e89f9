"""End-to-end runs of every baseline recipe on a tiny local dataset; determinism; resume;
non-finite losses; atomic checkpoints."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import advrl
from advrl.components.objectives.td3_critic import TD3CriticLoss
from advrl.data.dataset import OfflineData
from advrl.learner import checkpoint as ckpt
from advrl.learner.checkpoint import CheckpointError
from advrl.learner.update import NonFiniteLossError

RECIPES = Path(__file__).resolve().parents[2] / "recipes"


def final_state(run_dir: Path) -> dict:
    return torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["components"]


def assert_same_parameters(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for slot in a:
        assert a[slot].keys() == b[slot].keys()
        for name in a[slot]:
            assert torch.equal(a[slot][name], b[slot][name]), f"{slot}.{name} differs"


@pytest.mark.parametrize("name", ["td3bc", "iql", "cql", "bc"])
def test_baseline_recipe_trains_end_to_end(name, minari_root, tiny_overrides, tmp_path):
    result = advrl.train(RECIPES / f"{name}.yaml", tiny_overrides, run_dir=tmp_path / name, progress=False)
    assert result.steps == 20
    assert result.final_score is not None and result.final_return is not None
    run_dir = tmp_path / name
    for produced in ("recipe.yaml", "metrics.jsonl", "train.csv", "eval.csv", "checkpoints/last.pt"):
        assert (run_dir / produced).exists(), produced
    assert list((run_dir / "tb").glob("events.out.tfevents.*"))
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    train_rows = [r for r in records if r["kind"] == "train"]
    assert [r["step"] for r in train_rows] == [10, 20]
    dataset = records[0]  # which build of the dataset the run trained on
    assert dataset["kind"] == "dataset" and dataset["n_transitions"] == 3000 and len(dataset["fingerprint"]) == 16
    assert all(any(k.startswith("loss_") for k in r) for r in train_rows)
    run = advrl.load_run(run_dir)
    action = run.policy(torch.zeros(11).numpy())
    assert action.shape == (3,) and abs(action).max() <= 1.0
    assert run.evaluations[-1]["step"] == 20


def test_same_seed_gives_bit_identical_runs(minari_root, tiny_overrides, tmp_path):
    for run in ("a", "b"):
        advrl.train(RECIPES / "td3bc.yaml", tiny_overrides + ["eval.episodes=0"], run_dir=tmp_path / run, progress=False)
    assert_same_parameters(final_state(tmp_path / "a"), final_state(tmp_path / "b"))
    advrl.train(RECIPES / "td3bc.yaml", tiny_overrides + ["eval.episodes=0", "seed=1"], run_dir=tmp_path / "c", progress=False)
    with pytest.raises(AssertionError):
        assert_same_parameters(final_state(tmp_path / "a"), final_state(tmp_path / "c"))


def test_resume_after_a_crash_ends_with_the_same_parameters(minari_root, tiny_overrides, tmp_path, monkeypatch):
    overrides = tiny_overrides + ["train.steps=40", "eval.every=10"]
    advrl.train(RECIPES / "td3bc.yaml", overrides, run_dir=tmp_path / "straight", progress=False)

    calls = {"n": 0}
    original = OfflineData.sample

    def crash_at_step_25(self, batch_size):
        calls["n"] += 1
        if calls["n"] == 25:
            raise KeyboardInterrupt("simulated crash")
        return original(self, batch_size)

    monkeypatch.setattr(OfflineData, "sample", crash_at_step_25)
    with pytest.raises(KeyboardInterrupt):
        advrl.train(RECIPES / "td3bc.yaml", overrides, run_dir=tmp_path / "crashed", progress=False)
    monkeypatch.setattr(OfflineData, "sample", original)
    assert torch.load(tmp_path / "crashed" / "checkpoints" / "last.pt", weights_only=True)["step"] == 20

    result = advrl.resume(tmp_path / "crashed", progress=False)
    assert result.steps == 40
    assert_same_parameters(final_state(tmp_path / "straight"), final_state(tmp_path / "crashed"))
    steps = [json.loads(line)["step"] for line in (tmp_path / "crashed" / "metrics.jsonl").read_text().splitlines()]
    straight = [json.loads(line)["step"] for line in (tmp_path / "straight" / "metrics.jsonl").read_text().splitlines()]
    assert steps == straight  # no duplicated or missing rows after the resume


def test_resume_refuses_a_rebuilt_dataset(minari_root, tiny_overrides, tmp_path):
    """A run resumed where its dataset id holds another build (other content fingerprint)
    stops before training rather than continue on different data."""
    run_dir = tmp_path / "run"
    advrl.train(RECIPES / "td3bc.yaml", tiny_overrides + ["eval.episodes=0"], run_dir=run_dir, progress=False)
    metrics = run_dir / "metrics.jsonl"
    rows = [json.loads(line) for line in metrics.read_text().splitlines()]
    built_here = rows[0]["fingerprint"]
    rows[0]["fingerprint"] = "0123456789abcdef"  # as if the run had started on another machine's build
    metrics.write_text("".join(json.dumps(row) + "\n" for row in rows))
    with pytest.raises(advrl.RecipeError, match=f"fingerprint 0123456789abcdef.*fingerprint {built_here}"):
        advrl.resume(run_dir, progress=False)


GATE_SCHEDULE = """
import time
from dataclasses import dataclass
from pathlib import Path

from advrl import Component, option, register


@register("schedule", "test_gate")
class Gate(Component):
    \"\"\"lr factor 1 at every step; at step block_at it waits until the file `gate` exists,
    saying so with the file `blocked`: a run stopped mid-way on purpose.\"\"\"

    @dataclass
    class Config:
        gate: str = option("", "file that lets the run go on")
        blocked: str = option("", "file written while waiting")
        block_at: int = option(0, "step to wait at")

    def value(self, step):
        if step == self.config.block_at and not Path(self.config.gate).exists():
            Path(self.config.blocked).touch()
            while not Path(self.config.gate).exists():
                time.sleep(0.01)
        return 1.0
"""


def test_resume_after_sigkill(minari_root, tmp_path):
    """A run killed with SIGKILL mid-run resumes and ends like an uninterrupted one. The kill
    cannot miss: the killed run waits at step 500 of 1000 (an lr schedule of factor 1 that
    blocks until a file appears) and is killed only once it says it waits there."""
    gate, blocked = tmp_path / "gate", tmp_path / "blocked"
    (tmp_path / "gate_schedule.py").write_text(GATE_SCHEDULE)
    (tmp_path / "bc_gated.yaml").write_text(
        "extends: advrl:bc.yaml\nimports: [gate_schedule]\nupdates:\n  actor:\n    optimize:\n      actor:\n"
        f"        lr_schedule: {{name: test_gate, gate: '{gate}', blocked: '{blocked}', block_at: 500}}\n"
    )
    overrides = ["dataset.id=advrl/hopper/random-v0", "train.steps=1000", "train.batch_size=32", "train.log_every=50",
                 "train.checkpoint_every=5", "train.device=cpu", "eval.episodes=0"]
    env = {**os.environ, "MINARI_DATASETS_PATH": str(minari_root)}
    cmd = [sys.executable, "-m", "advrl.cli", "train", str(tmp_path / "bc_gated.yaml"), *overrides, "--no-progress"]
    gate.touch()  # the uninterrupted run never waits
    straight = subprocess.run([*cmd, "--run-dir", str(tmp_path / "straight")], env=env, capture_output=True, text=True)
    assert straight.returncode == 0, straight.stderr
    gate.unlink()

    killed_dir = tmp_path / "killed"
    proc = subprocess.Popen([*cmd, "--run-dir", str(killed_dir)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    while not blocked.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert blocked.exists() and proc.poll() is None, f"the run never reached step 500: {proc.stderr.read() if proc.poll() is not None else 'timeout'}"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    checkpoint_path = killed_dir / "checkpoints" / "last.pt"
    assert 0 < torch.load(checkpoint_path, weights_only=True)["step"] <= 500

    gate.touch()
    resumed = subprocess.run(
        [sys.executable, "-m", "advrl.cli", "train", "--resume", str(killed_dir), "--no-progress"],
        env=env, capture_output=True, text=True,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert torch.load(checkpoint_path, weights_only=True)["step"] == 1000
    assert not list(checkpoint_path.parent.glob(".*.tmp"))
    assert_same_parameters(final_state(tmp_path / "straight"), final_state(killed_dir))


def test_non_finite_loss_stops_with_loss_and_step_and_keeps_checkpoint(minari_root, tiny_overrides, tmp_path, monkeypatch):
    original = TD3CriticLoss.compute

    def poisoned(self, td, step):
        out = original(self, td, step)
        if step >= 13:
            out["loss_critic"] = out["loss_critic"] * float("nan")
        return out

    monkeypatch.setattr(TD3CriticLoss, "compute", poisoned)
    run_dir = tmp_path / "nan"
    with pytest.raises(NonFiniteLossError, match=r"Loss 'loss_critic' of update 'critic' became non-finite .* at step 13"):
        advrl.train(RECIPES / "td3bc.yaml", tiny_overrides, run_dir=run_dir, progress=False)
    state = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert state["step"] == 10
    assert all(torch.isfinite(t).all() for slot in state["components"].values() for t in slot.values())


def test_atomic_save_keeps_the_old_checkpoint_when_a_write_dies(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    ckpt.atomic_torch_save({"step": 1, "components": {}}, path)

    def dies_mid_write(obj, handle):
        handle.write(b"partial bytes")
        raise KeyboardInterrupt

    monkeypatch.setattr(ckpt.torch, "save", dies_mid_write)
    with pytest.raises(KeyboardInterrupt):
        ckpt.atomic_torch_save({"step": 2, "components": {}}, path)
    monkeypatch.undo()
    assert ckpt.load_checkpoint(path)["step"] == 1
    assert not list(tmp_path.glob(".*.tmp"))


def test_corrupt_checkpoint_error_names_file_and_fix(tmp_path):
    path = tmp_path / "last.pt"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=r"corrupt or incomplete \(not a file torch wrote\).*--resume"):
        ckpt.load_checkpoint(path)
    with pytest.raises(CheckpointError, match="nothing to resume"):
        ckpt.load_checkpoint(tmp_path / "missing.pt")


def test_existing_run_dir_is_not_overwritten(minari_root, tiny_overrides, tmp_path):
    advrl.train(RECIPES / "bc.yaml", tiny_overrides, run_dir=tmp_path / "run", progress=False)
    with pytest.raises(advrl.RecipeError, match="--resume"):
        advrl.train(RECIPES / "bc.yaml", tiny_overrides, run_dir=tmp_path / "run", progress=False)


def test_a_run_in_use_by_another_process_is_not_resumed_beside_it(minari_root, tiny_overrides, tmp_path):
    advrl.train(RECIPES / "bc.yaml", tiny_overrides, run_dir=tmp_path / "run", progress=False)
    before = (tmp_path / "run" / "checkpoints" / "last.pt").read_bytes()
    with ckpt.run_lock(tmp_path / "run"):  # as a still-running process holds it
        with pytest.raises(CheckpointError, match=rf"in use by another advrl process \(pid {os.getpid()}\)"):
            advrl.resume(tmp_path / "run", progress=False)
        with pytest.raises(CheckpointError, match="in use"):
            advrl.train(RECIPES / "bc.yaml", tiny_overrides, run_dir=tmp_path / "run", progress=False)
    assert (tmp_path / "run" / "checkpoints" / "last.pt").read_bytes() == before  # untouched
    assert advrl.resume(tmp_path / "run", progress=False).steps == 20  # free again once the holder ends


def test_observation_noise_changes_evaluation(minari_root, tiny_overrides, tmp_path):
    advrl.train(RECIPES / "bc.yaml", tiny_overrides, run_dir=tmp_path / "run", progress=False)
    run = advrl.load_run(tmp_path / "run")
    clean = run.evaluate(episodes=2)
    assert clean == run.evaluate(episodes=2)  # evaluation is deterministic
    noisy = run.evaluate(episodes=2, obs_noise=0.5)
    assert noisy["return_mean"] != clean["return_mean"]
