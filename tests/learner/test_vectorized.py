"""Vectorised seeds (advrl/learner/vectorized.py): replica k of a group is the single run with
seed k, for every shipped offline recipe; a replica gone non-finite stops the group by name;
each replica's folder is a single run's (resumable alone)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

import advrl
from advrl.cli import main as cli
from advrl.component import Component, option
from advrl.learner.checkpoint import safe_load
from advrl.learner.trainer import Trainer
from advrl.learner.update import NonFiniteLossError
from advrl.learner.vectorized import seed_run_dirs
from advrl.recipe import load_recipe
from advrl.registry import register

PACKAGED = Path(advrl.__file__).resolve().parent / "recipes"
OFFLINE_RECIPES = sorted(
    str(path.relative_to(PACKAGED).with_suffix(""))
    for path in PACKAGED.rglob("*.yaml")
    if path.name != "base.yaml" and path.parent.name != "online"
)


def _structure(value):
    """A recipe with its numbers blanked: components, keys, switches (booleans, choices, None)
    and updates stay, so two recipes of one structure run the same code on other numbers."""
    if isinstance(value, dict):
        return tuple(sorted((key, _structure(v)) for key, v in value.items()))
    if isinstance(value, list):
        return tuple(_structure(v) for v in value) if any(isinstance(v, dict | str | bool) for v in value) else "[numbers]"
    return "#" if isinstance(value, int | float) and not isinstance(value, bool) else value


def _by_structure() -> dict[tuple, list[str]]:
    groups: dict[tuple, list[str]] = {}
    for name in OFFLINE_RECIPES:
        recipe = OmegaConf.to_container(load_recipe(PACKAGED / f"{name}.yaml", check_flow=False))
        key = _structure({k: recipe.get(k) for k in ("components", "updates", "data")} | {"precision": recipe["train"]["precision"]})
        groups.setdefault(key, []).append(name)
    return groups


# one recipe per structure (24 of the 57 shipped): the per-dataset recipes differ from their
# family's only in numbers (weights, learning rates, network widths, which the test shrinks
# anyway), so each runs the code its representative runs here
STRUCTURES = _by_structure()
REPRESENTATIVES = [min(names, key=lambda name: (name.count("/"), name)) for names in STRUCTURES.values()]
# CQL's penalty (logsumexp over sampled actions, importance weights) is sensitive to the order
# of float sums: the same single run differs by ~5e-3 (relative norm) between 1 and 2 threads
# after 20 steps. Everything else agrees to ~1e-6; a wrong stream or parameter slice is off by
# 1e-2 or more.
TOLERANCE = {"cql": 2e-2, "ssar_cql": 2e-2}


def small(recipe_name: str, tiny_overrides: list[str]) -> list[str]:
    """Seconds-long runs: small networks and pre-training, no evaluation."""
    recipe = load_recipe(PACKAGED / f"{recipe_name}.yaml")
    overrides = [*tiny_overrides, "eval.episodes=0", "eval.final_episodes=0", "train.batch_size=16"]
    for slot, entry in recipe.components.items():
        if "hidden_sizes" in entry:
            overrides.append(f"components.{slot}.hidden_sizes=[16,16]")
        if "pretrain_steps" in entry:
            overrides += [f"components.{slot}.pretrain_steps=5", f"components.{slot}.batch_size=16"]
    return overrides


def component_states(run_dir: Path) -> dict[str, torch.Tensor]:
    state = safe_load(run_dir / "checkpoints" / "last.pt")
    return {f"{slot}.{key}": value for slot, sd in state["components"].items() for key, value in sd.items()}


def relative_difference(a: dict, b: dict) -> dict[str, float]:
    assert a.keys() == b.keys()
    return {key: ((a[key].double() - b[key].double()).norm() / a[key].double().norm().clamp(min=1e-12)).item()
            for key in a if a[key].is_floating_point()}


def train_rows(run_dir: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k.startswith("loss_")} for r in rows if r["kind"] == "train"]


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ADVRL_CACHE", str(tmp_path / "cache"))  # IQL labels of SSAR's selectors


def test_every_shipped_recipe_has_its_structure_checked():
    assert sorted(name for names in STRUCTURES.values() for name in names) == OFFLINE_RECIPES
    assert {"td3bc", "iql", "cql", "bc", "a2pr", "a2po", "ssar_td3bc", "ssar_cql"} <= set(REPRESENTATIVES)


@pytest.mark.parametrize("recipe_name", REPRESENTATIVES)
def test_replica_k_is_the_single_run_with_seed_k(recipe_name, minari_root, tiny_overrides, tmp_path):
    overrides = small(recipe_name, tiny_overrides)
    recipe = PACKAGED / f"{recipe_name}.yaml"
    single = Trainer(load_recipe(recipe, [*overrides, "seed=3"]), tmp_path / "single", progress=False)
    single.fit()
    advrl.train_seeds(recipe, [5, 3], overrides, run_dir=tmp_path / "group", progress=False)
    replica = tmp_path / "group" / "seed3"
    differences = relative_difference(component_states(tmp_path / "single"), component_states(replica))
    worst = max(differences, key=differences.get)
    assert differences[worst] < TOLERANCE.get(recipe_name, 1e-4), (worst, differences[worst])
    # the first logged losses come from the same initialisation, batch and noise
    first_single, first_replica = train_rows(tmp_path / "single")[0], train_rows(replica)[0]
    assert first_single.keys() == first_replica.keys()
    for key in first_single:
        assert first_replica[key] == pytest.approx(first_single[key], rel=1e-4, abs=1e-6), key
    # and replica 5 is not replica 3 (each has its own seed)
    other = relative_difference(component_states(replica), component_states(tmp_path / "group" / "seed5"))
    assert max(other.values()) > 1e-2


@register("constraint", "test_diverging_bc")
class DivergingBC(Component):
    """Behaviour cloning whose loss turns infinite from step ``from_step`` (TD3+BC: the first actor
    step from it, 16) in a replica whose
    initialisation drew a positive ``flag`` (seed-dependent, so only some replicas diverge)."""

    @dataclass
    class Config:
        from_step: int = option(15, "first step with an infinite loss", ge=1)
        weight: float = option(1.0, "unused; td3bc.yaml sets it")

    reads = ("action", "policy_action")
    losses = ("loss_bc",)

    def __init__(self, config, spec):
        super().__init__(config, spec)
        self.register_buffer("flag", torch.randn(()))

    def compute(self, td, step):
        loss = ((td["policy_action"] - td["action"]) ** 2).mean()
        if step >= self.config.from_step:
            loss = loss + torch.where(self.flag > 0, torch.inf, 0.0)
        return {"loss_bc": loss}


def test_a_replica_gone_non_finite_stops_the_group_naming_it(minari_root, tiny_overrides, tmp_path):
    overrides = [*small("td3bc", tiny_overrides), "components.constraint.name=test_diverging_bc",
                 "train.log_every=5", "train.checkpoint_every=10"]
    flags = {}  # which seeds draw a positive flag, as their runs build themselves
    for seed in range(6):
        trainer = Trainer(load_recipe(PACKAGED / "td3bc.yaml", [*overrides, f"seed={seed}"]), tmp_path / f"probe{seed}",
                          progress=False)
        flags[seed] = bool(trainer.components["constraint"].flag > 0)
    bad = next(s for s, f in flags.items() if f)
    good = next(s for s, f in flags.items() if not f)
    with pytest.raises(NonFiniteLossError, match=rf"seed {bad} at step 16"):
        advrl.train_seeds(PACKAGED / "td3bc.yaml", [good, bad], overrides, run_dir=tmp_path / "group", progress=False)
    for seed in (good, bad):
        run = tmp_path / "group" / f"seed{seed}"
        assert safe_load(run / "checkpoints" / "last.pt")["step"] == 10  # intact, nothing after the divergence
        assert f"seed {bad}" in (run / "error.txt").read_text()


def test_a_replica_resumes_alone_as_the_single_run(minari_root, tiny_overrides, tmp_path):
    # the actor's cosine schedule spans train.steps: fixed at 20 so that growing 10 -> 20 changes nothing
    overrides = [*small("iql", tiny_overrides), "train.checkpoint_every=10",
                 "updates.actor.optimize.actor.lr_schedule.steps=20"]
    recipe = PACKAGED / "iql.yaml"
    advrl.train_seeds(recipe, [0, 1], [*overrides, "train.steps=10"], run_dir=tmp_path / "group", progress=False)
    advrl.resume(tmp_path / "group" / "seed1", progress=False, overrides=["train.steps=20"])
    advrl.train(recipe, [*overrides, "seed=1"], run_dir=tmp_path / "single", progress=False)
    differences = relative_difference(component_states(tmp_path / "single"), component_states(tmp_path / "group" / "seed1"))
    assert max(differences.values()) < 1e-4
    # the group resumed together continues as well
    assert cli(["train", "--resume", str(tmp_path / "group"), "train.steps=20", "--vectorize", "--no-progress"]) != 0  # seed1 at 20, seed0 at 10
    advrl.resume(tmp_path / "group" / "seed0", progress=False, overrides=["train.steps=20"])
    assert cli(["train", "--resume", str(tmp_path / "group"), "train.steps=30", "--vectorize", "--no-progress"]) == 0
    assert {safe_load(p / "checkpoints" / "last.pt")["step"] for p in (tmp_path / "group").iterdir()} == {30}


def test_cli_trains_seeds_vectorised_into_their_own_folders(minari_root, tiny_overrides, tmp_path, capsys):
    args = ["train", str(PACKAGED / "td3bc.yaml"), "seed=0,2", *small("td3bc", tiny_overrides), "--vectorize",
            "--run-dir", str(tmp_path / "g"), "--no-progress"]
    assert cli(args) == 0
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert [p["run_dir"] for p in printed] == [str(tmp_path / "g" / "seed0"), str(tmp_path / "g" / "seed2")]
    for seed in (0, 2):
        saved = load_recipe(tmp_path / "g" / f"seed{seed}" / "recipe.yaml")
        assert saved.seed == seed
    # without --run-dir: one group folder per command under runs/<name>/<dataset>/, a folder per seed
    default = seed_run_dirs(saved, [0, 2], None)
    assert [d.name for d in default] == ["seed0", "seed2"] and default[0].parent == default[1].parent
    assert default[0].parent.parent == Path("runs") / saved.name / str(saved.dataset.id).replace("/", "-")
    assert default[0].parent.name.startswith("seeds0-2-")


@pytest.mark.parametrize("overrides, message", [
    (["seed=0,x"], "not a list of integer seeds"),
    ([], "give them as one override"),
    (["seed=1,1"], "must be distinct"),
])
def test_cli_refuses_bad_seed_lists_in_one_line(overrides, message, minari_root, tmp_path, capsys):
    code = cli(["train", str(PACKAGED / "td3bc.yaml"), *overrides, "--vectorize", "--run-dir", str(tmp_path / "g")])
    err = capsys.readouterr().err
    assert code != 0 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "g").exists()


def test_runs_of_different_recipes_are_not_resumed_together(minari_root, tiny_overrides, tmp_path, capsys):
    overrides = small("td3bc", tiny_overrides)
    advrl.train(PACKAGED / "td3bc.yaml", [*overrides, "seed=0"], run_dir=tmp_path / "g" / "seed0", progress=False)
    advrl.train(PACKAGED / "td3bc.yaml", [*overrides, "seed=1", "components.constraint.weight=2.0"],
                run_dir=tmp_path / "g" / "seed1", progress=False)
    assert cli(["train", "--resume", str(tmp_path / "g"), "--vectorize", "--no-progress"]) != 0
    assert "another recipe" in capsys.readouterr().err


def test_a_vectorised_update_refuses_noise_drawn_around_advrl_noise(minari_root, tiny_overrides, tmp_path):
    """A component drawing from torch's global generator would make replica k differ from the
    single run k without a word: vmap refuses it on the first step."""
    with pytest.raises(RuntimeError, match="randomness"):
        advrl.train_seeds(PACKAGED / "td3bc.yaml", [0, 1],
                          [*small("td3bc", tiny_overrides), "components.constraint.name=test_global_noise_bc"],
                          run_dir=tmp_path / "g", progress=False)


@register("constraint", "test_global_noise_bc")
class GlobalNoiseBC(Component):
    @dataclass
    class Config:
        weight: float = 1.0

    reads = ("action", "policy_action")
    losses = ("loss_bc",)

    def compute(self, td, step):
        jitter = torch.randn_like(td["action"]) * 0.01  # should be advrl.noise.randn_like
        return {"loss_bc": ((td["policy_action"] - td["action"] - jitter) ** 2).mean()}


def test_a_replica_is_fine_tuned_and_evaluated_like_a_single_run(minari_root, tiny_overrides, tmp_path):
    from advrl.learner.finetune import finetune

    overrides = [*small("ssar_td3bc", tiny_overrides), "components.threshold.period=10"]
    advrl.train_seeds(PACKAGED / "ssar_td3bc.yaml", [0, 1], overrides, run_dir=tmp_path / "group", progress=False)
    online = ["online.steps=30", "online.learning_starts=10", "online.anneal_steps=20", "eval.every=30", "eval.episodes=1",
              "eval.final_episodes=1", "train.log_every=10", "train.checkpoint_every=30", "train.batch_size=16"]
    result = finetune(tmp_path / "group" / "seed1", online, progress=False)
    assert result.steps == 30 and result.final_return is not None
    assert OmegaConf.load(tmp_path / "group" / "seed1" / "finetune" / "recipe.yaml").seed == 1
    run = advrl.load_run(tmp_path / "group" / "seed0")
    assert run.step == 20 and run.policy(np.zeros(run.info.obs_dim, dtype=np.float32)).shape == (run.info.action_dim,)


def test_several_seeds_without_vectorize_are_refused_naming_the_flag(tmp_path, capsys):
    assert cli(["train", str(PACKAGED / "td3bc.yaml"), "seed=0,1", "--run-dir", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "--vectorize" in err and len(err.strip().splitlines()) == 1 and not (tmp_path / "r").exists()


def test_gradients_stacked_over_seeds_are_clipped_seed_by_seed():
    from advrl.learner.fused_adam import clip_grad_norm

    gen = torch.Generator().manual_seed(0)
    grads = [torch.randn(3, 4, 5, generator=gen), torch.randn(3, 5, generator=gen)]
    grads[0][1] *= 100  # seed 1 far above the bound, seed 0 and 2 below it
    stacked = [g.clone() for g in grads]
    clip_grad_norm(stacked, 8.0, per_replica=True)
    for k in range(3):
        alone = [g[k].clone() for g in grads]
        clip_grad_norm(alone, 8.0)
        for a, b in zip(alone, stacked):
            torch.testing.assert_close(b[k], a)
    assert torch.linalg.vector_norm(torch.cat([g[1].flatten() for g in stacked])) == pytest.approx(8.0, rel=1e-4)
