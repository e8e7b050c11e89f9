"""``advrl`` command line: a thin layer over the Python API."""

from __future__ import annotations

import argparse
import dataclasses
import errno
import json
import os
import sys

from advrl import registry, threads  # neither imports torch (see main)


def _expected_errors() -> tuple[type[BaseException], ...]:
    from advrl.compare import CompareError
    from advrl.data.dataset import DatasetError
    from advrl.learner.checkpoint import CheckpointError
    from advrl.learner.update import NonFiniteLossError
    from advrl.probe import ProbeError
    from advrl.recipe import RecipeError
    from advrl.sweep import SweepError

    return (RecipeError, registry.RegistryError, DatasetError, CompareError, SweepError, ProbeError, CheckpointError, NonFiniteLossError, FileNotFoundError)


def print_result(result) -> int:
    """One JSON line summarising a finished run (the last line a script can parse)."""
    summary = {"run_dir": str(result.run_dir), "steps": result.steps, "final_return": result.final_return}
    if result.final_score is not None:
        summary["final_normalized_score"] = result.final_score
    if result.final_evaluation and "score_mean" in result.final_evaluation:  # eval.final_episodes episodes
        summary["final_eval_normalized_score"] = result.final_evaluation["score_mean"]
    print(json.dumps(summary))
    return 0


def _split_seeds(overrides: list[str]) -> tuple[list[int], list[str]]:
    """``seed=0,1,2`` taken out of the overrides as [0, 1, 2] (one ``seed=`` at most)."""
    from advrl.recipe import RecipeError

    given = [o for o in overrides if o.partition("=")[0].strip() == "seed"]
    if len(given) != 1:
        raise RecipeError("--vectorize trains several seeds of one recipe: give them as one override, e.g. seed=0,1,2,3,4.")
    try:
        seeds = [int(value) for value in given[0].partition("=")[2].split(",")]
    except ValueError:
        raise RecipeError(f"--vectorize: {given[0]} is not a list of integer seeds (e.g. seed=0,1,2).") from None
    return seeds, [o for o in overrides if o not in given]


def cmd_train(args) -> int:
    import advrl

    if args.vectorize:
        return _train_vectorized(args)
    several = [o for o in args.overrides if o.partition("=")[0].strip() == "seed" and "," in o]
    if several:
        print(f"advrl: error: {several[0]} lists several seeds: add --vectorize to train them together in this process, "
              "or use advrl sweep (one run each).", file=sys.stderr)
        return 2
    if args.resume:
        # `--resume RUN train.steps=N`: argparse hands the first override to the recipe argument
        overrides = [args.recipe, *args.overrides] if args.recipe else list(args.overrides)
        if overrides and "=" not in overrides[0]:
            print(f"advrl: error: advrl train --resume RUN_DIR takes no recipe ({overrides[0]}): the run keeps the recipe it "
                  "saved; only train.steps, train.checkpoint_every, train.log_every and eval.* overrides apply.", file=sys.stderr)
            return 2
        result = advrl.resume(args.resume, progress=not args.no_progress, overrides=overrides)
    else:
        if not args.recipe:
            print("advrl train needs a RECIPE (or --resume RUN_DIR).", file=sys.stderr)
            return 2
        result = advrl.train(args.recipe, args.overrides, run_dir=args.run_dir, progress=not args.no_progress)
    return print_result(result)


def _train_vectorized(args) -> int:
    from advrl.learner import vectorized

    no_recipe = not args.recipe or "=" in args.recipe  # argparse hands a first override to the recipe argument
    if args.resume or (no_recipe and args.seed_dirs):
        overrides = [args.recipe, *args.overrides] if args.recipe else list(args.overrides)
        runs = args.seed_dirs or vectorized.group_run_dirs(args.resume)
        if not runs:
            print(f"advrl: error: {args.resume} holds no runs of vectorised seeds (seed<k>/ folders with a recipe.yaml); "
                  "resume a single run without --vectorize.", file=sys.stderr)
            return 2
        results = vectorized.resume_seeds(runs, progress=not args.no_progress, overrides=overrides)
    else:
        if no_recipe:
            print("advrl train --vectorize needs a RECIPE and seed=a,b,... (or --resume GROUP_DIR).", file=sys.stderr)
            return 2
        seeds, overrides = _split_seeds(list(args.overrides))
        if args.seed_dirs and len(args.seed_dirs) != len(seeds):
            print(f"advrl: error: --seed-dirs names {len(args.seed_dirs)} folders for {len(seeds)} seeds; give one per seed.",
                  file=sys.stderr)
            return 2
        results = vectorized.train_seeds(args.recipe, seeds, overrides, run_dir=args.run_dir, progress=not args.no_progress,
                                         run_dirs=args.seed_dirs)
    for result in results:
        print_result(result)
    return 0


