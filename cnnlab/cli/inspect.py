"""cnnlab inspect: a trained run's filters, feature maps and what each prediction looked at."""
from __future__ import annotations

from pathlib import Path

from .common import add_threads, non_negative_int, positive_int, threads_for


def cmd_inspect(args) -> int:
    from ..runs.inspect import inspect_run
    out = Path(args.out) if args.out else Path(args.run_dir) / "inspect"
    with threads_for(args):
        result = inspect_run(args.run_dir, args.images or None, args.layers, args.target, out,
                             filters_of=args.filters or (), n_right=args.right, n_wrong=args.wrong,
                             max_channels=args.max_channels, attribution=not args.no_attribution,
                             device=args.device, data_path=args.data)
    for item in result.images:
        truth = f" (true: {item.label})" if item.label is not None else ""
        print(f"{item.name}{truth}: " + ", ".join(f"{c} {100 * p:.1f} %" for c, p in item.top[:3]))
    where = f"; Grad-CAM at {result.cam_layer}" if result.cam_layer else ""
    print(f"{len(result.files)} files written to {result.out}{where}")
    return 0


def register(sub, parents) -> None:
    p = sub.add_parser("inspect", parents=parents, help="a trained run's filters, feature maps and attributions",
                       description="See inside a trained run. Writes filters.png (the first conv layer's "
                       "filters as RGB patches, each scaled to its own range, the scale under it) and, for "
                       "each image, input.png (the image after the run's own preprocessing), one "
                       "maps-NN-LAYER.png per conv and pool layer (its channels, titled with the layer's "
                       "name and output shape), overview.png, and attribution.png (the top classes, "
                       "Grad-CAM at the last conv layer and integrated gradients for the predicted "
                       "class or --class; these need Captum: pip install 'cnnlab[explain]'). Images are "
                       "read as 'cnnlab predict' reads them; unreadable files get one warning each. "
                       "Without IMAGE: a few test images of the run, right and wrong ones.")
    p.add_argument("run_dir", metavar="RUN_DIR", help="a folder written by 'cnnlab train'")
    p.add_argument("images", metavar="IMAGE", nargs="*", help="image files or folders of images "
                   "(default: test images of the run's data)")
    p.add_argument("--layer", dest="layers", action="append", metavar="NAME",
                   help="a conv or pool layer whose feature maps to draw, named as 'cnnlab summary' "
                   "prints it (repeatable; default: every conv and pool layer)")
    p.add_argument("--class", dest="target", metavar="NAME",
                   help="the class Grad-CAM and integrated gradients explain (default: each image's predicted class)")
    p.add_argument("--filters", action="append", metavar="LAYER",
                   help="also draw this deeper conv layer's filters, per input channel (repeatable)")
    p.add_argument("--out", metavar="DIR", help="the folder to write (default: RUN_DIR/inspect); an "
                   "existing one is replaced only if 'cnnlab inspect' wrote it")
    p.add_argument("--right", type=non_negative_int, default=3,
                   help="without IMAGE: how many test images the run gets right (default: 3)")
    p.add_argument("--wrong", type=non_negative_int, default=3,
                   help="without IMAGE: how many test images the run gets wrong (default: 3)")
    p.add_argument("--max-channels", type=positive_int, default=64,
                   help="channels drawn per feature-map grid (default: 64)")
    p.add_argument("--no-attribution", action="store_true", help="skip Grad-CAM and integrated gradients")
    p.add_argument("--data", metavar="PATH", help="the run's dataset, when it has moved (default: where the run found it)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto)")
    add_threads(p)
    p.set_defaults(func=cmd_inspect)
