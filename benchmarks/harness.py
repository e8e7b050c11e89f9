"""Resumable learning-quality benchmarks: many (recipe, seed) runs, trained by ``advrl sweep``'s executors.

    python benchmarks/harness.py run benchmarks/suites/hopper_rme_advantage.yaml [--workers 2] [--only a2pr:0]
    python benchmarks/harness.py run SUITE --executor slurm --slurm partition=cpu,time=1440   # or --executor ray
    python benchmarks/harness.py report benchmarks/suites/hopper_rme_advantage.yaml
    python benchmarks/harness.py park benchmarks/suites/ssar_hopper_mr.yaml   # before a session ends

A suite file is a study file (:mod:`advrl.study`: variants with a label, a recipe, overrides,
optionally their own seeds and `finetune:` overrides for an offline-to-online phase after the
offline one; one dataset; seeds; shared overrides; `evaluations` under observation noise), so
``advrl study SUITE --dry-run`` plans the same runs. The harness expands it to a list of
:class:`advrl.sweep.SweepRun` (each label x seed one run, its fine-tuning phase included),
which ``run`` hands to :func:`advrl.sweep.execute` with the executor asked for (``local``:
processes here, at most ``--workers`` at a time; ``ray``; ``slurm``), exactly as ``advrl
sweep`` trains a grid. It can be stopped at any point (Ctrl-C, SIGKILL, end of a session) and
started again: finished runs are skipped, interrupted ones resume from their last checkpoint.
What is this repository's own stays here: the committed records, the report, parking. ``report`` writes a Markdown table (per label the IQM and mean of the run scores
with bootstrap 95 % CIs, P(X > Y) between labels, the last evaluations, gradient steps/s), a
learning-curve PNG, a performance-profile PNG and a JSON summary, with the same code as
``advrl compare`` (``advrl/compare.py``) plus the suite's observation-noise table.

Runs live under ``$ADVRL_BENCH_ROOT`` (default ``benchmarks/out``, not committed): their
checkpoints are large and a machine may not outlive a session. A finished run's records (its
metrics, resolved recipes, observation-noise evaluations) are copied to
``benchmarks/results/<suite>/<label>/seed<k>/`` (``$ADVRL_BENCH_RESULTS``), which is committed:
a suite spread over several sessions, or machines, skips what any of them finished and
reports over all of it. The report is written there too.

A run longer than a session (CQL on this CPU) would never finish on machines that do not
outlive one. ``park`` copies each unfinished run's last checkpoint, metrics and recipe, and
the caches its preparation made (IQL trust labels), to ``<record_dir>/parked/`` (a few MB,
committed); ``run`` on a machine without the run folder restores it from there and resumes.
The resumed run refuses another build of the dataset (``Trainer._check_same_dataset_build``),
and another machine can build other data from the same command, so ``park`` also packs each
build that a parked run trained on into ``<results>/<suite>/datasets/`` (``advrl data pack``,
about 11 MB for Hopper's medium-replay) and ``run`` installs it where the machine has none.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from advrl import compare, study, sweep
from advrl.data import archive
from advrl.data.dataset import DatasetError
from advrl.recipe import RecipeError
from advrl.sweep import SweepRun

REPO = Path(__file__).resolve().parent.parent
# what a finished run leaves in benchmarks/results: small text files, never checkpoints
ARCHIVED = ("metrics.jsonl", "recipe.yaml", "software.json", "noise.json", "OFFLINE_DONE", "DONE",
            "finetune/metrics.jsonl", "finetune/recipe.yaml", "finetune/software.json")
# what an unfinished run needs to resume elsewhere; each checkpoint before its metrics, so the
# metrics copied reach at least the checkpoint's step even while the run goes on (a resumed
# run drops the records after its checkpoint)
OFFLINE_CHECKPOINT, FINETUNE_CHECKPOINT = "checkpoints/last.pt", "finetune/checkpoints/last.pt"
CHECKPOINTS = (OFFLINE_CHECKPOINT, FINETUNE_CHECKPOINT)
PARKED = (OFFLINE_CHECKPOINT, "metrics.jsonl", "recipe.yaml", "software.json", "OFFLINE_DONE",
          FINETUNE_CHECKPOINT, "finetune/metrics.jsonl", "finetune/recipe.yaml", "finetune/software.json")
CACHE = "cache"  # in a parked folder: the run's caches, by their path under the cache root
DATASETS = "datasets"  # in a suite's records: archives of the dataset builds its parked runs trained on


@dataclass
class Job(SweepRun):
    """One (label, seed) run of a suite: a sweep run (its recipe, overrides with the seed, run
    folder and fine-tuning phase) plus where its records are committed."""

    label: str = ""
    seed: int = 0
    record_dir: Path = Path()  # where the finished run's records are kept (committed)

    @property
    def name(self) -> str:
        return f"{self.label} seed {self.seed}"

    def archived(self) -> bool:
        return (self.record_dir / "DONE").exists()

    def finished(self) -> bool:
        return self.archived() or (self.run_dir / "DONE").exists()

    @property
    def parked_dir(self) -> Path:
        return self.record_dir / "parked"

    def records(self) -> Path:
        """The folder to read this run's metrics from: its archive once it has one, else the
        run folder, else the state it was parked in."""
        if self.archived():
            return self.record_dir
        if not (self.run_dir / "metrics.jsonl").exists() and (self.parked_dir / "metrics.jsonl").exists():
            return self.parked_dir
        return self.run_dir

    def has_checkpoint(self) -> bool:
        return any((self.run_dir / name).exists() for name in CHECKPOINTS)

    def park(self) -> list[str]:
        """Copy what the unfinished run needs to resume to ``parked_dir`` (replacing an older
        parking whole, so a copy cut short never mixes two states); the files copied."""
        from advrl.cache import cache_root

        staging = self.parked_dir.with_name("parked.partial")
        shutil.rmtree(staging, ignore_errors=True)
        copied = []
        for name in PARKED:
            if (self.run_dir / name).exists():
                (staging / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(self.run_dir / name, staging / name)
                copied.append(name)
        for cached in sorted(preparation_caches(self.run_dir)):
            if (cache_root() / cached).is_file():
                target = staging / CACHE / cached
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(cache_root() / cached, target)
                copied.append(f"{CACHE}/{cached}")
        shutil.rmtree(self.parked_dir, ignore_errors=True)
        staging.rename(self.parked_dir)
        return copied

    def unpark(self) -> bool:
        """Restore a parked run where its run folder is missing; True if one was restored.
        Caches already here are left as they are (they are matched to the dataset build
        by the component that reads them)."""
        from advrl.cache import cache_root

        if self.has_checkpoint() or not self.parked_dir.is_dir():
            return False
        for source in sorted(self.parked_dir.rglob("*")):
            if not source.is_file():
                continue
            relative = source.relative_to(self.parked_dir)
            if relative.parts[0] == CACHE:
                target = cache_root().joinpath(*relative.parts[1:])
                if target.exists():
                    continue
            else:
                target = self.run_dir / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
        return True

    def offline_done(self) -> bool:
        return (self.records() / "OFFLINE_DONE").exists() or (self.finetune is None and self.finished())

    def archive(self) -> None:
        """Copy the finished run's records to ``record_dir``; DONE last, so a copy cut short
        is not taken for a finished one. A parked state of the run is obsolete then."""
        for name in sorted(ARCHIVED, key=lambda n: n == "DONE"):
            source = self.run_dir / name
            if source.exists():
                target = self.record_dir / name
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, target)
        shutil.rmtree(self.parked_dir, ignore_errors=True)


def load_suite(path: Path) -> tuple[dict, list[Job]]:
    """The suite (a study file, :mod:`advrl.study`) and its runs as jobs, in the study's order
    (seed-major: a suite stopped part-way holds comparable runs of every label), each run
    folder ``<root>/<label>/seed<k>`` and its records ``<results>/<label>/seed<k>``."""
    try:
        spec = study.load(path)
    except study.StudyError as err:
        raise SystemExit(f"harness: error: {err}") from None
    if len(spec.datasets) != 1:  # the records are per label and seed: two datasets would share a folder
        raise SystemExit(f"harness: error: {path} names {len(spec.datasets)} datasets; a suite has one (its records are <label>/seed<k>).")
    root = Path(os.environ.get("ADVRL_BENCH_ROOT", REPO / "benchmarks" / "out")) / spec.name
    results = Path(os.environ.get("ADVRL_BENCH_RESULTS", REPO / "benchmarks" / "results")) / spec.name
    jobs = [Job(run.recipe, run.overrides, root / run.variant / f"seed{run.seed}", run.finetune,
                label=run.variant, seed=run.seed, record_dir=results / run.variant / f"seed{run.seed}")
            for run in study.runs_of(spec)]
    evaluations = spec.evaluations or {"noise": [], "noise_space": "raw", "episodes": None}
    return {"name": spec.name, "root": root, "results": results, **evaluations}, jobs


def preparation_caches(run_dir: Path) -> set[str]:
    """The cache files (relative to the cache root) a run's preparation made or read."""
    from advrl.compare import read_records

    caches = set()
    for metrics in (run_dir / "metrics.jsonl", run_dir / "finetune" / "metrics.jsonl"):
        if metrics.exists():
            caches.update(r["cache"] for r in read_records(metrics, "preparation") if r.get("cache"))
    return caches


