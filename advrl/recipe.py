"""YAML recipes: loading (``extends``, dotlist overrides), the shared schema, and validation.

A recipe names the dataset, the training budget, the components (one per slot) and the
updates (which terms train which slot's parameters, on which schedule). Errors name the
recipe path of the offending key and the keys or values that are allowed there: every option
declares its range or choices (``option(..., ge=0, le=1)``), checked with the interpolations,
the device and the data flow when the recipe is loaded, before any run folder or data.

``extends:`` names one parent recipe or a list of them (``extends: [advrl:a2pr/hopper-medium-expert.yaml,
advrl:a2pr/ablations/no_behavior.yaml]``). The files of the extends graph are merged by their
own keys, once each, in one order: every file after the files it extends (a shared ancestor
such as base.yaml once, first), parents in the order listed, the recipe itself last (C3, as
Python orders base classes). So a later parent overrides what an earlier one set but cannot
bring back its ancestors' defaults, and ``slot: null`` removals (under components, updates,
an update's optimize) apply to what the files before it merged. A file that sets fields of a
slot an earlier file removed is refused; a recipe with several parents and no ``name`` is
named after its file. Components that nothing uses, or that an update trains for no other
component, are refused (:func:`advrl.learner.assembly.check_slot_use`).
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import typing
from dataclasses import MISSING as DATACLASS_MISSING
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from omegaconf import MISSING, DictConfig, ListConfig, OmegaConf
from omegaconf.errors import (
    ConfigKeyError,
    InterpolationKeyError,
    InterpolationResolutionError,
    OmegaConfBaseException,
    ValidationError,
)

from advrl import registry
from advrl.component import config_errors, option, option_error
from advrl.device import device_error
from advrl.errors import RecipeError  # noqa: F401 - advrl.recipe.RecipeError is public API


# ---- the shared schema ---------------------------------------------------------------------
@dataclass
class DatasetConfig:
    id: str = MISSING  # Minari id: remote (mujoco/hopper/medium-v0) or local (advrl/hopper/random-v0)
    download: bool = False  # fetch a remote id that is not in MINARI_DATASETS_PATH
    # Facts of the loaded dataset, filled in by advrl so recipes can interpolate them
    # (e.g. ${dataset.action_dim}); values given here are overwritten.
    obs_dim: int | None = None
    action_dim: int | None = None
    max_action: float | None = None


@dataclass
class DataConfig:
    normalize_observations: bool = True  # standardise with dataset mean/std (+1e-3), same at evaluation
    reward_scale: float = 1.0  # r <- scale * r + shift
    reward_shift: float = 0.0
    reward_normalization: str = option("none", "none | returns (IQL: r * 1000 / (max return - min return))", choices=("none", "returns"))
    action_clip: float | None = option(None, "clip dataset actions to +-(max_action - action_clip) (CQL: 1e-4)", ge=0)


@dataclass
class TrainConfig:
    steps: int = option(1_000_000, "gradient steps", ge=1)
    batch_size: int = option(256, "transitions per gradient step", ge=1)
    device: str = option("auto", "auto (CUDA when present) | cpu | cuda | cuda:N", check=device_error)
    log_every: int = option(1000, "steps between metric logs (the only host syncs of the loop)", ge=1)
    checkpoint_every: int = option(10_000, "steps between checkpoints", ge=1)
    threads: int = option(0, "CPU threads; 0: advrl's choice (one per core; a sweep's fair share); OMP_NUM_THREADS wins", ge=0)
    precision: str = option("fp32", "fp32 | bf16 (matrix products in bf16; weights, optimiser, losses, data float32)", choices=("fp32", "bf16"))


@dataclass
class EvalConfig:
    every: int = option(5000, "gradient steps between evaluations; 0 disables periodic evaluation", ge=0)
    episodes: int = option(10, "episodes per evaluation; 0: no evaluation", ge=0)
    seed_offset: int = 100  # evaluation env seed = seed + seed_offset (A2PR, SSAR)
    obs_noise: float = option(0.0, "std of Gaussian noise added to raw observations", ge=0)
    env: str | None = None  # Gymnasium id; null: the dataset's eval_env_spec
    policy: str = "actor"  # component slot whose act() is evaluated
    last_n: int = option(3, "a run's settled score: the mean of its last N evaluations (advrl compare)", ge=1)
    final_episodes: int = option(100, "episodes of one larger evaluation after the last step (0: none); compare prefers it", ge=0)


@dataclass
class LogConfig:
    """Where metrics go besides the run's own metrics.jsonl and CSVs (always written)."""

    tensorboard: bool = True  # events under RUN_DIR/tb
    wandb: bool = False  # also log to Weights & Biases (pip install wandb; WANDB_MODE=offline without network)
    wandb_project: str = "advrl"
    wandb_entity: str | None = None  # null: your default entity
    wandb_group: str | None = None  # e.g. one group per sweep; null: the recipe name


