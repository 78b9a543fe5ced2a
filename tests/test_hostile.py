"""An image-folder dataset salted with every kind of bad file."""
import os

import numpy as np
import pytest
from PIL import Image

from cnnlab.data import dataset as data
from cnnlab.cli import main
from cnnlab.errors import CnnlabError, CnnlabWarning

from conftest import make_image_folder


@pytest.fixture
def salted(tmp_path):
    root = make_image_folder(tmp_path / "salted", classes=("a", "b"), n_train=4, n_test=2)
    a = root / "train" / "a"
    (a / ".DS_Store").write_bytes(b"\x00\x01junk")
    (a / "._0000.png").write_bytes(b"AppleDouble")
    (root / "train" / ".ipynb_checkpoints").mkdir()
    Image.new("RGB", (32, 32)).save(root / "train" / ".ipynb_checkpoints" / "x.png")
    (a / "empty.jpg").write_bytes(b"")
    good = (a / "0000.png").read_bytes()
    (a / "truncated.png").write_bytes(good[: len(good) // 2])
    (a / "notes.txt").write_text("not an image")
    (a / "fake.jpg").write_text("<html>not a jpeg</html>")
    Image.fromarray(np.full((32, 32), 60000, dtype=np.uint16)).save(a / "deep.png")
    Image.new("RGB", (32, 32), (9, 9, 9)).convert("P").save(a / "palette.png")
    Image.new("LA", (32, 32), (100, 50)).save(a / "grey-alpha.png")
    Image.new("RGB", (80, 80), (0, 0, 0)).save(a / "bomb.png")  # over the limit set below
    outside = tmp_path / "secret.png"
    Image.new("RGB", (32, 32), (1, 1, 1)).save(outside)
    os.symlink(outside, a / "escape.png")
    return root


BAD = ["empty.jpg", "truncated.png", "notes.txt", "fake.jpg", "bomb.png", "escape.png"]


def test_bad_files_are_skipped_and_reported_by_path(salted, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 3000)  # 80x80 = 6400 px: a bomb here
    with pytest.warns(CnnlabWarning, match=r"skipped 6 file\(s\)") as record:
        d = data.load(salted)
    message = " ".join(str(w.message) for w in record)
    for name in BAD:
        assert f"train/a/{name} (" in message
    assert d.train_x.shape[0] == 4 + 3 + 4  # a: 4 + deep, palette, grey-alpha; b: 4
    assert d.classes == ["a", "b"]  # the hidden folder is no class
    assert d.train_y.tolist().count(0) == 7


def test_strict_refuses_bad_files_even_from_the_cache(salted, monkeypatch, capsys):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 3000)
    with pytest.warns(CnnlabWarning):
        data.load(salted)  # cached without the bad files; strict must still refuse
    with pytest.raises(CnnlabError, match=r"6 file\(s\) are not readable images, first: train/a/"):
        data.load(salted, strict=True)
    assert main(["data", "info", "--data", str(salted), "--strict"]) == 2
    assert "drop --strict" in capsys.readouterr().err


def test_bomb_alone_is_refused_at_pillows_limit(tmp_path, monkeypatch):
    from cnnlab.data.decode import decode_one
    Image.new("RGB", (80, 80)).save(tmp_path / "big.png")
    assert decode_one(tmp_path / "big.png", 32)[0] is not None
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 5000)  # 6400 px: over the limit, under twice it
    arr, reason = decode_one(tmp_path / "big.png", 32)
    assert arr is None and "decompression bomb" in reason


def test_class_folder_linking_outside_is_refused(tmp_path):
    root = make_image_folder(tmp_path / "d", classes=("a", "b"), n_train=2, n_test=1)
    elsewhere = make_image_folder(tmp_path / "elsewhere", classes=("c",), n_train=2, n_test=1)
    os.symlink(elsewhere / "train" / "c", root / "train" / "c")
    os.symlink(elsewhere / "test" / "c", root / "test" / "c")
    with pytest.raises(CnnlabError, match="outside the dataset"):
        data.load(root)


def test_class_in_one_split_only_is_a_clear_error(tmp_path):
    root = make_image_folder(tmp_path / "d", classes=("a", "b"), n_train=2, n_test=1)
    (root / "train" / "extra").mkdir()
    Image.new("RGB", (32, 32)).save(root / "train" / "extra" / "x.png")
    with pytest.raises(CnnlabError, match=r"only in train: \['extra'\]"):
        data.load(root)
