"""The recipe's ``log:`` backends: TensorBoard on or off, Weights & Biases through its API (a
stand-in module records the calls), resuming the same W&B run, a missing package named early."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest

import advrl
from advrl.learner.metrics import WANDB_ID_FILE, WandbSink
from advrl.recipe import RecipeError

RECIPES = Path(__file__).resolve().parents[2] / "recipes"


class FakeRun:
    def __init__(self, calls: dict):
        self.id, self.calls = "run123", calls

    def define_metric(self, name, step_metric=None):
        self.calls["metrics"].append((name, step_metric))

    def log(self, values):
        self.calls["logs"].append(values)

    def finish(self):
        self.calls["finished"] += 1


@pytest.fixture
def fake_wandb(monkeypatch):
    calls = {"init": [], "logs": [], "metrics": [], "finished": 0}

    def init(**kwargs):
        calls["init"].append(kwargs)
        return FakeRun(calls)

    monkeypatch.setitem(sys.modules, "wandb", types.SimpleNamespace(init=init))
    return calls


def test_a_run_logs_every_record_to_wandb_against_its_step(fake_wandb, minari_root, tiny_overrides, tmp_path):
    overrides = tiny_overrides + ["log.wandb=true", "log.wandb_project=ablations", "log.tensorboard=false"]
    advrl.train(RECIPES / "bc.yaml", overrides, run_dir=tmp_path / "run", progress=False)
    (init,) = fake_wandb["init"]
    assert init["project"] == "ablations" and init["group"] == "bc" and init["id"] is None
    assert init["config"]["train"]["steps"] == 20 and init["config"]["log"]["wandb"] is True
    assert ("*", "step") in fake_wandb["metrics"]
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r["kind"] == "train"]
    logged = [entry for entry in fake_wandb["logs"] if "train/loss_bc" in entry]
    assert [entry["step"] for entry in logged] == [r["step"] for r in train] == [10, 20]
    assert logged[-1]["train/loss_bc"] == pytest.approx(train[-1]["loss_bc"])
    assert any("eval/score_mean" in entry for entry in fake_wandb["logs"])
    assert fake_wandb["finished"] == 1
    assert (tmp_path / "run" / WANDB_ID_FILE).read_text() == "run123"
    assert not (tmp_path / "run" / "tb").exists()  # log.tensorboard=false


def test_a_resumed_run_continues_its_wandb_run(fake_wandb, tmp_path):
    (tmp_path / WANDB_ID_FILE).write_text("abc\n")
    WandbSink(tmp_path, resume_step=10, config={}, project="p", entity=None, group="g", name="n")
    WandbSink(tmp_path, resume_step=None, config={}, project="p", entity=None, group="g", name="n")  # a new run
    assert [(c["id"], c["resume"]) for c in fake_wandb["init"]] == [("abc", "allow"), (None, None)]


def test_wandb_asked_for_but_not_installed_fails_before_the_run_starts(monkeypatch, tiny_overrides, tmp_path):
    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb raises ImportError
    with pytest.raises(RecipeError, match="pip install wandb"):
        advrl.train(RECIPES / "bc.yaml", tiny_overrides + ["log.wandb=true"], run_dir=tmp_path / "run", progress=False)
    assert not (tmp_path / "run" / "recipe.yaml").exists()  # nothing of a run was written
