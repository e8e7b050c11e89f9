"""`advrl report`, failed runs shown as failed, sweep labels as typed, and a pilot grown by
`advrl train --resume RUN train.steps=N`."""

from __future__ import annotations

import json
import shutil

import pytest
import yaml

from advrl import compare
from advrl.cli import main
from advrl.components.constraints.bc_mse import BCMSE
from tests.conftest import RECIPES
from tests.test_compare import make_run


def add_noise(run, levels: dict[float, float], step: int = 20, space: str = "raw") -> None:
    rows = [{"step": step, "obs_noise": level, "noise_space": space, "episodes": 10, "seed": 100,
             "score_mean": score, "score_std": 1.0, "return_mean": score * 30, "return_std": 30.0} for level, score in levels.items()]
    with open(run / "eval_noise.jsonl", "a") as handle:
        handle.write("".join(json.dumps(r) + "\n" for r in rows))


def test_report_writes_markdown_plots_and_per_seed_json(tmp_path, capsys):
    study = tmp_path / "study"
    for seed, (final, noisy) in enumerate([(60.0, 40.0), (70.0, 30.0), (80.0, 50.0)]):
        add_noise(make_run(study / "td3bc" / f"s{seed}", "td3bc", seed, [10, 20, 30, 40], final=final), {0.0: final, 0.1: noisy})
    for seed in (0, 1):
        add_noise(make_run(study / "iql" / f"s{seed}", "iql", seed, [5, 10, 20, 20 + seed]), {0.0: 20.0, 0.1: 19.0})
    failed = make_run(study / "iql" / "s2", "iql", 2, [5], reached=5)
    (failed / "error.txt").write_text("step 5: RuntimeError: the critic diverged\n")
    assert main(["report", str(study), "--json", str(tmp_path / "report.json"), "--reps", "200"]) == 0
    assert "report written to" in capsys.readouterr().out
    report = (study / "report.md").read_text()
    assert report.startswith("# advrl report\n")
    assert "| td3bc | 3 | final eval (100 ep.) | 70.0 [" in report and "| iql | 2 of 3, 1 failed | last 3 mean |" in report
    assert "Probability of improvement" in report and "| td3bc | 1.00 [1.00, 1.00] | — |" in report
    assert "| run | σ=0 | σ=0.1 |" in report and "| td3bc | 70.0 [60.0, 80.0] (3) | 40.0 [30.0, 50.0] (3) |" in report
    assert f"- iql: {failed}: failed: step 5: RuntimeError: the critic diverged" in report
    assert f"| iql | {failed} | 2 | advrl/hopper/medium-v0 | failed: step 5: RuntimeError: the critic diverged | — |" in report
    for png in ("learning_curves.png", "final_scores.png", "performance_profile.png", "noise_robustness.png"):
        assert (study / png).stat().st_size > 1000 and f"]({png})" in report
    data = json.loads((tmp_path / "report.json").read_text())["groups"]
    td3bc = data["td3bc"]
    assert [r["score"] for r in td3bc["run_values"]] == [60.0, 70.0, 80.0]
    assert td3bc["run_values"][1]["noise"] == {"raw": {"0": 70.0, "0.1": 30.0}} and td3bc["score_iqm"] == 70.0
    assert td3bc["noise"]["raw"]["0.1"]["iqm"] == 40.0
    assert data["iql"]["run_values"][2]["status"] == "failed" and data["iql"]["failed"] == {str(failed): "step 5: RuntimeError: the critic diverged"}
    # --out writes elsewhere; labels group as in compare
    assert main(["report", f"a={study / 'td3bc'}", f"b={study / 'iql'}", "--out", str(tmp_path / "out"), "--reps", "50"]) == 0
    assert "| a | 3 |" in (tmp_path / "out" / "report.md").read_text()
    assert main(["report", str(tmp_path / "none")]) == 1
    assert capsys.readouterr().err.strip() == f"advrl: error: {tmp_path / 'none'} does not exist."


