"""One more JPEG generation of an image folder: how much does a JPEG pass cost the accuracy?

    python benchmarks/jpeg_generation.py SRC DST [--quality 75] [--shift 4]
    cnnlab train --recipe fast-90 --seed 0 --data DST     # then compare with the same run on SRC

The CIFAR-10 copy these machines hold is JPEG at quality 75 with 4:2:0 chroma subsampling, and
the lossless images are out of reach, so the cost of that first pass cannot be measured here.
What can be measured is the cost of a second pass of the same kind. Re-encoding with the same
8x8 grid would change little (the coefficients are already on the quantizer's steps), so each
image is first placed at (shift, shift) on a larger canvas: its blocks then straddle the old
block boundaries, as a first encoding's do. The canvas border is the image itself stretched to
the canvas (nearest neighbour), so the encoder sees plausible content there; it is cropped off
after decoding. DST gets every image of SRC's train/ and test/ as lossless PNG, in the same
class folders, and the script prints the PSNR of the new copy against SRC over the test images.
"""
from __future__ import annotations

import argparse
import io
import math
from pathlib import Path

import numpy as np
from PIL import Image

from cnnlab.data import imagefolder


def regenerate(im: Image.Image, quality: int, shift: int) -> Image.Image:
    """im after one JPEG pass (4:2:0) whose 8x8 grid is moved by shift pixels each way."""
    w, h = im.size
    canvas = im.resize((w + 2 * shift, h + 2 * shift), Image.NEAREST)
    canvas.paste(im, (shift, shift))
    buf = io.BytesIO()
    canvas.save(buf, "JPEG", quality=quality, subsampling=2)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB").crop((shift, shift, shift + w, shift + h))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("src", type=Path, help="an image folder with train/<class>/ and test/<class>/")
    ap.add_argument("dst", type=Path, help="where the new copy goes (PNG files)")
    ap.add_argument("--quality", type=int, default=75)
    ap.add_argument("--shift", type=int, default=4, help="pixels the 8x8 grid moves (0: same grid)")
    args = ap.parse_args(argv)
    sq_err, pixels, n = 0.0, 0, 0
    _, files = imagefolder.scan(args.src)  # the files cnnlab would read, as it finds them
    for path in (path for split in files.values() for path, label in split if label >= 0):
        rel = path.relative_to(args.src)
        im = Image.open(path).convert("RGB")
        out = regenerate(im, args.quality, args.shift)
        target = (args.dst / rel).with_suffix(".png")
        target.parent.mkdir(parents=True, exist_ok=True)
        out.save(target)
        n += 1
        if rel.parts[0] == "test":
            diff = np.asarray(out, dtype=np.float64) - np.asarray(im, dtype=np.float64)
            sq_err, pixels = sq_err + float((diff ** 2).sum()), pixels + diff.size
    psnr = 10 * math.log10(255 ** 2 / (sq_err / pixels)) if sq_err else math.inf
    print(f"{n} images written to {args.dst}; test images' PSNR against {args.src}: {psnr:.2f} dB")


if __name__ == "__main__":
    main()
