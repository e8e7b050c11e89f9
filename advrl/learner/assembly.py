"""Assemble a recipe: build every component, bind their references, build the updates, and
check the data flow (every key a term reads is written by the dataset or an earlier term)."""

from __future__ import annotations

from omegaconf import DictConfig

from advrl import registry
from advrl.component import Component, DataSpec
from advrl.data.dataset import DATASET_KEYS
from advrl.learner.update import UpdateStage
from advrl.recipe import RecipeError, component_config


def build_components(recipe: DictConfig, spec: DataSpec, bind: bool = True) -> dict[str, Component]:
    """Construct every slot's component; with ``bind``, resolve their references to each other."""
    components: dict[str, Component] = {}
    for slot_name, entry in recipe.components.items():
        cls, config = component_config(slot_name, entry)
        try:
            components[slot_name] = cls(config, spec)
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
    for update_name, update in recipe.updates.items():
        schedule = _schedule(update)
        update_losses: list[str] = []
        for slot_name in update.terms:
            component = components[slot_name]
            if not component.is_term:
                raise RecipeError(
                    f"updates.{update_name}.terms lists {slot_name!r} ({component.kind} {component.name!r}), "
                    "which computes nothing on a batch; list only terms (actors, objectives, constraints, "
                    "values, behaviour models, coefficients, advantages, selectors)."
                )
            for key in component.read_keys():
                if key not in written:
                    providers = registry.kinds_providing(key)
                    hint = f" Components that write it: {', '.join(providers)}." if providers else ""
                    raise RecipeError(
                        f"components.{slot_name} ({component.kind} {component.name!r}) reads batch key {key!r}, "
                        f"which neither the dataset nor any earlier term of the recipe writes "
                        f"(checked up to updates.{update_name}).{hint} Add such a component and list it in "
                        f"updates.{update_name}.terms before {slot_name!r}."
                    )
                producer = written[key]
                if producer is None:
                    dataset_reads.add(key)
                if producer is not None and producer[0] != update_name and not _covers(producer[1], schedule):
                    raise RecipeError(
                        f"components.{slot_name} in updates.{update_name} reads {key!r}, written in updates."
                        f"{producer[0]}, which does not run at every step {update_name!r} runs "
                        f"(every/start/stop {producer[1]} vs {schedule}). Compute {key!r} within "
                        f"updates.{update_name} too."
                    )
            for key in component.write_keys():
                written[key] = (update_name, schedule)
                if key.startswith("loss_"):
                    update_losses.append(key)
        if not update_losses:
            raise RecipeError(f"updates.{update_name} computes no loss_* term, so it has nothing to optimise.")
        for slot_name, opt in update.optimize.items():
            unknown = [k for k in (opt.losses or []) if k not in update_losses]
            if unknown:
                raise RecipeError(
                    f"updates.{update_name}.optimize.{slot_name}.losses names {', '.join(unknown)}, not computed in "
                    f"this update (its losses: {', '.join(update_losses)})."
                )
        for slot_name in update.update_targets:
            if not hasattr(components[slot_name], "target_net") or components[slot_name].target_net is None:
                raise RecipeError(
                    f"updates.{update_name}.update_targets lists {slot_name!r}, which has no target network "
                    f"(set components.{slot_name}.target=true if it supports one)."
                )
    return dataset_reads


def build_updates(
    recipe: DictConfig, components: dict[str, Component], device, dataset_keys=DATASET_KEYS
) -> tuple[list[UpdateStage], set[str]]:
    """The recipe's updates in order, and the dataset keys their terms read.

    The data flow is checked before components are bound, so a swapped-in term that lacks an
    input is reported by the key it misses (and who could write it) first.
    """
    dataset_reads = check_data_flow(recipe, components, dataset_keys)
    bind_components(components)
    return [UpdateStage(name, update, components, device) for name, update in recipe.updates.items()], dataset_reads
