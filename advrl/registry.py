"""Component registry: one table per kind, filled by a class decorator, built by name.

Third-party packages add components through the entry-point group ``advrl.components``
(each entry point names a module whose import registers its components); a recipe may
also list ``imports:`` of user modules.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable
from importlib import metadata
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from advrl.component import Component

KINDS: dict[str, str] = {
    "actor": "policy networks (deterministic or stochastic)",
    "critic": "state-action value networks (Q ensembles)",
    "value": "state value networks together with the loss that trains them",
    "behavior": "generative behaviour models (VAE, CVAE) with their ELBO loss",
    "objective": "actor and critic objectives (TD targets, policy-improvement terms)",
    "constraint": "regularisation terms added to an objective (BC, AWR, CQL penalty)",
    "coefficient": "adaptive coefficients (entropy temperature, state-wise beta)",
    "advantage": "advantage estimators writing a per-sample advantage",
    "selector": "per-sample masks choosing which transitions a term uses",
    "schedule": "scalar schedules over training steps",
}

ENTRY_POINT_GROUP = "advrl.components"

_TABLES: dict[str, dict[str, type[Component]]] = {kind: {} for kind in KINDS}
_builtins_loaded = False


class RegistryError(KeyError):
    """An unknown kind or name, or a name registered twice."""

    def __str__(self) -> str:  # KeyError would print the message quoted
        return str(self.args[0])


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        close = difflib.get_close_matches(kind, KINDS, n=3)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise RegistryError(f"Unknown component kind {kind!r}.{hint} Kinds: {', '.join(KINDS)}.")


def register(kind: str, name: str | None = None, *, force: bool = False) -> Callable:
    """Class decorator registering a :class:`~advrl.component.Component` under ``kind``/``name``.

    ``name`` defaults to the class attribute ``name``. Registering a taken name raises,
    naming the module that holds it, unless ``force=True``.
    """
    _check_kind(kind)

    def decorate(cls: type[Component]) -> type[Component]:
        key = name or getattr(cls, "name", None)
        if not key:
            raise RegistryError(f"{cls.__qualname__} needs a registry name (pass name= or set cls.name).")
        table = _TABLES[kind]
        if key in table and table[key] is not cls and not force:
            other = table[key]
            raise RegistryError(
                f"{kind} {key!r} is already registered by {other.__module__}.{other.__qualname__}; "
                "choose another name or pass force=True to replace it."
            )
        cls.kind, cls.name = kind, key
        table[key] = cls
        return cls

    return decorate


def load_builtins() -> None:
    """Import advrl's own components and those of installed plug-ins (entry points)."""
    global _builtins_loaded
    if _builtins_loaded:
        return
    _builtins_loaded = True
    importlib.import_module("advrl.components")
    for entry in metadata.entry_points(group=ENTRY_POINT_GROUP):
        entry.load()


def import_user_modules(modules: list[str]) -> None:
    """Import modules named in a recipe's ``imports:`` so that they register components."""
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as err:
            raise ImportError(
                f"Recipe key 'imports' names module {module!r}, which cannot be imported ({err}). "
                "Make it importable (pip install it, or add its folder to PYTHONPATH)."
            ) from err


def get(kind: str, name: str) -> type[Component]:
    """The component class registered as ``kind``/``name``, or an error with close matches."""
    load_builtins()
    _check_kind(kind)
    table = _TABLES[kind]
    if name not in table:
        close = difflib.get_close_matches(name, table, n=3, cutoff=0.5)
        hint = f" Closest: {', '.join(repr(c) for c in close)}." if close else ""
        raise RegistryError(
            f"Unknown {kind} {name!r}.{hint} Registered {kind}s: {', '.join(sorted(table)) or '(none)'}. "
            f"List all components with `advrl components` (or advrl.list_components())."
        )
    return table[name]


def names(kind: str) -> list[str]:
    load_builtins()
    _check_kind(kind)
    return sorted(_TABLES[kind])


def kinds_providing(key: str) -> list[str]:
    """``kind.name`` of every registered component whose declared writes include ``key``."""
    load_builtins()
    found = []
    for kind, table in _TABLES.items():
        for name, cls in sorted(table.items()):
            if key in cls.default_writes():
                found.append(f"{kind}.{name}")
    return found