def selected(jobs: list[Job], only: list[str]) -> list[Job]:
    """The jobs named by ``--only LABEL`` or ``--only LABEL:SEED`` (all when none is given)."""
    if not only:
        return jobs
    known = {job.label for job in jobs}
    for name in only:
        if name.split(":")[0] not in known:
            raise SystemExit(f"--only {name}: the suite has no run labelled {name.split(':')[0]!r}; it has {', '.join(sorted(known))}.")
    return [job for job in jobs if job.label in only or f"{job.label}:{job.seed}" in only]


def run(suite_path: Path, workers: int | None = None, only: list[str] | None = None, executor: str = "local",
        **options) -> list[Job]:
    """Train the suite's unfinished runs with ``executor`` (options as :func:`advrl.sweep.execute`'s);
    each finished run is archived (here, in the submitting process) as it ends. Returns the failed runs."""
    suite, jobs = load_suite(suite_path)
    jobs = selected(jobs, only or [])
    sweep.check_runs([job for job in jobs if not job.finished()])  # every run's recipe, before anything starts
    for job in jobs:  # finished earlier but not archived (e.g. stopped between the two)
        if job.finished() and not job.archived():
            conclude(suite, job)
        elif not job.finished() and not job.has_checkpoint() and job.parked_dir.is_dir():
            restore_dataset(suite, job)
            job.unpark()
            print(f"{job.name}: restored from {job.parked_dir}", flush=True)

    def archive(job: Job) -> None:
        conclude(suite, job)
        print(f"records of {job.name} in {job.record_dir}", flush=True)

    try:
        return sweep.execute(jobs, executor, on_done=archive, workers=workers, **options)
    except KeyboardInterrupt:
        return []


