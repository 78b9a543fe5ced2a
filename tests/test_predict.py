"""cnnlab predict: any image file Pillow opens, bad files skipped with one warning each."""
import json
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, strategies as st
import torch
from PIL import Image

from cnnlab.cli import main
from cnnlab.data.decode import fit, load_image, to_rgb
from cnnlab.runs.predict import walk

from conftest import class_image, make_image_folder


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("predict")
    data = make_image_folder(tmp / "data", classes=("cat", "dog", "frog"), n_train=16, n_test=4)
    out = tmp / "run"
    assert main(["train", "--data", str(data), "--epochs", "2", "--batch-size", "8", "--val-size", "8",
                 "--out", str(out)]) == 0
    return out


@pytest.fixture
def mixed_folder(tmp_path):
    """Five images of every awkward kind, a text file and an empty file, some in a subfolder."""
    root = tmp_path / "photos"
    (root / "more").mkdir(parents=True)
    rng = np.random.default_rng(0)
    Image.fromarray(class_image(0, rng, 64)[:48]).save(root / "a-wide.png")  # 64x48: another size
    Image.fromarray(class_image(1, rng)).convert("L").save(root / "b-grey.jpg")
    rgba = Image.fromarray(class_image(2, rng)).convert("RGBA")
    rgba.putalpha(128)
    rgba.save(root / "c-rgba.png")
    Image.fromarray(np.full((32, 32), 40000, dtype=np.uint16)).save(root / "more" / "d-16bit.png")
    rotated = Image.fromarray(class_image(0, rng, 40)[:, :20])
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees to view
    rotated.save(root / "more" / "e-exif.jpg", exif=exif)
    (root / "f-notes.txt").write_text("not an image")
    (root / "g-empty.png").write_bytes(b"")
    return root


def cnnlab(*args):
    return subprocess.run([sys.executable, "-m", "cnnlab", *map(str, args)], capture_output=True,
                          text=True, timeout=300)


def test_a_folder_of_mixed_files_gives_five_predictions_and_two_warnings(tiny_run, mixed_folder):
    proc = cnnlab("predict", tiny_run, mixed_folder)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    names = ["a-wide.png", "b-grey.jpg", "c-rgba.png", "more/d-16bit.png", "more/e-exif.jpg"]
    assert [line.split(": ", 1)[0] for line in lines] == [str(mixed_folder / n) for n in names]  # sorted, recursive
    for line in lines:
        top = line.split(": ", 1)[1].split(", ")
        assert len(top) == 3 and all(t.split()[0] in ("cat", "dog", "frog") for t in top)
    warnings = proc.stderr.strip().splitlines()
    assert len(warnings) == 2
    assert warnings[0].startswith("cnnlab: warning: skipped ") and "f-notes.txt" in warnings[0]
    assert "g-empty.png: empty file" in warnings[1]


