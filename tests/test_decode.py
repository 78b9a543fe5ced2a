"""The one decoder: training's reader and predict give equal tensors for every awkward file;
the cache key follows the decoder; odd entries are named; memory is checked before decoding."""
import json
import os
import shutil
from pathlib import Path

import numpy as np
import PIL
import pytest
import torch
from PIL import Image

from cnnlab.cli import main
from cnnlab.data import dataset as data
from cnnlab.data import decode, imagefolder
from cnnlab.errors import CnnlabError, CnnlabWarning

from conftest import make_image_folder
from legacy_data import ODD, legacy_folder

OLD_RUN = Path(__file__).parent / "data" / "old-run"
RED, GREEN, BLUE = (220, 0, 0), (0, 220, 0), (0, 0, 220)


def odd_folder(root: Path) -> Path:
    """Two classes; the test split of 'a' holds one file of every awkward kind."""
    make_image_folder(root, classes=("a", "b"), n_train=4, n_test=2)
    a = root / "test" / "a"
    rgba = Image.new("RGBA", (40, 32), (200, 30, 30, 255))
    rgba.paste((0, 0, 0, 0), (0, 0, 40, 6))  # a transparent band along the top
    rgba.save(a / "rgba.png")
    side = np.zeros((32, 64, 3), np.uint8)  # stored on its side: red left half, blue right half
    side[:, :32], side[:, 32:] = RED, BLUE
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to view (red on top)
    Image.fromarray(side).save(a / "exif6.jpg", exif=exif, quality=95)
    stripes = np.zeros((32, 96, 3), np.uint8)
    stripes[:, :32], stripes[:, 32:64], stripes[:, 64:] = RED, GREEN, BLUE
    Image.fromarray(stripes).save(a / "stripes.png")
    Image.fromarray(np.full((48, 32), 40000, np.uint16)).save(a / "grey16.png")
    palette = Image.new("P", (32, 32), 1)
    palette.putpalette([0, 0, 0, 9, 200, 30])
    palette.paste(0, (0, 0, 32, 8))  # index 0, transparent, along the top
    palette.save(a / "palette.png", transparency=0)
    Image.new("CMYK", (32, 40), (0, 255, 255, 0)).save(a / "cmyk.jpg", quality=95)
    return root


def spy_run(root: Path, data_dir: Path, rule: str) -> Path:
    """A run folder for data_dir (seed, untrained weights) recorded with the resize rule."""
    from cnnlab import checkpoints
    from cnnlab.network import models
    from cnnlab.training.loop import TrainConfig
    d = data.load(data_dir, resize=rule)
    model = models.create("seed", len(d.classes), 3, 32)
    root.mkdir(parents=True)
    config = {"config": TrainConfig(model="seed", data=str(data_dir), resize=rule).to_dict(),
              "data": {"source": d.source, "fingerprint": d.fingerprint, "classes": d.classes,
                       "image_size": 32, "resize": rule, "mean": [0.5] * 3, "std": [0.25] * 3}}
    (root / "config.json").write_text(json.dumps(config))
    checkpoints.save_weights(root / "model.safetensors", model)
    return root


@pytest.mark.parametrize("rule", ["crop", "squash"])
def test_odd_files_are_the_same_tensors_in_training_and_in_predict(tmp_path, monkeypatch, rule):
    import cnnlab.analysis.evaluate as evaluate
    from cnnlab.runs.predict import predict
    root = odd_folder(tmp_path / "odd")
    with pytest.warns(CnnlabWarning, match="resized 5 image"):
        d = data.load(root, resize=rule)
    run = spy_run(tmp_path / "run", root, rule)
    seen = []
    real = evaluate.predict_logits
    monkeypatch.setattr(evaluate, "predict_logits", lambda model, x, *a: seen.append(x.clone()) or real(model, x, *a))
    items = list(predict(run, [root / "test"], device="cpu"))
    assert [i.error for i in items] == [None] * len(items)
    assert torch.equal(torch.cat(seen), d.test_x)  # predict saw exactly what training decoded
    names = sorted(p.name for p in (root / "test" / "a").iterdir())
    x = {n: d.test_x[i].permute(1, 2, 0).numpy().astype(int) for i, n in enumerate(names)}
    assert x["rgba.png"][0, 0].tolist() == [255, 255, 255]  # transparency on white, not black
    assert abs(x["exif6.jpg"][2, 16] - RED).max() < 30 and abs(x["exif6.jpg"][29, 16] - BLUE).max() < 30
    assert x["grey16.png"][20, 20].tolist() == [40000 >> 8] * 3
    assert x["palette.png"][5, 5].tolist() == [255, 255, 255] and x["palette.png"][20, 20].tolist() == [9, 200, 30]
    assert x["cmyk.jpg"][5, 5, 0] > 200 and x["cmyk.jpg"][5, 5, 1:].max() < 40
    stripe = x["stripes.png"][16, 2].tolist()
    assert stripe == (list(GREEN) if rule == "crop" else list(RED))  # crop keeps the middle third


