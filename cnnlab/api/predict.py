"""Run.predict: top classes of image files, PIL images or uint8 tensors, as `predict --json` prints.

    predict_objects(run, ["photo.jpg", "holiday/"])           # files and folders (cnnlab.runs.predict)
    predict_objects(run, [Image.open("cat.png")])             # PIL images: fitted as files are
    predict_objects(run, torch.zeros(4, 3, 32, 32, dtype=torch.uint8))   # tensors at the run's size
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np

from ..errors import CnnlabError


def _is_path(x: Any) -> bool:
    return isinstance(x, (str, bytes)) or isinstance(x, os.PathLike)


def predict_objects(run, inputs: Any, top_k: int = 3, tta: str = "none", device: str = "auto") -> list[dict]:
    import torch

    from ..data.decode import fit, recorded, to_rgb
    from ..runs.predict import Prediction, predict, record
    if _is_path(inputs) or not isinstance(inputs, (list, tuple, torch.Tensor, np.ndarray)):
        inputs = [inputs]
    if isinstance(inputs, (torch.Tensor, np.ndarray)) and np.ndim(inputs) == 3:
        inputs = [inputs]
    items = list(inputs)
    if all(_is_path(x) for x in items):
        return [record(p) for p in predict(run.path, items, top_k, tta, device, model=run._module())]
    from PIL import Image

    from ..analysis.evaluate import predict_logits, ranked
    from ..runs.saved import eval_precision, place
    config = run._config_json()
    info = config["data"]
    classes = info["classes"]
    size, rule = recorded(config)  # the run's image size and resize rule, as predict uses them
    arrays = []
    for i, x in enumerate(items):
        if isinstance(x, Image.Image):
            arrays.append(np.asarray(fit(to_rgb(x), size, rule)).transpose(2, 0, 1))
            continue
        t = torch.as_tensor(x)
        batch = t if t.ndim == 4 else t[None]
        if t.dtype != torch.uint8 or batch.ndim != 4 or batch.shape[1] != 3 or tuple(batch.shape[2:]) != (size, size):
            raise CnnlabError(f"input {i}: expected a file path, a PIL image, or uint8 tensors 3 x {size} x {size} "
                              f"(or N x 3 x {size} x {size}), got {type(x).__name__} {tuple(t.shape)} {t.dtype}")
        arrays += list(batch.numpy())
    model = run.model
    dev, channels_last = place(model, config, device)
    x = torch.from_numpy(np.stack(arrays)).to(dev)
    probs = torch.softmax(predict_logits(model, x, info["mean"], info["std"], 256, channels_last, tta,
                                         eval_precision(config)), dim=1)
    k = max(1, min(top_k, len(classes)))
    p, idx = ranked(probs, k)
    return [record(Prediction(None, [(classes[int(c)], float(q)) for q, c in zip(p[r], idx[r])]))
            for r in range(len(arrays))]
