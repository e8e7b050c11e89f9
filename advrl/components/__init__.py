"""advrl's built-in components, one folder per kind and one file per component.

Importing this package registers them all (``advrl.registry.load_builtins`` does it lazily).
"""

from advrl.components import (  # noqa: F401
    actors,
    advantages,
    behaviors,
    coefficients,
    constraints,
    critics,
    objectives,
    schedules,
    selectors,
    values,
)
