"""The benchmark harness: suites expand to jobs whose next command follows the run's state."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))

import harness  # noqa: E402


def test_suite_expands_to_jobs_and_commands_follow_the_phases(tmp_path, monkeypatch):
    monkeypatch.setenv("ADVRL_BENCH_ROOT", str(tmp_path))
    suite, jobs = harness.load_suite(REPO / "benchmarks" / "suites" / "smoke.yaml")
    assert [(j.label, j.seed) for j in jobs] == [("bc", 0), ("bc", 1), ("td3bc", 0)]
    bc, tuned = jobs[0], jobs[2]
    assert bc.command()[3] == "train" and "seed=0" in bc.command()
    assert "train.steps=40" in bc.command()

    (bc.run_dir / "checkpoints").mkdir(parents=True)
    (bc.run_dir / "checkpoints" / "last.pt").write_bytes(b"x")
    assert bc.command()[3:5] == ["train", "--resume"]  # an interrupted run resumes
    assert bc.mark_phase_done() and bc.finished()

    tuned.run_dir.mkdir(parents=True)
    assert not tuned.mark_phase_done()  # the offline phase ends, fine-tuning is next
    assert tuned.command()[3] == "finetune" and "online.steps=30" in tuned.command()
    (tuned.run_dir / "finetune" / "checkpoints").mkdir(parents=True)
    (tuned.run_dir / "finetune" / "checkpoints" / "last.pt").write_bytes(b"x")
    assert tuned.command()[3:5] == ["finetune", "--resume"]
    assert tuned.mark_phase_done() and tuned.finished()


def test_every_suite_names_existing_recipes():
    for path in (REPO / "benchmarks" / "suites").glob("*.yaml"):
        _, jobs = harness.load_suite(path)
        assert jobs, path
        for job in jobs:
            assert (REPO / job.recipe).is_file(), f"{path.name}: {job.recipe}"
