"""The advrl command line: components, recipe show, train, eval, error exit codes."""

from __future__ import annotations

import json
from pathlib import Path

from advrl.cli import main

RECIPES = Path(__file__).resolve().parent.parent / "recipes"


def test_components_lists_kinds_and_describes_one(capsys):
    assert main(["components"]) == 0
    out = capsys.readouterr().out
    assert "constraint" in out and "bc_mse" in out and "q_ensemble" in out
    assert main(["components", "objective", "td3_actor"]) == 0
    card = capsys.readouterr().out
    assert "alpha: float = 2.5" in card and "losses:         loss_actor" in card and "logs (scalars): lambda" in card


def test_unknown_component_is_an_error_with_close_match(capsys):
    assert main(["components", "constraint", "bc_mes"]) == 1
    assert "Closest: 'bc_mse'" in capsys.readouterr().err


def test_recipe_show_prints_resolved_recipe_with_overrides(capsys):
    assert main(["recipe", "show", str(RECIPES / "iql.yaml"), "train.steps=500"]) == 0
    out = capsys.readouterr().out
    assert "steps: 500" in out
    assert "expectile: 0.7" in out
    assert "${" not in out  # interpolations resolved


def test_recipe_error_exits_1_naming_the_key(capsys):
    assert main(["recipe", "show", str(RECIPES / "td3bc.yaml"), "components.constraint.alpah=1"]) == 1
    assert "components.constraint.alpah" in capsys.readouterr().err


def test_train_then_eval_with_observation_noise(minari_root, tiny_overrides, tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert main(["train", str(RECIPES / "td3bc.yaml"), *tiny_overrides, "--run-dir", str(run_dir), "--no-progress"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["steps"] == 20 and "final_normalized_score" in summary
    assert main(["eval", str(run_dir), "--episodes", "2", "--obs-noise", "0.1"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["obs_noise"] == 0.1 and "score_mean" in result and result["step"] == 20


def test_resume_rejects_a_recipe_and_overrides_that_change_what_was_trained(capsys):
    assert main(["train", "--resume", "somewhere", "recipes/td3bc.yaml"]) == 2
    assert "takes no recipe (recipes/td3bc.yaml)" in capsys.readouterr().err
    assert main(["train", "--resume", "somewhere", "seed=3"]) == 1
    assert capsys.readouterr().err.startswith("advrl: error: seed cannot be changed on resume")


def test_options_may_stand_between_a_commands_positionals():
    """`advrl sweep R --out D seed=0,1` and `advrl train R --vectorize seed=0,1` mean what they say
    (plain argparse refuses the overrides as unrecognised once an option stands before them)."""
    from advrl.cli import build_parser

    parser = build_parser()
    args = parser.parse_args(["sweep", "r.yaml", "--out", "o", "seed=0,1", "--workers", "2", "train.steps=5"])
    assert (args.recipe, args.out, args.workers, args.overrides) == ("r.yaml", "o", 2, ["seed=0,1", "train.steps=5"])
    args = parser.parse_args(["train", "r.yaml", "--vectorize", "seed=0,1", "--no-progress", "train.steps=5"])
    assert (args.recipe, args.vectorize, args.no_progress, args.overrides) == ("r.yaml", True, True, ["seed=0,1", "train.steps=5"])
    args = parser.parse_args(["recipe", "diff", "a.yaml", "b.yaml", "x=1"])  # nested commands parse as before
    assert (args.a, args.b, args.overrides) == ("a.yaml", "b.yaml", ["x=1"])
    assert parser.parse_args(["eval", "run1", "--episodes", "2", "run2"]).runs == ["run1", "run2"]


def test_data_list_and_info(minari_root, capsys):
    assert main(["data", "list"]) == 0
    assert "advrl/hopper/random-v0" in capsys.readouterr().out
    assert main(["data", "info", "advrl/hopper/random-v0"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["n_transitions"] == 3000 and info["obs_dim"] == 11
    assert len(info["fingerprint"]) == 16  # the one a run trained on it records


def test_output_cut_short_by_the_reader_is_not_an_error():
    """`advrl components | head -1`: the reader leaves early; no traceback, exit status 0."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "advrl.cli", "components"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # before the process writes anything
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0 and b"Traceback" not in err, err.decode()


def test_recipe_diff_prints_what_differs_between_two_a2pr_variants(capsys):
    assert main(["recipe", "diff", "advrl:a2pr.yaml", "advrl:a2pr/hopper-medium.yaml", "components.constraint.weight=0.3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[:2] == ["A: advrl:a2pr.yaml", "B: advrl:a2pr/hopper-medium.yaml components.constraint.weight=0.3"]
    assert set(lines[2:]) == {
        "  name: a2pr -> a2pr-hopper-medium",
        "  dataset.id: advrl/hopper/medium-100k-v0 -> advrl/hopper/medium-v0",
        "  components.critic_loss.gamma: 0.99 -> 0.995",
        "  components.value.gamma: 0.99 -> 0.995",  # resolved: the interpolation follows the critic's gamma
        "  components.constraint.weight: 0.5 -> 0.3",
    }
    assert main(["recipe", "diff", "advrl:a2pr.yaml", "advrl:a2pr/ablations/plain_bc.yaml"]) == 0
    out = capsys.readouterr().out
    assert "- components.behavior: {name: vae, hidden_sizes: [750, 750]," in out
    assert "- updates.value: {terms: [value]," in out
    assert "  components.constraint.name: a2pr_adaptive -> bc_mse" in out
    assert main(["recipe", "diff", "advrl:td3bc.yaml", "advrl:td3bc.yaml"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "(no differences)"
    assert main(["recipe", "diff", "advrl:td3bc.yaml", "advrl:nope.yaml"]) == 1
    assert "does not exist" in capsys.readouterr().err
