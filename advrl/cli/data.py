"""advrl data: build, mix, pack and inspect datasets; export behaviour policies."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path


def add_commands(sub) -> None:
    data = sub.add_parser("data", help="datasets: build, mix, import, inspect; behaviour policies")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    _add_build_commands(data_sub)
    _add_store_commands(data_sub)


def _add_build_commands(data_sub) -> None:
    """list, make, mix, import: what is here and how a dataset comes to be."""
    data_sub.add_parser("list", help="local datasets, buildable ids with policy status, remote Minari ids").set_defaults(func=cmd_list)
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
    make.set_defaults(func=cmd_make)
    mixer = data_sub.add_parser("mix", help="mix local datasets by proportions of transitions")
    mixer.add_argument("sources", nargs="+", metavar="SRC:P", help="a local dataset id and its share (0.5 or 1/3)")
    mixer.add_argument("--id", required=True, help="the new dataset id, e.g. advrl/hopper/my-mix-v0")
    mixer.add_argument("--size", type=int, default=None, help="transitions (default: the most every source can supply)")
    mixer.add_argument("--seed", type=int, default=0, help="seed of the episode picks")
    mixer.set_defaults(func=cmd_mix)
    importing = data_sub.add_parser(
        "import", help="make a local dataset of transitions kept as arrays (D4RL's layout, .npz or .hdf5)",
        description="Write the transitions of FILE (arrays observations, actions, rewards, terminals; optionally "
                    "timeouts and next_observations, one row per transition, as D4RL's files hold them) as the "
                    "local Minari dataset ID, with a build record. Without --env the dataset has no evaluation "
                    "environment: train it with eval.episodes=0. See advrl/data/importer.py.")
    importing.add_argument("file", metavar="FILE", help="a .npz (numpy.savez) or .hdf5/.h5 file")
    importing.add_argument("--id", required=True, help="the new dataset id, e.g. mylab/robot-pick-v0")
    importing.add_argument("--env", help="the Gymnasium id the data came from (evaluation, reference returns); checked against the arrays")
    importing.add_argument("--max-action", type=float, default=None,
                           help="the action bound m of [-m, m] (default: the env's, else 1.0); actions beyond it are refused")
    importing.add_argument("--ref-min", type=float, default=None, help="return of a random policy, for normalised scores (default: D4RL's for its envs)")
    importing.add_argument("--ref-max", type=float, default=None, help="return of an expert policy, for normalised scores")
    importing.set_defaults(func=cmd_import)


def _add_store_commands(data_sub) -> None:
    """info, pack, unpack, export-policy: look into a dataset, move it, export a policy."""
    info = data_sub.add_parser("info", help="size, returns, histogram and metadata of a dataset")
    info.add_argument("id")
    info.add_argument("--png", metavar="FILE", help="also write a histogram of episode returns")
    info.add_argument("--text", action="store_true", help="human-readable text instead of JSON")
    info.set_defaults(func=cmd_info)
    packer = data_sub.add_parser("pack", help="write a local dataset build to one file, to use it on another machine")
    packer.add_argument("id")
    packer.add_argument("--out", metavar="FILE", help="archive path (default: <id>-<fingerprint>.tar.xz here)")
    packer.set_defaults(func=cmd_pack)
    unpacker = data_sub.add_parser("unpack", help="install a packed dataset build into the local store (fingerprint checked)")
    unpacker.add_argument("archive", metavar="FILE")
    unpacker.add_argument("--replace", action="store_true", help="replace another local build of the same id")
    unpacker.set_defaults(func=cmd_unpack)
    export = data_sub.add_parser("export-policy", help="export an online run's actor as a behaviour policy")
    export.add_argument("source", metavar="RUN_OR_SNAPSHOT", help="an online run dir (latest actor) or a snapshots/step*.pt file")
    export.add_argument("--env", required=True, help="hopper, halfcheetah or walker2d")
    export.add_argument("--level", required=True, choices=["medium", "expert"])
    export.add_argument("--episodes", type=int, default=20, help="evaluation episodes for the record")
    export.add_argument("--eval-seed", type=int, default=0)
    export.add_argument("--pick-snapshot", action="store_true", help="pick the run's snapshot by D4RL's rule (expert: best; medium: ~1/3 of best)")
    export.add_argument("--candidates", type=int, default=3, help="expert with --pick-snapshot: re-evaluate this many of the best snapshots, keep the best")
    export.add_argument("--policies", metavar="DIR", help="write here instead of $ADVRL_POLICIES_PATH or advrl/policies")
    export.set_defaults(func=cmd_export_policy)


def cmd_list(args) -> int:
    import minari

    from advrl.data import catalog
    from advrl.data.collect import read_record
    from advrl.data.dataset import datasets_root

    local = minari.list_local_datasets()
    print(f"local datasets ({datasets_root()}):")
    for dataset_id in sorted(local):
        meta = local[dataset_id]
        record = read_record(dataset_id)
        origin = f"  [{_origin(record)}]" if record else ""
        print(f"  {dataset_id:42s} {meta.get('total_steps', '?'):>9} steps {meta.get('total_episodes', '?'):>6} episodes{origin}")
    if not local:
        print("  (none)")
    _print_buildable(local, root=None)
    print("\nremote Minari MuJoCo ids (need the network: dataset.download=true):")
    for dataset_id in catalog.remote_ids():
        print(f"  {dataset_id:42s} {'local' if dataset_id in local else 'remote'}")
    return 0


def _origin(record: dict) -> str:
    """How a local dataset came to be, from its build record."""
    if record.get("kind") == "import":
        sources = record.get("sources") or [{}]
        return f"import of {Path(sources[0].get('file', '?')).name}"
    return f"{record.get('kind', 'advrl')}, seed {record.get('seed')}"


def _print_buildable(local, root) -> None:
    """The ids `advrl data make` builds here, and the behaviour policies they are built from."""
    from advrl.data import catalog, policies

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


def _proportions(text: str | None) -> dict[str, float] | None:
    """--proportions random=0.25,medium=0.75 as {level: share}."""
    from advrl.data.dataset import DatasetError
    from advrl.data.mix import parse_source

    if not text:
        return None
    proportions = {}
    for part in text.split(","):
        level, sep, share = part.partition("=")
        if not sep:
            raise DatasetError(f"--proportions takes LEVEL=SHARE,... (e.g. random=0.25,medium=0.75), got {text!r}.")
        proportions[level.strip()] = parse_source(f"{level.strip()}:{share}")[1]
    return proportions


def cmd_make(args) -> int:
    from advrl.data import catalog
    from advrl.data.collect import read_record

    path = catalog.build(
        args.id, size=args.size, seed=args.seed, proportions=_proportions(args.proportions), policies_root=args.policies,
        run_dir=args.run, retrain=args.retrain,
        log=lambda message: print(f"advrl: {message}", file=sys.stderr, flush=True),
    )
    record = read_record(args.id) or {}
    print(json.dumps({"id": args.id, "path": path, **{k: record.get(k) for k in ("size", "episodes", "seed", "returns", "build_seconds")}}))
    return 0


def cmd_mix(args) -> int:
    from advrl.data.collect import read_record
    from advrl.data.mix import mix, parse_source

    sources = [parse_source(text) for text in args.sources]
    path = mix(sources, args.id, size=args.size, seed=args.seed)
    record = read_record(args.id) or {}
    shares = {s["dataset"]: {"proportion": s["proportion"], "transitions": s["transitions"]} for s in record.get("sources", [])}
    print(json.dumps({"id": args.id, "path": path, "size": record.get("size"), "episodes": record.get("episodes"), "sources": shares}))
    return 0


def cmd_pack(args) -> int:
    from advrl.data.archive import pack, read_manifest

    path = pack(args.id, args.out)
    manifest = read_manifest(path)
    print(json.dumps({"id": args.id, "fingerprint": manifest["fingerprint"], "archive": str(path), "bytes": path.stat().st_size}))
    return 0


def cmd_unpack(args) -> int:
    from advrl.data.archive import unpack
    from advrl.data.collect import dataset_path

    manifest = unpack(args.archive, replace=args.replace)
    print(json.dumps({"id": manifest["dataset_id"], "fingerprint": manifest["fingerprint"], "path": dataset_path(manifest["dataset_id"])}))
    return 0


def cmd_import(args) -> int:
    from advrl.data.collect import read_record
    from advrl.data.importer import import_arrays

    path = import_arrays(args.file, args.id, env=args.env, max_action=args.max_action, ref_min=args.ref_min, ref_max=args.ref_max)
    record = read_record(args.id) or {}
    source = (record.get("sources") or [{}])[0]
    print(json.dumps({"id": args.id, "path": path, "size": record.get("size"), "episodes": record.get("episodes"),
                      "dropped_transitions": source.get("dropped_transitions"), "fingerprint": record.get("fingerprint")}))
    return 0


def cmd_export_policy(args) -> int:
    import shlex

    from advrl.data import policies

    command = ["advrl", "data", "export-policy", args.source, "--env", args.env, "--level", args.level, "--episodes", str(args.episodes)]
    if args.pick_snapshot:
        command += ["--pick-snapshot", "--candidates", str(args.candidates)]
    record = policies.export_policy(
        args.source, args.env, args.level, episodes=args.episodes, root=args.policies, pick_snapshot=args.pick_snapshot,
        eval_seed=args.eval_seed, command=shlex.join(command), candidates=args.candidates,
    )
    print(json.dumps({"policy": str(policies.policy_path(args.env, args.level, args.policies)), **record}))
    return 0


def cmd_info(args) -> int:
    from advrl.data import stats

    ds = _open_local(args.id)
    summary, info, returns = _info_summary(ds, args.id)
    if args.png:
        summary["png"] = stats.save_histogram_png(returns, args.png, title=f"{args.id}: episode returns")
    if not args.text:
        print(json.dumps(summary, indent=2, default=str))
        return 0
    _print_info_text(args.id, summary, info, returns)
    if args.png:
        print(f"\nhistogram written to {args.png}")
    return 0


def _open_local(dataset_id: str):
    """The dataset, or one line saying how to build or download it."""
    import minari

    from advrl.data import catalog
    from advrl.data.collect import dataset_path
    from advrl.data.dataset import DatasetError, open_minari

    local = set(minari.list_local_datasets())
    if dataset_id not in local and not os.path.isdir(dataset_path(dataset_id)):
        if catalog.is_buildable(dataset_id):
            raise DatasetError(f"Dataset {dataset_id!r} is not built yet: build it with `advrl data make {dataset_id}`.")
        if dataset_id not in catalog.remote_ids():
            raise catalog.unknown_id_error(dataset_id, sorted(local) + catalog.remote_ids(), what="No dataset")
    return open_minari(dataset_id)  # remote ids: explains how to download


def _info_summary(ds, dataset_id: str):
    """What `advrl data info` prints as JSON; with the dataset's facts and its episode returns."""
    from advrl.data import stats
    from advrl.data.collect import dataset_path, read_record
    from advrl.data.dataset import content_fingerprint, data_problems, dataset_info, read_episodes

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
    summary["path"] = dataset_path(dataset_id)
    summary["env_spec"] = getattr(ds.spec.env_spec, "id", None)
    spec = info.eval_env_spec
    if isinstance(spec, str) and spec.lstrip().startswith("{"):
        spec = json.loads(spec).get("id")  # minari keeps it as the EnvSpec's JSON
    summary["eval_env_spec"] = getattr(spec, "id", spec)
    summary["returns"] = stats.return_stats(returns)
    summary["histogram"] = stats.histogram(returns).splitlines()
    summary["metadata"] = {k: metadata.get(k) for k in keep if k in metadata}
    summary["advrl"] = read_record(dataset_id)
    summary["warnings"] = problems
    return summary, info, returns