def test_the_legacy_rule_is_the_first_readers_conversion(tmp_path):
    Image.new("RGBA", (32, 32), (10, 20, 30, 128)).save(tmp_path / "alpha.png")
    assert decode.load_image(tmp_path / "alpha.png", 32, decode.LEGACY)[:, 0, 0].tolist() == [10, 20, 30]
    assert decode.load_image(tmp_path / "alpha.png", 32)[:, 0, 0].tolist() == [132, 137, 142]  # on white


def test_a_run_from_before_the_rule_evaluates_and_predicts_as_it_did(tmp_path):
    """tests/data/old-run was trained and evaluated by the cnnlab of then (make_old_run.py)."""
    from cnnlab.runs import evaluate_run
    from cnnlab.runs.predict import predict
    expected = json.loads((OLD_RUN / "expected.json").read_text())
    folder = legacy_folder(tmp_path / "data")
    run = tmp_path / "run"
    shutil.copytree(OLD_RUN, run)
    assert decode.recorded(json.loads((run / "config.json").read_text())) == (32, decode.LEGACY)
    out = evaluate_run(run, data_path=folder, device="cpu")
    assert out["data_fingerprint"] == expected["fingerprint"]  # bit for bit the pixels it trained on
    assert out["acc"] == expected["acc"]
    np.testing.assert_allclose(out["logits"], np.array(expected["logits"]), rtol=1e-5, atol=1e-5)
    for rel, top in expected["predict"].items():  # its own photos: the same probabilities as then
        (item,) = predict(run, [folder / rel], device="cpu")
        assert [c for c, _ in item.top] == [c for c, _ in top]
        np.testing.assert_allclose([p for _, p in item.top], [p for _, p in top], rtol=1e-5, atol=1e-6)
    odd = [folder / "test" / "dog" / n for n in ODD]  # and the odd ones as training decoded them
    names = sorted(p.name for p in (folder / "test" / "dog").iterdir())
    rows = [sum(1 for y in out["labels"] if y == 0) + names.index(n) for n in ODD]
    probs = torch.softmax(torch.from_numpy(out["logits"][rows]), 1)
    for item, p in zip(predict(run, odd, top_k=3, device="cpu"), probs):
        assert item.top[0][1] == pytest.approx(float(p.max()), abs=1e-6)


def test_the_cache_key_follows_the_decoder(tmp_path, monkeypatch):
    root = make_image_folder(tmp_path / "d", classes=("a", "b"), n_train=2, n_test=1)
    src = data.resolve(root)
    key = data.source_fingerprint(src, 32)
    assert data.source_fingerprint(src, 32, resize="squash") != key
    assert data.source_fingerprint(src, 64) != key
    monkeypatch.setattr(PIL, "__version__", "0.0.1")  # an upgraded Pillow decodes again
    assert data.source_fingerprint(src, 32) != key


def test_a_fifo_and_link_loops_are_named_in_the_warning(tmp_path):
    root = make_image_folder(tmp_path / "d", classes=("a", "b"), n_train=3, n_test=1)
    a = root / "train" / "a"
    data.load(root)  # cached before the odd entries appear: they must change the key
    os.mkfifo(a / "pipe.png")  # opening it would wait forever
    os.symlink(a / "loop2.png", a / "loop1.png")
    os.symlink(a / "loop1.png", a / "loop2.png")
    os.symlink(a / "gone.png", a / "broken.png")
    (a / "nested").mkdir()  # a folder inside a class folder is no file
    with pytest.warns(CnnlabWarning, match=r"skipped 4 file\(s\)") as record:
        d = data.load(root)
    message = " ".join(str(w.message) for w in record)
    for name, why in (("pipe.png", "not a regular file"), ("loop1.png", "a link loop"),
                      ("loop2.png", "a link loop"), ("broken.png", "a broken link")):
        assert f"train/a/{name} ({why}" in message
    assert len(d.train_y) == 6
    with pytest.raises(CnnlabError, match="not readable images"):
        data.load(root, strict=True)


