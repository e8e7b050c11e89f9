"""The base class of every registered component, and the helpers that declare its config.

A component is an ``nn.Module`` with

* a ``Config`` dataclass: every knob with its type, default and a one-line help
  (``option(...)``); fields made with ``slot(...)`` name another component of the recipe
  (e.g. the critic a constraint evaluates);
* its contract, four declared namespaces of keys (``"next.observation"`` names a nested
  TensorDict key; ``{field}`` in a key is replaced by that config field):

  - ``reads``: the per-sample batch keys :meth:`compute` reads;
  - ``writes``: the per-sample batch keys it returns (leading dimension = batch size),
    stored in the batch for later terms;
  - ``losses``: the scalar objectives it returns (``loss_*``), minimised by the update's
    optimisers;
  - ``logs``: the scalar diagnostics it returns, logged every ``train.log_every`` steps.

  The contract is enforced: a declaration in the wrong namespace fails when the class is
  defined, what :meth:`compute` returns is checked against it on the first step (a key
  returned but not declared, declared but not returned, or of the wrong shape is an error
  naming the component and the key), and the data-flow check refuses a term that reads
  a logged scalar as a batch key;
* :meth:`compute`, for components that take part in an update.

Every declared key can be renamed from the recipe (``components.<slot>.keys: {advantage:
advantage_iql}``), as torchrl's ``set_keys`` does for its losses, so one recipe can hold two
components of one kind that write the same default key.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import operator
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, ClassVar

import torch
from tensordict import TensorDict
from torch import nn

from advrl.errors import RecipeError


@dataclass(frozen=True)
class DataSpec:
    """Shapes of the data a component is built for."""

    obs_dim: int
    action_dim: int
    max_action: float = 1.0


def option(
    default: Any = MISSING,
    help: str = "",  # noqa: A002 - mirrors argparse
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    choices: tuple | list | dict | None = None,
    check: Callable[[Any], str | None] | None = None,
) -> Any:
    """A documented config field; list/dict defaults are copied per instance.

    The value's allowed range (``ge``/``gt``/``le``/``lt``: >=, >, <=, <), its allowed values
    (``choices``) or a ``check`` (value -> error text or None) live in the field's metadata, so
    that a recipe is checked when it is loaded and ``advrl components`` shows them. A list value
    is checked entry by entry; null is always allowed (typing decides whether null is legal).
    """
    metadata: dict[str, Any] = {"help": help}
    bounds = {name: value for name, value in (("ge", ge), ("gt", gt), ("le", le), ("lt", lt)) if value is not None}
    if bounds:
        metadata["bounds"] = bounds
    if choices is not None:
        metadata["choices"] = tuple(choices)
    if check is not None:
        metadata["check"] = check
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata=metadata)
    return field(default=default, metadata=metadata)


def constraint_text(metadata: Mapping) -> str:
    """``in [0, 1]``, ``>= 1``, ``one of q1, min, mean``: what an option allows ('' if anything)."""
    if "choices" in metadata:
        return "one of " + ", ".join(str(c) for c in metadata["choices"])
    bounds = metadata.get("bounds")
    if not bounds:
        return ""
    low = ("[", bounds["ge"]) if "ge" in bounds else ("(", bounds["gt"]) if "gt" in bounds else None
    high = ("]", bounds["le"]) if "le" in bounds else (")", bounds["lt"]) if "lt" in bounds else None
    if low and high:
        return f"in {low[0]}{low[1]:g}, {high[1]:g}{high[0]}"
    if low:
        return f"{'>=' if low[0] == '[' else '>'} {low[1]:g}"
    return f"{'<=' if high[0] == ']' else '<'} {high[1]:g}"


def _within(value: float, bounds: Mapping) -> bool:
    compare = {"ge": operator.ge, "gt": operator.gt, "le": operator.le, "lt": operator.lt}
    return all(compare[name](value, limit) for name, limit in bounds.items())


def option_error(path: str, value: Any, metadata: Mapping) -> str | None:
    """The message for a value its option does not allow (``path`` names it), else None."""
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        for entry in value:
            problem = _problem(entry, metadata)
            if problem:
                return f"{path}={list(value)} has an entry {entry} that {problem}"
        return None
    problem = _problem(value, metadata)
    return f"{path}={value} {problem}" if problem else None


def _problem(value: Any, metadata: Mapping) -> str | None:
    """What is wrong with one value, as the end of a sentence (``is out of range: ...``)."""
    if "choices" in metadata and value not in metadata["choices"]:
        close = difflib.get_close_matches(str(value), [str(c) for c in metadata["choices"]], n=1, cutoff=0.5)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        return f"is not allowed: must be {constraint_text(metadata)}.{hint}"
    bounds = metadata.get("bounds")
    if bounds and isinstance(value, (int, float)) and not isinstance(value, bool) and not _within(value, bounds):
        return f"is out of range: must be {constraint_text(metadata)}."
    if "check" in metadata:
        return metadata["check"](value)
    return None


def config_errors(config: Any) -> list[str]:
    """Messages for every field of a Config dataclass instance that its option does not allow."""
    found = [option_error(f.name, getattr(config, f.name), f.metadata) for f in fields(config)]
    return [error for error in found if error]


def slot(kind: str, default: str | None, help: str = "", needs: tuple[str, ...] = ()) -> Any:  # noqa: A002
    """A config field naming another component of the recipe (a slot under ``components``).

    ``needs`` lists methods the referenced component must have (e.g. ``log_prob``), so a
    mismatch is reported when the recipe is built rather than deep in a training step.
    """
    return field(default=default, metadata={"help": help, "slot": kind, "needs": needs})


def tdkey(key: str) -> str | tuple[str, ...]:
    """``"next.observation"`` -> ``("next", "observation")``; plain names stay strings."""
    parts = tuple(key.split("."))
    return parts if len(parts) > 1 else key


def _check_declarations(cls: type) -> None:
    """A plug-in author learns of a key declared in the wrong namespace when the class is
    defined: losses are what the update optimises, and it finds them by this prefix."""
    where = f"{cls.__module__}.{cls.__qualname__}"
    for namespace in ("reads", *NAMESPACES):
        if isinstance(getattr(cls, namespace), str):
            raise ContractError(f"{where}.{namespace} must be a tuple of keys, not the string {getattr(cls, namespace)!r}.")
    misplaced = [(ns, k) for ns in ("writes", "logs") for k in getattr(cls, ns) if k.startswith("loss_")]
    misplaced += [("losses", k) for k in cls.losses if not k.startswith("loss_")]
    for namespace, key in misplaced:
        fix = "declare it in `losses`" if namespace != "losses" else "name it loss_* or declare it in `writes`/`logs`"
        raise ContractError(f"{where} declares {key!r} in `{namespace}`: {fix} (losses are exactly the loss_* keys).")


class ContractError(RecipeError):
    """A component whose declarations, or whose outputs, break its declared contract."""


NAMESPACES = ("writes", "losses", "logs")  # where what compute() returns goes


class Component(nn.Module):
    """Base of all components; subclasses set ``Config``, ``reads``, ``writes``, ``losses``, ``logs``."""

    kind: ClassVar[str] = ""
    name: ClassVar[str] = ""

    @dataclass
    class Config:
        pass

    reads: ClassVar[tuple[str, ...]] = ()
    writes: ClassVar[tuple[str, ...]] = ()
    losses: ClassVar[tuple[str, ...]] = ()
    logs: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        _check_declarations(cls)

    def __init__(self, config: Any, spec: DataSpec):
        super().__init__()
        # recipes are checked when loaded; this catches configs built by hand (advrl.make)
        errors = config_errors(config) if dataclasses.is_dataclass(config) else []
        if errors:
            raise ValueError(errors[0])
        self.config = config
        self.spec = spec
        self._slots: dict[str, Component] = {}
        self._renames: dict[str, str] = {}

    # ---- declared keys ---------------------------------------------------------------
    @classmethod
    def _resolve(cls, templates: tuple[str, ...], config: Any) -> list[str]:
        values = dataclasses.asdict(config) if config is not None else {}
        resolved = []
        for template in templates:
            key = template.format(**values)
            if key and key != "None":  # an optional key switched off in the config
                resolved.append(key)
        return resolved

    def declared(self, namespace: str) -> list[str]:
        """The keys of one namespace (``reads``, ``writes``, ``losses``, ``logs``) as the
        component itself names them: templates filled in, recipe renames not applied."""
        return self._resolve(getattr(type(self), namespace), self.config)

    def renamed(self, key: str) -> str:
        """The batch (or log) key the recipe stores ``key`` under."""
        return self._renames.get(key, key)

    def read_keys(self) -> list[str]:
        return [self.renamed(k) for k in self.declared("reads")]

    def write_keys(self) -> list[str]:
        """Per-sample batch keys written for later terms."""
        return [self.renamed(k) for k in self.declared("writes")]

    def loss_keys(self) -> list[str]:
        return [self.renamed(k) for k in self.declared("losses")]

    def log_keys(self) -> list[str]:
        return [self.renamed(k) for k in self.declared("logs")]

    def rename_keys(self, mapping: Mapping[str, str]) -> None:
        """Store declared keys under other names (the recipe's ``components.<slot>.keys``)."""
        declared = {key: ns for ns in ("reads", *NAMESPACES) for key in self.declared(ns)}
        for old, new in mapping.items():
            if old not in declared:
                raise ContractError(
                    f"keys.{old}: {self.kind} {self.name!r} declares no key {old!r} "
                    f"(it declares {', '.join(declared) or 'none'})."
                )
            if not isinstance(new, str) or not new:
                raise ContractError(f"keys.{old}: the new name must be a non-empty string, got {new!r}.")
            if declared[old] == "losses" and not new.startswith("loss_"):
                raise ContractError(f"keys.{old}: a loss keeps the prefix 'loss_' (got {new!r}).")
        self._renames = dict(mapping)

    @classmethod
    def default_config(cls) -> Any:
        try:
            return cls.Config()
        except TypeError:  # required fields: describe templates with their names
            return None

    @classmethod
    def default_keys(cls, namespace: str) -> list[str]:
        """One namespace's keys under the default config (templates shown as written when the
        config has required fields)."""
        config = cls.default_config()
        templates = getattr(cls, namespace)
        return cls._resolve(templates, config) if config is not None else list(templates)

    @classmethod
    def default_writes(cls) -> list[str]:
        return cls.default_keys("writes")

    # ---- references to other components ---------------------------------------------
    @classmethod
    def slot_fields(cls) -> dict[str, dataclasses.Field]:
        return {f.name: f for f in fields(cls.Config) if "slot" in f.metadata}

    def bind(self, components: Mapping[str, Component]) -> None:
        """Resolve slot fields to the recipe's components (kept out of this module's params)."""
        for field_name, f in self.slot_fields().items():
            target = getattr(self.config, field_name)
            if target is None:
                continue
            if target not in components:
                raise KeyError(
                    f"{self.kind} {self.name!r}: config field {field_name!r} names component slot "
                    f"{target!r}, which the recipe does not define (slots: {', '.join(components)})."
                )
            other = components[target]
            if other.kind != f.metadata["slot"]:
                raise TypeError(
                    f"{self.kind} {self.name!r}: field {field_name!r} must name a {f.metadata['slot']}, "
                    f"but slot {target!r} is a {other.kind} ({other.name})."
                )
            missing = [m for m in f.metadata["needs"] if not hasattr(other, m)]
            if missing:
                raise TypeError(
                    f"{self.kind} {self.name!r} needs its {field_name} ({other.kind} {other.name!r}) "
                    f"to provide {', '.join(missing)}; choose another {other.kind} that does "
                    f"(see `advrl components {other.kind}`)."
                )
            self._slots[field_name] = other

    def ref(self, field_name: str) -> Component:
        return self._slots[field_name]

    # ---- taking part in an update ----------------------------------------------------
    def compute(self, td: TensorDict, step: int) -> dict[str, torch.Tensor]:
        raise TypeError(
            f"{self.kind} {self.name!r} computes no batch keys, so it cannot be listed in an "
            "update's terms; reference it from a term's config instead."
        )

    @property
    def is_term(self) -> bool:
        return type(self).compute is not Component.compute

    def prepare(self, data, context: dict) -> dict | None:
        """Called once before training with the offline data (e.g. to pre-train and cache
        per-transition labels). ``context`` holds ``seed`` and ``device``. May return numbers
        worth keeping (e.g. ``{"pretrain_seconds": ...}``): the trainer logs them with the
        wall time of the call as a ``preparation`` record. Default: nothing."""
        return None

    def update_targets(self, tau: float) -> None:
        raise TypeError(f"{self.kind} {self.name!r} has no target network to update.")

    def freeze(self) -> None:
        """Called by fine-tuning for each slot of ``online.freeze`` (whose optimisers it drops):
        a component that learns beyond its parameters stops that too, e.g. SSAR's coefficient
        no longer moves its threshold n. Default: nothing more to stop."""


def describe(cls: type[Component]) -> str:
    """Human-readable card: doc, config fields with defaults, and the declared keys."""
    lines = [f"{cls.kind} {cls.name!r}  ({cls.__module__}.{cls.__qualname__})", ""]
    doc = inspect.cleandoc(cls.__doc__ or "")
    if doc:
        lines += [doc, ""]
    lines.append("config fields:")
    for f in fields(cls.Config):
        if f.default is not MISSING:
            default = repr(f.default)
        elif f.default_factory is not MISSING:
            default = repr(f.default_factory())
        else:
            default = "(required)"
        type_name = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
        ref = f" -> {f.metadata['slot']} slot" if "slot" in f.metadata else ""
        allowed = constraint_text(f.metadata)
        each = "each " if str(type_name).startswith("list") else ""  # lists are checked entry by entry
        allowed = f"  ({each}{allowed})" if allowed else ""
        lines.append(f"  {f.name}: {type_name} = {default}{ref}{allowed}")
        if f.metadata.get("help"):
            lines.append(f"      {f.metadata['help']}")
    labels = {"reads": "reads (batch)", "writes": "writes (batch)", "losses": "losses", "logs": "logs (scalars)"}
    for namespace, label in labels.items():
        lines.append(f"{label + ':':<16}{', '.join(cls.default_keys(namespace)) or '-'}")
    return "\n".join(lines)
