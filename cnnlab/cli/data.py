"""cnnlab data info and cnnlab data show: what a dataset holds, and a grid of its images."""
from __future__ import annotations

import json
from pathlib import Path

from ..errors import CnnlabError
from .common import DATA_HELP, positive_int

def cmd_data_info(args) -> int:
    from .. import data as data_mod
    d = data_mod.load(args.data, strict=args.strict)
    counts = {split: [int((y == c).sum()) for c in range(len(d.classes))]
              for split, y in (("train", d.train_y), ("test", d.test_y))}
    if args.json:
        print(json.dumps({"source": d.source, "cache": d.cache_path, "fingerprint": d.fingerprint,
                          "image_shape": list(d.train_x.shape[1:]), "classes": d.classes,
                          "counts": counts}, indent=2))
        return 0
    print(f"source:      {d.source}")
    print(f"cache:       {d.cache_path}")
    print(f"fingerprint: {d.fingerprint[:16]}")
    print(f"images:      {len(d.train_y)} train, {len(d.test_y)} test, "
          f"{'x'.join(map(str, d.train_x.shape[1:]))} uint8")
    print(f"{'class':<14}{'train':>8}{'test':>8}")
    for c, name in enumerate(d.classes):
        print(f"{name:<14}{counts['train'][c]:>8}{counts['test'][c]:>8}")
    return 0


def cmd_data_show(args) -> int:
    from .. import data as data_mod
    from ..plots import sample_grid
    if Path(args.out).exists():
        raise CnnlabError(f"{args.out} already exists: choose another --out or delete it first")
    d = data_mod.load(args.data, strict=args.strict)
    x, y = (d.train_x, d.train_y) if args.split == "train" else (d.test_x, d.test_y)
    out = sample_grid(x.numpy(), y.numpy(), d.classes, args.out, args.per_class, args.seed)
    print(f"Wrote {out} ({args.per_class} {args.split} images per class, {len(d.classes)} classes)")
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
    di.set_defaults(func=cmd_data_info)
    ds = dsub.add_parser("show", parents=parents, help="save a grid of sample images per class",
                         description="Save a PNG grid with one labelled row of sample images per class.")
    ds.add_argument("--data", metavar="PATH", help=DATA_HELP)
    ds.add_argument("--strict", action="store_true", help="fail on unreadable image files instead of skipping them")
    ds.add_argument("--per-class", type=positive_int, default=10, help="images per class (default: 10)")
    ds.add_argument("--split", choices=["train", "test"], default="train", help="which split (default: train)")
    ds.add_argument("--seed", type=int, default=0, help="which random images (default: 0)")
    ds.add_argument("--out", metavar="FILE", default="samples.png", help="PNG file to write (default: samples.png)")
    ds.set_defaults(func=cmd_data_show)
