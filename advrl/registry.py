"""Component registry: one table per kind, filled by a class decorator, built by name.

Third-party packages add components through the entry-point group ``advrl.components``
(each entry point names a module whose import registers its components); a recipe may
also list ``imports:`` of user modules. A plug-in may add a kind of its own with
:func:`register_kind` before registering components of that kind.
"""

from __future__ import annotations

import difflib
import importlib
import sys
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
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


def register_kind(kind: str, description: str) -> str:
    """Add a component kind (a registry table and a recipe slot ``kind:``) for plug-ins.

    Registering a kind again with the same description does nothing, so a plug-in module
    may be imported twice; another description for a taken kind raises, naming the holder's.
    """
    if not kind.isidentifier():
        raise RegistryError(f"Component kind {kind!r} must be a Python identifier (letters, digits, underscores).")
    if not description.strip():
        raise RegistryError(f"Component kind {kind!r} needs a one-line description (shown by `advrl components`).")
    if kind in KINDS:
        if KINDS[kind] != description:
            raise RegistryError(f"Component kind {kind!r} already exists ({KINDS[kind]}); choose another name.")
        return kind
    KINDS[kind] = description
    _TABLES[kind] = {}
    return kind


def kinds() -> dict[str, str]:
    """Every kind with its description, plug-ins' kinds included (which load_builtins imports)."""
    load_builtins()
    return dict(KINDS)


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
    for entry in plugins():
        try:
            entry.load()
        except Exception as err:  # a broken plug-in is named, not a bare traceback from its module
            raise RegistryError(
                f"Plug-in {entry.name!r} (entry point {entry.value!r} of group {ENTRY_POINT_GROUP!r}) failed to load: {err!r}"
            ) from err


def plugins() -> list[metadata.EntryPoint]:
    """The installed plug-ins: entry points of the group ``advrl.components``."""
    return list(metadata.entry_points(group=ENTRY_POINT_GROUP))


def import_user_modules(modules: list[str]) -> None:
    """Import modules named in a recipe's ``imports:`` so that they register components.

    An entry is a module name (found on ``sys.path``) or the path of a module file or
    package folder, which the recipe loader writes for modules found beside a recipe.
    """
    for module in modules:
        try:
            if module.endswith(".py") or "/" in module or "\\" in module:
                _import_path(Path(module))
            else:
                importlib.import_module(module)
        except ImportError as err:
            raise ImportError(
                f"Recipe key 'imports' names module {module!r}, which cannot be imported ({err}). "
                "Put it beside the recipe that imports it, pip install it, or add its folder to PYTHONPATH."
            ) from err


def module_path_name(path: Path) -> tuple[Path, str]:
    """(folder to import from, dotted module name) of a module file or package folder: the
    enclosing packages (folders with ``__init__.py``) become part of the name, as Python does."""
    path = path.resolve()
    parts = [path.stem if path.suffix == ".py" else path.name]
    root = path.parent
    while (root / "__init__.py").is_file():
        parts.insert(0, root.name)
        root = root.parent
    return root, ".".join(parts)


def _import_path(path: Path) -> None:
    if not (path.is_file() or (path / "__init__.py").is_file()):
        raise ImportError(f"{str(path)!r} is neither a module file nor a package folder")
    root, dotted = module_path_name(path)
    loaded = sys.modules.get(dotted)
    if loaded is not None:
        origin = Path(getattr(loaded, "__file__", "") or "").resolve()
        if origin not in (path.resolve(), (path / "__init__.py").resolve()):
            raise ImportError(f"module {dotted!r} is already imported from {str(origin)!r}; rename one of the two")
        return
    # Prepended only for this import, so that the folder's other files never shadow
    # installed modules that are imported later.
    sys.path.insert(0, str(root))
    try:
        importlib.import_module(dotted)
    finally:
        sys.path.remove(str(root))


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
            f"List all components with `advrl components` (or advrl.list_components()); those of your own "
            f"modules are registered by a recipe's imports: (`advrl components --recipe RECIPE`) or a plug-in's "
            f"entry point ({ENTRY_POINT_GROUP})."
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
