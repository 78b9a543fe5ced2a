"""cnnlab data info and cnnlab data show: what a dataset holds, and a grid of its images."""
from __future__ import annotations

import json
from pathlib import Path

from .common import DATA_HELP, positive_int


def _load(args):
    """The dataset as the flags say, or (data show --run) as the run decoded it: its data, size, rule."""
    from ..data import dataset as data_mod, decode
    path, size, rule = args.data, args.image_size, args.resize
    if getattr(args, "run", None) is not None:
        from ..errors import CnnlabError
        from ..runs import default_data, read_config
        if size is not None or rule is not None:
            raise CnnlabError("--run shows the images at the run's own size and resize rule: "
                              "drop --image-size and --resize")
        config = read_config(args.run)
        size, rule = decode.recorded(config)
        path = path if path is not None else default_data(config)
    return data_mod.load(path, size=size or 32, strict=args.strict, resize=rule or decode.DEFAULT_RULE)


def cmd_data_info(args) -> int:
    d = _load(args)
    counts = {split: [int((y == c).sum()) for c in range(len(d.classes))]
              for split, y in (("train", d.train_y), ("test", d.test_y))}
    if args.json:
        print(json.dumps({"source": d.source, "cache": d.cache_path or None, "fingerprint": d.fingerprint,
                          "image_shape": list(d.train_x.shape[1:]), "classes": d.classes,
                          "counts": counts}, indent=2))
        return 0
    print(f"source:      {d.source}")
    print(f"cache:       {d.cache_path or 'none (the cache folder is unusable, see the warning)'}")
    print(f"fingerprint: {d.fingerprint[:16]}")
    print(f"images:      {len(d.train_y)} train, {len(d.test_y)} test, "
          f"{'x'.join(map(str, d.train_x.shape[1:]))} uint8")
    print(f"{'class':<14}{'train':>8}{'test':>8}")
    for c, name in enumerate(d.classes):
        print(f"{name:<14}{counts['train'][c]:>8}{counts['test'][c]:>8}")
    return 0


def cmd_data_show(args) -> int:
    from ..data import dataset as data_mod
    from ..files import make_folder
    from ..analysis.plots import check_target, sample_grid
    from ..text import plural
    from ..training.seeds import check_seed
    check_seed(args.seed)  # before the data are read
    if args.out is not None:
        check_target(args.out)  # before the data are read
    d = _load(args)
    out = Path(args.out) if args.out is not None else data_mod.samples_path(d.source, args.split)
    if args.out is None:
        make_folder(out.parent)
        check_target(out)
    x, y = (d.train_x, d.train_y) if args.split == "train" else (d.test_x, d.test_y)
    title = f"{Path(d.source).name}: {args.split} split, random images per class (seed {args.seed})"
    grid = sample_grid(x.numpy(), y.numpy(), d.classes, out, args.per_class, args.seed, title)
    shown = grid["per_class"]
    note = ""
    if grid["fewest"] < args.per_class:
        note = (f"; asked for {args.per_class}, but the largest class has {shown} and the smallest "
                f"{grid['fewest']}" if grid["fewest"] < shown else
                f"; asked for {args.per_class}, but the {args.split} split has only {shown} per class")
    print(f"Wrote {grid['path']} ({plural(shown, args.split + ' image')} per class, "
          f"{plural(len(d.classes), 'class', 'classes')}{note})")
    return 0


def register(sub, parents) -> None:
    d = sub.add_parser("data", parents=parents, help="inspect the dataset (info, show)",
                       description="Inspect the dataset: counts per class, source and cache, sample images.")
    dsub = d.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    di = dsub.add_parser("info", parents=parents, help="images per split and class, source, cache",
                         description="Print images per split and class, where they came from and where the cache is.")
    di.add_argument("--data", metavar="PATH", help=DATA_HELP)
    di.add_argument("--json", action="store_true", help="machine-readable output")
    di.add_argument("--strict", action="store_true", help="fail on unreadable image files instead of skipping them")
    _decoding_flags(di)
    di.set_defaults(func=cmd_data_info)
    ds = dsub.add_parser("show", parents=parents, help="save a grid of sample images per class",
                         description="Save a grid with one labelled row of sample images per class, "
                         "as PNG, JPEG, SVG or PDF (by the file name's extension).")
    ds.add_argument("--data", metavar="PATH", help=DATA_HELP)
    ds.add_argument("--strict", action="store_true", help="fail on unreadable image files instead of skipping them")
    _decoding_flags(ds)
    ds.add_argument("--run", metavar="RUN_DIR",
                    help="show the images as this run was trained on them: its data (unless --data), "
                    "its image size and resize rule")
    ds.add_argument("--per-class", type=positive_int, default=10, help="images per class (default: 10)")
    ds.add_argument("--split", choices=["train", "test"], default="train", help="which split (default: train)")
    ds.add_argument("--seed", type=int, default=0, help="which random images: 0 to 4294967295 (default: 0)")
    ds.add_argument("--out", metavar="FILE",
                    help="file to write, .png, .jpg, .svg or .pdf; an existing file is replaced only if cnnlab wrote it "
                    "(default: runs/samples/<dataset>-<split>.png)")
    ds.set_defaults(func=cmd_data_show)


def _decoding_flags(parser) -> None:
    parser.add_argument("--image-size", type=positive_int, metavar="N",
                        help="image folders: decode to N x N, as 'cnnlab train --image-size N' does (default: 32)")
    parser.add_argument("--resize", choices=["crop", "squash"],
                        help="image folders: crop (shorter side resized, centre cut out) or squash "
                        "(default: crop)")
