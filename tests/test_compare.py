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
             fingerprint: str = "a" * 16, extra: dict | None = None, reached: int | None = None) -> Path:
    """A run folder as `advrl train` leaves it: recipe.yaml and metrics.jsonl, one evaluation
    every steps/len(scores) steps (the last at ``reached``, default the budget)."""
    folder.mkdir(parents=True)
    recipe = {"name": name, "seed": seed, "dataset": {"id": dataset}, "train": {"steps": steps, "log_every": 5}, **(extra or {})}
    (folder / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    every = (reached or steps) // len(scores)
    rows = [{"kind": "dataset", "step": 0, "id": dataset, "n_transitions": 100, "n_episodes": 3, "fingerprint": fingerprint}]
    for i, score in enumerate(scores, start=1):
        rows.append({"kind": "train", "step": i * every, "steps_per_s": 10.0 * (seed + 1)})
        rows.append({"kind": "eval", "step": i * every, "score_mean": score, "return_mean": score * 30})
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


def test_paths_without_runs_are_clear_errors(tmp_path, capsys):
    with pytest.raises(compare.CompareError, match="no runs under"):
        compare.find_runs(tmp_path)
    assert main(["compare", str(tmp_path / "missing")]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_compare_reads_a_real_run(tmp_path, minari_root, tiny_overrides, capsys):
    run_dir = tmp_path / "run"
    assert main(["train", str(RECIPES / "bc.yaml"), *tiny_overrides, "--run-dir", str(run_dir), "--no-progress"]) == 0
    capsys.readouterr()
    png, summary = tmp_path / "curves.png", tmp_path / "summary.json"
    assert main(["compare", f"bc={run_dir}", "--plot", str(png), "--json", str(summary)]) == 0
    table = capsys.readouterr().out
    assert "| bc | 1 |" in table  # finished: its records reach train.steps
    result = json.loads(summary.read_text())["bc"]
    final = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if '"eval"' in line][-1]
    assert result["final_score_mean"] == pytest.approx(final["score_mean"]) and result["run_dirs"] == [str(run_dir)]
    assert png.stat().st_size > 1000
