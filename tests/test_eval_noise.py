"""`advrl eval` over a study: noise levels evaluated per run, saved in the run, read by compare."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import advrl
from advrl import compare
from advrl.cli import main
from tests.conftest import RECIPES, TINY_ID


@pytest.fixture(scope="module")
def study(tmp_path_factory, minari_root) -> Path:
    """A folder holding two tiny BC runs (seeds 0 and 1), as a sweep leaves them."""
    folder = tmp_path_factory.mktemp("study")
    overrides = [f"dataset.id={TINY_ID}", "train.steps=20", "train.batch_size=32", "train.log_every=10",
                 "train.checkpoint_every=10", "train.device=cpu", "eval.every=20", "eval.episodes=1", "eval.final_episodes=0"]
    for seed in (0, 1):
        advrl.train(RECIPES / "bc.yaml", [*overrides, f"seed={seed}"], run_dir=folder / f"seed={seed}", progress=False)
    return folder


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_eval_over_a_folder_saves_each_level_in_each_run_and_skips_a_repeat(study, tmp_path, capsys):
    out = tmp_path / "noise.json"
    argv = ["eval", str(study), "--obs-noise", "0,0.1", "--episodes", "2", "--json", str(out)]
    assert main(argv) == 0
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(printed) == 4 and not any(r["skipped"] for r in printed)
    result = json.loads(out.read_text())
    assert sorted(result) == [str(study / "seed=0"), str(study / "seed=1")]
    for run in ("seed=0", "seed=1"):
        saved = lines(study / run / "eval_noise.jsonl")
        assert [(r["obs_noise"], r["noise_space"], r["episodes"], r["step"]) for r in saved] == [(0.0, "raw", 2, 20), (0.1, "raw", 2, 20)]
        seed = 0 if run == "seed=0" else 1
        assert all(r["seed"] == seed + 100 and {"return_mean", "return_std", "score_mean", "score_std"} <= set(r) for r in saved)
        assert [r["score_mean"] for r in result[str(study / run)]] == [r["score_mean"] for r in saved]
    # the same evaluation of the same checkpoint is not computed again; --force computes it again
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert all(json.loads(line)["skipped"] for line in captured.out.splitlines())
    assert "4 evaluation(s) already saved" in captured.err
    assert len(lines(study / "seed=0" / "eval_noise.jsonl")) == 2
    assert main(["eval", str(study / "seed=0"), "--obs-noise", "0.1", "--episodes", "2", "--force"]) == 0
    assert not json.loads(capsys.readouterr().out)["skipped"]
    assert len(lines(study / "seed=0" / "eval_noise.jsonl")) == 3
    assert len(advrl.load_run(study / "seed=0").noise_results()) == 2  # the forced one replaces its twin
    # compare reads them: a robustness table by noise level, IQM [CI] over the two runs
    summaries, text = compare.compare([str(study)], reps=200)
    assert "Robustness to observation noise (`advrl eval`, σ added to raw observations" in text
    header = next(line for line in text.splitlines() if line.startswith("| run | σ="))
    assert header == "| run | σ=0 | σ=0.1 |"
    row = next(line for line in text.splitlines() if line.startswith("| bc | ") and "(2) |" in line)
    assert row.count("(2)") == 2
    capsys.readouterr()
    assert main(["compare", str(study), "--json", str(tmp_path / "summary.json"), "--reps", "200"]) == 0
    assert "| run | σ=0 | σ=0.1 |" in capsys.readouterr().out
    noise = json.loads((tmp_path / "summary.json").read_text())["bc"]["noise"]["raw"]
    scores = sorted(lines(study / run / "eval_noise.jsonl")[0]["score_mean"] for run in ("seed=0", "seed=1"))
    assert noise["0"]["runs"] == 2 and sorted(noise["0"]["scores"][TINY_ID]) == scores
    assert noise["0"]["mean"] == pytest.approx(np.mean(scores)) and len(noise["0"]["iqm_ci"]) == 2


def test_a_run_without_a_checkpoint_is_skipped_with_a_warning_among_others(study, tmp_path, capsys):
    from tests.test_compare import make_run

    shutil.copytree(study / "seed=0", tmp_path / "seed=0")
    make_run(tmp_path / "seed=1", "bc", 1, [1.0])  # records, but no checkpoint yet
    assert main(["eval", str(tmp_path), "--obs-noise", "0.2", "--episodes", "1"]) == 0
    captured = capsys.readouterr()
    assert [json.loads(line)["run_dir"] for line in captured.out.splitlines()] == [str(tmp_path / "seed=0")]
    assert f"advrl: warning: {tmp_path / 'seed=1'} not evaluated: No checkpoint in" in captured.err
    assert main(["eval", str(tmp_path / "seed=1")]) == 1  # alone, it is an error
    assert "advrl: error: No checkpoint in" in capsys.readouterr().err


def test_bad_noise_levels_and_episodes_are_one_line_errors(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["eval", "somewhere", "--obs-noise", "0,-0.1"])
    assert exit_.value.code == 2 and "-0.1 is not a finite std >= 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["eval", "somewhere", "--noise-space", "normalised"])
    assert "invalid choice: 'normalised'" in capsys.readouterr().err
    assert main(["eval", "/nonexistent/run"]) == 1
    assert capsys.readouterr().err.strip() == "advrl: error: /nonexistent/run does not exist."


def test_standardised_noise_is_sigma_dataset_stds_on_each_raw_dimension(study):
    """An echo policy records what it is shown: the first observation of each episode, noisy,
    against a hand computation of the noise (the same standard normals at every level)."""
    run = advrl.load_run(study / "seed=0")
    seen = []

    def echo(obs):
        seen.append(np.array(obs, dtype=np.float64))
        return np.zeros((len(obs), run.info.action_dim), dtype=np.float32)

    run.policy = echo  # the instance's policy, for this test only

    def first_obs(sigma, space):
        seen.clear()
        run.evaluate(episodes=2, obs_noise=sigma, noise_space=space)
        return seen[0]

    clean = first_obs(0.0, "raw")
    assert np.array_equal(clean, first_obs(0.0, "standardised"))  # sigma 0: the spaces agree
    z = np.random.default_rng(run.evaluation_seed()).standard_normal(size=clean.shape)
    std = run.normalizer.std.numpy().astype(np.float64)
    assert not np.allclose(std, 1.0)  # Hopper's dimensions have different scales: the spaces differ
    np.testing.assert_allclose(first_obs(0.5, "raw") - clean, 0.5 * z, atol=1e-5)
    np.testing.assert_allclose(first_obs(0.5, "standardised") - clean, 0.5 * z * std, atol=1e-5)
    # the actor sees N(0, 0.5^2) on its standardised input
    standardised = (first_obs(0.5, "standardised") - run.normalizer.mean.numpy()) / std
    np.testing.assert_allclose(standardised - (clean - run.normalizer.mean.numpy()) / std, 0.5 * z, atol=1e-4)
