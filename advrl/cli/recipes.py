"""advrl components and recipe: what can be assembled, and what a recipe resolves to."""

from __future__ import annotations

from advrl import registry


def add_commands(sub) -> None:
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
