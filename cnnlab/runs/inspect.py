"""See inside a trained run: its filters, its feature maps and what each prediction looked at.

    result = inspect_run("runs/x")                         # a few right and wrong test images
    result = inspect_run("runs/x", ["cat.jpg"], layers=["conv1"], target="dog", out="look/")
    result.images[0].top, result.images[0].pngs["attribution.png"], result.files

Images are read as 'cnnlab predict' reads them (cnnlab.runs.predict) and normalized with
the run's mean and std, so the network sees what it saw in training. For each image:
input.png (the pixels and the normalized channels), attribution.png (top classes, Grad-CAM
at the last conv layer and integrated gradients for the predicted class or target, when
Captum is installed), overview.png (a few channels of every layer) and one
maps-NN-LAYER.png per conv or pool layer. filters.png shows the first conv layer's
filters; filters-LAYER.png a deeper layer's filters per input channel (filters_of).
With out=None nothing is written: the PNGs are in the result. inspect_images does the
same for any model (a custom nn.Module too) on uint8 images.
"""
from __future__ import annotations

import json
import re
import shutil
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..analysis import inspect as look
from ..analysis import inspect_figures as draw
from ..data.decode import recorded
from ..errors import CnnlabError, CnnlabWarning

MARK = "cnnlab inspect"  # in inspect.json: a folder this module wrote, which it may replace


@dataclass
class InspectedImage:
    name: str  # the file, or 'test image #i'
    label: str | None  # the true class, when known
    top: list[tuple[str, float]]  # (class, probability), best first
    target: str  # the class the attributions explain
    pngs: dict[str, bytes] = field(default_factory=dict)  # file name -> PNG
    folder: str = ""  # its sub-folder of out


@dataclass
class Inspection:
    filters: dict[str, bytes]  # filters.png (first conv), filters-LAYER.png
    images: list[InspectedImage]
    cam_layer: str | None  # where Grad-CAM looked; None without Captum
    out: Path | None = None
    files: list[Path] = field(default_factory=list)


def slug(text: str, n: int = 40) -> str:
    """A file-name-safe short form of text."""
    return (re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("._") or "image")[:n]


def class_index(classes: list[str], target) -> int | None:
    if target is None:
        return None
    if target not in classes:
        raise CnnlabError(f"--class {target!r} is not one of the run's classes: choose from {', '.join(classes)}")
    return classes.index(target)


def filter_pngs(model: torch.nn.Module, chw, filters_of=()) -> dict[str, bytes]:
    """filters.png for the first conv layer, filters-LAYER.png for each conv layer in filters_of."""
    first = look.first_conv(model, chw)
    canvas, _ = draw.filter_grid(look.filters(model, first.name), first.name)
    pngs = {"filters.png": draw.grid_png(canvas)}
    convs = [layer.name for layer in look.pick_layers(model, chw, list(filters_of)) if layer.kind == "conv"]
    for name in filters_of:
        if name not in convs:
            raise CnnlabError(f"{name} is a pool layer: only conv layers have filters")
        pngs[f"filters-{slug(name)}.png"] = draw.grid_png(draw.channel_filter_grid(look.filters(model, name), name))
    return pngs


