"""``advrl`` command line: a thin layer over the Python API."""

from __future__ import annotations

import argparse
import json
import sys

from advrl import registry


def _expected_errors() -> tuple[type[BaseException], ...]:
    from advrl.data.dataset import DatasetError
    from advrl.learner.checkpoint import CheckpointError
    from advrl.learner.update import NonFiniteLossError
    from advrl.recipe import RecipeError

    return (RecipeError, registry.RegistryError, DatasetError, CheckpointError, NonFiniteLossError, FileNotFoundError)


def cmd_train(args) -> int:
    import advrl

    if args.resume:
        if args.recipe or args.overrides:
            print("advrl train --resume RUN_DIR takes no recipe or overrides: the run keeps the recipe it saved.", file=sys.stderr)
            return 2
        result = advrl.resume(args.resume, progress=not args.no_progress)
    else:
        if not args.recipe:
            print("advrl train needs a RECIPE (or --resume RUN_DIR).", file=sys.stderr)
            return 2
        result = advrl.train(args.recipe, args.overrides, run_dir=args.run_dir, progress=not args.no_progress)
    summary = {"run_dir": str(result.run_dir), "steps": result.steps, "final_return": result.final_return}
    if result.final_score is not None:
        summary["final_normalized_score"] = result.final_score
    print(json.dumps(summary))
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
    summary = {"run_dir": str(result.run_dir), "steps": result.steps, "final_return": result.final_return}
    if result.final_score is not None:
        summary["final_normalized_score"] = result.final_score
    print(json.dumps(summary))
    return 0


def cmd_eval(args) -> int:
    import advrl

    run = advrl.load_run(args.run_dir, device=args.device)
    result = run.evaluate(episodes=args.episodes, obs_noise=args.obs_noise, seed=args.seed)
    print(json.dumps({"run_dir": args.run_dir, "step": run.step, "obs_noise": args.obs_noise, **result}))
    return 0


def cmd_components(args) -> int:
    from advrl.component import describe

    if args.kind and args.name:
        print(describe(registry.get(args.kind, args.name)))
        return 0
    kinds = [args.kind] if args.kind else list(registry.KINDS)
    for kind in kinds:
        if kind not in registry.KINDS:
            registry.get(kind, "")  # raises with close matches
        names = registry.names(kind)
        print(f"{kind:12s} {', '.join(names) or '-':60s}  # {registry.KINDS[kind]}")
    if not args.kind:
        print("\nDescribe one: advrl components KIND NAME")
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


def cmd_data(args) -> int:
    import minari

    from advrl.data import catalog
    from advrl.data.dataset import dataset_info, open_minari

    if args.data_command == "list":
        for dataset_id in sorted(minari.list_local_datasets()):
            print(dataset_id)
        print(f"\nbuildable here: {', '.join(f'advrl/{env}/random-v0' for env in catalog.ENVS)}")
        return 0
    if args.data_command == "make":
        path = catalog.build(args.id, size=args.size, seed=args.seed)
        print(path)
        return 0
    info = dataset_info(open_minari(args.id))
    print(json.dumps({k: v for k, v in vars(info).items() if k != "eval_env_spec"}, indent=2, default=str))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="advrl", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train a recipe, or resume a run")
    train.add_argument("recipe", nargs="?", help="recipe YAML file")
    train.add_argument("overrides", nargs="*", help="key=value overrides applied last (e.g. train.steps=10000)")
    train.add_argument("--run-dir", help="run directory (default: runs/<name>/<dataset>/seed<k>-<time>)")
    train.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run from its last checkpoint")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.set_defaults(func=cmd_train)

    online = sub.add_parser("online", help="train an agent online in its environment (behaviour policies)")
    online.add_argument("recipe", nargs="?", help="recipe YAML file with an online: section")
    online.add_argument("overrides", nargs="*")
    online.add_argument("--run-dir")
    online.add_argument("--resume", metavar="RUN_DIR")
    online.add_argument("--no-progress", action="store_true")
    online.set_defaults(func=cmd_online)

    evaluate = sub.add_parser("eval", help="evaluate a run's checkpoint in its environment")
    evaluate.add_argument("run_dir")
    evaluate.add_argument("--episodes", type=int, default=None)
    evaluate.add_argument("--obs-noise", type=float, default=0.0, help="std of Gaussian noise on observations")
    evaluate.add_argument("--seed", type=int, default=None, help="evaluation seed (default: the run's)")
    evaluate.add_argument("--device", default="cpu")
    evaluate.set_defaults(func=cmd_eval)

    comps = sub.add_parser("components", help="list registered components, or describe one")
    comps.add_argument("kind", nargs="?")
    comps.add_argument("name", nargs="?")
    comps.set_defaults(func=cmd_components)

    recipe = sub.add_parser("recipe", help="recipe tools")
    recipe_sub = recipe.add_subparsers(dest="recipe_command", required=True)
    show = recipe_sub.add_parser("show", help="print the fully resolved recipe")
    show.add_argument("recipe")
    show.add_argument("overrides", nargs="*")
    show.set_defaults(func=cmd_recipe)

    data = sub.add_parser("data", help="datasets")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    data_sub.add_parser("list", help="local datasets and what advrl can build").set_defaults(func=cmd_data)
    make = data_sub.add_parser("make", help="build a dataset locally")
    make.add_argument("id")
    make.add_argument("--size", type=int, default=100_000)
    make.add_argument("--seed", type=int, default=0)
    make.set_defaults(func=cmd_data)
    info = data_sub.add_parser("info", help="size and metadata of a dataset")
    info.add_argument("id")
    info.set_defaults(func=cmd_data)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except _expected_errors() as err:
        print(f"advrl: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
