"""advrl sweep and study: many runs on one executor (local processes, Ray or Slurm)."""

from __future__ import annotations

import sys


def add_commands(sub) -> None:
    sweeping = sub.add_parser("sweep", help="train a grid of overrides (key=a,b) and seeds here, on Ray or on Slurm; resumable",
                              description="Train every point of the grid the overrides span (key=a,b sweeps a key; "
                                          "the product of the swept keys), each run in its own folder under OUT: "
                                          "here (--executor local, --workers at a time), as Ray tasks or as a Slurm "
                                          "job array. Every point is validated before anything is submitted. Run the "
                                          "same command again to resume: finished runs are skipped, the others "
                                          "continue from their checkpoints.")
    sweeping.add_argument("recipe", help="recipe YAML file")
    sweeping.add_argument("overrides", nargs="*", help="key=value, or key=a,b,c to sweep (e.g. seed=0,1,2)")
    sweeping.add_argument("--out", required=True,
                          help="folder of the sweep's runs (one sub-folder per grid point); with ray or slurm it must be "
                               "on storage that every worker sees at the same path")
    _executor_flags(sweeping)
    sweeping.set_defaults(func=cmd_sweep)

    studying = sub.add_parser("study", help="an ablation study from one file: variants x datasets x seeds; resumable, extendable",
                              description="Train every run of a study file (variants x datasets x seeds, see advrl/study.py) "
                                          "into OUT/<variant>/<dataset>/seed<k>, every run validated first, on any executor; "
                                          "then the study's evaluations (observation noise) into each run. Run the same "
                                          "command again to resume; new seeds, variants or datasets train only their runs, and "
                                          "a higher train.steps resumes finished runs to it.")
    studying.add_argument("study", help="study YAML file")
    studying.add_argument("--out", default=None, help="folder of the study's runs (default: the file's out, else NAME beside the file)")
    studying.add_argument("--dry-run", action="store_true", help="print the plan, its cost estimate and progress; train nothing")
    _executor_flags(studying)
    studying.set_defaults(func=cmd_study)


def _executor_options(args) -> dict:
    return {"executor": args.executor, "cpus_per_run": args.cpus_per_run, "gpus_per_run": args.gpus_per_run,
            "ray_address": args.ray_address, "max_retries": args.max_retries, "slurm": args.slurm}


def _train_runs(start) -> tuple[int, list]:
    """Run ``start()`` (a sweep or a study); exit code and failed runs, each failure named."""
    try:
        failed = start()
    except KeyboardInterrupt:
        return 130, []
    if failed:
        print(f"{len(failed)} run(s) failed: {', '.join(str(job.log) for job in failed)}", file=sys.stderr)
    return (1 if failed else 0), failed


def cmd_sweep(args) -> int:
    from advrl import compare, sweep

    code, _ = _train_runs(lambda: sweep.sweep(args.recipe, args.overrides, args.out, args.workers, vectorize=args.vectorize,
                                              **_executor_options(args)))
    if code == 130:
        return code
    try:
        print("\n" + compare.compare([args.out])[1])
    except compare.CompareError:  # no run got as far as writing records
        pass
    return code


def cmd_study(args) -> int:
    from advrl import study

    return _train_runs(lambda: study.run(args.study, out=args.out, dry_run=args.dry_run, workers=args.workers,
                                         vectorize=args.vectorize, **_executor_options(args)))[0]


def _executor_flags(parser) -> None:
    """The executor flags advrl sweep and advrl study share."""
    parser.add_argument("--executor", default="local", metavar="{local,ray,slurm}",
                        help="where runs train: local processes (default), Ray tasks, or a Slurm job array via submitit")
    parser.add_argument("--workers", type=int, default=None, help="local: runs at a time (default: one per core)")
    parser.add_argument("--cpus-per-run", type=float, default=1.0,
                        help="CPUs of each run (ray: the task's request; slurm: default cpus_per_task; local: its threads)")
    parser.add_argument("--gpus-per-run", type=float, default=0.0, help="GPUs of each run (ray: the task's request; slurm: default gpus_per_task)")
    parser.add_argument("--ray-address", default=None, metavar="HOST:PORT",
                        help="ray: the cluster's address (ray start --head prints it; or auto); default: a Ray instance "
                             "already running here, else a new local one")
    parser.add_argument("--max-retries", type=int, default=3, help="ray: restarts of a run whose worker dies (default 3)")
    parser.add_argument("--vectorize", action="store_true",
                        help="train the runs that differ only in their seed as one job, the seeds vectorised "
                             "(advrl train --vectorize); each keeps its own folder")
    parser.add_argument("--slurm", action="extend", nargs="+", default=[], metavar="KEY=VALUE",
                        help="slurm: sbatch options (space- or comma-separated, repeatable), any of partition, time (minutes or [D-]HH:MM:SS), cpus_per_task, "
                             "gpus_per_task, array_parallelism, mem, account, qos, constraint")
