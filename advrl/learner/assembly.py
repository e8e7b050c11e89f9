"""Assemble a recipe: build every component, bind their references, build the updates, and
check the data flow (every key a term reads is written by the dataset or an earlier term)."""

from __future__ import annotations

from omegaconf import DictConfig

from advrl import registry
from advrl.component import Component, DataSpec
from advrl.data.dataset import DATASET_KEYS
from advrl.device import compute_dtype
from advrl.learner.update import UpdateStage
from advrl.recipe import RecipeError, component_config


def build_components(recipe: DictConfig, spec: DataSpec, bind: bool = True) -> dict[str, Component]:
    """Construct every slot's component; with ``bind``, resolve their references to each other."""
    components: dict[str, Component] = {}
    for slot_name, entry in recipe.components.items():
        cls, config = component_config(slot_name, entry)
        try:
            components[slot_name] = cls(config, spec)
            components[slot_name].rename_keys(dict(entry.get("keys") or {}))
        except (ValueError, TypeError) as err:
            raise RecipeError(f"components.{slot_name} ({cls.kind} {cls.name!r}): {err}") from err
    if bind:
        bind_components(components)
    return components


def bind_components(components: dict[str, Component]) -> None:
    for slot_name, component in components.items():
        try:
            component.bind(components)
        except (KeyError, TypeError) as err:
            raise RecipeError(f"components.{slot_name}: {err.args[0]}") from None


def _schedule(cfg) -> tuple[int, int, int | None]:
    return (cfg.every, cfg.start, cfg.stop)


def _covers(producer: tuple[int, int, int | None], consumer: tuple[int, int, int | None]) -> bool:
    """True if an update on schedule ``producer`` runs at every step ``consumer`` runs."""
    p_every, p_start, p_stop = producer
    c_every, c_start, c_stop = consumer
    stop_ok = p_stop is None or (c_stop is not None and c_stop <= p_stop)
    return c_every % p_every == 0 and p_start <= c_start and stop_ok


def check_data_flow(recipe: DictConfig, components: dict[str, Component], dataset_keys=DATASET_KEYS) -> set[str]:
    """Raise unless every key a term reads is available when it runs; return the dataset keys read."""
    dataset_reads: set[str] = set()
    written: dict[str, tuple[str, tuple] | None] = {key: None for key in dataset_keys}  # None: the dataset
    scalars: dict[str, str] = {}  # logged scalars and losses -> the slot returning them
    for update_name, update in recipe.updates.items():
        schedule = _schedule(update)
        returned: dict[str, str] = {}  # loss/log key -> slot, within this update
        for slot_name in update.terms:
            component = _term(components, update_name, slot_name)
            for key in component.read_keys():
                producer = _producer(written, scalars, update_name, slot_name, component, key)
                if producer is None:
                    dataset_reads.add(key)
                elif producer[0] != update_name and not _covers(producer[1], schedule):
                    raise RecipeError(
                        f"components.{slot_name} in updates.{update_name} reads {key!r}, written in updates."
                        f"{producer[0]}, which does not run at every step {update_name!r} runs "
                        f"(every/start/stop {producer[1]} vs {schedule}). Compute {key!r} within "
                        f"updates.{update_name} too."
                    )
            for key in component.write_keys():
                written[key] = (update_name, schedule)
            for key in component.loss_keys() + component.log_keys():
                if key in returned:
                    raise RecipeError(
                        f"updates.{update_name}: components.{returned[key]} and components.{slot_name} both return "
                        f"{key!r}, so one would be lost. Rename one (components.{slot_name}.keys: {{{key}: <new name>}})."
                    )
                returned[key] = scalars[key] = slot_name
        _check_optimised_losses(update_name, update, [k for k in returned if k.startswith("loss_")])
        for slot_name in update.update_targets:
            if not hasattr(components[slot_name], "target_net") or components[slot_name].target_net is None:
                raise RecipeError(
                    f"updates.{update_name}.update_targets lists {slot_name!r}, which has no target network "
                    f"(set components.{slot_name}.target=true if it supports one)."
                )
    return dataset_reads


def _term(components: dict[str, Component], update_name: str, slot_name: str) -> Component:
    component = components[slot_name]
    if not component.is_term:
        raise RecipeError(
            f"updates.{update_name}.terms lists {slot_name!r} ({component.kind} {component.name!r}), "
            "which computes nothing on a batch; list only terms (actors, objectives, constraints, "
            "values, behaviour models, coefficients, advantages, selectors)."
        )
    return component


def _producer(written: dict, scalars: dict, update_name: str, slot_name: str, component: Component, key: str):
    """Who writes batch key ``key`` (None: the dataset), or the error for a key nobody writes."""
    if key in written:
        return written[key]
    where = f"components.{slot_name} ({component.kind} {component.name!r}) reads batch key {key!r}"
    if key in scalars:
        raise RecipeError(
            f"{where}, but components.{scalars[key]} returns {key!r} as a scalar (a loss or a logged value), "
            "not a per-sample batch key; read a key that some term declares in `writes`."
        )
    providers = registry.kinds_providing(key)
    hint = f" Components that write it: {', '.join(providers)}." if providers else ""
    raise RecipeError(
        f"{where}, which neither the dataset nor any earlier term of the recipe writes "
        f"(checked up to updates.{update_name}).{hint} Add such a component and list it in "
        f"updates.{update_name}.terms before {slot_name!r}."
    )