def inspect_images(model: torch.nn.Module, images: torch.Tensor, mean, std, classes: list[str],
                   names: list[str], labels=None, layers=None, target=None, attribution: bool = True,
                   max_channels: int = 64, cam_layer: str | None = None, overview_only: bool = False,
                   ) -> tuple[list[InspectedImage], str | None]:
    """Figures for uint8 images (N, C, H, W) through any model: (one InspectedImage each, the
    Grad-CAM layer or None). Grad-CAM and integrated gradients need Captum; without it they
    are left out with one warning. overview_only draws only overview.png and attribution.png."""
    from ..analysis import attribution as attr
    from ..data.dataset import normalize
    device = next(model.parameters()).device
    x = normalize(images.to(device), mean, std).float()
    chw = tuple(x.shape[1:])
    infos = look.pick_layers(model, chw, layers)
    shapes = {layer.name: layer.out_shape for layer in infos}
    maps = look.feature_maps(model, x, [layer.name for layer in infos])
    scores = look.logits(model, x)
    top = look.top_classes(scores, classes, k=min(5, len(classes)))
    fixed = class_index(classes, target)
    wanted = [fixed if fixed is not None else int(i) for i in scores.argmax(1)]
    cam = ig = None
    if attribution and not attr.available():
        warnings.warn(f"no Grad-CAM or integrated gradients: Captum is not installed ({attr.INSTALL})", CnnlabWarning)
        attribution = False
    if attribution:
        cam_layer = cam_layer or look.last_conv(model, chw).name
        cam = attr.grad_cam(model, x, wanted, cam_layer).numpy()
        ig = attr.integrated_gradients(model, x, wanted).numpy()
    out = []
    for i, name in enumerate(names):
        img, label = images[i].cpu().numpy(), (labels[i] if labels is not None else None)
        truth = f", true class {label}" if label is not None else ""
        head = f"{name}{truth}: predicted {top[i][0][0]} ({100 * top[i][0][1]:.1f} %)"
        item = InspectedImage(name, label, top[i], classes[wanted[i]], folder=f"{i + 1:02d}-{slug(Path(name).stem)}")
        item.pngs["attribution.png"] = draw.figure_png(draw.attribution_figure(
            img, top[i], head, None if cam is None else cam[i], None if ig is None else ig[i], classes[wanted[i]]))
        item.pngs["overview.png"] = draw.figure_png(draw.layers_overview(
            img, {k: v[i:i + 1] for k, v in maps.items()}, shapes, cam=None if cam is None else cam[i], title=head))
        if not overview_only:
            item.pngs["input.png"] = draw.figure_png(draw.input_figure(img, x[i].cpu().numpy(), f"{name}: what the model gets"))
            for j, (layer, m) in enumerate(maps.items(), 1):
                item.pngs[f"maps-{j:02d}-{slug(layer)}.png"] = draw.figure_png(
                    draw.feature_map_figure(m[i].numpy(), layer, shapes[layer], max_channels))
        out.append(item)
    return out, (cam_layer if attribution else None)


def right_and_wrong(model: torch.nn.Module, test_x: torch.Tensor, test_y: torch.Tensor, mean, std,
                    n_right: int = 3, n_wrong: int = 3, pool: int = 1000, seed: int = 0) -> list[int]:
    """Indices of n_right test images the model gets right and n_wrong it gets wrong (right ones
    first), from pool test images drawn with a fixed seed over the whole split (image folders
    list their test images class by class), of different true classes where there are enough."""
    from ..analysis.evaluate import predict_logits
    device = next(model.parameters()).device
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(len(test_x), size=min(pool, len(test_x)), replace=False))
    x, y = test_x[idx], test_y[idx]
    right = (predict_logits(model, x.to(device), mean, std, 250).argmax(1).cpu() == y).numpy()
    picked = []
    for mask, n in ((right, n_right), (~right, n_wrong)):
        order = rng.permutation(np.flatnonzero(mask))
        seen, first, rest = set(), [], []
        for i in order:  # one per class first, then the others
            (rest if int(y[i]) in seen else first).append(int(idx[i]))
            seen.add(int(y[i]))
        picked += sorted((first + rest)[:n])
    return picked


def _read_images(inputs, size: int, rule: str) -> tuple[torch.Tensor, list[str]]:
    """Images decoded as 'cnnlab predict' decodes them (the run's size and resize rule); one
    warning per unreadable file."""
    from .predict import decode_or_reason, walk
    arrays, names = [], []
    for path in walk(inputs):
        arr, why = decode_or_reason(path, size, rule)
        if arr is None:
            warnings.warn(f"skipped {path}: {why}", CnnlabWarning)
            continue
        arrays.append(arr)
        names.append(str(path))
    if not arrays:
        raise CnnlabError("no image could be read from the paths given: pass image files (any format "
                          "Pillow opens) or folders that hold some")
    return torch.from_numpy(np.stack(arrays)), names


