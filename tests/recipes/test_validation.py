"""Recipes are checked when they are loaded: option ranges and choices, the shared schema, the
device, interpolations, imports and the data flow, each failing with one line that names the
key; and loaded recipes hold every component default, so a saved run does not depend on them."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

import advrl
from advrl.cli import main
from advrl.data import catalog
from advrl.recipe import RecipeError, load_recipe
from advrl.sweep import expand_grid

REPO = Path(__file__).resolve().parents[2]
RECIPES = REPO / "recipes"
TD3BC = str(RECIPES / "td3bc.yaml")

# override -> the message it must fail with (each one exited 0 or failed late before)
OUT_OF_RANGE = {
    "train.steps=-5": "train.steps=-5 is out of range: must be >= 1.",
    "eval.episodes=-1": "eval.episodes=-1 is out of range: must be >= 0.",
    "eval.every=-1": "eval.every=-1 is out of range: must be >= 0.",
    "components.critic_loss.gamma=1.5": "components.critic_loss.gamma=1.5 is out of range: must be in [0, 1].",
    "components.actor_loss.alpha=-1": "components.actor_loss.alpha=-1 is out of range: must be >= 0.",
    "train.batch_size=0": "train.batch_size=0 is out of range: must be >= 1.",
    "train.log_every=0": "train.log_every=0 is out of range: must be >= 1.",
    "train.checkpoint_every=0": "train.checkpoint_every=0 is out of range: must be >= 1.",
    "eval.obs_noise=-0.1": "eval.obs_noise=-0.1 is out of range: must be >= 0.",
    "updates.critic.optimize.critic.lr=0": "updates.critic.optimize.critic.lr=0.0 is out of range: must be > 0.",
    "updates.actor.every=0": "updates.actor.every=0 is out of range: must be >= 1.",
    "updates.actor.tau=1.5": "updates.actor.tau=1.5 is out of range: must be in [0, 1].",
    "components.critic.num_q=0": "components.critic.num_q=0 is out of range: must be >= 1.",
    "components.critic.hidden_sizes=[256,0]": "components.critic.hidden_sizes=[256, 0] has an entry 0 that is out of range: must be >= 1.",
    "seed=-1": "seed=-1 is out of range: must be >= 0.",
}
NOT_A_CHOICE = {
    "components.actor_loss.q=mni": "components.actor_loss.q=mni is not allowed: must be one of min, mean, q1. Did you mean 'min'?",
    "components.critic.activation=rleu": "components.critic.activation=rleu is not allowed",
    "components.critic.init=orthogonl": "Did you mean 'orthogonal'?",
    "data.reward_normalization=return": "data.reward_normalization=return is not allowed: must be one of none, returns.",
    "updates.actor.optimize.actor.name=sgd": "updates.actor.optimize.actor.name=sgd is not allowed: must be one of adam, adamw.",
    "online.anneal=cos": "online.anneal=cos is not allowed",
}
# cases beyond ranges and choices: each names the key or file and the fix
OTHER_ERRORS = {
    "train.device=tpu": "train.device=tpu is not a known device: use auto, cpu, cuda or cuda:N.",
    "imports=[advrl_no_such_module]": "Recipe key 'imports' names module 'advrl_no_such_module', which cannot be imported",
    "eval.every=${train.nope}": "eval.every=${train.nope} refers to a key the recipe does not have",
    "components.critic.num_q=${train.nope}": "components.critic.num_q=${train.nope} refers to a key the recipe does not have",
    "components.constraint.name=awr": "reads batch key 'advantage', which neither the dataset nor any earlier term",
    "eval.policy=critic": "eval.policy names 'critic', which is not an actor slot",
}
if not torch.cuda.is_available():
    OTHER_ERRORS["train.device=cuda"] = "train.device=cuda asks for CUDA, which is not available here: use auto"
ALL_ERRORS = {**OUT_OF_RANGE, **NOT_A_CHOICE, **OTHER_ERRORS}


@pytest.mark.parametrize("override", list(OUT_OF_RANGE))
def test_values_out_of_range_fail_when_loaded(override):
    with pytest.raises(RecipeError) as err:
        load_recipe(TD3BC, [override])
    assert str(err.value) == OUT_OF_RANGE[override]


@pytest.mark.parametrize("override", list(NOT_A_CHOICE))
def test_values_outside_their_choices_fail_when_loaded(override):
    with pytest.raises(RecipeError, match="not allowed") as err:
        load_recipe(TD3BC, [override])
    assert NOT_A_CHOICE[override] in str(err.value)


def test_the_bounds_themselves_are_allowed():
    """0 disables periodic evaluation; gamma 1 and alpha 0 are legal; just past a bound is not."""
    recipe = load_recipe(TD3BC, ["eval.every=0", "eval.episodes=0", "components.critic_loss.gamma=1", "components.actor_loss.alpha=0"])
    assert recipe.eval.every == 0 and recipe.components.critic_loss.gamma == 1
    with pytest.raises(RecipeError, match="out of range"):
        load_recipe(TD3BC, ["components.critic_loss.gamma=1.000001"])


def test_ranges_of_interpolated_values_are_checked_once_resolved(tmp_path):
    """A value that is an interpolation of the dataset's facts is checked when they are known."""
    (tmp_path / "r.yaml").write_text(f"extends: {TD3BC}\ncomponents:\n  critic: {{num_q: '${{int_mul:${{dataset.obs_dim}},0}}'}}\n")
    with pytest.raises(RecipeError, match=r"components.critic.num_q=0 is out of range: must be >= 1."):
        load_recipe(tmp_path / "r.yaml")