def test_a_set_too_large_for_memory_is_refused_before_decoding(tmp_path, monkeypatch, capsys):
    root = make_image_folder(tmp_path / "d", classes=("a", "b"), n_train=20, n_test=5)
    # 50 images at 224x224 are 7.5 MB decoded, 15.1 MB to load; 10 MB "available"
    monkeypatch.setattr(imagefolder, "available_memory", lambda: 10_000_000)
    monkeypatch.setattr(imagefolder.decoder, "decode_one", lambda *a: pytest.fail("decoded anyway"))
    with pytest.raises(CnnlabError, match=r"50 images at 224x224 are 8 MB decoded and need about 15 MB .* "
                                          r"10 MB are available: pass --image-size 182 or smaller"):
        data.load(root, size=224)
    out = tmp_path / "run"
    assert main(["train", "--data", str(root), "--image-size", "224", "--out", str(out)]) == 2
    assert "--image-size" in capsys.readouterr().err and not out.exists()  # a refused run leaves nothing


def test_sizes_a_model_cannot_take_are_refused_naming_the_layer(tmp_path, capsys):
    root = make_image_folder(tmp_path / "d", classes=("a", "b"), n_train=2, n_test=1)
    out = tmp_path / "run"
    assert main(["train", "--data", str(root), "--model", "fast-s", "--image-size", "8", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "model fast-s cannot take 8x8 inputs: blocks.2.pool" in err and "--image-size" in err
    assert not out.exists()
    with pytest.raises(CnnlabError, match=r"seed cannot take 3x3 inputs: pool2 \(input 1x1\)"):
        from cnnlab.network.models import create
        create("seed", image_size=3)


def test_cifar_takes_no_other_size(fake_archive):
    archive, spec, _ = fake_archive
    with pytest.raises(CnnlabError, match="CIFAR-10 images are 32x32, not 64x64: --image-size"):
        data.load(archive, size=64, spec=spec)


def test_data_commands_decode_at_a_size_or_as_a_run_did(tmp_path, capsys):
    folder = legacy_folder(tmp_path / "data")
    assert main(["data", "info", "--data", str(folder), "--image-size", "48", "--resize", "squash"]) == 0
    assert "3x48x48 uint8" in capsys.readouterr().out
    run = tmp_path / "run"
    shutil.copytree(OLD_RUN, run)
    png = tmp_path / "grid.png"
    assert main(["data", "show", "--run", str(run), "--data", str(folder), "--split", "test", "--out", str(png)]) == 0
    assert Image.open(png).size[0] > 0
    assert main(["data", "show", "--run", str(run), "--image-size", "64", "--out", str(png)]) == 2
    assert "drop --image-size" in capsys.readouterr().err


def test_train_records_the_size_and_rule_and_a_resume_keeps_them(tmp_path, capsys):
    root = make_image_folder(tmp_path / "d", classes=("a", "b"), n_train=8, n_test=2, size=24)
    run = tmp_path / "run"
    assert main(["train", "--data", str(root), "--image-size", "16", "--resize", "squash", "--max-steps", "1",
                 "--epochs", "1", "--batch-size", "8", "--val-size", "0", "--device", "cpu", "--out", str(run)]) == 0
    config = json.loads((run / "config.json").read_text())
    assert decode.recorded(config) == (16, "squash") and config["config"]["image_size"] == 16
    assert config["data"]["fingerprint"] == data.load(root, size=16, resize="squash").fingerprint
    assert main(["train", "--resume", str(run), "--image-size", "32"]) == 2
    assert "--image-size 32 differs from the run's 16" in capsys.readouterr().err
    from cnnlab.runs import load_run
    from cnnlab.runs.inspect import _read_images, test_images
    config, model = load_run(run)
    x, _, _ = test_images(config, model, n_right=2, n_wrong=2)  # inspect's figures: the run's pixels too
    assert x.shape[1:] == (3, 16, 16)
    one = next((root / "test" / "a").iterdir())
    assert torch.equal(_read_images([one], 16, "squash")[0][0], torch.from_numpy(decode.load_image(one, 16, "squash")))


def test_recipe_files_take_the_size_and_rule(tmp_path):
    from cnnlab.recipes import load_recipe
    (tmp_path / "r.toml").write_text('model = "fast-s"\nimage_size = 96\nresize = "squash"\n')
    r = load_recipe(str(tmp_path / "r.toml"))
    assert (r.image_size, r.resize) == (96, "squash")
    (tmp_path / "bad.toml").write_text('resize = "stretch"\n')
    with pytest.raises(CnnlabError, match="resize must be one of crop, squash, got 'stretch'"):
        load_recipe(str(tmp_path / "bad.toml"))