def _print_info_text(dataset_id: str, summary: dict, info, returns) -> None:
    from advrl.data import stats

    r = summary["returns"]
    print(f"{dataset_id}  ({summary['path']})")
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
    if summary["advrl"]:
        _print_build_record(summary["advrl"])


def _print_build_record(record: dict) -> None:
    """How an advrl build was made: its sources' shares and the software and processor."""
    print(f"\nadvrl.json: {_origin(record)}, built in {record.get('build_seconds')} s by `{record.get('command')}`")
    for source in record.get("sources", []):
        if "file" in source:  # an import
            print(f"  {source['file']} (sha256 {source['sha256'][:12]}): {source['rows']} rows, {source['transitions']} "
                  f"transitions, {source['dropped_transitions']} dropped (cut episodes' last rows)")
            continue
        name = source.get("dataset") or source.get("policy") or f"replay of {source.get('run')} up to step {source.get('medium_step')}"
        first, stop = source["episodes"]
        print(f"  {name:40s} {source['proportion']:7.1%} {source['transitions']:>9} transitions  episodes {first}..{stop - 1}")
    software = record.get("software")
    if software:
        versions = "  ".join(f"{k} {v}" for k, v in software.items() if not isinstance(v, dict))
        cpu = software.get("processor", {})
        print(f"  built with {versions}; processor {cpu.get('model')} (flags {cpu.get('flags_sha256')})")
