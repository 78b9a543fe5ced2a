"""A package's public face, imported on first use: `from cnnlab.data import load` works, while
`import cnnlab.data` imports none of its modules (and so adds nothing to import time or to the
import graph).

    __getattr__, __dir__ = face(__name__, {"load": "dataset", "ImageData": "dataset"})
"""
from __future__ import annotations

from importlib import import_module
from typing import Any, Callable


def face(package: str, names: dict[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """Module-level __getattr__ and __dir__ for `package`: names maps each public name to the
    module of the package that defines it."""
    def getattr_(name: str) -> Any:
        if name in names:
            return getattr(import_module(f"{package}.{names[name]}"), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def dir_() -> list[str]:
        return sorted(set(vars(import_module(package))) | set(names))

    return getattr_, dir_
