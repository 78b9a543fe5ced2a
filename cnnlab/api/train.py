"""cnnlab.train, train_seeds, resume and load_run: the command line's training, from Python.

    run = cnnlab.train("seed", epochs=2, max_steps=50)
    run = cnnlab.train("seed-bn", lr=0.01, optimizer={"momentum": 0.8}, **{"augment.flip": "random"})
    run = cnnlab.train(model=MyNet(), data=(images, labels), classes=["cat", "dog"])
    group = cnnlab.train_seeds("seed-bn", seeds=range(5), epochs=10)
    run = cnnlab.resume("runs/20260101-120000-seed")

Settings are `cnnlab train`'s flags and every recipe key (cnnlab.runs.settings), checked by the
same code with the same one-line messages, raised as cnnlab.SettingsError (a ValueError) before
any run folder exists. The same seed and settings give bitwise the weights `cnnlab train` gives.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Iterable

from ..errors import SettingsError, StopTraining
from .run import Run

EpochCallback = Callable[[Run, dict], "bool | None"]


def _model_setting(model: Any, settings: dict) -> Any:
    """A registered name goes into the settings; a module or a builder is returned as given."""
    if model is None or isinstance(model, str):
        if model is not None:
            settings["model"] = model
        return None
    import torch
    if isinstance(model, torch.nn.Module) or callable(model):
        return model
    raise SettingsError(f"model= must be a registered model name (see cnnlab.models), an nn.Module or a "
                        f"function that builds one, got {type(model).__name__}")


def _data_setting(data: Any, classes, settings: dict):
    """A path goes into the settings; images from Python become ImageData (checked here)."""
    from ..data.memory import from_python, is_python_data
    if is_python_data(data):
        return from_python(data, classes)
    if classes is not None:
        raise SettingsError("classes= names the classes of images given from Python; a dataset folder "
                            "names its own (drop classes=)")
    if data is not None:
        settings["data"] = str(data)
    return None


def _name_of(model: Any) -> str:
    cls = model if isinstance(model, type) else type(model)
    return getattr(cls, "__name__", "custom")


def _callback(on_epoch_end: EpochCallback | None, model: Any, data: Any):
    """run_train's epoch_end(run_dir, row) from the user's on_epoch_end(run, row)."""
    if on_epoch_end is None:
        return None

    def epoch_end(run_dir: Path, row: dict) -> bool | None:
        try:
            return on_epoch_end(Run(run_dir, model=model, data=data), dict(row))
        except StopTraining:
            return False
    return epoch_end


def _config(recipe: str | None, settings: dict, out, custom) -> Any:
    from ..runs.settings import resolve
    cfg = resolve(recipe, settings, out=None if out is None else str(out), where="cnnlab.train",
                  check_model=custom is None)
    return cfg if custom is None else replace(cfg, model=_name_of(custom))


def train(recipe: str = "seed", *, data: Any = None, model: Any = None, out: str | Path | None = None,
          seed: int = 0, progress: bool = True, on_epoch_end: EpochCallback | None = None,
          classes: list[str] | None = None, **settings: Any) -> Run:
    """Train as `cnnlab train` does, into a new run folder; returns the finished Run.

    recipe: a shipped recipe name (cnnlab.recipes()) or a .toml file. data: a dataset path
    (default: as the command line searches), a pair (images, labels) of uint8 tensors or numpy
    arrays (N x 3 x H x W or N x H x W x 3) with classes=[...], a torch Dataset of (PIL image or
    tensor, int) pairs, or a (train, test) pair of either (one split alone: a sixth is held out to
    test). model: a registered name, an nn.Module, or a class/function that builds one (called after
    seeding); the run folder keeps a Python model's weights (load it with load_run(path, model=)).
    settings: the command line's flags and any recipe key, dotted or nested (epochs=5, lr=0.01,
    optimizer={"lr": 0.05}, **{"augment.flip": "random"}, max_steps=50, tensorboard=True).
    on_epoch_end(run, row) is called after every epoch with its history row; returning False or
    raising cnnlab.StopTraining ends the run after that epoch (checkpoint kept; tested and saved;
    cnnlab.resume continues it). progress: a progress bar per epoch (a widget in a notebook).

    Raises cnnlab.SettingsError (a ValueError) for a wrong setting, model or data, before any
    run folder exists.

    >>> run = cnnlab.train("seed", epochs=2, max_steps=50)   # doctest: +SKIP
    >>> print(run.metrics["test_acc"]); run.plot()            # doctest: +SKIP
    """
    from ..runs.fit import run_train, say
    from ..training.threads import warn_if_spinning_beside_others
    settings = dict(settings)
    custom = _model_setting(model, settings)
    memory = _data_setting(data, classes, settings)
    cfg = _config(recipe, {**settings, "seed": seed}, out, custom)
    warn_if_spinning_beside_others(cfg.threads)  # a notebook's torch spins at barriers: on a busy machine, say so
    metrics = run_train(cfg, say, data=memory, model=custom, progress=progress,
                        epoch_end=_callback(on_epoch_end, custom, memory))
    return Run(metrics["out"], model=custom, data=memory)


class Group:
    """A group folder: one run per seed of one recipe (cnnlab.train_seeds, `cnnlab train --seeds`).

    >>> group = cnnlab.train_seeds("seed", seeds=range(3), epochs=2)   # doctest: +SKIP
    >>> accuracy = group.summary["test_acc"]; accuracy["mean"]             # doctest: +SKIP
    >>> [r.metrics["test_acc"] for r in group.runs]                          # doctest: +SKIP
    """

    def __init__(self, path: str | Path, *, model: Any = None, data: Any = None) -> None:
        from ..runs.group import read_group
        self.path = Path(path)
        read_group(self.path)
        self._model, self._data = model, data

    def __repr__(self) -> str:
        s = self.summary.get("test_acc", {})
        mean = f", test_acc={s['mean']:.2f}+-{s['std'] or 0:.2f}" if s.get("mean") is not None else ""
        return f"Group({str(self.path)!r}, seeds={self.seeds}{mean})"

    @property
    def seeds(self) -> list[int]:
        from ..runs.group import read_group
        return list(read_group(self.path)["seeds"])

    @property
    def summary(self) -> dict:
        """group.json's summary: finished, planned, test_acc {mean, std, n, ...}, train_seconds_mean."""
        from ..runs.group import read_group
        return read_group(self.path).get("summary", {})

    @property
    def runs(self) -> list[Run]:
        """The group's runs that have a folder, by seed."""
        from ..runs.group import run_dir
        return [Run(run_dir(self.path, s), model=self._model, data=self._data) for s in self.seeds
                if (run_dir(self.path, s) / "config.json").is_file()]

    def plot(self):
        """The runs' curves: mean and min-max band per epoch (a matplotlib Figure)."""
        from ..analysis.compare_plot import groups_figure
        from ..runs.compare import load_group
        return groups_figure([(self.path.name, [r.history for r in load_group(self.path).finished])])

    def _repr_html_(self) -> str:
        from .run import figure_html
        s = self.summary.get("test_acc", {})
        line = (f"test accuracy {s['mean']:.2f} % +- {s['std'] or 0:.2f} (std) over {s['n']} seeds"
                if s.get("mean") is not None else "no finished run yet")
        import html
        return f"<div><b>{html.escape(str(self.path))}</b>: {html.escape(line)}{figure_html(self.plot())}</div>"