@dataclass
class OnlineConfig:
    """Online training (``advrl online``) and offline-to-online fine-tuning (``advrl finetune``)."""

    env: str | None = None  # Gymnasium id of the training env; null: the dataset's evaluation env
    steps: int = option(1_000_000, "environment steps (one gradient step each, after learning_starts)", ge=1)
    learning_starts: int = option(25_000, "no updates before this step (TD3: 25k; SSAR fine-tuning warm-up: 5k)", ge=0)
    random_warmup: bool = True  # uniform-random actions before learning_starts (false: the policy acts)
    exploration_noise: float = option(0.1, "std of Gaussian noise on deterministic actions, in units of max_action", ge=0)
    buffer_size: int = option(1_000_000, "transitions the replay buffer holds", ge=1)
    snapshot_every: int = option(0, "also keep the actor of every N-th evaluation step under snapshots/ (0: never)", ge=0)
    # fine-tuning from an offline run only:
    offline_buffer: str = option(
        "top_k", "offline data kept: top_k trajectories by return | all | half (50/50 batches) | none",
        choices=("top_k", "all", "half", "none"),
    )
    top_k: int = option(50, "trajectories kept by offline_buffer=top_k (SSAR: 50)", ge=1)
    freeze: list[str] = field(default_factory=list)  # slots no longer trained online (SSAR: [coefficient])
    anneal_slot: str | None = None  # coefficient slot scaled down online (SSAR: coefficient)
    anneal: str = option(
        "linear", "linear: 1 - N/anneal_steps (clamped at 0) | cosine: cos(min(N/anneal_steps, 1) pi/2) | none",
        choices=("linear", "cosine", "none"),
    )
    anneal_steps: int = option(400_000, "steps over which the annealed coefficient falls", ge=1)


@dataclass
class OptimizerConfig:
    name: str = option("adam", "adam | adamw", choices=("adam", "adamw"))
    lr: float = option(3e-4, "learning rate", gt=0)
    betas: list[float] = option([0.9, 0.999], "Adam's decay rates of the moment estimates", ge=0, lt=1)
    eps: float = option(1e-8, "Adam's denominator term", gt=0)
    weight_decay: float = option(0.0, "L2 (adam) or decoupled (adamw) weight decay", ge=0)
    losses: list[str] | None = None  # loss_* keys training this slot; null: all losses of the update
    clip_grad_norm: float | None = option(None, "clip the gradient norm of the slot's parameters; null: no clipping", gt=0)
    lr_schedule: dict[str, Any] | None = None  # a schedule component ({name: cosine, ...}) multiplying lr


@dataclass
class UpdateConfig:
    terms: list[str] = MISSING  # component slots computed in order; each may read what earlier ones wrote
    optimize: dict[str, OptimizerConfig] = MISSING  # slot -> optimiser of its parameters
    every: int = option(1, "run at steps where step % every == 0 (steps count from 1)", ge=1)
    start: int = option(0, "run only at steps > start", ge=0)
    stop: int | None = option(None, "run only at steps <= stop", ge=1)
    update_targets: list[str] = field(default_factory=list)  # slots whose target nets follow (Polyak)
    tau: float = option(0.005, "Polyak rate of the target networks", ge=0, le=1)


@dataclass
class RecipeSchema:
    name: str = "recipe"
    seed: int = option(0, "seed of every random number generator of the run", ge=0)
    imports: list[str] = field(default_factory=list)
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    log: LogConfig = field(default_factory=LogConfig)
    online: OnlineConfig = field(default_factory=OnlineConfig)
    components: dict[str, Any] = field(default_factory=dict)
    updates: dict[str, UpdateConfig] = field(default_factory=dict)


# ---- resolvers: arithmetic that recipes need for sizes and step counts ------------------------
def _int_mul(value, factor) -> int:
    return int(round(float(value) * float(factor)))