def test_json_lists_each_readable_image_with_its_top_classes(tiny_run, mixed_folder, capsys):
    assert main(["predict", str(tiny_run), str(mixed_folder), "--tta", "--json", "--top-k", "2"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out) == 5
    for item in out:
        assert set(item) == {"path", "top"} and len(item["top"]) == 2
        probs = [t["prob"] for t in item["top"]]
        assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6
        assert {t["class"] for t in item["top"]} <= {"cat", "dog", "frog"}


def test_the_prediction_is_the_models_softmax_on_the_run_normalization(tiny_run, tmp_path, capsys):
    """An oracle: the model rebuilt by hand from the safetensors file and config.json."""
    from safetensors.torch import load_file

    from cnnlab.network.models import create
    config = json.loads((tiny_run / "config.json").read_text())
    img = class_image(1, np.random.default_rng(5))
    Image.fromarray(img).save(tmp_path / "x.png")
    assert main(["predict", str(tiny_run), str(tmp_path / "x.png"), "--json", "--top-k", "3"]) == 0
    top = json.loads(capsys.readouterr().out)[0]["top"]
    model = create("seed", 3)
    model.load_state_dict(load_file(tiny_run / "model.safetensors"))
    x = torch.from_numpy(img).permute(2, 0, 1).float()[None] / 255
    mean = torch.tensor(config["data"]["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(config["data"]["std"]).view(1, 3, 1, 1)
    with torch.no_grad():
        probs = torch.softmax(model.eval()((x - mean) / std), 1)[0]
    classes = config["data"]["classes"]
    for t in top:
        assert t["prob"] == pytest.approx(float(probs[classes.index(t["class"])]), abs=1e-5)


def test_weights_come_from_safetensors_without_unpickling(tiny_run, mixed_folder, monkeypatch, capsys):
    import pickle

    def refuse(*a, **k):
        raise AssertionError("predict must not unpickle")
    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    assert main(["predict", str(tiny_run), str(mixed_folder / "a-wide.png")]) == 0


def test_no_readable_image_is_an_error(tiny_run, tmp_path, capsys):
    (tmp_path / "x.txt").write_text("hello")
    assert main(["predict", str(tiny_run), str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "skipped" in err and "cnnlab: error: no image could be read" in err
    assert main(["predict", str(tiny_run), str(tmp_path / "nowhere.png")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_truncated_files_and_bombs_are_skipped_by_name(tiny_run, tmp_path, monkeypatch, capsys):
    Image.fromarray(class_image(0, np.random.default_rng(0))).save(tmp_path / "good.png")
    good = (tmp_path / "good.png").read_bytes()
    (tmp_path / "half.png").write_bytes(good[: len(good) // 2])
    Image.new("RGB", (80, 80)).save(tmp_path / "bomb.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 5000)  # 6400 px: over the limit, under twice it
    assert main(["predict", str(tiny_run), str(tmp_path), "--json"]) == 0
    captured = capsys.readouterr()
    assert [item["path"] for item in json.loads(captured.out)] == [str(tmp_path / "good.png")]
    assert "bomb.png: too many pixels" in captured.err and "half.png" in captured.err


def test_images_become_upright_rgb_on_white():
    rgba = Image.new("RGBA", (4, 4), (255, 0, 0, 0))  # fully transparent red
    assert to_rgb(rgba).getpixel((0, 0)) == (255, 255, 255)
    half = Image.new("RGBA", (4, 4), (0, 0, 0, 128))
    assert to_rgb(half).getpixel((0, 0)) == (127, 127, 127)
    deep = Image.fromarray(np.full((4, 4), 60000, dtype=np.uint16))
    assert to_rgb(deep).getpixel((0, 0)) == (234, 234, 234)  # 60000 >> 8
    palette = Image.new("RGB", (4, 4), (9, 200, 30)).convert("P")
    assert to_rgb(palette).mode == "RGB"
    tall = Image.new("RGB", (20, 40))
    exif = tall.getexif()
    exif[0x0112] = 6
    tall.info["exif"] = exif.tobytes()
    assert to_rgb(tall).size == (40, 20)  # turned upright


def test_the_shorter_side_is_resized_and_the_centre_cut_out(tmp_path):
    wide = np.zeros((32, 96, 3), dtype=np.uint8)
    wide[:, 32:64] = 255  # a white centre square between black thirds
    out = np.asarray(fit(Image.fromarray(wide), 32))
    assert out.shape == (32, 32, 3) and out.min() == 255  # only the centre is kept, not squashed
    Image.fromarray(wide).save(tmp_path / "w.png")
    assert load_image(tmp_path / "w.png", 16).shape == (3, 16, 16)


def test_folders_are_walked_recursively_in_sorted_order_without_hidden_files(tmp_path):
    for rel in ("b/2.png", "b/1.png", "a.png", "c/.hidden.png", ".git/x.png", "b/z/0.png"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    assert [p.relative_to(tmp_path).as_posix() for p in walk([tmp_path])] == \
        ["a.png", "b/1.png", "b/2.png", "b/z/0.png"]


def hand_made_run(root, model_name, data_dir):
    """A run folder written by hand for any registered model: config.json and its weights."""
    from cnnlab import checkpoints
    from cnnlab.data import dataset as data_mod
    from cnnlab.network import models
    from cnnlab.training.loop import TrainConfig
    d = data_mod.load(data_dir)
    torch.manual_seed(0)
    model = models.create(model_name, len(d.classes), 3, 32)
    root.mkdir(parents=True)
    config = {"config": TrainConfig(model=model_name, data=str(data_dir)).to_dict(),
              "data": {"source": d.source, "fingerprint": d.fingerprint, "classes": d.classes,
                       "image_size": 32, "mean": [0.5] * 3, "std": [0.25] * 3}}
    (root / "config.json").write_text(json.dumps(config))
    checkpoints.save_weights(root / "model.safetensors", model)
    return root


def every_model():
    from cnnlab.network.models import MODELS
    return list(MODELS)


@pytest.mark.parametrize("name", every_model())
def test_every_registered_model_predicts_and_evaluates(name, tmp_path, capsys):
    from cnnlab.runs import evaluate_run
    data = make_image_folder(tmp_path / "data", classes=("a", "b"), n_train=2, n_test=3)
    run = hand_made_run(tmp_path / "run", name, data)
    out = evaluate_run(run, device="cpu")
    assert out["total"] == 6 and out["logits"].shape == (6, 2)
    assert main(["predict", str(run), str(data / "test"), "--json", "--device", "cpu"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 6


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_gives_the_cpus_predictions(tiny_run, tmp_path, capsys):
    from cnnlab.runs import evaluate_run
    cpu, cuda = evaluate_run(tiny_run, device="cpu"), evaluate_run(tiny_run, device="cuda")
    assert np.allclose(cpu["logits"], cuda["logits"], atol=1e-3) and cpu["acc"] == cuda["acc"]
    Image.fromarray(class_image(2, np.random.default_rng(1))).save(tmp_path / "x.png")
    tops = []
    for device in ("cpu", "cuda"):
        assert main(["predict", str(tiny_run), str(tmp_path), "--json", "--device", device]) == 0
        tops.append(json.loads(capsys.readouterr().out)[0]["top"])
    assert [t["class"] for t in tops[0]] == [t["class"] for t in tops[1]]
    assert all(abs(x["prob"] - y["prob"]) < 1e-3 for x, y in zip(*tops))


def test_tied_classes_rank_in_class_order_so_the_first_is_the_counted_argmax():
    """A row of bf16 logits from a trained run where cat and dog tie exactly: topk alone puts dog
    first, while accuracy (argmax) counts cat."""
    from cnnlab.analysis.evaluate import ranked
    logits = torch.tensor([[-1.2188, -0.2695, 0.2100, 0.9648, 0.2480, 0.9648, 0.7773, 0.4180, -1.4844, -0.0243]])
    probs = torch.softmax(logits.bfloat16().float(), 1)
    p, idx = ranked(probs, 3)
    assert idx.tolist() == [[3, 5, 6]] and int(idx[0, 0]) == int(probs.argmax(1)[0])
    assert torch.equal(p, probs[0, [3, 5, 6]][None])


@given(st.lists(st.integers(0, 4), min_size=2, max_size=12), st.integers(1, 12))
def test_ranking_is_best_first_with_ties_in_class_order(levels, k):
    from cnnlab.analysis.evaluate import ranked
    probs = torch.tensor([levels], dtype=torch.float32)  # few levels: many ties
    p, idx = ranked(probs, min(k, len(levels)))
    expect = sorted(range(len(levels)), key=lambda c: (-levels[c], c))[:min(k, len(levels))]
    assert idx[0].tolist() == expect and p[0].tolist() == [float(levels[c]) for c in expect]