def test_a_run_that_dies_with_an_exception_is_shown_failed_with_its_message(minari_root, tiny_overrides, tmp_path, monkeypatch, capsys):
    original, raised = BCMSE.compute, {"error": KeyboardInterrupt("Ctrl-C")}

    def compute(self, td, step):
        if int(step) == 5:
            raise raised["error"]
        return original(self, td, step)

    monkeypatch.setattr(BCMSE, "compute", compute)
    interrupted = tmp_path / "interrupted"
    with pytest.raises(KeyboardInterrupt):  # an interruption is not a failure
        main(["train", str(RECIPES / "bc.yaml"), *tiny_overrides, "--run-dir", str(interrupted), "--no-progress"])
    assert not (interrupted / "error.txt").exists()
    assert "| bc | 0 of 1 |" in compare.compare([str(interrupted)])[1]
    raised["error"] = RuntimeError("boom in bc_mse\nsecond line")
    run = tmp_path / "study" / "bc0"
    with pytest.raises(RuntimeError, match="boom"):
        main(["train", str(RECIPES / "bc.yaml"), *tiny_overrides, "--run-dir", str(run), "--no-progress"])
    assert (run / "error.txt").read_text() == "step 5: RuntimeError: boom in bc_mse second line\n"
    _, text = compare.compare([str(tmp_path / "study")])
    assert "| bc | 0 of 1, 1 failed |" in text
    assert f"- bc: {run}: failed: step 5: RuntimeError: boom in bc_mse second line" in text
    # one that died before its first record (no metrics.jsonl) is found and shown failed too
    early = tmp_path / "study" / "bc1"
    early.mkdir()
    (early / "recipe.yaml").write_text((run / "recipe.yaml").read_text().replace("seed: 0", "seed: 1"))
    (early / "error.txt").write_text("step 0: ValueError: bad data\n")
    assert f"- bc: {early}: failed: step 0: ValueError: bad data" in compare.compare([str(tmp_path / "study")])[1]
    shutil.rmtree(early)
    # a resumed run is not failed any more
    monkeypatch.undo()
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--no-progress"]) == 0
    assert not (run / "error.txt").exists()
    assert "| bc | 1 |" in compare.compare([str(tmp_path / "study")])[1]


def test_labels_keep_the_overrides_as_the_sweep_folder_spells_them(tmp_path):
    for lr in ("1e12", "3e-4"):
        for seed in (0, 1):
            extra = {"updates": {"actor": {"optimize": {"actor": {"lr": float(lr)}}}}}
            make_run(tmp_path / f"updates.actor.optimize.actor.lr={lr},seed={seed}", "bc", seed, [1, 2], extra=extra)
    summaries, _ = compare.compare([str(tmp_path)])
    assert sorted(s.label for s in summaries) == ["bc (updates.actor.optimize.actor.lr=1e12)", "bc (updates.actor.optimize.actor.lr=3e-4)"]
    # a folder whose name does not say what the recipe holds does not relabel it
    make_run(tmp_path / "x" / "updates.actor.optimize.actor.lr=5", "bc", 2, [1, 2], extra={"updates": {"actor": {"optimize": {"actor": {"lr": 0.1}}}}})
    assert "bc (updates.actor.optimize.actor.lr=0.1)" in {s.label for s in compare.compare([str(tmp_path)])[0]}
    # one value typed two ways is one configuration, under the first spelling found
    make_run(tmp_path / "y" / "updates.actor.optimize.actor.lr=1.0e12", "bc", 3, [1, 2], extra={"updates": {"actor": {"optimize": {"actor": {"lr": 1e12}}}}})
    groups = {s.label: len(s.runs) for s in compare.compare([str(tmp_path)])[0]}
    assert groups == {"bc (updates.actor.optimize.actor.lr=1e12)": 3, "bc (updates.actor.optimize.actor.lr=3e-4)": 2,
                      "bc (updates.actor.optimize.actor.lr=0.1)": 1}


def records(run) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_a_pilot_grows_with_resume_train_steps_and_other_overrides_are_refused(minari_root, tiny_overrides, tmp_path, capsys):
    run = tmp_path / "pilot"
    assert main(["train", str(RECIPES / "bc.yaml"), *tiny_overrides, "--run-dir", str(run), "--no-progress"]) == 0
    before = records(run)
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "components.actor.hidden_sizes=[8]"]) == 1
    assert capsys.readouterr().err.strip().splitlines() == [
        "advrl: error: components.actor.hidden_sizes cannot be changed on resume: it would change what the run's first "
        "steps trained; resume takes only train.steps, train.checkpoint_every, train.log_every and eval.* (start a new run "
        "for components.actor.hidden_sizes)."]
    assert main(["train", "--resume", str(run), "train.steps=10"]) == 1
    assert "cannot shorten it" in capsys.readouterr().err
    assert yaml.safe_load((run / "recipe.yaml").read_text())["train"]["steps"] == 20  # refused: nothing changed
    assert main(["train", "--resume", str(run), "train.steps=40", "eval.episodes=2", "--no-progress"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["steps"] == 40
    after = records(run)
    assert after[:len(before)] == before  # records 1..20 kept as they were
    assert [r["step"] for r in after if r["kind"] == "train"] == [10, 20, 30, 40]
    assert [r["step"] for r in after if r["kind"] == "eval"] == [20, 40]
    assert [r["step"] for r in after if r["kind"] == "final_eval"] == [20, 40]  # the grown run is evaluated at its end
    saved = yaml.safe_load((run / "recipe.yaml").read_text())
    assert saved["train"]["steps"] == 40 and saved["eval"]["episodes"] == 2
    (summary,), _ = compare.compare([str(run)])
    assert len(summary.finished) == 1 and summary.runs[0].final_eval["step"] == 40
    # noise results of the pilot's checkpoint no longer stand for the grown run
    (run / "eval_noise.jsonl").write_text(json.dumps({"step": 20, "obs_noise": 0.1, "noise_space": "raw", "episodes": 2,
                                                      "seed": 100, "score_mean": 1.0, "return_mean": 1.0}) + "\n")
    assert compare.read_run(run).noise_scores() == {}
