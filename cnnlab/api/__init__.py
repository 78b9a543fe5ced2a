"""The Python face of cnnlab (what `import cnnlab` exposes, lazily).

    train.py    train, train_seeds, resume, load_run; Group
    run.py      Run: path, config, history, metrics, model, evaluate, predict, plot, report, export
    predict.py  Run.predict on files, PIL images and tensors
    compare.py  compare (the numbers of `cnnlab compare --json`, with .plot())
    tools.py    shape, summary, recipes, models
"""
from .compare import Comparison, compare
from .run import Run
from .tools import Table, models, recipes, shape, summary
from .train import Group, load_run, resume, train, train_seeds

__all__ = ["Comparison", "Group", "Run", "Table", "compare", "load_run", "models", "recipes", "resume",
           "shape", "summary", "train", "train_seeds"]
