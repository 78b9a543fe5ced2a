"""Everything a report shows about one run, gathered from its folder (and its data when needed).

    info = collect("runs/x")     # config, metrics, history, model table, evaluation, figures

The evaluation comes from the run's eval.json and figures when 'cnnlab evaluate' wrote them;
otherwise it is computed here, in memory (the run folder is only read). Sample images and a
fresh evaluation need the run's data; when the data cannot be found the report says so and
shows the rest.
"""
from __future__ import annotations

import csv
import json
import math
import warnings
from pathlib import Path

import numpy as np

from ..errors import CnnlabError, CnnlabWarning
from . import figures, inspection
from .evaluation import FIGURES, draw, read_eval, summarize

SAMPLES_PER_CLASS = 8


def read_history(path: Path) -> list[dict]:
    """history.csv rows as floats (an empty or missing value is NaN); [] when absent."""
    if not path.is_file():
        return []

    def num(v):
        try:
            return float(v)
        except (TypeError, ValueError):
            return math.nan
    with open(path, newline="") as f:
        return [{k: num(v) for k, v in row.items()} for row in csv.DictReader(f)]


def model_table(config: dict) -> str:
    """The table 'cnnlab summary' prints, for the run's model on its input size."""
    from ..network import models
    from ..network.layers import render
    from ..network.summary import summarize as summarize_model
    info = config["data"]
    size = info["image_size"]
    model = models.create(config["config"]["model"], len(info["classes"]), 3, size)
    text = render(summarize_model(model, (3, size, size)), [1, 3, size, size])
    note = getattr(model, "summary_note", "")
    return text + ("\n" + note if note else "")


def _load_data(config: dict, data_path):
    """The run's dataset, or (None, why not); never downloads."""
    from ..data import dataset as data_mod, decode
    from ..runs import default_data
    where = data_path if data_path is not None else default_data(config)
    if isinstance(where, data_mod.ImageData):  # images given from Python (cnnlab.Run.report)
        return where, None
    if where is None and config["data"].get("kind") == data_mod.MEMORY:
        return None, "it was given from Python and has no path"
    size, rule = decode.recorded(config)  # the pixels the run was trained and tested on
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # skipped-file notes were shown when it was trained
            data = data_mod.load(where, size=size, download=False, resize=rule)
    except CnnlabError as e:
        return None, str(e)
    if data.classes != config["data"]["classes"]:
        return None, f"the data at {data.source} have other classes than the run"
    return data, None


def samples(test_x, test_y, n_classes: int, per_class: int = SAMPLES_PER_CLASS, seed: int = 0) -> list[bytes]:
    """One PNG strip per class of per_class test images chosen with a fixed seed."""
    rng = np.random.default_rng(seed)
    y = np.asarray(test_y)
    strips = []
    for c in range(n_classes):
        idx = np.flatnonzero(y == c)
        chosen = np.sort(rng.choice(idx, size=min(per_class, len(idx)), replace=False)) if len(idx) else idx
        strips.append(figures.strip(np.asarray(test_x[chosen])) if len(chosen) else b"")
    return strips


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        return {}


def collect(run_dir, data_path=None, device: str = "auto") -> dict:
    """config, metrics, history, model table, evaluation summary, figures, sample strips and the
    look inside the network (its HTML, escaped: report/inspection.py)."""
    from ..runs import evaluate_run, read_config
    from ..runs.saved import unfinished_notice, unfinished_state
    run_dir = Path(run_dir)
    config = read_config(run_dir)
    notes = []
    unfinished = unfinished_state(run_dir)
    if unfinished is not None:  # said once here, on the page and on the command line
        notice = unfinished_notice(run_dir)
        warnings.warn(notice, CnnlabWarning)
        notes.append(notice[0].upper() + notice[1:] + ".")
    history = read_history(run_dir / "history.csv")
    ev = read_eval(run_dir)
    pngs = {}
    if ev is not None and all(figures.is_ours(run_dir / f) for f in FIGURES):
        pngs = {f: (run_dir / f).read_bytes() for f in FIGURES}
    data, why = _load_data(config, data_path)
    if data is None:
        notes.append(f"The run's data could not be loaded ({why}): no sample images"
                     + ("" if pngs else " and no evaluation") + ".")
    elif not pngs:
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".* is an unfinished run", category=CnnlabWarning)
                out = evaluate_run(run_dir, data.source if data_path is None else data_path, device)
        except CnnlabError as e:  # e.g. a run stopped before it saved any weights
            notes.append(f"No evaluation: {e}")
        else:
            ev = summarize(out)
            pngs = draw(out, ev)
            notes.append("No eval.json in the run folder: the evaluation was computed for this report.")
    table = ""
    try:
        table = model_table(config)
    except CnnlabError as e:
        notes.append(f"No model table: {e}")
    with warnings.catch_warnings():  # an unfinished run was said so once, above
        warnings.filterwarnings("ignore", message=".* is an unfinished run", category=CnnlabWarning)
        inspect_html = inspection.section(inspection.gather(run_dir, config, data))
    return {
        "name": run_dir.resolve().name, "path": str(run_dir.resolve()), "config": config,
        "metrics": _read_json(run_dir / "metrics.json"), "history": history, "eval": ev,
        "figures": pngs, "model_table": table, "notes": notes, "unfinished": unfinished,
        "samples": samples(data.test_x, data.test_y, len(config["data"]["classes"])) if data is not None else [],
        "curves": figures.curves([(run_dir.name, history)]) if history else b"",
        "inspect_html": inspect_html,
    }
