"""`advrl compare`: run folders grouped into seeds, summarised with hand-computed numbers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from advrl import compare
from advrl.cli import main

RECIPES = Path(__file__).resolve().parent.parent / "recipes"


def make_run(folder: Path, name: str, seed: int, scores: list[float], *, steps: int = 20, dataset: str = "advrl/hopper/medium-v0",
             fingerprint: str = "a" * 16, extra: dict | None = None, reached: int | None = None,
             final: float | None = None) -> Path:
    """A run folder as `advrl train` leaves it: recipe.yaml and metrics.jsonl, one evaluation
    every steps/len(scores) steps (the last at ``reached``, default the budget), and a 100-episode
    ``final_eval`` record scoring ``final`` when given."""
    folder.mkdir(parents=True)
    recipe = {"name": name, "seed": seed, "dataset": {"id": dataset}, "train": {"steps": steps, "log_every": 5}, **(extra or {})}
    (folder / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    every = (reached or steps) // len(scores)
    rows = [{"kind": "dataset", "step": 0, "id": dataset, "n_transitions": 100, "n_episodes": 3, "fingerprint": fingerprint}]
    for i, score in enumerate(scores, start=1):
        rows.append({"kind": "train", "step": i * every, "steps_per_s": 10.0 * (seed + 1)})
        rows.append({"kind": "eval", "step": i * every, "score_mean": score, "return_mean": score * 30})
    if final is not None:
        rows.append({"kind": "final_eval", "step": len(scores) * every, "episodes": 100, "score_mean": final, "return_mean": final * 30})
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def add_finetune(run: Path, scores: list[float], steps: int = 10) -> None:
    phase = run / "finetune"
    phase.mkdir()
    (phase / "recipe.yaml").write_text(yaml.safe_dump({"name": "tuned", "online": {"steps": steps}}))
    (phase / "offline_run").write_text(str(run))
    every = steps // len(scores)
    rows = [{"kind": "eval", "step": (i + 1) * every, "score_mean": s, "return_mean": s} for i, s in enumerate(scores)]
    (phase / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_seeds_are_grouped_by_recipe_and_summarised(tmp_path):
    make_run(tmp_path / "td3bc" / "s0", "td3bc", 0, [10, 20, 30, 40])
    make_run(tmp_path / "td3bc" / "s1", "td3bc", 1, [30, 40, 50, 60])
    make_run(tmp_path / "td3bc" / "s2", "td3bc", 2, [90, 90], reached=10)  # stopped at step 10 of 20
    summaries, text = compare.compare([str(tmp_path / "td3bc")])
    (summary,) = summaries
    assert summary.label == "td3bc" and len(summary.runs) == 3
    s = summary.as_dict()
    # finals 40, 60; last-3 means (20+30+40)/3 = 30 and 50; the unfinished run counts in neither
    assert (s["final_score_mean"], s["final_score_std"]) == (50.0, 10.0)
    assert (s["last3_score_mean"], s["last3_score_std"]) == (40.0, 10.0)
    assert s["steps_per_s_median"] == 20.0  # speeds 10 x4, 20 x4, 30 x2
    lines = text.splitlines()
    assert lines[2] == "| td3bc | 2 of 3 | last 3 mean | 40.0 [30.0, 50.0] | 40.0 [30.0, 50.0] | 50.0 ± 10.0 | 40.0 ± 10.0 | 20.0 | — |"
    assert "dataset: advrl/hopper/medium-v0" in text and "warning" not in text


def test_an_online_phase_continues_the_curve_and_is_not_a_run_of_its_own(tmp_path):
    run = make_run(tmp_path / "a2pr" / "s0", "a2pr", 0, [10, 20], steps=10)
    add_finetune(run, [30, 50])
    assert compare.find_runs(tmp_path) == [run]
    record = compare.read_run(run)
    assert record.curve == [(5, 10.0), (10, 20.0), (15, 30.0), (20, 50.0)]
    assert record.finished and record.offline_final == 20.0 and record.online_start == 10
    (summary,), text = compare.compare([str(tmp_path)])
    # final 50; last three (20 + 30 + 50) / 3 = 33.3; offline phase ended at 20
    assert text.splitlines()[2] == "| a2pr | 1 | last 3 mean | 33.3 [33.3, 33.3] | 33.3 [33.3, 33.3] | 50.0 ± 0.0 | 33.3 ± 0.0 | 1: 20.0 ± 0.0 | 10.0 | — |"
    # beside it, an offline-only group says so instead of counting 0 offline phases
    make_run(tmp_path / "cql" / "s0", "cql", 0, [40, 60], steps=10)
    _, text = compare.compare([str(tmp_path / "a2pr"), str(tmp_path / "cql")])
    assert text.splitlines()[3] == "| cql | 1 | last 3 mean | 50.0 [50.0, 50.0] | 50.0 [50.0, 50.0] | 60.0 ± 0.0 | 50.0 ± 0.0 | no online phase | 10.0 | — |"
    # the fine-tuned policy's final evaluation scores the run; the offline phase's one does not
    with open(run / "metrics.jsonl", "a") as handle:
        handle.write(json.dumps({"kind": "final_eval", "step": 10, "episodes": 100, "score_mean": 99.0, "return_mean": 1}) + "\n")
    assert compare.read_run(run).score() == (pytest.approx(33.33, abs=0.01), "last 3 mean")
    with open(run / "finetune" / "metrics.jsonl", "a") as handle:
        handle.write(json.dumps({"kind": "final_eval", "step": 10, "episodes": 50, "score_mean": 44.0, "return_mean": 1}) + "\n")
    assert compare.read_run(run).score() == (44.0, "final eval (50 ep.)")
    (run / "finetune" / "metrics.jsonl").write_text(json.dumps({"kind": "eval", "step": 5, "score_mean": 30, "return_mean": 1}) + "\n")
    assert not compare.read_run(run).finished  # online phase at 5 of its 10 steps


def test_labels_datasets_and_mixed_configurations(tmp_path):
    make_run(tmp_path / "a" / "s0", "td3bc", 0, [1, 2])
    make_run(tmp_path / "a" / "s1", "td3bc", 1, [3, 4], extra={"components": {"constraint": {"alpha": 5.0}}})
    make_run(tmp_path / "b" / "s0", "td3bc", 0, [5, 6], dataset="advrl/hopper/expert-v0", fingerprint="b" * 16)
    groups = compare.group_runs([str(tmp_path / "a"), str(tmp_path / "b")])
    assert list(groups) == ["td3bc on advrl/hopper/medium-v0 (components.constraint.alpha=None)",
                            "td3bc on advrl/hopper/medium-v0 (components.constraint.alpha=5.0)", "td3bc on advrl/hopper/expert-v0"]
    make_run(tmp_path / "a" / "s2", "td3bc", 2, [5, 6], extra={"components": {"constraint": {"alpha": 5.0}}})
    # runs of one recipe that differ in more than the seed are separate groups, named by the override
    summaries, text = compare.compare([str(tmp_path / "a")])
    assert {s.label: len(s.runs) for s in summaries} == {
        "td3bc (components.constraint.alpha=None)": 1, "td3bc (components.constraint.alpha=5.0)": 2}
    assert "warning" not in text and "same build" not in text
    # a label groups what the user says belongs together, with a warning when it is not seeds
    _, text = compare.compare([f"mine={tmp_path / 'a'}"])
    assert "warning: the runs of 'mine' differ in components.constraint.alpha:" in text
    groups = compare.group_runs([f"plain={tmp_path / 'a' / 's0'}", f"alpha5={tmp_path / 'a' / 's1'}"])
    assert {label: len(runs) for label, runs in groups.items()} == {"plain": 1, "alpha5": 1}


def test_runs_of_one_dataset_on_different_builds_are_named(tmp_path):
    make_run(tmp_path / "s0", "td3bc", 0, [1, 2], fingerprint="b" * 16)
    make_run(tmp_path / "s1", "td3bc", 1, [1, 2], fingerprint="c" * 16)
    _, text = compare.compare([str(tmp_path)])
    assert "did not all train on the same build" in text
    assert f"- {'b' * 16} (3 episodes): {tmp_path / 's0'}" in text


def test_table_and_json_give_iqm_mean_with_intervals_and_probability_of_improvement(tmp_path, capsys):
    # four seeds of td3bc with final evaluations 10, 20, 30, 100 (IQM: 25, the mean of 20 and 30);
    # two of iql without, scored by their last-3 means 5 and 6: every td3bc run beats every iql run
    for seed, final in enumerate([10.0, 20.0, 30.0, 100.0]):
        make_run(tmp_path / "td3bc" / f"s{seed}", "td3bc", seed, [0, 0, 0, 0], final=final)
    make_run(tmp_path / "iql" / "s0", "iql", 0, [1, 5, 5, 5])
    make_run(tmp_path / "iql" / "s1", "iql", 1, [1, 6, 6, 6])
    summary_json, profile = tmp_path / "summary.json", tmp_path / "profile.png"
    assert main(["compare", str(tmp_path / "td3bc"), str(tmp_path / "iql"), "--json", str(summary_json),
                 "--profile", str(profile), "--reps", "300"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("| run | seeds done | normalised score per run | IQM [95 % CI] | mean [95 % CI] |")
    td3bc, iql = (next(line for line in lines if line.startswith(f"| {name} |")) for name in ("td3bc", "iql"))
    cells = [cell.strip() for cell in td3bc.split("|")[1:-1]]
    assert cells[2] == "final eval (100 ep.)" and cells[3].startswith("25.0 [") and cells[4].startswith("40.0 [")
    assert iql.startswith("| iql | 2 | last 3 mean | 5.5 [5.0, 6.0] | 5.5 [5.0, 6.0] |")
    assert "| td3bc | — | 1.00 [1.00, 1.00] |" in lines and "| iql | 0.00 [0.00, 0.00] | — |" in lines
    result = json.loads(summary_json.read_text())
    assert result["td3bc"]["score_iqm"] == 25.0 and result["td3bc"]["score_mean"] == 40.0
    low, high = result["td3bc"]["score_iqm_ci"]
    assert 10.0 <= low <= 25.0 <= high <= 100.0 and result["td3bc"]["bootstrap"]["reps"] == 300
    assert result["td3bc"]["scores"] == {"advrl/hopper/medium-v0": [10.0, 20.0, 30.0, 100.0]}
    assert result["td3bc"]["probability_of_improvement"]["iql"] == {"p": 1.0, "ci": [1.0, 1.0]}
    assert profile.stat().st_size > 1000
    # the same runs give the same intervals (seeded bootstrap)
    assert compare.compare([str(tmp_path / "td3bc")], reps=300)[0][0].estimates["iqm"] == (25.0, low, high)


def test_groups_spanning_datasets_bootstrap_within_each_and_compare_on_shared_ones(tmp_path):
    make_run(tmp_path / "a" / "s0", "td3bc", 0, [1], final=10.0)
    make_run(tmp_path / "a" / "s1", "td3bc", 1, [1], final=20.0)
    make_run(tmp_path / "a" / "s2", "td3bc", 0, [1], final=90.0, dataset="advrl/hopper/expert-v0", fingerprint="b" * 16)
    make_run(tmp_path / "b" / "s0", "iql", 0, [1], final=15.0)
    summaries, text = compare.compare([f"a={tmp_path / 'a'}", f"b={tmp_path / 'b'}"], reps=200)
    a, b = summaries
    assert a.strata() == {"advrl/hopper/medium-v0": [10.0, 20.0], "advrl/hopper/expert-v0": [90.0]}
    # the expert run is in every resample once, so the mean stays within (10 + 10 + 90) / 3 .. (20 + 20 + 90) / 3
    _, low, high = a.estimates["mean"]
    assert low == pytest.approx(110 / 3) and high == pytest.approx(130 / 3)
    assert a.improvement["b"][0] == 0.5 and b.improvement["a"][0] == 0.5  # medium-v0 only: 20 > 15 > 10


def test_bad_numbers_of_resamples_or_evaluations_are_one_line_errors(tmp_path, capsys):
    make_run(tmp_path / "s0", "td3bc", 0, [1, 2])
    assert main(["compare", str(tmp_path), "--reps", "0"]) == 1
    assert capsys.readouterr().err.strip() == "advrl: error: --reps must be a positive number of bootstrap resamples, not 0."
    assert main(["compare", str(tmp_path), "--last", "0"]) == 1
    assert "--last must be a positive number of evaluations" in capsys.readouterr().err


def test_paths_without_runs_are_clear_errors(tmp_path, capsys):
    with pytest.raises(compare.CompareError, match="no runs under"):
        compare.find_runs(tmp_path)
    assert main(["compare", str(tmp_path / "missing")]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_compare_reads_a_real_run(tmp_path, minari_root, tiny_overrides, capsys):
    run_dir = tmp_path / "run"
    assert main(["train", str(RECIPES / "bc.yaml"), *tiny_overrides, "--run-dir", str(run_dir), "--no-progress"]) == 0
    assert "final_eval_normalized_score" in json.loads(capsys.readouterr().out.splitlines()[-1])
    png, summary = tmp_path / "curves.png", tmp_path / "summary.json"
    assert main(["compare", f"bc={run_dir}", "--plot", str(png), "--json", str(summary)]) == 0
    table = capsys.readouterr().out
    assert "| bc | 1 | final eval (2 ep.) |" in table  # finished: its records reach train.steps
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    (final_eval,) = [r for r in records if r["kind"] == "final_eval"]
    last_eval = [r for r in records if r["kind"] == "eval"][-1]
    assert final_eval["step"] == 20 and final_eval["episodes"] == 2 and final_eval["last_n"] == 1 and final_eval["seconds"] >= 0
    assert final_eval["last_n_score_mean"] == pytest.approx(last_eval["score_mean"]) and "score_mean" in final_eval
    # resuming a finished run neither trains nor evaluates it again
    assert main(["train", "--resume", str(run_dir), "--no-progress"]) == 0
    capsys.readouterr()
    assert (run_dir / "metrics.jsonl").read_text().count('"final_eval"') == 1
    result = json.loads(summary.read_text())["bc"]
    final = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if '"eval"' in line][-1]
    assert result["final_score_mean"] == pytest.approx(final["score_mean"]) and result["run_dirs"] == [str(run_dir)]
    assert result["score_mean"] == pytest.approx(final_eval["score_mean"]) and result["score_source"] == "final eval (2 ep.)"
    assert png.stat().st_size > 1000