if not OmegaConf.has_resolver("int_mul"):
    OmegaConf.register_resolver("int_mul", _int_mul)  # ${int_mul:${train.steps},0.2}


# ---- loading -------------------------------------------------------------------------------
def _read_yaml(path: Path) -> DictConfig:
    if path.is_dir():
        raise RecipeError(f"{str(path)!r} is a folder, not a recipe file: name a .yaml file (a run's recipe.yaml too).")
    if not path.is_file():
        raise RecipeError(f"Recipe file {str(path)!r} does not exist.{_builtin_hint(path)}")
    try:
        cfg = OmegaConf.load(path)
    except Exception as err:  # yaml syntax errors come in many types
        raise RecipeError(f"Recipe {str(path)!r} is not valid YAML: {err}") from err
    if not isinstance(cfg, DictConfig):
        raise RecipeError(f"Recipe {str(path)!r} must be a mapping at the top level.")
    return cfg


def _builtin_hint(path: Path) -> str:
    """For a missing built-in recipe, the closest names of those that exist."""
    root = packaged_recipes().resolve()
    if not path.resolve().is_relative_to(root):
        return ""
    names = sorted(str(p.relative_to(root)) for p in root.rglob("*.yaml"))
    close = difflib.get_close_matches(str(path.resolve().relative_to(root)), names, n=3)
    return f" Closest built-in recipes: {', '.join(PACKAGED_PREFIX + c for c in close)}." if close else ""


def _merge_components(base: DictConfig, override: DictConfig) -> DictConfig:
    """Merge two ``components`` mappings; a slot whose ``name`` changes starts afresh (but for
    its wiring, see ``_swapped``), so that swapping a component does not carry the old
    component's settings over. A slot set to null is removed (by ``_merge``)."""
    merged = OmegaConf.create(OmegaConf.to_container(base, resolve=False))
    for slot_name, entry in override.items():
        old = merged.get(slot_name)
        swap = (
            isinstance(entry, DictConfig)
            and isinstance(old, DictConfig)
            and "name" in entry
            and entry.get("name") != old.get("name")
        )
        if swap:
            merged[slot_name] = _swapped(slot_name, old, entry)
        elif old is None or not isinstance(entry, DictConfig):
            merged[slot_name] = entry
        else:
            merged[slot_name] = OmegaConf.merge(old, entry)
    return merged


def _swapped(slot_name: str, old: DictConfig, new: DictConfig) -> DictConfig:
    """The entry of a slot whose component is swapped: the new entry plus the old one's
    ``kind`` and those of its batch-key fields (``*_key``) that the new component declares
    too. These place the slot in the recipe (the keys that other terms read), so swapping
    SSAR's IQL selector for ``all`` still writes ``trust``; the old settings are dropped."""
    entry = OmegaConf.create(OmegaConf.to_container(new, resolve=False))
    if "kind" in old and "kind" not in entry:
        entry.kind = old.kind
    try:
        declared = {f.name for f in dataclasses.fields(registry.get(entry.get("kind", slot_name), entry.name).Config)}
    except registry.RegistryError:
        return entry  # unknown kind or name: validation reports it, with close matches
    for key, value in old.items_ex(resolve=False):
        if str(key).endswith("_key") and key in declared and key not in entry:
            entry[key] = value
    return entry


def _merge(base: DictConfig, override: DictConfig) -> DictConfig:
    rest_base = OmegaConf.masked_copy(base, [k for k in base if k != "components"])
    rest_override = OmegaConf.masked_copy(override, [k for k in override if k != "components"])
    merged = OmegaConf.merge(rest_base, rest_override)
    _import_user_modules(merged.get("imports"))  # a swap looks up its new component
    merged.components = _merge_components(base.get("components", OmegaConf.create()), override.get("components", OmegaConf.create()))
    # `name: null` under components, updates or an update's optimize removes what a parent
    # recipe defined there
    mappings = [merged.get("components"), merged.get("updates")]
    mappings += [u.get("optimize") for u in (merged.get("updates") or {}).values() if isinstance(u, DictConfig)]
    for mapping in mappings:
        if isinstance(mapping, DictConfig):
            for key in [k for k, v in mapping.items_ex(resolve=False) if v is None]:
                del mapping[key]
    return merged


