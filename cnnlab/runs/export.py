"""Export a trained run for deployment: an ONNX file that onnxruntime runs, checked on export.

    result = export_run("runs/20260101-120000-seed")     # writes runs/.../model.onnx, checks it
    blob = onnx_bytes(model, mean, std, image_size, metadata)   # any model, no run folder
    check_onnx(blob, model, images, mean, std)                  # onnxruntime vs PyTorch

The ONNX model has one input, "images": uint8 pixels (batch, 3, H, W), RGB, 0..255, at the
run's image size, with the run's normalization (x/255 - mean)/std inside the graph, computed
exactly as cnnlab.data.dataset.normalize computes it; and one output, "logits": float32 (batch, classes),
no softmax. The batch dimension is dynamic. metadata_props holds the class names, the model,
the recipe, the training config, mean/std and the versions (JSON strings).

Exporter: torch.onnx.export(..., dynamo=False), the TorchScript-based exporter. With torch
2.13.0 on the busy 2-core CPU it exported seed in 0.3 s (a ResNet-18 in a few seconds) and needs
only onnx and onnxruntime; the dynamo exporter took 5-15 s per model there and needs onnxscript.
torch marks the classic exporter deprecated; the check on export (onnxruntime against PyTorch
fp32 eval) is what guards the file, whichever exporter writes it.
"""
from __future__ import annotations

import io
import json
import warnings
from pathlib import Path

import torch

from .. import checkpoints, files
from ..data import decode
from ..errors import CnnlabError

FORMATS = ("onnx",)
OPSET = 17
TOLERANCE = 1e-4  # max abs difference of logits, onnxruntime vs PyTorch fp32 eval
CHECK_IMAGES = 256
PRODUCER = "cnnlab"  # producer_name of our own files: only those are ever replaced
INSTALL_HINT = "pip install 'cnnlab[export]'"


class Normalized(torch.nn.Module):
    """uint8 NCHW images -> the model's logits, normalizing as cnnlab.data.dataset.normalize does."""

    def __init__(self, model: torch.nn.Module, mean, std):
        super().__init__()
        self.model = model
        self.register_buffer("mean255", torch.as_tensor(mean, dtype=torch.float32).view(1, -1, 1, 1) * 255)
        self.register_buffer("std255", torch.as_tensor(std, dtype=torch.float32).view(1, -1, 1, 1) * 255)

    def forward(self, images):                     # (B, 3, H, W) uint8
        x = (images.float() - self.mean255) / self.std255
        return self.model(x)                       # (B, classes) float32 logits


def require_extra():
    """(onnx, onnxruntime), or one line that says which extra to install."""
    try:
        import onnx
        import onnxruntime
    except ImportError as e:
        raise CnnlabError(f"exporting needs onnx and onnxruntime ({e.name or 'missing'} is not "
                          f"installed): {INSTALL_HINT}") from None
    return onnx, onnxruntime


def onnx_bytes(model: torch.nn.Module, mean, std, image_size: int | tuple[int, int],
               metadata: dict[str, str], in_channels: int = 3) -> bytes:
    """The ONNX file of model (in eval mode, on the CPU, fp32) with normalization inside."""
    onnx, _ = require_extra()
    h, w = (image_size, image_size) if isinstance(image_size, int) else image_size
    model = model.to("cpu", torch.float32, memory_format=torch.contiguous_format).eval()
    wrapped = Normalized(model, mean, std).eval()
    example = torch.zeros(2, in_channels, h, w, dtype=torch.uint8)  # batch 2: not specialized to 1
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=DeprecationWarning)  # the classic exporter's notice
            torch.onnx.export(wrapped, (example,), buffer, input_names=["images"],
                              output_names=["logits"], opset_version=OPSET, dynamo=False,
                              dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}},
                              do_constant_folding=True)
    except Exception as e:  # an exporter failure is a bug to report, not the user's mistake
        first = (str(e).strip().splitlines() or [""])[0]
        raise _failure(f"torch.onnx.export could not export {type(model).__name__} "
                       f"({type(e).__name__}: {first}); rerun with --debug for the traceback") from e
    proto = onnx.load_from_string(buffer.getvalue())
    proto.producer_name, proto.producer_version = PRODUCER, _version()
    proto.doc_string = ("input 'images': uint8 (batch, 3, H, W) RGB pixels 0..255, normalized "
                        "inside; output 'logits': float32 (batch, classes), no softmax")
    del proto.metadata_props[:]
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(proto)
    return proto.SerializeToString()


