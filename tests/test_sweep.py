"""`advrl sweep`: the grid a list of overrides spans, the process scheduler, a real tiny sweep."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from advrl import sweep
from advrl.cli import main
from advrl.recipe import RecipeError

RECIPES = Path(__file__).resolve().parent.parent / "recipes"


def test_values_split_at_top_level_commas_only():
    assert sweep.split_values("1,2.5,5") == ["1", "2.5", "5"]
    assert sweep.split_values("[256,256],[64,64]") == ["[256,256]", "[64,64]"]
    assert sweep.split_values("{a: 1, b: 2}") == ["{a: 1, b: 2}"]
    assert sweep.split_values("'x,y',z") == ["'x,y'", "z"]
    assert sweep.split_values("advrl/hopper/medium-v0") == ["advrl/hopper/medium-v0"]


def test_the_grid_is_the_product_of_the_swept_keys_run_seed_major():
    grid = sweep.expand_grid(["a=1,2", "hidden=[8,8]", "seed=0,1,2"])
    assert len(grid) == 6
    assert grid[0] == ["hidden=[8,8]", "a=1", "seed=0"] and grid[5] == ["hidden=[8,8]", "a=2", "seed=2"]
    assert [point[1:] for point in grid[:3]] == [["a=1", "seed=0"], ["a=2", "seed=0"], ["a=1", "seed=1"]]  # seed-major
    assert sweep.expand_grid(["a=1"]) == [["a=1"]]
    assert sweep.folder_name(grid[2], ["a", "seed"]) == "a=1,seed=1"
    assert sweep.folder_name(["dataset.id=advrl/hopper/x-v0"], ["dataset.id"]) == "dataset.id=advrl_hopper_x-v0"
    assert sweep.folder_name(["a=1"], []) == "run"


@pytest.mark.parametrize("overrides, message", [
    (["alpha"], "is not key=value"),
    (["a=1,,2"], "empty value"),
    (["a=1,2", "a=3,4"], "swept twice"),
])
def test_overrides_that_cannot_be_swept_are_named(overrides, message):
    with pytest.raises(sweep.SweepError, match=message):
        sweep.expand_grid(overrides)


def test_every_point_is_validated_before_anything_starts_and_a_folder_keeps_its_settings(tmp_path):
    out = tmp_path / "sweep"
    with pytest.raises(RecipeError, match="stepz"):
        sweep.plan(RECIPES / "bc.yaml", ["train.stepz=1,2"], out)
    assert not out.exists()
    runs = sweep.plan(RECIPES / "bc.yaml", ["train.steps=10,20", "seed=3"], out)
    assert [run.name for run in runs] == ["train.steps=10", "train.steps=20"]
    assert runs[0].command()[3:7] == ["train", str((RECIPES / "bc.yaml").resolve()), "seed=3", "train.steps=10"]
    (runs[0].run_dir / "checkpoints").mkdir(parents=True)
    (runs[0].run_dir / "checkpoints" / "last.pt").write_bytes(b"")
    assert runs[0].command()[3:6] == ["train", "--resume", str(runs[0].run_dir)]  # an interrupted run resumes
    with pytest.raises(sweep.SweepError, match="holds a sweep of other settings"):
        sweep.plan(RECIPES / "bc.yaml", ["train.steps=10,30"], out)


@dataclass
class ScriptJob:
    """A job whose phases are short Python processes (exit codes given), for the scheduler."""

    name: str
    log: Path
    exits: list[int]
    started: list[int] = field(default_factory=list)

    def command(self) -> list[str]:
        self.started.append(len(self.started))
        return [sys.executable, "-c", f"print('phase {len(self.started)}'); raise SystemExit({self.exits[len(self.started) - 1]})"]

    def mark_phase_done(self) -> bool:
        return len(self.started) == len(self.exits)


def test_the_scheduler_runs_each_phase_and_reports_failures(tmp_path, capsys):
    two_phases = ScriptJob("two", tmp_path / "two.log", [0, 0])
    failing = ScriptJob("bad", tmp_path / "bad.log", [3])
    done = []
    failed = sweep.run_jobs([two_phases, failing], workers=2, on_done=done.append, poll=0.05)
    assert failed == [failing] and done == [two_phases]
    assert two_phases.started == [0, 1]  # started again for its second phase
    assert two_phases.log.read_text() == "phase 1\nphase 2\n"
    out = capsys.readouterr().out
    assert f"FAILED bad (exit 3); see {failing.log}" in out and "done  two" in out


def test_a_tiny_sweep_trains_its_grid_and_skips_it_when_run_again(tmp_path, minari_root, tiny_overrides, capsys):
    out = tmp_path / "seeds"
    command = ["sweep", str(RECIPES / "bc.yaml"), *tiny_overrides, "seed=0,1", "--out", str(out), "--workers", "2"]
    assert main(command) == 0
    text = capsys.readouterr().out
    assert "0 of 2 runs finished; 2 to go" in text
    assert "| bc | 2 |" in text  # the two seeds are one configuration in the table
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["seed=0", "seed=1"]
    assert all((out / name / "DONE").exists() for name in ("seed=0", "seed=1"))
    assert main(command) == 0
    assert "2 of 2 runs finished; 0 to go" in capsys.readouterr().out


def test_a_resumed_run_carries_the_overrides_a_resume_applies(tmp_path):
    run = sweep.SweepRun(RECIPES / "bc.yaml", ["train.steps=40", "train.batch_size=32", "eval.every=20", "seed=1"], tmp_path / "run")
    (run.run_dir / "checkpoints").mkdir(parents=True)
    (run.run_dir / "checkpoints" / "last.pt").write_bytes(b"")
    # train.steps raised in a study resumes the run to it; the rest is the run's saved recipe
    assert run.command()[3:] == ["train", "--resume", str(run.run_dir), "train.steps=40", "eval.every=20", "--no-progress"]


def test_a_vectorised_sweep_trains_each_points_seeds_as_one_job_and_resumes_them_together(
        tmp_path, minari_root, tiny_overrides, capsys):
    from advrl.learner.checkpoint import safe_load

    out = tmp_path / "grid"
    grid = ["components.constraint.weight=1.0,2.0", "seed=0,1", "eval.episodes=0", "eval.final_episodes=0"]
    command = ["sweep", str(RECIPES / "td3bc.yaml"), *tiny_overrides, *grid, "--out", str(out), "--workers", "1", "--vectorize"]
    assert main(command) == 0
    text = capsys.readouterr().out
    assert "0 of 4 runs finished; 4 to go in 2 jobs (seeds vectorised)" in text
    starts = [line for line in text.splitlines() if line.startswith("start ")]
    assert len(starts) == 2 and all("seed=0,1 --vectorize --seed-dirs" in line for line in starts)
    runs = sorted(p for p in out.iterdir() if p.is_dir())
    assert [p.name for p in runs] == [f"components.constraint.weight={w},seed={s}" for w in ("1.0", "2.0") for s in (0, 1)]
    assert all((p / "DONE").exists() and safe_load(p / "checkpoints" / "last.pt")["step"] == 20 for p in runs)
    # runs interrupted after their last checkpoint (no DONE): each group's seeds resume together
    for p in runs:
        (p / "DONE").unlink()
    assert main(command) == 0
    starts = [line for line in capsys.readouterr().out.splitlines() if line.startswith("start ")]
    assert len(starts) == 2 and all(line.split(": ", 1)[1].startswith("train train.steps=20 ") and " --vectorize --seed-dirs " in line
                                  and "--resume" not in line for line in starts)
    assert all((p / "DONE").exists() and safe_load(p / "checkpoints" / "last.pt")["step"] == 20 for p in runs)
    # a group stopped while it saved its seeds one by one (one member a checkpoint behind): each resumes alone
    for p in runs:
        (p / "DONE").unlink()
    (runs[1] / "checkpoints" / "previous.pt").replace(runs[1] / "checkpoints" / "last.pt")  # back to step 10
    assert main(command) == 0
    starts = [line for line in capsys.readouterr().out.splitlines() if line.startswith("start ")]
    assert sum("--resume" in line for line in starts) == 2 and sum("--seed-dirs" in line for line in starts) == 1
    assert all(safe_load(p / "checkpoints" / "last.pt")["step"] == 20 for p in runs)


def test_seed_groups_report_each_member_done_or_failed(tmp_path):
    """What a study relies on: with --vectorize its callback still sees each run, and the
    failed runs it gets back are runs, not groups."""
    runs = [sweep.SweepRun(RECIPES / "bc.yaml", [f"train.steps={s}", f"seed={k}"], tmp_path / f"r{s}{k}")
            for s in (10, 20) for k in (0, 1)] + [sweep.SweepRun(RECIPES / "bc.yaml", ["seed=5"], tmp_path / "alone")]

    class Engine:  # runs nothing: the first group fails, the rest succeed
        name, workers = "local", 1

        def run(self, jobs, on_done):
            self.jobs = jobs
            for job in jobs[1:]:
                on_done(job)
            return jobs[:1]

    engine, done = Engine(), []
    failed = sweep._train(runs, engine, done.append, vectorize=True)
    assert [len(getattr(job, "members", [job])) for job in engine.jobs] == [2, 2, 1]
    assert failed == runs[:2] and done == runs[2:]
    group = engine.jobs[0]
    assert group.phase_args()[-6:] == ["seed=0,1", "--vectorize", "--seed-dirs", str(runs[0].run_dir), str(runs[1].run_dir),
                                       "--no-progress"]