PACKAGED_PREFIX = "advrl:"  # `extends: advrl:td3bc.yaml` names a recipe shipped inside the advrl package


def packaged_recipes() -> Path:
    """The folder of advrl's built-in recipes, wherever advrl is installed."""
    return Path(str(resources.files("advrl").joinpath("recipes")))


def recipe_path(name: str | Path, base: Path | None = None) -> Path:
    """The file a recipe reference names: ``advrl:REL`` is a built-in recipe (from any folder);
    any other path is taken relative to ``base`` (the extending recipe's folder) or the cwd."""
    text = str(name)
    if text.startswith(PACKAGED_PREFIX):
        return packaged_recipes() / text[len(PACKAGED_PREFIX):]
    return Path(text) if base is None else base / text


def _local_imports(cfg: DictConfig, folder: Path) -> None:
    """Write each ``imports:`` module found in the recipe's own folder as its file path, so
    that it imports from any cwd and so does the resolved recipe a run directory keeps."""
    entries = cfg.get("imports")
    if not isinstance(entries, ListConfig):
        return  # absent, or of the wrong type, which validation reports
    resolved = []
    for entry in entries:
        if not isinstance(entry, str):
            resolved.append(entry)  # validation reports the type
            continue
        candidates = [folder / entry] if entry.endswith(".py") else [folder / (entry.replace(".", "/") + ".py"), folder / entry.replace(".", "/")]
        found = [c for c in candidates if c.is_file() or (c / "__init__.py").is_file()]
        resolved.append(str(found[0].resolve()) if found else entry)
    cfg.imports = resolved


def _import_user_modules(modules) -> None:
    try:
        registry.import_user_modules(list(modules or []))
    except ImportError as err:
        raise RecipeError(str(err)) from None


def _parents(cfg: DictConfig, path: Path) -> list[Path]:
    """The files ``extends:`` names (a path or a list of paths), resolved from ``path``'s folder."""
    parents = cfg.pop("extends", None)
    if parents is None:
        return []
    parents = [parents] if isinstance(parents, str) else parents
    if not isinstance(parents, (list, ListConfig)) or not all(isinstance(p, str) for p in parents):
        raise RecipeError(f"Recipe {str(path)!r}: extends must be a recipe path or a list of them, got {parents!r}.")
    return [recipe_path(p, path.parent).resolve() for p in parents]


def _read_recipe_file(path: Path, files: dict[Path, tuple[DictConfig, list[Path]]]) -> list[Path]:
    """Read ``path`` once into ``files`` (its own keys, its parents); return its parents."""
    if path not in files:
        cfg = _read_yaml(path)
        _local_imports(cfg, path.parent)
        files[path] = (cfg, _parents(cfg, path))
    return files[path][1]


def _linearise(path: Path, files: dict, seen: tuple[Path, ...] = ()) -> list[Path]:
    """The recipe files of ``path``'s extends graph, most specific first: the recipe, then its
    parents (the last listed first, since later parents win), each ancestor once and after
    every file that extends it (C3, as Python orders base classes). Merging the files' own
    keys in the reverse of this order applies the shared defaults once, so a later parent
    cannot bring back what an earlier one changed."""
    path = path.resolve()
    if path in seen:
        raise RecipeError(f"Recipe {str(path)!r} extends itself through {' -> '.join(str(p) for p in seen)}.")
    parents = _read_recipe_file(path, files)[::-1]
    lines = [_linearise(parent, files, seen + (path,)) for parent in parents]
    return [path, *_c3_merge([*lines, parents], path)]


def _c3_merge(sequences: list[list[Path]], path: Path) -> list[Path]:
    order: list[Path] = []
    sequences = [list(s) for s in sequences if s]
    while sequences:
        head = next((s[0] for s in sequences if not any(s[0] in other[1:] for other in sequences)), None)
        if head is None:
            raise RecipeError(
                f"Recipe {str(path)!r}: its extends lists order {', '.join(sorted({s[0].name for s in sequences}))} in "
                "contradicting ways, so no merge order keeps every recipe after the ones it extends and the parents "
                "in the order listed (a parent listed after a recipe that extends it would bring back the defaults "
                "that recipe changed: list it first, or drop it)."
            )
        order.append(head)
        sequences = [s[1:] if s[0] == head else s for s in sequences]
        sequences = [s for s in sequences if s]
    return order


