"""Package namespaces whose names load from their submodules on first access (PEP 562).

A command's ``--help`` imports the package of its code; with lazy packages that costs nothing until a name is used.
"""

from __future__ import annotations

import importlib
from typing import Callable


def lazy_exports(package: str, exports: dict[str, list[str]],
                 computed: dict[str, tuple[str, str]] | None = None) -> tuple[Callable, Callable, list[str]]:
    """``(__getattr__, __dir__, __all__)`` for `package`, where `exports` maps ``.submodule`` -> its public names and
    `computed` maps a name -> ``(module, function)`` whose result is the name's value at each access (a table read
    from a registry that imports torch, say)."""
    owner = {name: module for module, names in exports.items() for name in names}
    computed = dict(computed or {})

    def __getattr__(name: str):
        if name in computed:  # computed at each access: the registry it reads may grow
            module, function = computed[name]
            return getattr(importlib.import_module(module, package), function)()
        if name not in owner:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(owner[name], package), name)
        setattr(importlib.import_module(package), name, value)  # later accesses skip __getattr__
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(importlib.import_module(package))) | set(owner) | set(computed))

    return __getattr__, __dir__, sorted([*owner, *computed])
