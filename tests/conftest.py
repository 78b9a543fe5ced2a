"""Shared fixtures: a private data cache, tiny synthetic datasets, fake CIFAR archives, real data."""
import hashlib
import io
import os
import pickle
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

# The suite runs in parallel workers (pytest-xdist), each training small networks with all cores.
# OpenMP threads that spin at their barriers starve the other worker's; sleeping ones share the
# cores. Set before torch loads, in this process and the processes the tests start (a test that
# checks the wait policy gives its processes their own environment).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from cnnlab.data.cifar import ARCHIVE, FOLDER, CifarSpec  # noqa: E402


def pytest_xdist_auto_num_workers(config):
    """`-n auto`: one worker per core, at most 4; every worker's tests use all cores already."""
    return max(1, min(4, os.cpu_count() or 1))

REAL_CIFAR = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "cifar10-jpeg"


@pytest.fixture(autouse=True, scope="session")
def private_cache(tmp_path_factory):
    """Every test decodes into a cache of its own session, never the user's ~/.cache."""
    path = tmp_path_factory.mktemp("cnnlab-cache")
    old = os.environ.get("CNNLAB_CACHE")
    os.environ["CNNLAB_CACHE"] = str(path)
    os.environ.pop("CNNLAB_DATA", None)
    yield path
    if old is None:
        os.environ.pop("CNNLAB_CACHE", None)
    else:
        os.environ["CNNLAB_CACHE"] = old


def class_image(label: int, rng, size=32) -> np.ndarray:
    """An HxWx3 uint8 image whose colour says its class, with noise."""
    base = np.array([(label * 97) % 256, (label * 57 + 80) % 256, (label * 151 + 40) % 256])
    img = base + rng.normal(0, 25, (size, size, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def make_image_folder(root: Path, classes=("cat", "dog", "frog"), n_train=12, n_test=4, size=32, seed=0):
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("test", n_test)):
        for label, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                Image.fromarray(class_image(label, rng, size)).save(folder / f"{i:04d}.png")
    return root


@pytest.fixture
def tiny_folder(tmp_path):
    return make_image_folder(tmp_path / "tiny")


def fake_cifar_members(n_per_batch=20, seed=0) -> dict[str, bytes]:
    """The pickled files of a cifar-10-batches-py folder, small, with random images."""
    rng = np.random.default_rng(seed)
    members = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        labels = [int(v) for v in rng.integers(0, 10, n_per_batch)]
        data = rng.integers(0, 256, (n_per_batch, 3072), dtype=np.uint8)
        members[name] = pickle.dumps({b"batch_label": name.encode(), b"labels": labels,
                                      b"data": data, b"filenames": []}, protocol=2)
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    members["batches.meta"] = pickle.dumps({b"label_names": names, b"num_vis": 3072}, protocol=2)
    return members


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def write_tar(path: Path, files: dict[str, bytes], links: dict[str, str] | None = None) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tar.addfile(info)
    return path


def spec_for(members: dict[str, bytes], archive: Path | None = None, url="") -> CifarSpec:
    """A CifarSpec whose md5s are those of the fake files (and archive)."""
    return CifarSpec(
        url=url,
        archive_md5=md5(archive.read_bytes()) if archive else "0" * 32,
        train_md5=tuple((f"data_batch_{i}", md5(members[f"data_batch_{i}"])) for i in range(1, 6)),
        test_md5=(("test_batch", md5(members["test_batch"])),),
        meta_md5=(("batches.meta", md5(members["batches.meta"])),))


@pytest.fixture
def fake_archive(tmp_path):
    """(archive path, spec, members) for a small, well-formed CIFAR-10 archive."""
    members = fake_cifar_members()
    folder = tmp_path / "src"
    folder.mkdir()
    archive = write_tar(folder / ARCHIVE, {f"{FOLDER}/{k}": v for k, v in members.items()})
    return archive, spec_for(members, archive), members


@pytest.fixture(scope="session")
def real_cifar():
    if not (REAL_CIFAR / "train").is_dir():
        pytest.skip(f"the real CIFAR-10 copy is not at {REAL_CIFAR}")
    return REAL_CIFAR


@pytest.fixture(scope="session")
def real_subset(real_cifar, tmp_path_factory):
    """A small image folder copied from the real CIFAR-10: 100 train / 30 test images per class."""
    root = tmp_path_factory.mktemp("cifar-subset")
    for split, n in (("train", 100), ("test", 30)):
        for cls in sorted(p.name for p in (real_cifar / split).iterdir()):
            dest = root / split / cls
            dest.mkdir(parents=True)
            for f in sorted((real_cifar / split / cls).iterdir())[:n]:
                shutil.copyfile(f, dest / f.name)
    return root


# The shared run's recipe: 15 steps per epoch (900 images, batch 64), 6 epochs by the step cap.
REAL_RUN_ARGS = ["--epochs", "30", "--batch-size", "64", "--val-size", "100", "--max-steps", "90"]


@pytest.fixture(scope="session")
def real_run(real_subset, tmp_path_factory):
    """(run folder, stdout) of one finished run of the real command line on real_subset, shared by the
    tests that evaluate or export a finished run or read its files. A test that resumes, stops or
    damages a run trains its own."""
    out = tmp_path_factory.mktemp("real-run") / "run"
    proc = subprocess.run([sys.executable, "-m", "cnnlab", "train", "--data", str(real_subset), *REAL_RUN_ARGS,
                           "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return out, proc.stdout
