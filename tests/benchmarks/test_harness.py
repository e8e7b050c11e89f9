"""The benchmark harness: suites expand to jobs whose next command follows the run's state."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))

import harness  # noqa: E402

from advrl.component import DataSpec  # noqa: E402
from advrl.data import archive  # noqa: E402
from advrl.learner.assembly import build_components, check_data_flow  # noqa: E402
from advrl.recipe import load_recipe  # noqa: E402

DATASETS = "datasets: [advrl/hopper/random-v0]\n"  # the tiny dataset of tests/conftest.py


@pytest.fixture(autouse=True)
def _bench_folders(tmp_path, monkeypatch):
    """Runs and their committed records both go to the test's folder, never the repo's."""
    monkeypatch.setenv("ADVRL_BENCH_ROOT", str(tmp_path / "out"))
    monkeypatch.setenv("ADVRL_BENCH_RESULTS", str(tmp_path / "results"))


def test_suite_expands_to_jobs_and_commands_follow_the_phases(tmp_path):
    suite, jobs = harness.load_suite(REPO / "benchmarks" / "suites" / "smoke.yaml")
    assert [(j.label, j.seed) for j in jobs] == [("bc", 0), ("td3bc", 0), ("bc", 1)]  # seed-major
    bc, tuned = jobs[0], jobs[1]
    assert bc.command()[3] == "train" and "seed=0" in bc.command()
    assert "train.steps=40" in bc.command()

    bc.run_dir.mkdir(parents=True)  # a run killed before its first checkpoint: train would refuse its folder
    for name in (".advrl-run", "recipe.yaml"):
        (bc.run_dir / name).write_text("")
    assert bc.command()[3:5] == ["train", "--resume"]
    (bc.run_dir / "checkpoints").mkdir(parents=True)
    (bc.run_dir / "checkpoints" / "last.pt").write_bytes(b"x")
    assert bc.command()[3:5] == ["train", "--resume"]  # an interrupted run resumes
    assert bc.mark_phase_done() and bc.finished()

    tuned.run_dir.mkdir(parents=True)
    assert not tuned.mark_phase_done()  # the offline phase ends, fine-tuning is next
    assert tuned.command()[3] == "finetune" and "online.steps=30" in tuned.command()
    (tuned.run_dir / "finetune").mkdir()
    for name in (".advrl-run", "recipe.yaml"):
        (tuned.run_dir / "finetune" / name).write_text("")
    assert tuned.command()[3:5] == ["finetune", "--resume"]
    (tuned.run_dir / "finetune" / "checkpoints").mkdir(parents=True)
    (tuned.run_dir / "finetune" / "checkpoints" / "last.pt").write_bytes(b"x")
    assert tuned.command()[3:5] == ["finetune", "--resume"]
    assert tuned.mark_phase_done() and tuned.finished()


def test_every_suite_job_assembles():
    """Each job's recipe with its overrides validates and its data flow holds (a swap that
    leaves a key unwritten fails here, not hours into a benchmark)."""
    hopper = {"obs_dim": 11, "action_dim": 3, "max_action": 1.0}
    for path in (REPO / "benchmarks" / "suites").glob("*.yaml"):
        _, jobs = harness.load_suite(path)
        assert jobs, path
        for job in jobs:
            assert (REPO / job.recipe).is_file(), f"{path.name}: {job.recipe}"
            recipe = load_recipe(REPO / job.recipe, [*job.overrides, f"seed={job.seed}"], dataset_facts=hopper)
            check_data_flow(recipe, build_components(recipe, DataSpec(11, 3, 1.0)))


def test_report_tables_final_scores_speed_and_preparation_cost(tmp_path):
    suite_file = tmp_path / "suite.yaml"
    suite_file.write_text(
        f"name: mini\nseeds: [0, 1]\n{DATASETS}variants:\n"
        "  - {label: plain, recipe: advrl:td3bc.yaml}\n"
        "  - {label: selective, recipe: advrl:ssar_td3bc.yaml}\n"
        "  - {label: tuned, recipe: advrl:td3bc.yaml, seeds: [0], finetune: [online.steps=10]}\n"
    )
    _, jobs = harness.load_suite(suite_file)
    finals = {("plain", 0): 40.0, ("plain", 1): 50.0, ("selective", 0): 60.0, ("selective", 1): 70.0, ("tuned", 0): 20.0}
    for job in jobs:
        job.run_dir.mkdir(parents=True)
        rows = [
            {"kind": "dataset", "step": 0, "fingerprint": "a" * 16, "n_episodes": 7},
            {"kind": "eval", "step": 1, "score_mean": 500.0, "return_mean": 9.0},  # outside the last 3
            {"kind": "eval", "step": 3, "score_mean": 1.0, "return_mean": 9.0},
            {"kind": "eval", "step": 5, "score_mean": 1.0, "return_mean": 9.0},
            {"kind": "eval", "step": 10, "score_mean": finals[(job.label, job.seed)], "return_mean": 9.0},
            {"kind": "train", "step": 10, "steps_per_s": 100.0 + job.seed},
        ]
        if job.label == "selective":
            rows.insert(0, {"kind": "preparation", "step": 0, "slot": "selector", "seconds": 99.0, "pretrain_seconds": 30.0 + 10 * job.seed})
        (job.run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        job.mark_phase_done()
        if job.finetune is not None:  # the online phase: its evaluations continue after the offline ones
            (job.run_dir / "finetune").mkdir()
            online = [{"kind": "eval", "step": 5, "score_mean": 25.0, "return_mean": 9.0},
                      {"kind": "eval", "step": 10, "score_mean": 33.0, "return_mean": 9.0}]
            (job.run_dir / "finetune" / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in online))
            job.mark_phase_done()
    harness.report(suite_file)
    table = (tmp_path / "results" / "mini" / "table.md").read_text().splitlines()
    assert "offline phase" in table[0]
    # last-3 mean: plain (1, 1, 40) and (1, 1, 50) -> 14 and 17.33; tuned's online phase ends (20, 25, 33)
    assert table[2] == "| plain | 2 | last 3 mean | 15.7 [14.0, 17.3] | 15.7 [14.0, 17.3] | 45.0 ± 5.0 | 15.7 ± 1.7 | no online phase | 100.5 | — |"
    assert table[3] == "| selective | 2 | last 3 mean | 22.3 [20.7, 24.0] | 22.3 [20.7, 24.0] | 65.0 ± 5.0 | 22.3 ± 1.7 | no online phase | 100.5 | 35 |"
    assert table[4] == "| tuned | 1 | last 3 mean | 26.0 [26.0, 26.0] | 26.0 [26.0, 26.0] | 33.0 ± 0.0 | 26.0 ± 0.0 | 1: 20.0 ± 0.0 | 100.0 | — |"
    assert not any("build of the dataset" in line for line in table)  # all on one build
    summary = json.loads((tmp_path / "results" / "mini" / "summary.json").read_text())
    assert summary["selective"]["preparation_seconds_mean"] == 35.0
    assert (tmp_path / "results" / "mini" / "curves.png").stat().st_size > 1000
    assert summary["plain"]["score_iqm_ci"] == [14.0, pytest.approx(17.33, abs=0.01)]  # the range of two runs
    assert summary["selective"]["probability_of_improvement"]["plain"]["p"] == 1.0
    # P(row > column): selective's runs (20.7, 24.0) beat plain's (14.0, 17.3), lose to tuned's 26.0
    assert "| selective | 1.00 [1.00, 1.00] | — | 0.00 [0.00, 0.00] |" in table
    assert (tmp_path / "results" / "mini" / "profile.png").stat().st_size > 1000


def test_finished_runs_are_archived_and_outlive_their_run_folders(tmp_path):
    """A suite spread over sessions: the second machine has none of the first's run folders,
    only the committed records, and must neither rerun nor forget those runs."""
    suite_file = tmp_path / "suite.yaml"
    suite_file.write_text(
        f"name: spread\nevaluations: {{noise: [0.0, 0.1]}}\nseeds: [0]\n{DATASETS}variants:\n"
        "  - {label: plain, recipe: advrl:td3bc.yaml}\n"
        "  - {label: tuned, recipe: advrl:td3bc.yaml, finetune: [online.steps=10]}\n"
    )
    suite, jobs = harness.load_suite(suite_file)
    plain, tuned = jobs
    for job, final in ((plain, 40.0), (tuned, 20.0)):
        job.run_dir.mkdir(parents=True)
        (job.run_dir / "metrics.jsonl").write_text(json.dumps({"kind": "eval", "step": 10, "score_mean": final, "return_mean": 1.0}) + "\n")
        (job.run_dir / "checkpoints").mkdir()
        (job.run_dir / "checkpoints" / "last.pt").write_bytes(b"large")
        (job.run_dir / "noise.json").write_text(json.dumps({"0.0": {"score_mean": final, "return_mean": 1.0},
                                                             "0.1": {"score_mean": final / 2, "return_mean": 1.0}}))
    assert plain.mark_phase_done()
    harness.conclude(suite, plain)
    assert not tuned.mark_phase_done()  # offline phase only: nothing archived yet
    assert not tuned.archived()

    archive = tmp_path / "results" / "spread" / "plain" / "seed0"
    assert sorted(p.name for p in archive.iterdir()) == ["DONE", "metrics.jsonl", "noise.json"]  # no checkpoint

    shutil.rmtree(tmp_path / "out")  # a new machine: run folders gone
    suite, (plain, tuned) = harness.load_suite(suite_file)
    assert plain.finished() and not tuned.finished() and not tuned.offline_done()
    assert tuned.command()[3] == "train"  # the unarchived run starts again
    harness.report(suite_file)
    table = (tmp_path / "results" / "spread" / "table.md").read_text()
    assert "| plain | 1 | last 3 mean | 40.0 [40.0, 40.0] | 40.0 [40.0, 40.0] | 40.0 ± 0.0 | 40.0 ± 0.0 | no online phase |" in table
    assert "| plain | 40.0 ± 0.0 | 20.0 ± 0.0 |" in table  # noise table read from the archive


def test_report_names_runs_that_trained_on_another_build_of_the_dataset(tmp_path):
    suite_file = tmp_path / "suite.yaml"
    suite_file.write_text(f"name: builds\nseeds: [0, 1, 2]\n{DATASETS}variants:\n  - {{label: plain, recipe: advrl:td3bc.yaml}}\n")
    _, jobs = harness.load_suite(suite_file)
    builds = {0: None, 1: "b" * 16, 2: "c" * 16}  # seed 0 ran before runs recorded their build
    for job in jobs:
        job.run_dir.mkdir(parents=True)
        rows = [{"kind": "eval", "step": 10, "score_mean": 1.0, "return_mean": 1.0}]
        if builds[job.seed]:
            rows.insert(0, {"kind": "dataset", "step": 0, "fingerprint": builds[job.seed], "n_episodes": 10 + job.seed})
        (job.run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        job.mark_phase_done()
    harness.report(suite_file)
    table = (tmp_path / "results" / "builds" / "table.md").read_text()
    assert "did not all train on the same build" in table
    assert "- not recorded: plain:0" in table
    assert f"- {'b' * 16} (11 episodes): plain:1" in table and f"- {'c' * 16} (12 episodes): plain:2" in table


def test_an_archive_without_a_requested_noise_level_says_the_run_is_needed(tmp_path):
    suite_file = tmp_path / "suite.yaml"
    suite_file.write_text(f"name: late\nevaluations: {{noise: [0.2]}}\nseeds: [0]\n{DATASETS}variants:\n  - {{label: plain, recipe: advrl:td3bc.yaml}}\n")
    suite, (job,) = harness.load_suite(suite_file)
    job.record_dir.mkdir(parents=True)
    (job.record_dir / "noise.json").write_text("{}")
    (job.record_dir / "DONE").write_text("")
    with pytest.raises(SystemExit, match="lacks sigma"):
        harness.noise_results(suite, job)


def test_only_selects_labels_and_seeds_and_names_unknown_labels(tmp_path):
    _, jobs = harness.load_suite(REPO / "benchmarks" / "suites" / "smoke.yaml")
    assert [(j.label, j.seed) for j in harness.selected(jobs, ["bc"])] == [("bc", 0), ("bc", 1)]
    assert [(j.label, j.seed) for j in harness.selected(jobs, ["bc:1", "td3bc"])] == [("td3bc", 0), ("bc", 1)]
    assert harness.selected(jobs, []) == jobs
    with pytest.raises(SystemExit, match="no run labelled 'a2pr'; it has bc, td3bc"):
        harness.selected(jobs, ["a2pr:0"])


def test_stopping_the_harness_with_sigterm_stops_its_runs(tmp_path, minari_root):
    """`kill HARNESS` must not leave its runs going on unattended: a harness started again
    would otherwise find them still writing to the run folders it resumes."""
    import signal
    import subprocess
    import time

    from advrl.learner.checkpoint import run_lock

    suite_file = tmp_path / "suite.yaml"
    suite_file.write_text(
        f"name: long\nseeds: [0]\n{DATASETS}overrides: [train.device=cpu, eval.episodes=0]\n"
        "variants:\n  - {label: bc, recipe: advrl:bc.yaml, overrides: [train.steps=10000000]}\n"
    )
    _, (job,) = harness.load_suite(suite_file)
    proc = subprocess.Popen([sys.executable, str(REPO / "benchmarks" / "harness.py"), "run", str(suite_file)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    while not (job.run_dir / "train.csv").exists():  # the run is training
        assert time.time() < deadline and proc.poll() is None, proc.stdout.read() if proc.poll() is not None else "timeout"
        time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=60)
    assert "stopped; run again to resume" in output
    with run_lock(job.run_dir):  # raises if the run's process were still alive
        pass


def test_a_parked_run_resumes_on_a_new_machine_and_ends_like_an_uninterrupted_one(tmp_path, minari_root, tiny_overrides, monkeypatch):
    """A run longer than a session: parked (checkpoint, metrics, recipe, the IQL labels its
    selector cached) into the committed records, restored where neither the run folder nor
    the cache exists, it ends with the parameters of a run never interrupted."""
    import torch

    import advrl
    from advrl.components.selectors.iql_advantage import IQLAdvantage
    from advrl.data.dataset import OfflineData

    monkeypatch.setenv("ADVRL_CACHE", str(tmp_path / "cache"))
    overrides = [*tiny_overrides, "train.steps=40", "eval.episodes=0", "components.selector.pretrain_steps=5"]
    suite_file = tmp_path / "suite.yaml"
    suite_file.write_text(f"name: long\nseeds: [0]\n{DATASETS}variants:\n  - {{label: ssar, recipe: advrl:ssar_td3bc/hopper-medium-replay.yaml, "
                          f"overrides: [{', '.join(overrides)}]}}\n")
    _, (job,) = harness.load_suite(suite_file)
    recipe = REPO / job.recipe
    advrl.train(recipe, [*overrides, "seed=0"], run_dir=tmp_path / "straight", progress=False)
    shutil.rmtree(tmp_path / "cache")

    calls = {"n": 0}
    original = OfflineData.sample

    def crash_at_step_25(self, batch_size):
        calls["n"] += 1
        if calls["n"] == 25 + 5:  # after the selector's 5 pre-training batches
            raise KeyboardInterrupt("session ends")
        return original(self, batch_size)

    monkeypatch.setattr(OfflineData, "sample", crash_at_step_25)
    with pytest.raises(KeyboardInterrupt):
        advrl.train(recipe, [*overrides, "seed=0"], run_dir=job.run_dir, progress=False)
    monkeypatch.setattr(OfflineData, "sample", original)

    harness.park(suite_file)
    parked = sorted(p.relative_to(job.parked_dir).as_posix() for p in job.parked_dir.rglob("*") if p.is_file())
    assert parked == ["cache/iql_trust/advrl__hopper__random-v0/seed0/tau0.7-steps5-batch256-v2.pt",
                      "checkpoints/last.pt", "metrics.jsonl", "recipe.yaml", "software.json"]
    assert job.records() == job.run_dir

    # the dataset build the run trained on is packed beside it, once
    suite, _ = harness.load_suite(suite_file)
    build = harness.trained_on(job.parked_dir)
    packed = harness.dataset_archive(suite, build)
    assert build[0] == "advrl/hopper/random-v0" and packed.is_file()
    stamp = packed.stat().st_mtime_ns
    harness.park(suite_file)
    assert packed.stat().st_mtime_ns == stamp
    # the software the run started with travels with it (marked, to see it survive the resume)
    (job.parked_dir / "software.json").write_text(json.dumps({"python": "the first machine's"}))

    shutil.rmtree(tmp_path / "out")  # a new machine: no run folder, no cache, no dataset
    shutil.rmtree(tmp_path / "cache")
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "new-store"))
    assert job.records() == job.parked_dir and not job.finished()  # reportable while parked
    monkeypatch.setattr(IQLAdvantage, "_pretrain", lambda *a: pytest.fail("the parked labels were not restored"))
    harness.restore_dataset(suite, job)
    assert archive.local_fingerprint(build[0]) == build[1]  # installed from the archive, not built anew
    assert job.unpark() and not job.unpark()  # once: a run folder with a checkpoint is not overwritten
    assert job.command()[3:5] == ["train", "--resume"]
    assert advrl.resume(job.run_dir, progress=False).steps == 40
    assert json.loads((job.run_dir / "software.json").read_text()) == {"python": "the first machine's"}
    straight = torch.load(tmp_path / "straight" / "checkpoints" / "last.pt", weights_only=True)["components"]
    resumed = torch.load(job.run_dir / "checkpoints" / "last.pt", weights_only=True)["components"]
    for slot in straight:
        for name in straight[slot]:
            assert torch.equal(straight[slot][name], resumed[slot][name]), f"{slot}.{name}"

    assert job.mark_phase_done()
    job.archive()
    assert not job.parked_dir.exists()  # a finished run keeps no stale checkpoint in the records


def test_a_suite_trains_through_the_sweep_executors_fine_tuning_phase_included(tmp_path, minari_root, tiny_overrides):
    """The harness schedules nothing itself: a suite is a list of sweep runs that a Ray task
    trains phase after phase (offline, then fine-tuning), archived here as each ends."""
    import tempfile

    import ray

    suite_file = tmp_path / "suite.yaml"
    tuning = "[online.steps=30, online.learning_starts=10, eval.every=10, train.log_every=10, train.checkpoint_every=10]"
    suite_file.write_text(f"name: tiny\nseeds: [0]\n{DATASETS}overrides: [{', '.join(tiny_overrides)}]\nvariants:\n"
                          "  - {label: bc, recipe: advrl:bc.yaml}\n"
                          f"  - {{label: tuned, recipe: advrl:td3bc.yaml, finetune: {tuning}}}\n")
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # Ray's socket paths must fit 107 characters
    ray.init(num_cpus=2, _temp_dir=temp, include_dashboard=False, log_to_driver=False)
    try:
        assert harness.run(suite_file, executor="ray") == []
    finally:
        ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)
    _, (bc, tuned) = harness.load_suite(suite_file)
    assert bc.archived() and tuned.archived()
    assert (tuned.record_dir / "OFFLINE_DONE").exists() and (tuned.record_dir / "finetune" / "metrics.jsonl").exists()
    log = tuned.log.read_text()
    assert "start train " in log and "start finetune " in log  # both phases, in one task
    assert "run_jobs" not in dir(harness) and "subprocess" not in dir(harness)  # no scheduler of its own


def test_a_suite_is_a_study_whose_runs_keep_the_harness_folders(tmp_path):
    """The harness plans each suite through advrl.study (what `advrl study SUITE` trains),
    its run folders and committed records staying <suite>/<label>/seed<k>."""
    from advrl import study

    for path in sorted((REPO / "benchmarks" / "suites").glob("*.yaml")):
        suite, jobs = harness.load_suite(path)
        _, runs = study.plan(path, out=tmp_path / "study")
        assert [(j.label, j.seed, j.recipe, j.overrides, j.finetune) for j in jobs] == \
               [(r.variant, r.seed, r.recipe, r.overrides, r.finetune) for r in runs], path.name
        for job in jobs:
            where = Path(suite["name"]) / job.label / f"seed{job.seed}"
            assert job.run_dir == tmp_path / "out" / where and job.record_dir == tmp_path / "results" / where


def test_a_suite_in_the_old_format_is_refused_in_one_line(tmp_path):
    suite_file = tmp_path / "suite.yaml"
    suite_file.write_text("name: old\nseeds: [0]\nruns:\n  - {label: plain, recipe: recipes/td3bc.yaml}\n")
    with pytest.raises(SystemExit, match=r"unknown key\(s\) runs") as raised:
        harness.load_suite(suite_file)
    assert "\n" not in str(raised.value)


def test_a_study_suite_trains_locally_fine_tuning_phase_included_and_a_rerun_skips_it(tmp_path, minari_root, tiny_overrides, capsys):
    suite_file = tmp_path / "suite.yaml"
    tuning = "[online.steps=20, online.learning_starts=10, eval.every=10, train.log_every=10, train.checkpoint_every=10]"
    suite_file.write_text(f"name: tiny\nseeds: [0]\n{DATASETS}overrides: [{', '.join(tiny_overrides)}]\n"
                          "evaluations: {noise: [0.0, 0.1], episodes: 1}\nvariants:\n"
                          "  - {label: bc, recipe: advrl:bc.yaml, seeds: [0, 1]}\n"
                          f"  - {{label: tuned, recipe: advrl:td3bc.yaml, finetune: {tuning}}}\n")
    assert harness.run(suite_file, workers=2) == []
    _, jobs = harness.load_suite(suite_file)
    assert [(j.label, j.seed) for j in jobs] == [("bc", 0), ("tuned", 0), ("bc", 1)] and all(j.archived() for j in jobs)
    tuned = jobs[1]
    assert (tuned.record_dir / "OFFLINE_DONE").exists() and (tuned.record_dir / "finetune" / "metrics.jsonl").exists()
    assert sorted(json.loads((tuned.record_dir / "noise.json").read_text())) == ["0.0", "0.1"]
    capsys.readouterr()
    assert harness.run(suite_file, workers=2) == []
    assert "3 of 3 runs finished; 0 to go" in capsys.readouterr().out
