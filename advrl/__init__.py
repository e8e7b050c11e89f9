"""advrl: offline RL assembled from named, interchangeable components and YAML recipes.

The Python API mirrors the CLI::

    import advrl
    recipe = advrl.load_recipe("recipes/td3bc.yaml", ["train.steps=10000"])
    result = advrl.train(recipe)              # -> RunResult(run_dir, final_score, ...)
    results = advrl.train_seeds(recipe, [0, 1, 2])  # 3 seeds vectorised in one process
    run = advrl.load_run(result.run_dir)      # run.policy(obs) -> action
    actor = advrl.make("actor", "deterministic", spec=advrl.DataSpec(11, 3), hidden_sizes=[64])
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

# The API is imported on first use: `import advrl` (hence `advrl.cli`, which the console script
# and `python -m advrl.cli` import first) must not import torch, so that the CLI can set
# OpenMP's variables before torch starts its threads (advrl/threads.py).
_API = {
    "Component": "advrl.component", "DataSpec": "advrl.component", "describe": "advrl.component",
    "option": "advrl.component", "slot": "advrl.component",
    "RunResult": "advrl.learner.trainer", "resume": "advrl.learner.trainer", "train": "advrl.learner.trainer",
    "train_seeds": "advrl.learner.vectorized", "resume_seeds": "advrl.learner.vectorized",
    "RecipeError": "advrl.recipe", "load_recipe": "advrl.recipe",
    "KINDS": "advrl.registry", "RegistryError": "advrl.registry", "register": "advrl.registry",
    "register_kind": "advrl.registry",
    "Run": "advrl.run", "load_run": "advrl.run", "evaluate_runs": "advrl.run",
}

if TYPE_CHECKING:
    from advrl.component import Component, DataSpec, describe, option, slot
    from advrl.learner.trainer import RunResult, resume, train
    from advrl.learner.vectorized import resume_seeds, train_seeds
    from advrl.recipe import RecipeError, load_recipe
    from advrl.registry import KINDS, RegistryError, register, register_kind
    from advrl.run import Run, evaluate_runs, load_run


def __getattr__(name: str):
    if name in _API:
        value = getattr(importlib.import_module(_API[name]), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    try:  # `import advrl; advrl.registry` worked when this file imported its submodules
        return importlib.import_module(f"advrl.{name}")
    except ModuleNotFoundError as err:
        if err.name != f"advrl.{name}":
            raise
        raise AttributeError(f"module 'advrl' has no attribute {name!r}") from None


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))


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
    "evaluate_runs",
    "load_recipe",
    "load_run",
    "resume_seeds",
    "train_seeds",
    "make",
    "option",
    "register",
    "register_kind",
    "resume",
    "slot",
    "sweep",
    "train",
]
