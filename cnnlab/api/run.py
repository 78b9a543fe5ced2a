"""A run folder as a Python object: its settings, history, metrics, model, and what to do with it.

    run = cnnlab.load_run("runs/20260101-120000-seed")
    run.metrics["test_acc"]; last = run.history[-1]; last["val_loss"]
    run.evaluate(tta="flip")["test_acc"]
    run.predict(["photo.jpg"])        # [{"path": "photo.jpg", "top": [{"class": "cat", "prob": 0.8}, ...]}]
    run.plot()                        # a matplotlib Figure: shown inline in Jupyter
    run.report("seed.html"); run.export("seed.onnx")

Everything is read from the folder on disk when asked for (a run still training shows its
history so far). A run of a model defined in Python, or trained on images given from Python,
keeps the model object and the images it was made with (cnnlab.load_run(path, model=, data=)).
"""
from __future__ import annotations

import base64
import html
import io
import json
import math
from pathlib import Path
from typing import Any, Iterable



def read_rows(path: Path) -> list[dict]:
    """history.csv as a list of dicts (numbers; epoch and iters ints; missing values nan)."""
    import csv

    def num(key: str, v: str):
        try:
            x = float(v)
        except (TypeError, ValueError):
            return math.nan
        return int(x) if key in ("epoch", "iters") and x == x else x
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return [{k: num(k, v) for k, v in row.items()} for row in csv.DictReader(f)]