def test_images(config: dict, model, data_path=None, n_right: int = 3, n_wrong: int = 3):
    """(uint8 images, names, true classes) of a few right and wrong test images of the run's data."""
    from ..data import dataset as data_mod, decode
    from .saved import default_data
    info = config["data"]
    size, rule = decode.recorded(config)  # the pixels the run was trained and tested on
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # skipped-file notes were shown when it was trained
            data = data_mod.load(data_path if data_path is not None else default_data(config), size=size,
                                 download=False, resize=rule)
    except CnnlabError as e:
        raise CnnlabError(f"the run's test images could not be loaded ({e}): pass image files, or --data") from None
    if data.classes != info["classes"]:
        raise CnnlabError(f"the data at {data.source} have other classes than the run: pass its dataset with --data")
    idx = right_and_wrong(model, data.test_x, data.test_y, info["mean"], info["std"], n_right, n_wrong)
    labels = [info["classes"][int(data.test_y[i])] for i in idx]
    return data.test_x[idx], [f"test image #{i}" for i in idx], labels


def inspect_run(run_dir, images=None, layers=None, target: str | None = None, out=None, *,
                filters_of=(), n_right: int = 3, n_wrong: int = 3, max_channels: int = 64,
                attribution: bool = True, device: str = "auto", data_path=None) -> Inspection:
    """Filters, feature maps, top classes and attributions of a saved run on images (files or
    folders; None: n_right right and n_wrong wrong test images). out: a folder to write the
    PNGs and inspect.json into (None: write nothing). Layer names as 'cnnlab summary' prints."""
    from ..training.loop import pick_device
    from .saved import load_run
    config, model = load_run(run_dir)
    info = config["data"]
    classes, size = info["classes"], info["image_size"]
    class_index(classes, target)
    model.to(pick_device(device)).eval()
    chw = (3, size, size)
    look.pick_layers(model, chw, layers)  # unknown names fail before any image is read
    target_dir = _check_out(Path(out)) if out is not None else None
    filters = filter_pngs(model, chw, filters_of)
    if images:
        x, names = _read_images(images, size, recorded(config)[1])
        labels = None
    else:
        x, names, labels = test_images(config, model, data_path, n_right, n_wrong)
    items, cam_layer = inspect_images(model, x, info["mean"], info["std"], classes, names, labels, layers,
                                      target, attribution, max_channels)
    result = Inspection(filters, items, cam_layer)
    if target_dir is not None:
        result.out, result.files = target_dir, _write(result, target_dir, Path(run_dir))
    return result


def _check_out(out: Path) -> Path:
    """out, if it may be written: absent, an empty folder, or a folder this module wrote."""
    if out.is_symlink() or out.exists() and not out.is_dir():
        raise CnnlabError(f"{out} exists and is not a folder: choose another --out")
    if out.is_dir() and any(out.iterdir()) and not _is_ours(out):
        raise CnnlabError(f"{out} holds files that 'cnnlab inspect' did not write: choose another --out "
                          f"so nothing is overwritten")
    if not out.parent.is_dir():
        raise CnnlabError(f"the folder of --out {out} does not exist: create it or choose another --out")
    return out


def _is_ours(folder: Path) -> bool:
    try:
        return json.loads((folder / "inspect.json").read_text()).get("written_by") == MARK
    except (OSError, ValueError, AttributeError):
        return False


def _write(result: Inspection, out: Path, run_dir: Path) -> list[Path]:
    """Everything into a fresh folder beside out, then swapped in: a failure leaves out as it was."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        for name, png in result.filters.items():
            (tmp / name).write_bytes(png)
        for item in result.images:
            (tmp / item.folder).mkdir()
            for name, png in item.pngs.items():
                (tmp / item.folder / name).write_bytes(png)
        summary = {"written_by": MARK, "run": str(run_dir.resolve()), "cam_layer": result.cam_layer,
                   "filters": sorted(result.filters),
                   "images": [{"name": i.name, "label": i.label, "target": i.target, "folder": i.folder,
                               "top": [{"class": c, "prob": p} for c, p in i.top], "files": sorted(i.pngs)}
                              for i in result.images]}
        (tmp / "inspect.json").write_text(json.dumps(summary, indent=2))
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return sorted(p for p in out.rglob("*") if p.is_file())
