"""The small image folder the old-run fixture (tests/data/old-run) was trained on, rebuilt bit for bit.

Plain 32x32 PNGs of three colour classes, and in the test split the files where the decoders
of then and now differ: a half-transparent RGBA PNG (transparency was dropped, now it is
composited on white), a PNG with EXIF orientation 6 (ignored then, applied now) and a 48x32
PNG (squashed then; cropped now by default). PNG only: its encoding is lossless, so the
pixels do not depend on the JPEG library.
"""
from pathlib import Path

import numpy as np
from PIL import Image

from conftest import make_image_folder

CLASSES = ("cat", "dog", "frog")
ODD = ("odd-alpha.png", "odd-exif6.png", "odd-wide.png")


def legacy_folder(root: Path) -> Path:
    make_image_folder(root, classes=CLASSES, n_train=24, n_test=6, seed=3)
    folder = root / "test" / "dog"
    rng = np.random.default_rng(5)
    rgba = np.concatenate([rng.integers(0, 256, (32, 32, 3)), np.full((32, 32, 1), 90)], axis=2)
    Image.fromarray(rgba.astype(np.uint8), "RGBA").save(folder / ODD[0])
    tall = Image.fromarray(rng.integers(0, 256, (32, 16, 3)).astype(np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6  # stored on its side: rotate to view
    tall.save(folder / ODD[1], exif=exif)
    wide = np.zeros((32, 48, 3), np.uint8)
    wide[:, :16], wide[:, 16:32], wide[:, 32:] = (200, 0, 0), (0, 200, 0), (0, 0, 200)
    Image.fromarray(wide).save(folder / ODD[2])
    return root