def test_make_checks_ranges_too():
    with pytest.raises(RecipeError, match="num_q=0 is out of range"):
        advrl.make("critic", "q_ensemble", spec=advrl.DataSpec(obs_dim=3, action_dim=2), num_q=0)


def test_describe_shows_allowed_values(capsys):
    assert main(["components", "objective", "td3_critic"]) == 0
    card = capsys.readouterr().out.splitlines()
    assert "  gamma: float = 0.99  (in [0, 1])" in card
    assert main(["components", "objective", "td3_actor"]) == 0
    assert "  q: str = 'q1'  (one of min, mean, q1)" in capsys.readouterr().out.splitlines()


def _one_line_error(capsys, argv: list[str]) -> str:
    code = main(argv)  # an unexpected exception would escape here, with its traceback
    err = capsys.readouterr().err.strip()
    assert code == 1, err
    assert err.startswith("advrl: error: ") and "\n" not in err and "Traceback" not in err
    return err


@pytest.mark.parametrize("override", list(ALL_ERRORS))
def test_recipe_show_fails_in_one_line(override, capsys):
    assert ALL_ERRORS[override] in _one_line_error(capsys, ["recipe", "show", TD3BC, override])


@pytest.mark.parametrize("override", list(ALL_ERRORS))
def test_train_fails_in_one_line_before_any_run_folder(override, minari_root, tiny_overrides, tmp_path, capsys):
    run_dir = tmp_path / "run"
    err = _one_line_error(capsys, ["train", TD3BC, *tiny_overrides, override, "--run-dir", str(run_dir), "--no-progress"])
    assert ALL_ERRORS[override] in err
    assert not run_dir.exists()