def _check_optimised_losses(update_name: str, update, update_losses: list[str]) -> None:
    if not update_losses:
        raise RecipeError(f"updates.{update_name} computes no loss_* term, so it has nothing to optimise.")
    for slot_name, opt in update.optimize.items():
        unknown = [k for k in (opt.losses or []) if k not in update_losses]
        if unknown:
            raise RecipeError(
                f"updates.{update_name}.optimize.{slot_name}.losses names {', '.join(unknown)}, not computed in "
                f"this update (its losses: {', '.join(update_losses)})."
            )


def build_updates(
    recipe: DictConfig, components: dict[str, Component], device, dataset_keys=DATASET_KEYS, replicas=None
) -> tuple[list[UpdateStage], set[str]]:
    """The recipe's updates in order, and the dataset keys their terms read (``replicas``: the
    ``ReplicaStack`` of vectorised seeds whose stacked components these are).

    The data flow is checked before components are bound, so a swapped-in term that lacks an
    input is reported by the key it misses (and who could write it) first.
    """
    dataset_reads = check_data_flow(recipe, components, dataset_keys)
    bind_components(components)
    dtypes = compute_dtypes(recipe, device)
    updates = [UpdateStage(name, update, components, device, dtypes, replicas) for name, update in recipe.updates.items()]
    return updates, dataset_reads


def compute_dtypes(recipe: DictConfig, device) -> dict:
    """Slot -> the dtype its compute runs in (None: float32): ``components.<slot>.precision``,
    else ``train.precision``; bf16 falls back to float32 where the device has no bf16."""
    default = recipe.train.get("precision", "fp32")
    return {slot: compute_dtype(entry.get("precision", default), device) for slot, entry in recipe.components.items()}


def check_slot_use(recipe: DictConfig, components: dict[str, Component]) -> None:
    """Refuse components that a run would build (and train) without using them.

    A slot must be placed: listed by an update (terms, optimize, update_targets), named by
    another component's slot field, or be ``eval.policy``. A slot an update trains must also be
    used by something other than its own training terms: another component naming it, another
    term reading what it writes, or evaluation. Otherwise an ablation that cuts a reference
    (``constraint.behavior: null``) but keeps the VAE would train it for nothing, on the run's
    random stream, under a recipe that claims to have removed it. An error, not a warning: a
    warning scrolls past in a sweep's logs, and the fix is one override."""
    named_by = _named_by(components)
    placed = {recipe.eval.policy}
    for update in recipe.updates.values():
        placed |= {*update.terms, *update.optimize, *update.update_targets}
    for slot_name, component in components.items():
        if slot_name not in placed and not named_by[slot_name]:
            raise RecipeError(
                f"components.{slot_name} ({component.kind} {component.name!r}) is not used: no update lists it "
                "(terms, optimize, update_targets) and no component names it. Remove it "
                f"(components.{slot_name}=null) or use it."
            )
    for update_name, update in recipe.updates.items():
        for slot_name in update.optimize:
            if slot_name == recipe.eval.policy:
                continue
            users = named_by[slot_name] | _readers(recipe, components, slot_name)
            if not users - _trainers(recipe, components, slot_name) - {slot_name}:
                component = components[slot_name]
                raise RecipeError(
                    f"updates.{update_name} trains components.{slot_name} ({component.kind} {component.name!r}), but "
                    f"nothing else uses it: no other component names it in a field and no other term reads what it "
                    f"writes, so it would be trained and never used. Remove it (components.{slot_name}=null, and "
                    f"from updates.{update_name}) or refer to it."
                )


def _named_by(components: dict[str, Component]) -> dict[str, set[str]]:
    """slot -> the other slots whose slot fields (e.g. ``constraint.behavior``) name it."""
    named_by: dict[str, set[str]] = {slot_name: set() for slot_name in components}
    for slot_name, component in components.items():
        for field_name in component.slot_fields():
            target = getattr(component.config, field_name)
            if target in named_by and target != slot_name:
                named_by[target].add(slot_name)
    return named_by


def _readers(recipe: DictConfig, components: dict[str, Component], slot_name: str) -> set[str]:
    """The terms, in any update, that read a batch key ``slot_name`` writes."""
    written = set(components[slot_name].write_keys())
    terms = {term for update in recipe.updates.values() for term in update.terms}
    return {term for term in terms if term != slot_name and written & set(components[term].read_keys())}


def _trainers(recipe: DictConfig, components: dict[str, Component], slot_name: str) -> set[str]:
    """The terms whose losses train ``slot_name``'s parameters: using a module only to train it
    is not using it."""
    trainers = set()
    for update in recipe.updates.values():
        if slot_name not in update.optimize:
            continue
        chosen = update.optimize[slot_name].losses
        for term in update.terms:
            losses = set(components[term].loss_keys())
            if losses and (chosen is None or losses & set(chosen)):
                trainers.add(term)
    return trainers
