"""Re-exports that import their module only on first use, so ``dagyo run`` stays light."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, names: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` that resolves ``names`` (public name -> module) on demand.

    Args:
        package: the re-exporting package's ``__name__`` (for the error message).
        names: each public name and the module that defines it.
    """

    def __getattr__(name: str) -> Any:
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(names[name]), name)

    return __getattr__