def cmd_online(args) -> int:
    from advrl.learner.online import resume_online, train_online

    if args.resume:
        result = resume_online(args.resume, progress=not args.no_progress)
    elif not args.recipe:
        print("advrl online needs a RECIPE (or --resume RUN_DIR).", file=sys.stderr)
        return 2
    else:
        result = train_online(args.recipe, args.overrides, run_dir=args.run_dir, progress=not args.no_progress)
    return print_result(result)


def cmd_finetune(args) -> int:
    from advrl.learner.finetune import finetune, resume_finetune

    if args.resume:
        result = resume_finetune(args.resume, progress=not args.no_progress)
    else:
        result = finetune(args.run_dir, args.overrides, run_dir=args.out, progress=not args.no_progress)
    return print_result(result)


def cmd_eval(args) -> int:
    from advrl.run import evaluate_runs

    results = evaluate_runs(args.runs, args.obs_noise, args.episodes, args.seed, args.noise_space, args.force, args.device)
    if not results:
        print("advrl: error: no run could be evaluated (none has a checkpoint yet).", file=sys.stderr)
        return 1
    for run_dir, records in results.items():
        for record in records:  # one JSON line per run and noise level, as a script reads them
            print(json.dumps({"run_dir": run_dir, **record}))
    skipped = sum(r["skipped"] for records in results.values() for r in records)
    if skipped:
        print(f"advrl: {skipped} evaluation(s) already saved in their runs were not repeated (--force repeats them).", file=sys.stderr)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2)
        print(f"advrl: results written to {args.json}", file=sys.stderr)
    return 0


