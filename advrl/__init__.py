"""advrl: offline RL assembled from named, interchangeable components and YAML recipes.

The Python API mirrors the CLI::

    import advrl
    recipe = advrl.load_recipe("recipes/td3bc.yaml", ["train.steps=10000"])
    result = advrl.train(recipe)              # -> RunResult(run_dir, final_score, ...)
    run = advrl.load_run(result.run_dir)      # run.policy(obs) -> action
    actor = advrl.make("actor", "deterministic", spec=advrl.DataSpec(11, 3), hidden_sizes=[64])
"""

from __future__ import annotations

from advrl import sweep  # callable: advrl.sweep(recipe, overrides, out, executor=...)
from advrl.component import Component, DataSpec, describe, option, slot
from advrl.learner.trainer import RunResult, resume, train
from advrl.recipe import RecipeError, load_recipe
from advrl.registry import KINDS, RegistryError, register, register_kind
from advrl.run import Run, load_run

__version__ = "0.1.0"


def make(kind: str, name: str, spec: DataSpec, **config) -> Component:
    """Build one registered component from keyword config (validated like a recipe entry)."""
    from omegaconf import OmegaConf

    from advrl.recipe import component_config

    cls, cfg = component_config(name, OmegaConf.create({"kind": kind, "name": name, **config}))
    return cls(cfg, spec)


def list_components(kind: str | None = None) -> dict[str, list[str]]:
    """Registered component names by kind (all kinds, or one)."""
    from advrl import registry

    kinds = [kind] if kind else list(registry.kinds())  # plug-ins' kinds included
    return {k: registry.names(k) for k in kinds}


__all__ = [
    "KINDS",
    "Component",
    "DataSpec",
    "RecipeError",
    "RegistryError",
    "Run",
    "RunResult",
    "list_components",
    "describe",
    "load_recipe",
    "load_run",
    "make",
    "option",
    "register",
    "register_kind",
    "resume",
    "slot",
    "sweep",
    "train",
]