def train_seeds(recipe: str = "seed", *, seeds: Iterable[int] = range(5), data: Any = None, model: Any = None,
                out: str | Path | None = None, progress: bool = True, classes: list[str] | None = None,
                **settings: Any) -> Group:
    """Train the same settings once per seed into a group folder (as `cnnlab train --seeds`).

    Each run is bitwise the run cnnlab.train(..., seed=s) makes. model: a registered name, or a
    class/function that builds a fresh network per seed (not one nn.Module: it would carry its
    weights from seed to seed). Other arguments as for cnnlab.train.

    >>> group = cnnlab.train_seeds("seed-bn", seeds=range(3), epochs=2, max_steps=50)   # doctest: +SKIP
    >>> cnnlab.compare(group_a, group)                                                  # doctest: +SKIP
    """
    import torch

    from ..runs.fit import say
    from ..runs.group import run_group
    settings = dict(settings)
    if "seed" in settings:
        raise SettingsError("seed= and seeds= name the seeds twice: a group takes its seeds from seeds=")
    if isinstance(model, torch.nn.Module):
        raise SettingsError("train_seeds needs a fresh model per seed: pass its class (model=MyNet) or a "
                            "function that builds one, not an nn.Module")
    custom = _model_setting(model, settings)
    memory = _data_setting(data, classes, settings)
    seeds = [int(s) for s in seeds]
    cfg = _config(recipe, settings, out, custom)
    from ..training.threads import warn_if_spinning_beside_others
    warn_if_spinning_beside_others(cfg.threads)
    group = run_group(cfg, seeds, say, data=memory, model=custom, progress=progress)
    return Group(group["config"]["out"], model=custom, data=memory)  # the folder it made


def resume(path: str | Path, *, data: Any = None, model: Any = None, progress: bool = True,
           on_epoch_end: EpochCallback | None = None, **settings: Any) -> Run | Group:
    """Continue an interrupted run (or group) exactly where it stopped; returns it finished.

    settings: device, data, precision, threads may change, others must equal the run's (as
    `cnnlab train --resume`). data, model: give them again for a run trained on images or a
    model from Python.

    >>> run = cnnlab.resume("runs/20260101-120000-seed")   # doctest: +SKIP
    """
    from ..runs.fit import resume_train, say
    from ..runs.group import is_group, resume_group
    from ..runs.settings import dotted
    settings = dict(settings)
    custom = _model_setting(model, settings)
    memory = _data_setting(data, None, settings)
    given = dotted(settings)
    if is_group(path):
        resume_group(path, given, say, data=memory, model=custom, progress=progress)
        return Group(path, model=custom, data=memory)
    resume_train(path, given, say, data=memory, model=custom, progress=progress,
                 epoch_end=_callback(on_epoch_end, custom, memory))
    return Run(path, model=custom, data=memory)


def load_run(path: str | Path, *, model: Any = None, data: Any = None) -> Run | Group:
    """A run folder (or group folder) read back: Run (or Group).

    model: for a run of a model defined in Python, the network to load its weights into
    (load_run(path, model=MyNet())); data: for a run trained on images given from Python, the
    same images (for evaluate and export).

    >>> run = cnnlab.load_run("runs/20260101-120000-seed")   # doctest: +SKIP
    >>> run.evaluate()["test_acc"]                           # doctest: +SKIP
    """
    from ..data.memory import from_python, is_python_data
    from ..runs.folder import read_config
    from ..runs.group import is_group
    memory = None
    if is_python_data(data):  # labelled with the run's class names
        memory = from_python(data, read_config(path)["data"]["classes"] if not is_group(path) else None)
    if is_group(path):
        return Group(path, model=model, data=memory)
    return Run(path, model=model, data=memory)