def _entries(cfg: DictConfig, section: str) -> list[tuple[Any, Any]]:
    node = cfg.get(section)
    return list(node.items_ex(resolve=False)) if isinstance(node, DictConfig) else []


def _check_fragments(cfg: DictConfig, file: Path, merged: DictConfig, removed: dict[str, Path]) -> None:
    """Refuse a file that sets fields of a slot or update an earlier file removed with null (and
    none defined again since): the fields alone are no component (no name) or update (no terms)."""
    for section, defining in (("components", "name"), ("updates", "terms")):
        present = {key for key, _ in _entries(merged, section)}
        for key, value in _entries(cfg, section):
            where = f"{section}.{key}"
            if isinstance(value, DictConfig) and defining not in value and where in removed and key not in present:
                raise RecipeError(
                    f"{file.name} sets fields of {where}, which {removed[where].name} (merged before it) removes "
                    f"with {key}: null; extends merges parents in order and later ones win, so list "
                    f"{removed[where].name} after the recipe that configures {where}."
                )


def _removals(cfg: DictConfig, file: Path) -> dict[str, Path]:
    return {
        f"{section}.{key}": file
        for section in ("components", "updates")
        for key, value in _entries(cfg, section)
        if value is None
    }


def _load_with_extends(path: Path) -> DictConfig:
    """The recipe at ``path`` merged with its extends graph: every file's own keys, ancestors
    first (:func:`_linearise`), with swaps and null removals applied along the way."""
    files: dict[Path, tuple[DictConfig, list[Path]]] = {}
    order = _linearise(path, files)[::-1]
    merged, imports, removed = OmegaConf.create(), [], {}
    for file in order:
        cfg = files[file][0]
        _check_fragments(cfg, file, merged, removed)
        removed.update(_removals(cfg, file))
        # imports accumulate along the chain (a merge would replace the parents' list): the
        # resolved recipe, which a run directory keeps, must register every component it names
        imports += list(cfg.get("imports") or [])
        merged = _merge(merged, cfg)
    if imports:
        merged.imports = list(dict.fromkeys(imports))
    root, parents = files[path.resolve()]
    if len(parents) > 1 and "name" not in root:
        merged.name = path.stem  # no parent's name: a run of the combination is none of them
    return merged


def import_recipe_modules(path: str | Path) -> None:
    """Import what a recipe's ``imports:`` names (with its extends chain), without validating it."""
    cfg = _load_with_extends(recipe_path(path))
    registry.import_user_modules(list(cfg.get("imports") or []))


def apply_overrides(cfg: DictConfig, overrides: list[str]) -> DictConfig:
    for item in overrides:
        if "=" not in item:
            raise RecipeError(f"Override {item!r} must have the form key=value (e.g. train.steps=1000).")
    dotlist = OmegaConf.from_dotlist(list(overrides))
    return _merge(cfg, dotlist)


def load_recipe(
    path: str | Path, overrides: list[str] | tuple[str, ...] = (), dataset_facts: dict | None = None, check_flow: bool = True
) -> DictConfig:
    """Load a recipe: ``extends`` chain, then ``key=value`` overrides, then validation.

    ``path`` is a file, or ``advrl:NAME.yaml`` for a built-in recipe (``advrl:td3bc.yaml``).

    ``dataset_facts`` (obs_dim, action_dim, max_action) fills ``dataset.*`` so interpolations
    such as ``${dataset.action_dim}`` resolve; without it they resolve to null. With
    ``check_flow`` the components are built and the data flow checked (:func:`check_assembly`);
    a saved fine-tuning recipe, whose terms read its replay buffer's extra keys, skips it.
    """
    file = recipe_path(path)
    cfg = apply_overrides(_load_with_extends(file), list(overrides))
    if "name" not in cfg:
        cfg.name = file.stem
    cfg = validate(cfg)
    if dataset_facts:
        for key, value in dataset_facts.items():
            cfg.dataset[key] = value
    if check_flow:
        check_assembly(cfg)
    return cfg


# Shapes the components are built on while the dataset is not loaded: any positive sizes do,
# since the check is about which batch keys flow where, not about the numbers.
PLACEHOLDER_FACTS = {"obs_dim": 3, "action_dim": 2, "max_action": 1.0}


