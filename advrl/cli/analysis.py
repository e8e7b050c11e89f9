"""advrl eval, compare, report and probe: what runs learned, read from their folders."""

from __future__ import annotations

import json
import sys

from advrl.cli.common import NOISE_SPACE_CHOICES, device_name, noise_levels, positive_int


def add_commands(sub) -> None:
    _add_eval(sub)
    _add_compare(sub)
    _add_report(sub)
    _add_probe(sub)


def _add_eval(sub) -> None:
    evaluate = sub.add_parser(
        "eval", help="evaluate runs' checkpoints with noisy observations; results saved in each run",
        description="Evaluate the last checkpoint of every run at or below the PATHs (run folders, or sweep and "
                    "study folders above them) at each --obs-noise level, and append the results to each run's "
                    "eval_noise.jsonl (checkpoint step, noise level and space, episodes, seed, return and score "
                    "mean and std), where `advrl compare` and `advrl report` read them. An evaluation already "
                    "saved for the same checkpoint step, level, space, episodes and seed is not repeated "
                    "(--force repeats it).")
    evaluate.add_argument("runs", nargs="+", metavar="PATH", help="a run folder, or a folder above run folders")
    evaluate.add_argument("--episodes", type=positive_int, default=None, help="episodes per level (default: the recipe's eval.episodes)")
    evaluate.add_argument("--obs-noise", type=noise_levels, default=[0.0], metavar="SIGMA[,SIGMA...]",
                          help="std of the Gaussian noise on observations, one or more levels: 0,0.05,0.1 (default 0)")
    evaluate.add_argument("--noise-space", choices=NOISE_SPACE_CHOICES, default="raw",
                          help="raw (default): sigma is added to the raw observations the environment gives, before advrl's "
                               "observation standardisation; standardised: sigma is in units of each dimension's dataset "
                               "std, i.e. added to the standardised observation the actor reads (the same when "
                               "data.normalize_observations is off)")
    evaluate.add_argument("--seed", type=int, default=None, help="evaluation seed (default: the run's seed + eval.seed_offset)")
    evaluate.add_argument("--force", action="store_true", help="evaluate again what the runs already saved")
    evaluate.add_argument("--json", metavar="FILE", help="also write every result, by run folder, as JSON here")
    evaluate.add_argument("--device", default="cpu", type=device_name, help="cpu, cuda or cuda:N")
    evaluate.set_defaults(func=cmd_eval)


def _add_compare(sub) -> None:
    cmp = sub.add_parser("compare", help="table and learning curves of runs, their seeds grouped",
                         description="Group runs (by recipe name, and dataset when they span several; or by the "
                                     "LABEL you give a PATH), then print per group the IQM and mean of the run "
                                     "scores with stratified bootstrap 95 % CIs, P(X > Y) between groups, the "
                                     "last evaluations and speed (Agarwal et al. 2021); the score under each "
                                     "observation-noise level `advrl eval` saved in the runs (IQM [95 % CI]); and "
                                     "runs that died with an exception as failed, with their error line.")
    _grouped_runs_arguments(cmp)
    cmp.add_argument("--profile", metavar="PNG", help="write performance profiles (fraction of runs above a score, with CI bands) here")
    cmp.add_argument("--plot", metavar="PNG", help="write the learning curves (mean +- std over seeds) here")
    cmp.add_argument("--json", metavar="FILE", help="write the summaries as JSON here")
    cmp.add_argument("--title", default="advrl compare", help="the plot's title")
    cmp.set_defaults(func=cmd_compare)


def _grouped_runs_arguments(parser) -> None:
    """What compare and report share: the runs, how a run is scored, the bootstrap's size."""
    parser.add_argument("runs", nargs="+", metavar="[LABEL=]PATH", help="a run folder, or a folder above run folders")
    parser.add_argument("--last", type=int, default=None,
                        help="a run without a final evaluation scores the mean of its last N evaluations "
                             "(default: its recipe's eval.last_n, 3)")
    parser.add_argument("--reps", type=int, default=2000, help="bootstrap resamples for the confidence intervals (default 2000)")


def _add_report(sub) -> None:
    rep = sub.add_parser("report", help="write a Markdown report of runs (tables, curves, scores, noise robustness)",
                         description="Group runs as `advrl compare` does and write report.md with the score table "
                                     "(IQM and mean with bootstrap CIs, P(X > Y)), learning curves with CI bands "
                                     "across seeds, final scores, performance profiles, the noise-robustness table "
                                     "and plot when `advrl eval` saved results, and one line per run (failed runs "
                                     "with their error), into DIR (the first PATH) or --out.")
    _grouped_runs_arguments(rep)
    rep.add_argument("--out", metavar="DIR", help="folder of report.md and its PNGs (default: the first PATH)")
    rep.add_argument("--json", metavar="FILE", help="also write the statistics and per-seed values as JSON here")
    rep.add_argument("--title", default="advrl report", help="the report's and plots' title")
    rep.set_defaults(func=cmd_report)


def _add_probe(sub) -> None:
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
    probing.add_argument("--device", default="cpu", type=device_name, help="cpu, cuda or cuda:N")
    probing.set_defaults(func=cmd_probe)


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
