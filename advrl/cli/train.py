"""advrl train, online and finetune: one run (or a group of vectorised seeds), resumable."""

from __future__ import annotations

import sys

from advrl.cli.common import print_result


def add_commands(sub) -> None:
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