def test_the_cli_process_prints_no_traceback():
    """The installed entry point, as a user runs it: a one-line error and exit code 1."""
    proc = subprocess.run(
        [sys.executable, "-m", "advrl.cli", "recipe", "show", TD3BC, "components.actor_loss.q=mni"],
        capture_output=True, text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [f"advrl: error: {NOT_A_CHOICE['components.actor_loss.q=mni']}"]


@pytest.fixture
def read_only_dir(tmp_path):
    """A folder this process cannot write in, even as root (immutable flag)."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    immutable = False
    if os.access(folder, os.W_OK):  # root ignores permission bits
        immutable = subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode == 0
        if not immutable:
            folder.chmod(0o755)
            pytest.skip("cannot make a folder read-only here")
    yield folder
    if immutable:
        subprocess.run(["chattr", "-i", str(folder)], check=True)
    folder.chmod(0o755)


@pytest.mark.parametrize("where", ["inside", "itself"])
def test_read_only_run_folder_is_a_one_line_error(where, read_only_dir, minari_root, tiny_overrides, capsys):
    run_dir = read_only_dir / "run" if where == "inside" else read_only_dir
    err = _one_line_error(capsys, ["train", TD3BC, *tiny_overrides, "--run-dir", str(run_dir), "--no-progress"])
    assert f"cannot write {run_dir}" in err and "choose another one (--run-dir" in err


def test_run_folder_below_a_file_is_a_one_line_error(minari_root, tiny_overrides, tmp_path, capsys):
    (tmp_path / "file").write_text("")
    run_dir = tmp_path / "file" / "run"
    err = _one_line_error(capsys, ["train", TD3BC, *tiny_overrides, "--run-dir", str(run_dir), "--no-progress"])
    assert f"cannot write {run_dir} (Not a directory)" in err


def test_a_second_data_make_of_one_id_fails_naming_the_first(minari_root, capsys):
    dataset_id = "advrl/hopper/random-1k-v0"
    with catalog.make_lock(dataset_id):  # as a first `advrl data make` holding it would
        err = _one_line_error(capsys, ["data", "make", dataset_id])
    assert f"Dataset {dataset_id!r} is being built by another process (pid {os.getpid()}" in err
    assert not os.path.exists(os.path.join(minari_root, dataset_id))


def test_make_lock_is_taken_by_every_build(minari_root, monkeypatch):
    """The lock guards catalog.build itself, so a build on first use is covered as well."""
    held = []

    def fake_build(dataset_id, *args):
        lock = os.path.join(minari_root, ".advrl-make-" + dataset_id.replace("/", "--") + ".lock")
        with open(lock) as handle, pytest.raises(BlockingIOError):
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        held.append(dataset_id)
        return "path"

    monkeypatch.setattr(catalog, "_build", fake_build)
    assert catalog.build("advrl/hopper/random-1k-v0") == "path" and held


def test_sweep_checks_every_point_before_any_run(minari_root, tiny_overrides, tmp_path, capsys):
    out = tmp_path / "sweep"
    grid = ["components.constraint.name=bc_mse,awr", *tiny_overrides]
    err = _one_line_error(capsys, ["sweep", TD3BC, *grid, "--out", str(out), "--workers", "1"])
    assert "sweep point components.constraint.name=awr: components.constraint (constraint 'awr') reads batch key 'advantage'" in err
    assert not out.exists()  # not even the bc_mse point started


def test_readme_sweep_example_loads():
    readme = (REPO / "README.md").read_text()
    command = readme.split("**Sweeps.** `advrl sweep ", 1)[1].split("--out", 1)[0].split()
    assert command[0] == "recipes/td3bc.yaml"
    for point in expand_grid(command[1:]):
        load_recipe(REPO / command[0], point)


# ---- saved recipes hold every default -------------------------------------------------------
def test_loaded_recipes_hold_every_component_default():
    td3bc = load_recipe(TD3BC)
    assert td3bc.components.critic.layer_norm is False  # not written in td3bc.yaml
    assert td3bc.components.critic.init == "default"
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    a2pr = load_recipe(RECIPES / "a2pr.yaml")  # builds its components for the data-flow check ...
    assert torch.equal(torch.rand(3), expected)  # ... without moving the caller's random state
    assert "latent_dim" in a2pr.components.behavior


def test_recipe_show_prints_every_default(capsys):
    assert main(["recipe", "show", TD3BC]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown["components"]["critic"]["layer_norm"] is False
    assert shown["components"]["constraint"]["mask_key"] is None
    assert main(["recipe", "show", str(RECIPES / "a2pr.yaml")]) == 0
    assert "latent_dim" in yaml.safe_load(capsys.readouterr().out)["components"]["behavior"]


def test_a_runs_saved_recipe_holds_every_default(minari_root, tiny_overrides, tmp_path):
    overrides = [*tiny_overrides, "train.steps=2", "eval.episodes=0"]
    result = advrl.train(TD3BC, overrides, run_dir=tmp_path / "run", progress=False)
    saved = yaml.safe_load((Path(result.run_dir) / "recipe.yaml").read_text())
    assert saved["components"]["critic"]["layer_norm"] is False
    assert saved["components"]["actor"]["activation"] == "relu"
    # a recipe built in Python is saved complete too
    recipe = load_recipe(TD3BC, overrides)
    del recipe.components.critic["layer_norm"]
    result = advrl.train(recipe, run_dir=tmp_path / "python", progress=False)
    assert "layer_norm" in yaml.safe_load((Path(result.run_dir) / "recipe.yaml").read_text())["components"]["critic"]


def test_eval_device_is_checked_like_train_device(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", str(tmp_path), "--device", "tpu"])
    assert exit_info.value.code == 2
    assert "argument --device: tpu is not a known device: use auto, cpu, cuda or cuda:N." in capsys.readouterr().err


def test_a_resumed_run_keeps_the_defaults_it_started_with(minari_root, tiny_overrides, tmp_path, monkeypatch):
    """A default changed by a later version (here: the critic's layer_norm) must not reach a
    run that started before: its saved recipe names the value it was built with."""
    import dataclasses

    from omegaconf import OmegaConf

    from advrl.components.critics.q_ensemble import QEnsemble

    run_dir = tmp_path / "run"
    advrl.train(TD3BC, [*tiny_overrides, "train.steps=10", "eval.episodes=0"], run_dir=run_dir, progress=False)
    layer_norm = {f.name: f for f in dataclasses.fields(QEnsemble.Config)}["layer_norm"]
    monkeypatch.setattr(layer_norm, "default", True)
    assert OmegaConf.structured(QEnsemble.Config).layer_norm is True  # the "new version"
    result = advrl.resume(run_dir, progress=False)  # loads the checkpoint into critics without LayerNorm
    assert result.steps == 10
    assert yaml.safe_load((run_dir / "recipe.yaml").read_text())["components"]["critic"]["layer_norm"] is False