def cmd_compare(args) -> int:
    from advrl import compare

    summaries, text = compare.compare(args.runs, last=args.last, reps=args.reps)
    print(text)
    if args.plot:
        compare.plot_curves(summaries, args.plot, args.title)
        print(f"\nlearning curves written to {args.plot}")
    if args.profile:
        compare.plot_profile(summaries, args.profile, args.title)
        print(f"\nperformance profiles written to {args.profile}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({s.label: {**s.as_dict(), "run_dirs": [str(r.path) for r in s.runs]} for s in summaries}, handle, indent=2)
        print(f"summary written to {args.json}")
    return 0


def cmd_report(args) -> int:
    from advrl import report

    written = report.write_report(args.runs, out=args.out, last=args.last, reps=args.reps, title=args.title)
    print(f"report written to {written.path}" + (f" with {', '.join(p.name for p in written.figures)}" if written.figures else ""))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(written.data, handle, indent=2)
        print(f"per-seed values written to {args.json}")
    return 0


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


def cmd_probe(args) -> int:
    from omegaconf import OmegaConf

    import advrl
    from advrl import probe
    from advrl.data.dataset import load_offline_data

    loaded, report = {}, {}
    for run_dir in args.runs:
        run = advrl.load_run(run_dir, device=args.device)
        key = OmegaConf.to_yaml(OmegaConf.create({"d": run.recipe.dataset, "t": run.recipe.data}))
        if key not in loaded:  # runs of one recipe on one dataset share its loaded transitions
            loaded = {key: load_offline_data(run.recipe.dataset, run.recipe.data, run.device)}
        rows = probe.probe(run, loaded[key], samples=args.samples, critic=args.critic, value=args.value or None)
        print(f"{run_dir} (step {run.step}, {run.recipe.name} on {run.recipe.dataset.id})\n")
        print(probe.format_table(rows) + "\n")
        report[str(run_dir)] = rows
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(report, handle, indent=2)
        print(f"written to {args.json}")
    return 0


def cmd_components(args) -> int:
    from advrl.component import describe

    if args.recipe:  # what the recipe's imports: register is listed too
        from advrl.recipe import import_recipe_modules

        import_recipe_modules(args.recipe)
    kinds = registry.kinds()  # loads the built-ins and plug-ins first: plug-ins may add kinds
    if args.kind and args.name:
        print(describe(registry.get(args.kind, args.name)))
        return 0
    for kind in [args.kind] if args.kind else list(kinds):
        if kind not in kinds:
            registry.get(kind, "")  # raises with close matches
        names = registry.names(kind)
        print(f"{kind:12s} {', '.join(names) or '-':60s}  # {kinds[kind]}")
    if not args.kind:
        entries = [f"{e.name} = {e.value}" for e in registry.plugins()]
        print(f"\nPlug-ins (entry points {registry.ENTRY_POINT_GROUP}): {', '.join(entries) or '(none)'}")
        print("Describe one: advrl components KIND NAME")
    return 0


def cmd_recipe(args) -> int:
    from advrl.recipe import load_recipe, to_yaml

    recipe = load_recipe(args.recipe, args.overrides)
    try:
        import minari

        from advrl.data.dataset import dataset_info, open_minari

        if recipe.dataset.id in minari.list_local_datasets():
            for key, value in dataset_info(open_minari(recipe.dataset.id)).facts().items():
                recipe.dataset[key] = value
    except Exception:  # the recipe is shown even when its dataset is not available here
        pass
    print(to_yaml(recipe), end="")
    return 0


def cmd_recipe_diff(args) -> int:
    """What differs between two resolved recipes (B with the overrides): the check that a
    baseline, an ablation or a command-line swap changes only what it claims to."""
    from advrl.recipe import format_diff, load_recipe, recipe_diff

    # validated, but not assembled: a fine-tuning run's saved recipe reads its replay buffer's keys
    a = load_recipe(args.a, check_flow=False)
    b = load_recipe(args.b, args.overrides, check_flow=False)
    differences = recipe_diff(a, b)
    print(f"A: {args.a}\nB: {' '.join([args.b, *args.overrides])}")
    print(format_diff(differences) if differences else "(no differences)")
    return 0


def cmd_data(args) -> int:
    import os
    import shlex

    import minari

    from advrl.data import catalog, policies
    from advrl.data.collect import dataset_path, read_record
    from advrl.data.dataset import (
        DatasetError,
        content_fingerprint,
        data_problems,
        dataset_info,
        datasets_root,
        open_minari,
        read_episodes,
    )

    root = getattr(args, "policies", None)
    if args.data_command == "list":
        local = minari.list_local_datasets()
        print(f"local datasets ({datasets_root()}):")
        for dataset_id in sorted(local):
            meta = local[dataset_id]
            record = read_record(dataset_id)
            origin = f"  [{record.get('kind', 'advrl')}, seed {record.get('seed')}]" if record else ""
            print(f"  {dataset_id:42s} {meta.get('total_steps', '?'):>9} steps {meta.get('total_episodes', '?'):>6} episodes{origin}")
        if not local:
            print("  (none)")
        print(f"\nbuildable here (advrl data make ID; policies from {policies.policies_root(root)};")
        print("  1M transitions (medium-replay: the replay up to the medium policy), or a size before -v0: advrl/hopper/medium-100k-v0;")
        print("  a seed tag after it names the collection seed, so builds live side by side: advrl/hopper/expert-10k-s1-v0):")
        for dataset_id in catalog.buildable_ids():
            missing = catalog.missing_policies(dataset_id, root)
            status = "built" if dataset_id in local else ("ready" if not missing else f"needs the {' and '.join(missing)} polic{'ies' if len(missing) > 1 else 'y'}")
            print(f"  {dataset_id:42s} {status}")
        print("\nbehaviour policies:")
        for env in catalog.ENVS:
            levels = []
            for level in policies.available(env, root):
                if level == "random":
                    levels.append("random")
                    continue
                rec = policies.read_record(env, level, root)
                levels.append(f"{level} (return {rec['return_mean']:.1f} ± {rec['return_std']:.1f}, step {rec.get('steps')})")
            print(f"  {env:12s} {', '.join(levels)}")
        print("\nremote Minari MuJoCo ids (need the network: dataset.download=true):")
        for dataset_id in catalog.remote_ids():
            print(f"  {dataset_id:42s} {'local' if dataset_id in local else 'remote'}")
        return 0
    if args.data_command == "make":
        from advrl.data.mix import parse_source

        proportions = None
        if args.proportions:
            proportions = {}
            for part in args.proportions.split(","):
                level, sep, share = part.partition("=")
                if not sep:
                    raise DatasetError(f"--proportions takes LEVEL=SHARE,... (e.g. random=0.25,medium=0.75), got {args.proportions!r}.")
                proportions[level.strip()] = parse_source(f"{level.strip()}:{share}")[1]
        path = catalog.build(
            args.id, size=args.size, seed=args.seed, proportions=proportions, policies_root=root, run_dir=args.run,
            retrain=args.retrain,
            log=lambda message: print(f"advrl: {message}", file=sys.stderr, flush=True),
        )
        record = read_record(args.id) or {}
        print(json.dumps({"id": args.id, "path": path, **{k: record.get(k) for k in ("size", "episodes", "seed", "returns", "build_seconds")}}))
        return 0
    if args.data_command == "mix":
        from advrl.data.mix import mix, parse_source

        sources = [parse_source(text) for text in args.sources]
        path = mix(sources, args.id, size=args.size, seed=args.seed)
        record = read_record(args.id) or {}
        shares = {s["dataset"]: {"proportion": s["proportion"], "transitions": s["transitions"]} for s in record.get("sources", [])}
        print(json.dumps({"id": args.id, "path": path, "size": record.get("size"), "episodes": record.get("episodes"), "sources": shares}))
        return 0
    if args.data_command == "pack":
        from advrl.data.archive import pack, read_manifest

        path = pack(args.id, args.out)
        manifest = read_manifest(path)
        print(json.dumps({"id": args.id, "fingerprint": manifest["fingerprint"], "archive": str(path), "bytes": path.stat().st_size}))
        return 0
    if args.data_command == "unpack":
        from advrl.data.archive import unpack

        manifest = unpack(args.archive, replace=args.replace)
        print(json.dumps({"id": manifest["dataset_id"], "fingerprint": manifest["fingerprint"], "path": dataset_path(manifest["dataset_id"])}))
        return 0
    if args.data_command == "export-policy":
        command = ["advrl", "data", "export-policy", args.source, "--env", args.env, "--level", args.level, "--episodes", str(args.episodes)]
        if args.pick_snapshot:
            command += ["--pick-snapshot", "--candidates", str(args.candidates)]
        record = policies.export_policy(
            args.source, args.env, args.level, episodes=args.episodes, root=root, pick_snapshot=args.pick_snapshot,
            eval_seed=args.eval_seed, command=shlex.join(command), candidates=args.candidates,
        )
        print(json.dumps({"policy": str(policies.policy_path(args.env, args.level, root)), **record}))
        return 0

    # info
    from advrl.data import stats

    local = set(minari.list_local_datasets())
    if args.id not in local and not os.path.isdir(dataset_path(args.id)):
        if catalog.is_buildable(args.id):
            raise DatasetError(f"Dataset {args.id!r} is not built yet: build it with `advrl data make {args.id}`.")
        if args.id not in catalog.remote_ids():
            raise catalog.unknown_id_error(args.id, sorted(local) + catalog.remote_ids(), what="No dataset")
    ds = open_minari(args.id)  # remote ids: explains how to download
    columns = read_episodes(ds)
    info = dataclasses.replace(dataset_info(ds), fingerprint=content_fingerprint(columns))
    # what training would refuse is shown, not raised: info is where one looks into such a dataset
    problems = data_problems(ds, columns, info.fingerprint)
    for problem in problems:
        print(f"advrl: warning: {problem}", file=sys.stderr)
    returns = stats.episode_returns(ds)
    metadata = ds.storage.metadata
    keep = ("description", "algorithm_name", "ref_min_score", "ref_max_score", "minari_version", "data_format", "dataset_size", "author")
    summary = {k: v for k, v in vars(info).items() if k != "eval_env_spec"}
    summary["path"] = dataset_path(args.id)
    summary["env_spec"] = getattr(ds.spec.env_spec, "id", None)
    spec = info.eval_env_spec
    if isinstance(spec, str) and spec.lstrip().startswith("{"):
        spec = json.loads(spec).get("id")  # minari keeps it as the EnvSpec's JSON
    summary["eval_env_spec"] = getattr(spec, "id", spec)
    summary["returns"] = stats.return_stats(returns)
    summary["histogram"] = stats.histogram(returns).splitlines()
    summary["metadata"] = {k: metadata.get(k) for k in keep if k in metadata}
    summary["advrl"] = read_record(args.id)
    summary["warnings"] = problems
    if args.png:
        summary["png"] = stats.save_histogram_png(returns, args.png, title=f"{args.id}: episode returns")
    if not args.text:
        print(json.dumps(summary, indent=2, default=str))
        return 0
    r = summary["returns"]
    print(f"{args.id}  ({summary['path']})")
    print(f"  env {summary['env_spec']}  eval env {summary['eval_env_spec']} (from {info.eval_env_from})  obs {info.obs_dim}  action {info.action_dim}")
    recorded = (summary["advrl"] or {}).get("fingerprint")
    verified = "" if not summary["advrl"] else (" (advrl.json records none: not verified)" if recorded is None
                                                else " (as advrl.json records)" if recorded == info.fingerprint
                                                else f" (advrl.json records {recorded})")
    print(f"  {info.n_transitions} transitions, {info.n_episodes} episodes, content fingerprint {info.fingerprint}{verified}")
    if r["episodes"]:
        print(f"  episode return min {r['min']:.1f}  median {r['median']:.1f}  max {r['max']:.1f}  mean {r['mean']:.1f} ± {r['std']:.1f}")
    if r.get("non_finite"):
        print(f"  {r['non_finite']} episode returns are not finite (left out of the statistics and the histogram)")
    print(f"  reference returns {info.ref_min_score} .. {info.ref_max_score}")
    print(f"  {summary['metadata'].get('description', '')}")
    print("\n" + stats.histogram(returns))
    record = summary["advrl"]
    if record:
        print(f"\nadvrl.json: {record.get('kind')}, seed {record.get('seed')}, built in {record.get('build_seconds')} s by `{record.get('command')}`")
        for source in record.get("sources", []):
            name = source.get("dataset") or source.get("policy") or f"replay of {source.get('run')} up to step {source.get('medium_step')}"
            first, stop = source["episodes"]
            print(f"  {name:40s} {source['proportion']:7.1%} {source['transitions']:>9} transitions  episodes {first}..{stop - 1}")
        software = record.get("software")
        if software:
            versions = "  ".join(f"{k} {v}" for k, v in software.items() if not isinstance(v, dict))
            cpu = software.get("processor", {})
            print(f"  built with {versions}; processor {cpu.get('model')} (flags {cpu.get('flags_sha256')})")
    if args.png:
        print(f"\nhistogram written to {args.png}")
    return 0


def _device(name: str) -> str:
    """--device values, checked as train.device is (the message replaces a traceback)."""
    from advrl.device import device_error

    error = device_error(name)
    if error:
        raise argparse.ArgumentTypeError(f"{name} {error}")
    return name


NOISE_SPACE_CHOICES = ("raw", "standardised")  # advrl.evaluation.NOISE_SPACES (not imported: it imports gymnasium)


def _noise_levels(text: str) -> list[float]:
    """--obs-noise 0,0.05,0.1: finite stds >= 0, each once, in the order given."""
    levels = []
    for part in text.split(","):
        try:
            level = float(part)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{part!r} is not a number (give stds like 0,0.05,0.1)") from None
        if not 0 <= level < float("inf"):
            raise argparse.ArgumentTypeError(f"{part} is not a finite std >= 0")
        if level not in levels:
            levels.append(level)
    return levels


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="advrl", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train a recipe, or resume a run")
    train.add_argument("recipe", nargs="?", help="recipe YAML file")
    train.add_argument("overrides", nargs="*", help="key=value overrides applied last (e.g. train.steps=10000)")
    train.add_argument("--run-dir", help="run directory (default: runs/<name>/<dataset>/seed<k>-<time>)")
    train.add_argument("--resume", metavar="RUN_DIR",
                       help="continue an interrupted or finished run from its last checkpoint; overrides of train.steps "
                            "(grow a pilot to more steps), train.checkpoint_every, train.log_every and eval.* apply and "
                            "are saved in its recipe.yaml, any other is refused")
    train.add_argument("--vectorize", action="store_true",
                       help="train the seeds of seed=a,b,c in lockstep in this process (stacked parameters, one batched "
                            "step for all); each seed is a run of its own in RUN_DIR/seed<k>. With --resume GROUP_DIR: "
                            "continue such a group together")
    train.add_argument("--seed-dirs", nargs="+", metavar="DIR",
                       help="with --vectorize: one run folder per seed, in the order of seed=a,b,... (default: "
                            "RUN_DIR/seed<k>); without a RECIPE: resume these runs together")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.set_defaults(func=cmd_train)

    online = sub.add_parser("online", help="train an agent online in its environment (behaviour policies)")
    online.add_argument("recipe", nargs="?", help="recipe YAML file with an online: section")
    online.add_argument("overrides", nargs="*")
    online.add_argument("--run-dir")
    online.add_argument("--resume", metavar="RUN_DIR")
    online.add_argument("--no-progress", action="store_true")
    online.set_defaults(func=cmd_online)

    tune = sub.add_parser("finetune", help="fine-tune an offline run online (settings: the recipe's online: section)")
    tune.add_argument("run_dir", nargs="?", help="the offline run to continue")
    tune.add_argument("overrides", nargs="*", help="key=value overrides, e.g. online.steps=250000")
    tune.add_argument("--out", help="fine-tuning run directory (default: RUN_DIR/finetune)")
    tune.add_argument("--resume", metavar="FINETUNE_DIR", help="continue an interrupted fine-tuning run")
    tune.add_argument("--no-progress", action="store_true")
    tune.set_defaults(func=cmd_finetune)

    evaluate = sub.add_parser(
        "eval", help="evaluate runs' checkpoints with noisy observations; results saved in each run",
        description="Evaluate the last checkpoint of every run at or below the PATHs (run folders, or sweep and "
                    "study folders above them) at each --obs-noise level, and append the results to each run's "
                    "eval_noise.jsonl (checkpoint step, noise level and space, episodes, seed, return and score "
                    "mean and std), where `advrl compare` and `advrl report` read them. An evaluation already "
                    "saved for the same checkpoint step, level, space, episodes and seed is not repeated "
                    "(--force repeats it).")
    evaluate.add_argument("runs", nargs="+", metavar="PATH", help="a run folder, or a folder above run folders")
    evaluate.add_argument("--episodes", type=_positive_int, default=None, help="episodes per level (default: the recipe's eval.episodes)")
    evaluate.add_argument("--obs-noise", type=_noise_levels, default=[0.0], metavar="SIGMA[,SIGMA...]",
                          help="std of the Gaussian noise on observations, one or more levels: 0,0.05,0.1 (default 0)")
    evaluate.add_argument("--noise-space", choices=NOISE_SPACE_CHOICES, default="raw",
                          help="raw (default): sigma is added to the raw observations the environment gives, before advrl's "
                               "observation standardisation; standardised: sigma is in units of each dimension's dataset "
                               "std, i.e. added to the standardised observation the actor reads (the same when "
                               "data.normalize_observations is off)")
    evaluate.add_argument("--seed", type=int, default=None, help="evaluation seed (default: the run's seed + eval.seed_offset)")
    evaluate.add_argument("--force", action="store_true", help="evaluate again what the runs already saved")
    evaluate.add_argument("--json", metavar="FILE", help="also write every result, by run folder, as JSON here")
    evaluate.add_argument("--device", default="cpu", type=_device, help="cpu, cuda or cuda:N")
    evaluate.set_defaults(func=cmd_eval)

    cmp = sub.add_parser("compare", help="table and learning curves of runs, their seeds grouped",
                         description="Group runs (by recipe name, and dataset when they span several; or by the "
                                     "LABEL you give a PATH), then print per group the IQM and mean of the run "
                                     "scores with stratified bootstrap 95 % CIs, P(X > Y) between groups, the "
                                     "last evaluations and speed (Agarwal et al. 2021); the score under each "
                                     "observation-noise level `advrl eval` saved in the runs (IQM [95 % CI]); and "
                                     "runs that died with an exception as failed, with their error line.")
    cmp.add_argument("runs", nargs="+", metavar="[LABEL=]PATH", help="a run folder, or a folder above run folders")
    cmp.add_argument("--last", type=int, default=None,
                     help="a run without a final evaluation scores the mean of its last N evaluations "
                          "(default: its recipe's eval.last_n, 3)")
    cmp.add_argument("--reps", type=int, default=2000, help="bootstrap resamples for the confidence intervals (default 2000)")
    cmp.add_argument("--profile", metavar="PNG", help="write performance profiles (fraction of runs above a score, with CI bands) here")
    cmp.add_argument("--plot", metavar="PNG", help="write the learning curves (mean +- std over seeds) here")
    cmp.add_argument("--json", metavar="FILE", help="write the summaries as JSON here")
    cmp.add_argument("--title", default="advrl compare", help="the plot's title")
    cmp.set_defaults(func=cmd_compare)

    rep = sub.add_parser("report", help="write a Markdown report of runs (tables, curves, scores, noise robustness)",
                         description="Group runs as `advrl compare` does and write report.md with the score table "
                                     "(IQM and mean with bootstrap CIs, P(X > Y)), learning curves with CI bands "
                                     "across seeds, final scores, performance profiles, the noise-robustness table "
                                     "and plot when `advrl eval` saved results, and one line per run (failed runs "
                                     "with their error), into DIR (the first PATH) or --out.")
    rep.add_argument("runs", nargs="+", metavar="[LABEL=]PATH", help="a run folder, or a folder above run folders")
    rep.add_argument("--out", metavar="DIR", help="folder of report.md and its PNGs (default: the first PATH)")
    rep.add_argument("--json", metavar="FILE", help="also write the statistics and per-seed values as JSON here")
    rep.add_argument("--last", type=int, default=None, help="as advrl compare --last")
    rep.add_argument("--reps", type=int, default=2000, help="bootstrap resamples (default 2000)")
    rep.add_argument("--title", default="advrl report", help="the report's and plots' title")
    rep.set_defaults(func=cmd_report)

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

    probing = sub.add_parser("probe", help="does the run's critic rank its dataset's sources? Q, V, advantage per source",
                             description="For each source of the run's dataset (behaviour policies of an advrl "
                                         "build or mix; otherwise terciles of episode return): Q of the data and "
                                         "of the policy, V, A = Q - V, P(A > 0), tanh(A) and the policy's distance "
                                         "to the data actions, on a fixed sample of transitions.")
    probing.add_argument("runs", nargs="+", metavar="RUN_DIR")
    probing.add_argument("--samples", type=int, default=20000, help="transitions drawn per source (default 20000)")
    probing.add_argument("--critic", default="critic", help="component giving Q (default: critic)")
    probing.add_argument("--value", default="value", help="component giving V; '' for none (default: value, if the run has one)")
    probing.add_argument("--json", metavar="FILE", help="write the rows as JSON here")
    probing.add_argument("--device", default="cpu", type=_device, help="cpu, cuda or cuda:N")
    probing.set_defaults(func=cmd_probe)

    comps = sub.add_parser("components", help="list registered components, or describe one")
    comps.add_argument("kind", nargs="?")
    comps.add_argument("name", nargs="?")
    comps.add_argument("--recipe", help="also the components that this recipe's imports: register")
    comps.set_defaults(func=cmd_components)

    recipe = sub.add_parser("recipe", help="recipe tools")
    recipe_sub = recipe.add_subparsers(dest="recipe_command", required=True)
    show = recipe_sub.add_parser("show", help="print the fully resolved recipe")
    show.add_argument("recipe")
    show.add_argument("overrides", nargs="*")
    show.set_defaults(func=cmd_recipe)
    diff = recipe_sub.add_parser("diff", help="what differs between two resolved recipes (dotted key: A -> B; - only in A, + only in B)")
    diff.add_argument("a", metavar="A", help="recipe file (a run's recipe.yaml too), or advrl:NAME.yaml")
    diff.add_argument("b", metavar="B", help="recipe file (a run's recipe.yaml too), or advrl:NAME.yaml")
    diff.add_argument("overrides", nargs="*", help="key=value overrides of B (e.g. components.value.name=expectile)")
    diff.set_defaults(func=cmd_recipe_diff)

    data = sub.add_parser("data", help="datasets: build, mix, inspect; behaviour policies")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    data_sub.add_parser("list", help="local datasets, buildable ids with policy status, remote Minari ids").set_defaults(func=cmd_data)
    make = data_sub.add_parser("make", help="build an advrl/<env>/<kind>[-<size>][-s<seed>]-v0 dataset locally")
    make.add_argument("id", help="e.g. advrl/hopper/medium-expert-v0, advrl/hopper/expert-10k-s1-v0 (see `advrl data list`)")
    make.add_argument("--size", type=int, default=None, help="transitions (default: a size tag in the id, e.g. medium-100k-v0; else 1M as in D4RL; medium-replay: the whole replay up to the medium policy)")
    make.add_argument("--seed", type=int, default=None,
                      help="collection seed (default: a seed tag in the id, e.g. expert-10k-s1-v0; else 0; "
                      "medium-replay: its online run's seed)")
    make.add_argument("--proportions", help="shares of a mixture kind, e.g. random=0.25,medium=0.75 (default: equal)")
    make.add_argument("--run", metavar="RUN_DIR", help="medium-replay: the online run (default: the medium policy's recorded run)")
    make.add_argument("--retrain", action="store_true",
                      help="medium-replay: train the medium policy's online run again here first, from its record's recipe "
                      "(into --run, default runs/sources/<env>-medium), unless that run is already there")
    make.add_argument("--policies", metavar="DIR", help="behaviour policies folder (default: $ADVRL_POLICIES_PATH or advrl/policies)")
    make.set_defaults(func=cmd_data)
    mixer = data_sub.add_parser("mix", help="mix local datasets by proportions of transitions")
    mixer.add_argument("sources", nargs="+", metavar="SRC:P", help="a local dataset id and its share (0.5 or 1/3)")
    mixer.add_argument("--id", required=True, help="the new dataset id, e.g. advrl/hopper/my-mix-v0")
    mixer.add_argument("--size", type=int, default=None, help="transitions (default: the most every source can supply)")
    mixer.add_argument("--seed", type=int, default=0, help="seed of the episode picks")
    mixer.set_defaults(func=cmd_data)
    info = data_sub.add_parser("info", help="size, returns, histogram and metadata of a dataset")
    info.add_argument("id")
    info.add_argument("--png", metavar="FILE", help="also write a histogram of episode returns")
    info.add_argument("--text", action="store_true", help="human-readable text instead of JSON")
    info.set_defaults(func=cmd_data)
    packer = data_sub.add_parser("pack", help="write a local dataset build to one file, to use it on another machine")
    packer.add_argument("id")
    packer.add_argument("--out", metavar="FILE", help="archive path (default: <id>-<fingerprint>.tar.xz here)")
    packer.set_defaults(func=cmd_data)
    unpacker = data_sub.add_parser("unpack", help="install a packed dataset build into the local store (fingerprint checked)")
    unpacker.add_argument("archive", metavar="FILE")
    unpacker.add_argument("--replace", action="store_true", help="replace another local build of the same id")
    unpacker.set_defaults(func=cmd_data)
    export = data_sub.add_parser("export-policy", help="export an online run's actor as a behaviour policy")
    export.add_argument("source", metavar="RUN_OR_SNAPSHOT", help="an online run dir (latest actor) or a snapshots/step*.pt file")
    export.add_argument("--env", required=True, help="hopper, halfcheetah or walker2d")
    export.add_argument("--level", required=True, choices=["medium", "expert"])
    export.add_argument("--episodes", type=int, default=20, help="evaluation episodes for the record")
    export.add_argument("--eval-seed", type=int, default=0)
    export.add_argument("--pick-snapshot", action="store_true", help="pick the run's snapshot by D4RL's rule (expert: best; medium: ~1/3 of best)")
    export.add_argument("--candidates", type=int, default=3, help="expert with --pick-snapshot: re-evaluate this many of the best snapshots, keep the best")
    export.add_argument("--policies", metavar="DIR", help="write here instead of $ADVRL_POLICIES_PATH or advrl/policies")
    export.set_defaults(func=cmd_data)
    return parser


def main(argv: list[str] | None = None) -> int:
    # before any command imports torch: OpenMP reads its variables once, when torch starts
    threads.prepare_environment()
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except _expected_errors() as err:
        print(f"advrl: error: {err}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # output piped into `head` & co., which stopped reading: not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 0
    except OSError as err:
        if err.errno not in (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR):
            raise
        # a run or sweep folder that cannot be written: name it instead of a traceback
        print(
            f"advrl: error: cannot write {err.filename or 'a file'} ({err.strerror}); make that folder writable "
            "or choose another one (--run-dir, --out, MINARI_DATASETS_PATH).",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