def check_assembly(cfg: DictConfig, dataset_keys: tuple[str, ...] | None = None) -> None:
    """Build every component (on placeholder shapes where the dataset facts are unknown) and
    run the trainer's data-flow check against the dataset's keys, so that a recipe whose terms
    miss an input fails when it is loaded, not after its run folder and data are set up."""
    import torch

    from advrl.component import DataSpec
    from advrl.data.dataset import DATASET_KEYS
    from advrl.learner.assembly import bind_components, build_components, check_data_flow, check_slot_use

    probe = copy.deepcopy(cfg)
    facts = {key: probe.dataset.get(key) if probe.dataset.get(key) is not None else value for key, value in PLACEHOLDER_FACTS.items()}
    probe.dataset.merge_with(facts)
    try:
        OmegaConf.resolve(probe)
    except OmegaConfBaseException as err:
        raise RecipeError(f"Recipe key '{err.full_key}' cannot be resolved: {str(err.msg).splitlines()[0]}") from None
    with torch.random.fork_rng(devices=[]):  # loading a recipe leaves the caller's random state alone
        components = build_components(probe, DataSpec(**facts), bind=False)
    check_data_flow(probe, components, DATASET_KEYS if dataset_keys is None else dataset_keys)
    bind_components(components)
    check_slot_use(probe, components)
    policy = probe.eval.policy
    if policy not in components or not hasattr(components[policy], "act"):
        raise RecipeError(f"eval.policy names {policy!r}, which is not an actor slot of the recipe.")


# ---- validation ----------------------------------------------------------------------------
def _close(key: str, allowed: list[str]) -> str:
    close = difflib.get_close_matches(key, allowed, n=2, cutoff=0.6)
    return f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


def _structured_merge(schema: Any, user: Any, where: str) -> DictConfig:
    """Merge user values into a structured config, turning OmegaConf errors into recipe errors."""
    base = OmegaConf.structured(schema)
    try:
        return OmegaConf.merge(base, user)
    except ConfigKeyError as err:
        full_key = str(err.full_key)
        parent, _, key = full_key.rpartition(".")
        node = OmegaConf.select(base, parent) if parent else base
        allowed = [str(k) for k in node.keys()] if hasattr(node, "keys") else []
        path = f"{where}.{full_key}" if where else full_key
        scope = ".".join(p for p in (where, parent) if p) or "the top level"
        raise RecipeError(
            f"Unknown recipe key {path!r}.{_close(key, allowed)} Allowed keys under {scope}: {', '.join(allowed)}."
        ) from None
    except ValidationError as err:
        path = f"{where}.{err.full_key}" if where else str(err.full_key)
        raise RecipeError(f"Recipe key {path!r} has the wrong type: {str(err.msg).splitlines()[0]}") from None


# keys of a components.<slot> entry that place the slot in the recipe rather than configure
# its component: kind, registered name, and renames of its declared batch/log keys
SLOT_KEYS = ("name", "kind", "keys", "precision")  # precision: this slot's compute (e.g. fp32 in a bf16 run)


def component_kind(slot_name: str, entry: DictConfig) -> str:
    kind = entry.get("kind")
    if kind is None:
        if slot_name in registry.KINDS:
            return slot_name
        raise RecipeError(
            f"components.{slot_name} needs a 'kind' (one of {', '.join(registry.KINDS)}), "
            "since the slot name is not itself a kind."
        )
    if kind not in registry.KINDS:
        raise RecipeError(f"components.{slot_name}.kind is {kind!r}.{_close(kind, list(registry.KINDS))} Kinds: {', '.join(registry.KINDS)}.")
    return kind


