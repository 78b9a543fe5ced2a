"""cnnlab predict: a trained run's top classes for your own images."""
from __future__ import annotations

import json
import warnings

from ..errors import CnnlabError, CnnlabWarning
from .common import add_threads, add_tta, positive_int, threads_for


def cmd_predict(args) -> int:
    from ..runs.predict import predict, record
    read, results = 0, []
    with threads_for(args):
        for item in predict(args.run_dir, args.inputs, args.top_k, args.tta, args.device, args.batch_size):
            if item.error is not None:
                warnings.warn(f"skipped {item.path}: {item.error}", CnnlabWarning)
                continue
            read += 1
            if args.json:
                results.append(record(item))
            else:
                print(f"{item.path}: " + ", ".join(f"{c} {100 * p:.1f} %" for c, p in item.top), flush=True)
    if args.json:
        print(json.dumps(results, indent=2))
    if read == 0:
        raise CnnlabError("no image could be read from the paths given: pass image files (any format "
                          "Pillow opens) or folders that hold some")
    return 0


def register(sub, parents) -> None:
    from ..text import RESIZE_NOTE  # not ..predict: that imports numpy and Pillow
    p = sub.add_parser("predict", parents=parents, help="a trained run's top classes for your own images",
                       description="Predict the classes of image files with a trained run. Any image "
                       "Pillow opens works: grey, palette, 16-bit, transparent (composited on white), "
                       f"rotated by its EXIF tag (turned upright). {RESIZE_NOTE[0].upper() + RESIZE_NOTE[1:]}. "
                       "Folders are walked recursively in sorted order. Files that are not readable "
                       "images get one warning each and are skipped; the exit status is 2 only if no "
                       "image could be read.")
    p.add_argument("run_dir", metavar="RUN_DIR", help="a folder written by 'cnnlab train'")
    p.add_argument("inputs", metavar="IMAGE_OR_FOLDER", nargs="+", help="image files or folders of images")
    p.add_argument("--top-k", type=positive_int, default=3, help="how many classes to show per image (default: 3)")
    p.add_argument("--json", action="store_true",
                   help='print a JSON list of {"path", "top": [{"class", "prob"}, ...]} (best first)')
    add_tta(p)  # as evaluate's: --tta flip, or --tta alone after the images
    add_threads(p)
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto)")
    p.add_argument("--batch-size", type=positive_int, default=256, help="images decoded and predicted at once (default: 256)")
    p.set_defaults(func=cmd_predict)