def onnx_logits(model_file: Path | bytes, images: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """float32 logits of uint8 images (N, C, H, W) from onnxruntime on the CPU (a path or the bytes)."""
    _, ort = require_extra()
    source = model_file if isinstance(model_file, bytes) else str(model_file)
    session = ort.InferenceSession(source, providers=["CPUExecutionProvider"])
    out = [torch.from_numpy(session.run(["logits"], {"images": images[i:i + batch_size].numpy()})[0])
           for i in range(0, len(images), batch_size)]
    return torch.cat(out)


def check_onnx(model_file: Path | bytes, model: torch.nn.Module, images: torch.Tensor, mean, std,
               batch_size: int = 1000) -> dict:
    """onnxruntime against PyTorch (fp32, eval) on uint8 images: max abs difference, top-1 agreement.

    'ok' needs the difference within TOLERANCE and the same top-1 class for every image but
    near-ties: a top-1 that differs while PyTorch's two logits are within 2 x TOLERANCE (the
    only way it can differ when the logits agree) is counted in 'ties'.
    """
    from ..analysis.evaluate import predict_logits
    images = images.cpu().contiguous()
    ours = onnx_logits(model_file, images, batch_size)
    model = model.to("cpu", torch.float32, memory_format=torch.contiguous_format)
    ref = predict_logits(model, images, mean, std, batch_size)
    diff = float((ours - ref).abs().max()) if len(images) else 0.0
    top_ref, top_ours = ref.argmax(1), ours.argmax(1)
    differ = top_ref != top_ours
    gap = (ref.gather(1, top_ref[:, None]) - ref.gather(1, top_ours[:, None])).squeeze(1)
    ties = int((differ & (gap <= 2 * TOLERANCE)).sum())
    agree = int((~differ).sum())
    ok = diff <= TOLERANCE and agree + ties == len(images)
    return {"ok": ok, "images": len(images), "max_abs_diff": diff, "agree": agree, "ties": ties,
            "tolerance": TOLERANCE, "onnx_logits": ours}


def export_run(run_dir: Path, out: Path | None = None, fmt: str = "onnx", data_path=None,
               check_all: bool = False, model=None) -> dict:
    """Export a run folder's model to out (default RUN_DIR/model.onnx) and check it.

    model: the network of a run of a model defined in Python (see cnnlab.runs.load_run).
    The check runs on CHECK_IMAGES of the run's test images (all of them with check_all), or on
    random images when the run's data cannot be loaded ('check_on' says which, 'note' why).
    The file is written only when the check passes; it replaces only an earlier cnnlab export.
    """
    from . import load_run
    if fmt not in FORMATS:
        raise CnnlabError(f"unknown export format {fmt!r}: choose one of {', '.join(FORMATS)}")
    onnx, _ = require_extra()
    run_dir = Path(run_dir)
    config, model = load_run(run_dir, model)  # says so when run_dir is not a run folder
    out = Path(out) if out is not None else run_dir / "model.onnx"
    replaced = _may_write(out, onnx)
    info, cfg = config["data"], config["config"]
    images, labels, check_on, note = _check_images(config, data_path, check_all)
    blob = onnx_bytes(model, info["mean"], info["std"], info["image_size"], metadata(config, run_dir))
    check = check_onnx(blob, model, images, info["mean"], info["std"], cfg.get("eval_batch_size", 1000))
    if not check["ok"]:
        raise _failure(f"the ONNX model disagrees with PyTorch on {check['images']} {check_on} images "
                       f"(max abs diff {check['max_abs_diff']:.2e}, limit {TOLERANCE:g}; same top-1 "
                       f"{check['agree']}/{check['images']}): nothing was written; please report it")
    files.make_folder(out.parent)
    checkpoints.atomic_write_bytes(out, blob)  # the umask's mode; a full disk in one line
    logits = check.pop("onnx_logits")
    if labels is not None:
        check["onnx_acc"] = 100.0 * float((logits.argmax(1) == labels).double().mean()) if len(labels) else float("nan")
    return {"path": str(out), "replaced": replaced, "model": cfg["model"], "check_on": check_on,
            "note": note, **check}


def metadata(config: dict, run_dir: Path) -> dict[str, str]:
    """metadata_props of the exported model: strings (JSON for anything structured)."""
    info, cfg = config["data"], config["config"]
    # No absolute path of the trainer's machine in a file handed to others: folders by name only.
    # (A recipe given as a file is named by its file name too.)
    cfg = {**cfg, **{k: Path(v).name for k in ("data", "out", "recipe")
                     if isinstance(v := cfg.get(k), str) and (k != "recipe" or "/" in v or "\\" in v)}}
    recipe = cfg.get("recipe")
    return {"classes": json.dumps(info["classes"]), "model": cfg["model"],
            "recipe": recipe if isinstance(recipe, str) else json.dumps(recipe),
            "config": json.dumps(cfg), "image_size": json.dumps(info["image_size"]),
            "resize": decode.recorded(config)[1],  # how the run fitted images to image_size (see input)
            "mean": json.dumps(info["mean"]), "std": json.dumps(info["std"]),
            "input": "images: uint8 (batch, 3, H, W), RGB, 0..255, H = W = image_size: EXIF orientation "
                     "applied, transparency on white, then fitted by resize (crop: shorter side to "
                     "image_size, centre cut out; squash: whole image resized); normalized inside the model",
            "output": "logits: float32 (batch, classes); softmax gives probabilities",
            "data_fingerprint": str(info.get("fingerprint", "")), "run": Path(run_dir).resolve().name,
            "versions": json.dumps({"cnnlab": _version(), "torch": str(torch.__version__)})}


def _check_images(config: dict, data_path, check_all: bool):
    """(uint8 images, labels or None, 'test' | 'random', note) for the check on export."""
    from ..data import dataset as data_mod
    info = config["data"]
    path = data_path if data_path is not None else (info.get("source") or config["config"].get("data"))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # skipped files were reported when the run trained
            size, rule = decode.recorded(config)  # the run's own decoding
            data = (path if isinstance(path, data_mod.ImageData)  # images given from Python
                    else data_mod.load(path, size=size, download=False, resize=rule))
        if data.classes != info["classes"]:
            raise CnnlabError(f"its classes {data.classes} differ from the run's")
        if len(data.test_y) == 0:
            raise CnnlabError("it has no test images")
    except CnnlabError as e:
        size = info["image_size"]
        h, w = (size, size) if isinstance(size, int) else size
        g = torch.Generator().manual_seed(0)
        images = torch.randint(0, 256, (CHECK_IMAGES, 3, h, w), dtype=torch.uint8, generator=g)
        return images, None, "random", f"the run's data ({path}) could not be loaded ({e})"
    n = len(data.test_y)
    if check_all or n <= CHECK_IMAGES:
        return data.test_x, data.test_y, "test", ""
    idx = torch.arange(CHECK_IMAGES) * n // CHECK_IMAGES  # spread over the split (it is sorted by class)
    return data.test_x[idx], data.test_y[idx], "test", ""


def _may_write(out: Path, onnx) -> bool:
    """True when out holds an earlier cnnlab export (replaced), False when free; else refuse."""
    if out.is_dir():
        raise CnnlabError(f"--out {out} is a folder: give a file name such as {out / 'model.onnx'}")
    if not out.exists():
        return False
    try:
        ours = onnx.load(str(out), load_external_data=False).producer_name == PRODUCER
    except Exception:  # not an ONNX file at all
        ours = False
    if not ours:
        raise CnnlabError(f"{out} exists and is not a cnnlab export: choose another --out, "
                          f"so that file is not overwritten")
    return True


def _failure(message: str) -> CnnlabError:
    e = CnnlabError(message)
    e.exit_code = 1  # not the user's mistake: a bug in an exporter or runtime
    return e


def _version() -> str:
    from .. import __version__
    return __version__