def component_config(slot_name: str, entry: DictConfig, instantiate: bool = True) -> tuple[type, Any]:
    """(component class, validated Config instance) for one recipe slot.

    With ``instantiate=False`` interpolations stay unresolved (the dataset facts may not be
    known yet) and the merged DictConfig is returned instead of a Config instance.
    """
    where = f"components.{slot_name}"
    if not isinstance(entry, DictConfig) or "name" not in entry:
        raise RecipeError(f"{where} must be a mapping with a 'name' (see `advrl components`).")
    kind = component_kind(slot_name, entry)
    try:
        cls = registry.get(kind, entry.name)
    except registry.RegistryError as err:
        raise RecipeError(f"{where}.name: {err}") from None
    values = OmegaConf.to_container(entry, resolve=instantiate)
    fields = OmegaConf.create({k: v for k, v in values.items() if k not in SLOT_KEYS})
    allowed = [f.name for f in dataclasses.fields(cls.Config)]
    for key in fields:
        if key not in allowed:
            raise RecipeError(
                f"Unknown recipe key '{where}.{key}' for {kind} {entry.name!r}.{_close(str(key), allowed)} "
                f"Allowed keys: {', '.join(allowed) or '(none)'}."
            )
    merged = _structured_merge(cls.Config, fields, where)
    required = [f.name for f in dataclasses.fields(cls.Config) if f.default is DATACLASS_MISSING and f.default_factory is DATACLASS_MISSING]
    missing = [key for key in required if key not in fields or OmegaConf.is_missing(fields, key)]
    if missing:
        raise RecipeError(f"Recipe is missing required key(s) {', '.join(f'{where}.{m}' for m in missing)} for {kind} {entry.name!r}.")
    if not instantiate:
        return cls, merged
    try:
        config = OmegaConf.to_object(merged)
    except OmegaConfBaseException as err:
        raise RecipeError(f"{where}: {err}") from None
    errors = config_errors(config)  # ranges and choices of values that were interpolations at load
    if errors:
        raise RecipeError(f"{where}.{errors[0]}")
    return cls, config


def _value(node: DictConfig, key: str, path: str) -> Any:
    """``node[key]`` as plain data, interpolations resolved; None where they lean on dataset
    facts not known yet. An interpolation naming a key the recipe lacks is an error."""
    try:
        value = node[key]
        return OmegaConf.to_container(value, resolve=True) if isinstance(value, (DictConfig, ListConfig)) else value
    except InterpolationKeyError as err:
        raw = OmegaConf.to_container(node, resolve=False)[key]
        raise RecipeError(
            f"{path}={raw} refers to a key the recipe does not have ({str(err.msg).splitlines()[0]}); "
            "correct the interpolation or give a value."
        ) from None
    except InterpolationResolutionError:
        return None


def _check_interpolations(node: DictConfig | ListConfig, where: str = "") -> None:
    """Resolve every interpolation once, so that one naming a missing key fails at load."""
    keys = range(len(node)) if isinstance(node, ListConfig) else list(node.keys())
    for key in keys:
        path = f"{where}[{key}]" if isinstance(key, int) else (f"{where}.{key}" if where else str(key))
        if OmegaConf.is_missing(node, key):
            continue  # reported as a missing required key
        if OmegaConf.is_interpolation(node, key):
            _value(node, key, path)
        elif isinstance(node[key], (DictConfig, ListConfig)):
            _check_interpolations(node[key], path)


def _check_options(node: DictConfig, schema: type, where: str, defaults: DictConfig | None = None) -> None:
    """Raise for the first field of ``node`` whose value its option does not allow (range,
    choices, check), recursing into sections; ``defaults`` supplies fields ``node`` lacks."""
    try:
        hints = typing.get_type_hints(schema)
    except Exception:  # a plug-in's Config with annotations Python cannot evaluate: no sections
        hints = {}
    for f in dataclasses.fields(schema):
        path = f"{where}.{f.name}" if where else f.name
        if dataclasses.is_dataclass(hints.get(f.name)):
            _check_options(node[f.name], hints[f.name], path)
            continue
        if not {"bounds", "choices", "check"} & set(f.metadata):
            continue
        source = node if f.name in node or defaults is None else defaults
        error = option_error(path, _value(source, f.name, path), f.metadata)
        if error:
            raise RecipeError(error)


