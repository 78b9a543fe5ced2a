"""Data integrity and exactness (issue 15): the cache never serves changed data, resumes keep
their arithmetic, archives and run folders survive concurrent use, CUDA-path details."""
import os
import signal
import time

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab import data, sourcekey
from cnnlab.errors import CnnlabError
from cnnlab.runs import evaluate_run, resume_train, run_train
from cnnlab.train import TrainConfig

from conftest import class_image


def bmp_folder(root, classes=("a", "b"), n_train=6, n_test=2, seed=0):
    """An image folder of BMP files: every file has the same size, whatever its pixels."""
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("test", n_test)):
        for label, name in enumerate(classes):
            (root / split / name).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                Image.fromarray(class_image(label, rng)).save(root / split / name / f"{i:04d}.bmp")
    return root


def rewrite_keeping_size_and_mtime(path, pixels):
    """What cp -p, rsync -a, tar and unzip do: new bytes, same size, the old mtime put back."""
    before = os.stat(path)
    Image.fromarray(pixels).save(path, format="BMP")
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = os.stat(path)
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)


# ---------------------------------------------------------------- 1. the decode cache's key

@pytest.mark.parametrize("indexed", [False, True])
def test_same_size_same_mtime_rewrite_is_not_served_from_the_cache(tmp_path, monkeypatch, indexed):
    if indexed:  # the files' hashes are in the index: the changed ctime must make it rehash
        monkeypatch.setattr(sourcekey, "RACY_NS", 0)
    root = bmp_folder(tmp_path / "d", seed=int(indexed))
    first = data.load(root)
    time.sleep(0.05)  # past the file system's timestamp granularity
    new = np.full((32, 32, 3), 7, np.uint8)
    rewrite_keeping_size_and_mtime(root / "train" / "a" / "0000.bmp", new)
    second = data.load(root)
    assert second.fingerprint != first.fingerprint
    assert second.cache_path != first.cache_path
    assert torch.equal(second.train_x[0], torch.from_numpy(new).permute(2, 0, 1))


def test_swapping_two_linked_class_folders_changes_the_labels(tmp_path):
    root = tmp_path / "d"
    store = bmp_folder(root / "store", n_train=3, n_test=1)  # store/{train,test}/{a,b}
    for split in ("train", "test"):
        (root / split).mkdir()
        os.symlink(store / split / "a", root / split / "x")
        os.symlink(store / split / "b", root / split / "y")
    first = data.load(root)
    assert first.classes == ["x", "y"]
    for name, target in (("x", "b"), ("y", "a")):
        os.remove(root / "train" / name)
        os.symlink(store / "train" / target, root / "train" / name)
    second = data.load(root)
    assert second.fingerprint != first.fingerprint
    assert torch.equal(second.train_x[:3], first.train_x[3:])  # b's images now carry label 0
    assert second.train_y.tolist() == first.train_y.tolist()


def test_unchanged_files_are_not_hashed_again(tmp_path, monkeypatch):
    monkeypatch.setattr(sourcekey, "RACY_NS", 0)
    hashed = []
    real_hash = sourcekey.hash_file
    monkeypatch.setattr(sourcekey, "hash_file", lambda p: hashed.append(p) or real_hash(p))
    root = bmp_folder(tmp_path / "d", seed=2)
    data.load(root)
    assert len(hashed) == 16
    hashed.clear()
    data.load(root)
    assert hashed == []  # served by the index: one stat per file
    time.sleep(0.05)
    rewrite_keeping_size_and_mtime(root / "test" / "b" / "0001.bmp", np.zeros((32, 32, 3), np.uint8))
    data.load(root)
    assert hashed == [str(root.resolve() / "test" / "b" / "0001.bmp")]


def test_moved_copy_keeps_its_key(tmp_path):
    a = bmp_folder(tmp_path / "a", seed=3)
    key = data.source_fingerprint(data.resolve(a), 32)
    b = a.rename(tmp_path / "b")
    assert data.source_fingerprint(data.resolve(b), 32) == key
    assert data.source_fingerprint(data.resolve(b), 64) != key


def interrupt_after_first_epoch(line):
    """A log that presses Ctrl-C once the first epoch is done (training stops after a checkpoint)."""
    if line.startswith("Epoch: 1 | Validation"):
        os.kill(os.getpid(), signal.SIGINT)


def test_resume_and_evaluate_notice_a_same_size_same_mtime_rewrite(tmp_path):
    root = bmp_folder(tmp_path / "d", seed=4)
    run = tmp_path / "run"
    cfg = TrainConfig(data=str(root), epochs=2, batch_size=4, val_size=2, out=str(run), precision="fp32")
    with pytest.raises(CnnlabError, match="stopped by SIGINT"):
        run_train(cfg, log=interrupt_after_first_epoch)
    assert evaluate_run(run)["same_data"]
    time.sleep(0.05)
    rewrite_keeping_size_and_mtime(root / "train" / "b" / "0002.bmp", np.zeros((32, 32, 3), np.uint8))
    assert not evaluate_run(run)["same_data"]
    with pytest.raises(CnnlabError, match="differ from the data"):
        resume_train(run, log=lambda line: None)
