"""Image folders, the decoded-data cache, the split, and the real CIFAR-10 copy."""
import os
import time

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab.data import dataset as data
from cnnlab.errors import CnnlabError, CnnlabWarning

from conftest import make_image_folder


def test_split_sizes_and_determinism():
    train, val = data.split_indices(50_000, 5_000, seed=0)
    assert len(train) == 45_000 and len(val) == 5_000
    assert len(set(train.tolist()) | set(val.tolist())) == 50_000  # a partition
    again_train, again_val = data.split_indices(50_000, 5_000, seed=0)
    assert torch.equal(train, again_train) and torch.equal(val, again_val)
    other, _ = data.split_indices(50_000, 5_000, seed=1)
    assert not torch.equal(train, other)
    assert len(data.split_indices(100, 0, 0)[1]) == 0
    with pytest.raises(CnnlabError, match="--val-size 100 must be between 0 and 99"):
        data.split_indices(100, 100, 0)


def test_mixed_image_modes_become_rgb(tmp_path):
    root = make_image_folder(tmp_path / "d", classes=("a", "b"), n_train=3, n_test=2)
    folder = root / "train" / "a"
    Image.new("L", (32, 32), 200).save(folder / "grey.png")
    Image.new("RGBA", (32, 32), (10, 20, 30, 128)).save(folder / "alpha.png")
    Image.new("RGB", (32, 32), (1, 2, 3)).convert("P").save(folder / "palette.png")
    Image.fromarray(np.full((32, 32), 40000, dtype=np.uint16)).save(folder / "deep.png")
    Image.new("RGB", (32, 32), (250, 0, 0)).save(folder / "photo.jpg", quality=95)
    d = data.load(root)
    assert d.train_x.dtype == torch.uint8 and d.train_x.shape == (3 + 5 + 3, 3, 32, 32)
    names = sorted(p.name for p in folder.iterdir())
    by_name = {n: d.train_x[i] for i, n in enumerate(names)}
    assert by_name["grey.png"].unique().tolist() == [200]
    assert by_name["alpha.png"][:, 0, 0].tolist() == [132, 137, 142]  # half-transparent, on white
    assert by_name["deep.png"].unique().tolist() == [40000 >> 8]
    assert by_name["photo.jpg"][0].float().mean() > 240
    assert d.classes == ["a", "b"]
    assert d.train_y.tolist() == [0] * 8 + [1] * 3


def test_other_sizes_are_resized_with_one_warning(tmp_path):
    root = make_image_folder(tmp_path / "d", classes=("a", "b"), n_train=2, n_test=1)
    Image.new("RGB", (64, 48), (5, 6, 7)).save(root / "train" / "a" / "big.png")
    Image.new("RGB", (8, 8), (5, 6, 7)).save(root / "test" / "b" / "small.png")
    with pytest.warns(CnnlabWarning, match="resized 2 image") as record:
        d = data.load(root)
    assert len([w for w in record if "resized" in str(w.message)]) == 1
    assert d.train_x.shape[1:] == (3, 32, 32)


def test_cache_is_used_then_rebuilt_when_a_source_file_changes(tmp_path):
    root = make_image_folder(tmp_path / "d", classes=("a", "b"), n_train=3, n_test=2)
    first = data.load(root)
    assert os.path.exists(first.cache_path)
    cached_at = os.stat(first.cache_path).st_mtime_ns
    assert data.load(root).fingerprint == first.fingerprint
    assert os.stat(first.cache_path).st_mtime_ns == cached_at  # served from the cache
    changed = root / "train" / "a" / "0000.png"
    Image.new("RGB", (32, 32), (0, 0, 0)).save(changed)
    os.utime(changed, ns=(time.time_ns(), time.time_ns() + 10**9))
    second = data.load(root)
    assert second.fingerprint != first.fingerprint
    assert second.train_x[0].sum() == 0


def test_damaged_cache_is_detected_and_rebuilt(tmp_path):
    root = make_image_folder(tmp_path / "d", classes=("a", "b"), n_train=3, n_test=2)
    good = data.load(root)
    blob = bytearray(open(good.cache_path, "rb").read())
    blob[-10] ^= 0xFF  # one flipped bit in the pixels
    open(good.cache_path, "wb").write(blob)
    with pytest.warns(CnnlabWarning, match="damaged"):
        again = data.load(root)
    assert torch.equal(again.train_x, good.train_x)
    open(good.cache_path, "wb").write(blob[:100])  # truncated
    with pytest.warns(CnnlabWarning, match="damaged"):
        assert torch.equal(data.load(root).train_x, good.train_x)


def test_cache_never_goes_into_the_data_folder(tmp_path):
    root = make_image_folder(tmp_path / "d", classes=("a", "b"), n_train=2, n_test=1)
    before = sorted(str(p) for p in root.rglob("*"))
    os.chmod(root, 0o555)
    try:
        d = data.load(root)
    finally:
        os.chmod(root, 0o755)
    assert not d.cache_path.startswith(str(root))
    assert sorted(str(p) for p in root.rglob("*")) == before


@pytest.mark.parametrize("damage,message", [
    (lambda r: (r / "train" / "b").rename(r / "train" / "c"), "different classes"),
    (lambda r: [p.unlink() for p in (r / "test" / "b").iterdir()], "test/b has no images"),
    (lambda r: (r / "test").rename(r / "tests"), r"test is missing \(there is tests/: rename it to test/\)"),
])
def test_bad_folders_are_clear_errors(tmp_path, damage, message):
    root = make_image_folder(tmp_path / "d", classes=("a", "b"), n_train=2, n_test=1)
    damage(root)
    with pytest.raises(CnnlabError, match=message):
        data.load(root)


def test_missing_path_is_a_clear_error(tmp_path):
    with pytest.raises(CnnlabError, match="does not exist"):
        data.load(tmp_path / "nope")


@pytest.mark.slow
def test_real_cifar10_copy(real_cifar):
    d = data.load(real_cifar)
    assert d.train_x.shape == (50_000, 3, 32, 32) and d.test_x.shape == (10_000, 3, 32, 32)
    assert d.classes == ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                         "ship", "truck"]
    assert torch.bincount(d.train_y).tolist() == [5000] * 10
    assert torch.bincount(d.test_y).tolist() == [1000] * 10
    start = time.perf_counter()
    again = data.load(real_cifar)
    assert again.fingerprint == d.fingerprint
    print(f"cache load: {time.perf_counter() - start:.2f} s")


def test_channel_stats_match_a_direct_computation():
    x = torch.randint(0, 256, (1000, 3, 8, 8), dtype=torch.uint8)
    mean, std = data.channel_stats(x)
    flat = x.transpose(0, 1).reshape(3, -1).double() / 255
    assert torch.allclose(torch.tensor(mean, dtype=torch.float64), flat.mean(1), atol=1e-12)
    assert torch.allclose(torch.tensor(std, dtype=torch.float64), flat.std(1), atol=1e-12)


def test_parallel_decode_equals_serial(real_subset):
    from cnnlab.data.imagefolder import decode
    paths = sorted((real_subset / "train" / "cat").iterdir())[:60] + [real_subset / "missing.png"]
    serial = decode(paths, 32, workers=1)
    parallel = decode(paths, 32, workers=2, min_parallel=0)
    assert len(parallel) == len(serial) == 61
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(serial[:-1], parallel[:-1]))
    assert serial[-1][0] is None and parallel[-1][0] is None