def park(suite_path: Path, only: list[str] | None = None) -> None:
    """Park every unfinished run that has a checkpoint here (see the module's docstring), and
    pack the dataset builds they trained on beside them."""
    suite, jobs = load_suite(suite_path)
    for job in selected(jobs, only or []):
        if not job.finished() and job.has_checkpoint():
            copied = job.park()
            size = sum(f.stat().st_size for f in job.parked_dir.rglob("*") if f.is_file())
            print(f"{job.name}: parked {len(copied)} files ({size / 1e6:.1f} MB) in {job.parked_dir}", flush=True)
    pack_datasets(suite, jobs)


def trained_on(run_records: Path) -> tuple[str, str] | None:
    """(dataset id, content fingerprint) of the build a run recorded; None before that record."""
    records = compare.read_records(run_records / "metrics.jsonl", "dataset")
    return (records[0]["id"], records[0]["fingerprint"]) if records and records[0].get("fingerprint") else None


def dataset_archive(suite: dict, build: tuple[str, str]) -> Path:
    return suite["results"] / DATASETS / archive.default_name(*build)


def pack_datasets(suite: dict, jobs: list[Job]) -> None:
    """Archive each build that a parked run trained on, once: another machine's
    ``advrl data make`` can give other data, and a parked run resumes only on its own build."""
    builds = {trained_on(job.parked_dir) for job in jobs if job.parked_dir.is_dir()} - {None}
    for build in sorted(builds):
        target = dataset_archive(suite, build)
        if target.exists():
            continue
        try:
            archive.pack(build[0], target, expect=build[1])
        except DatasetError as err:  # this machine holds another build (or none)
            print(f"{err} Parked runs need build {build[1]}.", flush=True)
            continue
        print(f"{build[0]}: build {build[1]} packed into {target} ({target.stat().st_size / 1e6:.1f} MB)", flush=True)


def restore_dataset(suite: dict, job: Job) -> None:
    """Before a parked run is restored: install its dataset build from the suite's archive
    where this machine has none, or say how to where it has another."""
    build = trained_on(job.parked_dir)
    path = dataset_archive(suite, build) if build is not None else None
    if path is None or not path.is_file():
        return
    try:
        archive.unpack(path)  # nothing to do where the build is here already
        print(f"{build[0]}: build {build[1]} in the local store ({path})", flush=True)
    except DatasetError as err:  # another build here: the message says how to replace it
        print(f"{job.name} will not resume on this machine's data: {err}", flush=True)


def conclude(suite: dict, job: Job) -> None:
    """Evaluate a finished run under observation noise while its checkpoint is here, then
    archive its records."""
    noise_results(suite, job)
    job.archive()


