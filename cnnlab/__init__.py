"""cnnlab: teach and train convolutional neural networks on CIFAR-10 and image folders.

    import cnnlab
    run = cnnlab.train("seed", epochs=2, max_steps=50)
    print(run.metrics["test_acc"]); run.plot()

The names below are imported on first use: `import cnnlab` itself imports neither torch nor
matplotlib, and changes nothing in the process (no backend, allocator or torch setting).
See cnnlab.api for the functions and classes, and the command line (`cnnlab --help`) for the
same things from a shell.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.2.0"

# public name -> module that defines it
_LAZY = {
    "train": "cnnlab.api.train", "train_seeds": "cnnlab.api.train", "resume": "cnnlab.api.train",
    "load_run": "cnnlab.api.train", "Group": "cnnlab.api.train", "Run": "cnnlab.api.run",
    "compare": "cnnlab.api.compare", "Comparison": "cnnlab.api.compare",
    "shape": "cnnlab.api.tools", "summary": "cnnlab.api.tools", "recipes": "cnnlab.api.tools",
    "models": "cnnlab.api.tools", "Table": "cnnlab.api.tools",
    "CnnlabError": "cnnlab.errors", "SettingsError": "cnnlab.errors", "StopTraining": "cnnlab.errors",
}

__all__ = ["CnnlabError", "Comparison", "Group", "Run", "SettingsError", "StopTraining", "Table", "__version__",
           "compare", "load_run", "models", "recipes", "resume", "shape", "summary", "train", "train_seeds"]

if TYPE_CHECKING:  # for type checkers and editors: the real names
    from .api.compare import Comparison, compare
    from .api.run import Run
    from .api.tools import Table, models, recipes, shape, summary
    from .api.train import Group, load_run, resume, train, train_seeds
    from .errors import CnnlabError, SettingsError, StopTraining


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'cnnlab' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
