"""cnnlab export: a run's model as an ONNX file for onnxruntime, checked against PyTorch."""
from __future__ import annotations

import warnings

from ..errors import CnnlabWarning
from .common import add_threads, data_help, threads_for


def cmd_export(args) -> int:
    from ..runs.export import export_run
    with threads_for(args):
        r = export_run(args.run_dir, args.out, args.format, args.data, args.check_all)
    if r["check_on"] == "random":
        warnings.warn(f"{r['note']}: checking on {r['images']} random images instead", CnnlabWarning)
    ties = f" ({r['ties']} near-ties)" if r["ties"] else ""
    acc = f"; onnxruntime's accuracy on them {r['onnx_acc']:.3f} %" if "onnx_acc" in r else ""
    print(f"Check: onnxruntime vs PyTorch on {r['images']} {r['check_on']} images: max abs diff "
          f"{r['max_abs_diff']:.1e} (limit {r['tolerance']:g}), same top-1 {r['agree']}/{r['images']}{ties}{acc}")
    again = " (replaced the earlier export)" if r["replaced"] else ""
    print(f"Exported {r['model']} to {r['path']}{again}: input 'images' uint8 (batch, 3, H, W) "
          f"RGB 0..255, output 'logits' (batch, classes)")
    return 0


def register(sub, parents) -> None:
    e = sub.add_parser("export", parents=parents, help="export a run's model to ONNX, checked in onnxruntime",
                       description="Write a run's model as an ONNX file that takes uint8 RGB images "
                       "(normalization inside) and returns logits, with the class names and recipe in "
                       "its metadata; onnxruntime's logits are checked against PyTorch's on the run's "
                       "test images. Needs the export extra: pip install 'cnnlab[export]'.")
    e.add_argument("run_dir", metavar="RUN_DIR", help="a folder written by 'cnnlab train'")
    e.add_argument("--format", default="onnx", choices=["onnx"], help="file format (default: onnx)")
    e.add_argument("--out", metavar="FILE", help="where to write (default: RUN_DIR/model.onnx; only an "
                   "earlier cnnlab export is ever replaced)")
    e.add_argument("--data", metavar="PATH", help=data_help("the data the run was trained on, as saved in its config.json"))
    e.add_argument("--check-all", action="store_true",
                   help="check on every test image instead of 256 spread over the test split")
    add_threads(e)
    e.set_defaults(func=cmd_export)