def validate(cfg: DictConfig) -> DictConfig:
    """Check the recipe against the schema and every component against its Config: keys,
    types, ranges and choices, interpolations. Every component entry comes back with its full
    Config (defaults filled in), so a saved recipe does not depend on this version's defaults."""
    registry.load_builtins()
    _import_user_modules(cfg.get("imports"))
    top = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "updates"])
    merged = _structured_merge(RecipeSchema, top, "")
    for name, update in (cfg.get("updates") or {}).items():
        merged.updates[name] = _structured_merge(UpdateConfig, update, f"updates.{name}")
        for slot_name, opt in (update.get("optimize") or {}).items():
            _structured_merge(OptimizerConfig, opt, f"updates.{name}.optimize.{slot_name}")
    _check_interpolations(merged)
    missing = sorted(OmegaConf.missing_keys(merged))
    if missing:
        raise RecipeError(f"Recipe is missing required key(s): {', '.join(missing)}.")
    _check_schema_options(merged)
    _check_slot_precisions(merged)
    full = {}
    for slot_name, entry in merged.components.items():
        cls, fields = component_config(slot_name, entry, instantiate=False)
        _check_options(entry, cls.Config, f"components.{slot_name}", defaults=fields)
        head = {key: OmegaConf.to_container(entry, resolve=False)[key] for key in SLOT_KEYS if key in entry}
        full[slot_name] = {**head, **OmegaConf.to_container(fields, resolve=False)}
    merged.components = full
    slots = set(merged.components)
    for name, update in merged.updates.items():
        for field_name in ("terms", "update_targets"):
            for ref in update[field_name]:
                if ref not in slots:
                    raise RecipeError(
                        f"updates.{name}.{field_name} names {ref!r}, which is not a slot under components."
                        f"{_close(ref, sorted(slots))} Slots: {', '.join(sorted(slots))}."
                    )
        for ref in update.optimize:
            if ref not in slots:
                raise RecipeError(f"updates.{name}.optimize names {ref!r}, which is not a slot under components.{_close(ref, sorted(slots))}")
    return merged


def _check_schema_options(merged: DictConfig) -> None:
    _check_options(merged, RecipeSchema, "")
    for name, update in merged.updates.items():
        _check_options(update, UpdateConfig, f"updates.{name}")
        for slot_name, opt in update.optimize.items():
            _check_options(opt, OptimizerConfig, f"updates.{name}.optimize.{slot_name}")


def _check_slot_precisions(cfg: DictConfig) -> None:
    """components.<slot>.precision: a slot-level key (like kind, name, keys), not a Config field."""
    for slot_name, entry in cfg.components.items():
        value = entry.get("precision") if isinstance(entry, DictConfig) else None
        if value is not None and value not in ("fp32", "bf16"):
            raise RecipeError(f"components.{slot_name}.precision is {value!r}; choose one of fp32, bf16.")


def to_yaml(cfg: DictConfig, resolve: bool = True) -> str:
    return OmegaConf.to_yaml(cfg, resolve=resolve)


def as_container(value: Any) -> Any:
    if isinstance(value, (DictConfig, ListConfig)):
        return OmegaConf.to_container(value, resolve=True)
    return value


# ---- differences between resolved recipes --------------------------------------------------
ABSENT = object()  # a key one of two recipes does not have


def recipe_diff(a: DictConfig, b: DictConfig) -> list[tuple[str, Any, Any]]:
    """(dotted key, value in ``a``, value in ``b``) for every key whose resolved value differs;
    ``ABSENT`` where one recipe lacks the key (a removed slot is one entry, not its fields)."""
    differences: list[tuple[str, Any, Any]] = []
    _diff(OmegaConf.to_container(a, resolve=True), OmegaConf.to_container(b, resolve=True), "", differences)
    # dataset facts are filled in by advrl where the dataset is loaded (a run's saved recipe)
    # and null elsewhere: known on one side only, they are no setting that differs
    facts = {f"dataset.{key}" for key in PLACEHOLDER_FACTS}
    return [d for d in differences if not (d[0] in facts and (d[1] is None or d[2] is None))]


def _diff(a: dict, b: dict, prefix: str, out: list) -> None:
    for key in [*a, *(k for k in b if k not in a)]:
        path = f"{prefix}{key}"
        left, right = a.get(key, ABSENT), b.get(key, ABSENT)
        if isinstance(left, dict) and isinstance(right, dict):
            _diff(left, right, f"{path}.", out)
        elif left != right or (left is ABSENT) != (right is ABSENT):
            out.append((path, left, right))


def format_value(value: Any) -> str:
    """A value as it would be written in a recipe's flow style: [256, 256], {name: vae}, null."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {format_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(format_value(v) for v in value) + "]"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def format_diff(differences: list[tuple[str, Any, Any]]) -> str:
    """One line per difference: ``key: A -> B``, ``- key: A`` (only in A), ``+ key: B`` (only in B)."""
    lines = []
    for path, left, right in differences:
        if left is ABSENT:
            lines.append(f"+ {path}: {format_value(right)}")
        elif right is ABSENT:
            lines.append(f"- {path}: {format_value(left)}")
        else:
            lines.append(f"  {path}: {format_value(left)} -> {format_value(right)}")
    return "\n".join(lines)