def report(suite_path: Path) -> None:
    suite, jobs = load_suite(suite_path)
    reported = [(job, compare.read_run(job.records(), online_phase=job.finetune is not None,
                                       offline_done=job.offline_done(), finished=job.finished()))
                for job in jobs if (job.records() / "metrics.jsonl").exists()]
    labels = list(dict.fromkeys(job.label for job in jobs))
    summaries = [compare.Summary(label, [run for job, run in reported if job.label == label]) for label in labels]
    root = suite["results"]
    root.mkdir(parents=True, exist_ok=True)
    table = compare.report_text(summaries, online=any(job.finetune is not None for job in jobs))
    (root / "summary.json").write_text(json.dumps({s.label: s.as_dict() for s in summaries}, indent=2))
    noise = noise_table(suite, jobs)
    if noise:
        table += "\n\nNormalised score of the final policies under Gaussian observation noise:\n\n" + noise
    builds = compare.dataset_builds([(f"{job.label}:{job.seed}", run) for job, run in reported])
    if builds:
        table += "\n\n" + builds
    (root / "table.md").write_text(table + "\n")
    compare.plot_curves(summaries, root / "curves.png", suite["name"])
    written = [root / "table.md", root / "curves.png", root / "summary.json"]
    if any(s.estimates for s in summaries):
        compare.plot_profile(summaries, root / "profile.png", suite["name"])
        written.append(root / "profile.png")
    print(table)
    print(f"\nwritten: {', '.join(str(path) for path in written)}")


def noise_results(suite: dict, job: Job) -> dict:
    """The final policy evaluated under Gaussian observation noise (the suite's ``evaluations``,
    as ``advrl eval RUN --obs-noise SIGMA``), cached in the run's ``noise.json`` (the format of
    the committed records; ``advrl study`` writes ``eval_noise.jsonl`` instead)."""
    sigmas = [float(x) for x in suite.get("noise", [])]
    cache = job.records() / "noise.json"
    results = json.loads(cache.read_text()) if cache.exists() else {}
    missing = [sigma for sigma in sigmas if str(sigma) not in results]
    if missing and job.archived():
        raise SystemExit(f"{cache} lacks sigma {missing}: the run's checkpoint is needed to evaluate them; rerun it.")
    if missing:
        import advrl

        run = advrl.load_run(job.run_dir)
        for sigma in missing:
            results[str(sigma)] = run.evaluate(episodes=int(suite.get("episodes") or 10), obs_noise=sigma,
                                               noise_space=suite.get("noise_space", "raw"))
            cache.write_text(json.dumps(results, indent=2))
    return results


def noise_table(suite: dict, jobs: list[Job]) -> str:
    """Normalised scores of the final policies under observation noise, mean +- std over seeds."""
    sigmas = [float(x) for x in suite.get("noise", [])]
    if not sigmas:
        return ""
    rows = ["| run | " + " | ".join(f"sigma {x:g}" for x in sigmas) + " |", "| --- |" + " --- |" * len(sigmas)]
    for label in dict.fromkeys(job.label for job in jobs):
        scores = {x: [] for x in sigmas}
        for job in (j for j in jobs if j.label == label and j.finished()):
            results = noise_results(suite, job)
            for sigma in sigmas:
                result = results[str(sigma)]
                scores[sigma].append(result.get("score_mean", result["return_mean"]))
        cells = [compare.format_mean_std(np.mean(v), np.std(v)) if v else "—" for v in scores.values()]
        rows.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["run", "report", "park"])
    parser.add_argument("suite", type=Path)
    parser.add_argument("--only", action="append", default=[], metavar="LABEL[:SEED]",
                        help="run only these runs (repeatable), e.g. --only a2pr:0 --only td3bc")
    parser.add_argument("--executor", default="local", metavar="{local,ray,slurm}", help="as advrl sweep's (default: local)")
    parser.add_argument("--workers", type=int, default=None, help="local: parallel runs (default: one per core)")
    parser.add_argument("--cpus-per-run", type=float, default=1.0, help="as advrl sweep's")
    parser.add_argument("--gpus-per-run", type=float, default=0.0, help="as advrl sweep's")
    parser.add_argument("--ray-address", default=None, help="as advrl sweep's")
    parser.add_argument("--slurm", action="extend", nargs="+", default=[], metavar="KEY=VALUE", help="as advrl sweep's")
    args = parser.parse_args()
    if args.action == "run":
        try:
            failed = run(args.suite, args.workers, args.only, args.executor, cpus_per_run=args.cpus_per_run,
                         gpus_per_run=args.gpus_per_run, ray_address=args.ray_address, slurm=args.slurm)
        except (sweep.SweepError, RecipeError) as err:
            raise SystemExit(f"harness: error: {err}") from None
        if failed:
            raise SystemExit(f"{len(failed)} run(s) failed: {', '.join(str(job.log) for job in failed)}")
    elif args.action == "park":
        park(args.suite, args.only)
    else:
        report(args.suite)


if __name__ == "__main__":
    main()