def figure_html(fig) -> str:
    """A figure as an inline <img> (for _repr_html_)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=72)
    return f'<img src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}"/>'


class Run:
    """One run folder (made by cnnlab.train or `cnnlab train`).

    >>> run = cnnlab.train("seed", epochs=2, max_steps=50)   # doctest: +SKIP
    >>> run.metrics["test_acc"]                               # doctest: +SKIP
    41.2
    """

    def __init__(self, path: str | Path, *, model: Any = None, data: Any = None) -> None:
        from ..runs.folder import read_config
        self.path = Path(path)
        read_config(self.path)  # a run folder, or one clear line
        self._given_model = model  # a model defined in Python (module or builder), or None
        self._data = data  # ImageData given from Python, or None
        self._model = None

    def __repr__(self) -> str:
        acc = self.metrics.get("test_acc")
        return f"Run({str(self.path)!r}" + (f", test_acc={acc:.2f}" if acc is not None else ", unfinished") + ")"

    @property
    def config(self) -> dict:
        """The run's resolved settings (config.json's "config": the recipe and how it ran)."""
        return self._config_json()["config"]

    def _config_json(self) -> dict:
        from ..runs.folder import read_config
        return read_config(self.path)

    @property
    def history(self) -> list[dict]:
        """One row per finished epoch: epoch, iters, avg_loss, elapsed_s, val_acc, val_loss, lr."""
        return read_rows(self.path / "history.csv")

    @property
    def metrics(self) -> dict:
        """metrics.json (test_acc, val_acc, epochs, steps, train_seconds, ...); {} while unfinished."""
        try:
            return json.loads((self.path / "metrics.json").read_text())
        except (OSError, ValueError):
            return {}

    @property
    def finished(self) -> bool:
        return bool(self.metrics)

    @property
    def model(self):
        """The trained network (the final weights, in eval mode, on the CPU)."""
        if self._model is None:
            from ..runs.saved import load_run
            _, self._model = load_run(self.path, self._module())
            self._model.cpu().eval()
        return self._model

    def _module(self):
        """The network of a run of a model defined in Python, to load the weights into."""
        given = self._given_model
        if given is None:
            return None
        import torch
        return given if isinstance(given, torch.nn.Module) else given()

    def evaluate(self, tta: str | None = None, data: Any = None, device: str = "auto", save: bool = False) -> dict:
        """Test the saved weights again; the numbers `cnnlab evaluate` shows (eval.json's content):
        test_acc, mean_loss, ece, per_class, most_confused, confusion_matrix, ...

        tta: none, flip or flip-shift (None: the run's recipe's, so test_acc is the number
        training printed). data: another dataset path (default: the run's own). save: also write
        eval.json and its figures into the run folder, as `cnnlab evaluate` does.

        >>> run.evaluate(tta="flip")["test_acc"]   # doctest: +SKIP
        """
        from ..report.evaluation import draw, summarize, write_eval
        from ..runs.saved import evaluate_run
        data = self._data if data is None else _as_data(data, self._config_json()["data"]["classes"])
        out = evaluate_run(self.path, data, device, tta, model=self._module())
        summary = summarize(out)
        if save:
            write_eval(self.path, summary, draw(out, summary))
        return summary

    def predict(self, inputs: Any, top_k: int = 3, tta: str = "none", device: str = "auto") -> list[dict]:
        """Top classes of images: paths (files or folders), PIL images, or uint8 tensors
        (3 x H x W, or a batch N x 3 x H x W at the run's image size). One record per image, as
        `cnnlab predict --json` prints: {"path", "top": [{"class", "prob"}, ...]} (path None for
        images given as objects).

        >>> best = run.predict(["photo.jpg"], top_k=1)[0]   # doctest: +SKIP
        >>> best["top"]                                     # doctest: +SKIP
        [{'class': 'cat', 'prob': 0.81}]
        """
        from .predict import predict_objects
        return predict_objects(self, inputs, top_k, tta, device)

    def plot(self):
        """The training curves (validation accuracy with the final test accuracy, training loss)
        as a matplotlib Figure; Jupyter shows it inline. fig.savefig("curves.png") saves it.

        >>> fig = run.plot()   # doctest: +SKIP
        """
        from ..analysis.plots import curves_figure
        info = self._config_json()
        source = info["data"].get("source")
        title = f"{self.config['model']} on {Path(source).name if source else 'images from Python'}"
        return curves_figure(self.history, title, self.metrics.get("test_acc"))

    def report(self, path: str | Path, device: str = "auto") -> Path:
        """Write the run's HTML report (as `cnnlab report`) to path; returns the path.

        >>> run.report("seed.html")   # doctest: +SKIP
        """
        from ..report import build_report
        if self._given_model is not None:
            self.evaluate(device=device, save=True)  # the report reads eval.json: it cannot build the model
        return build_report([self.path], path, self._data, device)

    def export(self, path: str | Path | None = None, check_all: bool = False) -> dict:
        """Export the model to ONNX (as `cnnlab export`, checked against PyTorch); the result's
        "path" is the file. Needs the extra: pip install 'cnnlab[export]'.

        >>> run.export("seed.onnx")["ok"]   # doctest: +SKIP
        True
        """
        from ..runs.export import export_run
        return export_run(self.path, path, data_path=self._data, check_all=check_all, model=self._module())

    def _repr_html_(self) -> str:
        m, cfg = self.metrics, self.config
        rows = [("folder", str(self.path)), ("model", cfg.get("model")), ("recipe", cfg.get("recipe"))]
        if m:
            rows += [("test accuracy", f"{m['test_acc']:.2f} %"), ("epochs", m.get("epochs")),
                     ("steps", m.get("steps")), ("training time", f"{m.get('train_seconds', 0):.1f} s")]
        else:
            rows += [("status", f"unfinished ({len(self.history)} epochs done)")]
        table = "".join(f"<tr><th style='text-align:left'>{html.escape(str(k))}</th>"
                        f"<td>{html.escape(str(v))}</td></tr>" for k, v in rows)
        curves = figure_html(self.plot()) if self.history else ""
        return f"<div><table>{table}</table>{curves}</div>"


def _as_data(data: Any, classes: list[str]):
    """A path stays a path; images from Python become ImageData (cnnlab.data.memory), labelled
    with the run's class names."""
    from ..data.memory import from_python, is_python_data
    return from_python(data, classes) if is_python_data(data) else data


def runs_of(paths: Iterable[Path], **kwargs) -> list[Run]:
    return [Run(p, **kwargs) for p in paths]
