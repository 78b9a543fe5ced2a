"""benchmarks/jpeg_generation.py: one more JPEG pass of an image folder, its grid moved."""
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from test_bench_isa import load_benchmark

jpeg_generation = load_benchmark("jpeg_generation")


def psnr(a: Image.Image, b: Image.Image) -> float:
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    return 10 * np.log10(255 ** 2 / max((d ** 2).mean(), 1e-12))


@pytest.fixture(scope="module")
def real_images(real_cifar):
    return [Image.open(p).convert("RGB") for p in sorted((real_cifar / "test" / "cat").iterdir())[:40]]


def test_a_moved_grid_costs_more_than_the_same_grid_and_quality_100_almost_nothing(real_images):
    same = np.mean([psnr(jpeg_generation.regenerate(im, 75, 0), im) for im in real_images])
    moved = np.mean([psnr(jpeg_generation.regenerate(im, 75, 4), im) for im in real_images])
    fine = np.mean([psnr(jpeg_generation.regenerate(im, 100, 4), im) for im in real_images])
    # the copy is already q75 on the 0-grid: re-encoding there changes little; a moved grid is a new pass
    assert moved < same - 3 and moved < 35
    assert fine > 40
    assert all(jpeg_generation.regenerate(im, 75, 4).size == im.size for im in real_images[:3])


def test_the_script_writes_a_png_copy_cnnlab_can_train_on(real_subset, tmp_path, capsys):
    from cnnlab.data import dataset as data

    src = tmp_path / "src"
    for split in ("train", "test"):
        for cls in ("cat", "dog"):
            shutil.copytree(real_subset / split / cls, src / split / cls)
    jpeg_generation.main([str(src), str(tmp_path / "dst")])
    out = capsys.readouterr().out
    assert out.startswith("260 images written") and "PSNR" in out
    copy = data.load(tmp_path / "dst", download=False)
    assert copy.classes == ["cat", "dog"] and len(copy.train_y) == 200 and len(copy.test_y) == 60
    original = data.load(src, download=False)
    assert torch.equal(copy.train_y, original.train_y)
    assert not np.array_equal(copy.train_x.numpy(), original.train_x.numpy())  # a pass happened
