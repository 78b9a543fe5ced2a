"""Models and images given from Python: a custom nn.Module, a tensor pair and a torch Dataset train
above chance on real images and come back through load_run; wrong inputs are one line, early."""
import numpy as np
import pytest
import torch
from PIL import Image

import cnnlab
from cnnlab.cli import main
from cnnlab.data import dataset
from cnnlab.data.memory import from_python

CHANCE = 10.0  # ten classes
FLOOR = 15.0  # measured on the real subset with these settings: 20-30 %
QUICK = {"epochs": 2, "max_steps": 16, "progress": False}


class TinyNet(torch.nn.Module):
    """A model of the user's own: not in cnnlab's registry."""

    def __init__(self):
        super().__init__()
        self.features = torch.nn.Sequential(
            torch.nn.Conv2d(3, 16, 5, padding=2), torch.nn.ReLU(), torch.nn.MaxPool2d(4),
            torch.nn.Conv2d(16, 32, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2))
        self.head = torch.nn.Linear(32 * 4 * 4, 10)

    def forward(self, x):
        return self.head(self.features(x).flatten(1))


class FolderImages(torch.utils.data.Dataset):
    """A Dataset as users write them: (PIL image, int) pairs read from files."""

    def __init__(self, root, transform=None):
        self.classes = sorted(p.name for p in root.iterdir())
        self.items = [(f, c) for c, name in enumerate(self.classes) for f in sorted((root / name).iterdir())]
        self.transform = transform

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        path, label = self.items[i]
        image = Image.open(path).convert("RGB")
        return (self.transform(image) if self.transform else image), label


@pytest.fixture(scope="module")
def arrays(real_subset):
    d = dataset.load(real_subset)
    return d


@pytest.mark.slow
def test_a_custom_module_trains_and_comes_back_through_load_run(real_subset, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)  # the module's initial weights are the user's: made reproducible here
    run = cnnlab.train(model=TinyNet(), data=real_subset, out="mine", lr=3e-3, epochs=4, max_steps=32,
                       progress=False)
    assert run.metrics["test_acc"] > FLOOR
    assert run.config["model"] == "TinyNet" and run._config_json()["custom_model"]["class"].endswith("TinyNet")
    again = cnnlab.load_run("mine", model=TinyNet())
    assert again.evaluate()["test_acc"] == run.metrics["test_acc"]
    assert "TinyNet" in again.report("mine.html").read_text()  # from its saved evaluation
    with pytest.raises(cnnlab.CnnlabError, match="model defined in Python"):
        cnnlab.load_run("mine").model  # noqa: B018
    assert main(["evaluate", "mine"]) == 2  # the command line: one line, no traceback
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "cnnlab.load_run('mine', model=TinyNet())" in err


@pytest.mark.slow
def test_a_tensor_pair_trains_and_records_no_path(arrays, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    pair = ((arrays.train_x, arrays.train_y), (arrays.test_x, arrays.test_y))
    run = cnnlab.train("seed", data=pair, classes=arrays.classes, out="pair", **QUICK)
    assert run.metrics["test_acc"] > FLOOR
    info = run._config_json()["data"]
    assert info["source"] is None and run.config["data"] is None and info["kind"] == "memory"
    assert info["fingerprint"] == arrays.fingerprint  # the same images as the folder: the same fingerprint
    assert cnnlab.load_run("pair", data=pair).evaluate()["test_acc"] == run.metrics["test_acc"]
    assert main(["evaluate", "pair"]) == 2
    assert "images given from Python" in capsys.readouterr().err


@pytest.mark.slow
def test_a_dataset_of_pil_images_trains_and_comes_back(real_subset, arrays, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    train, test = FolderImages(real_subset / "train"), FolderImages(real_subset / "test")
    run = cnnlab.train("seed", data=(train, test), out="ds", **QUICK)
    assert run.metrics["test_acc"] > FLOOR
    assert run._config_json()["data"]["classes"] == arrays.classes  # the Dataset's own .classes
    assert cnnlab.load_run("ds", data=(train, test)).evaluate()["test_acc"] == run.metrics["test_acc"]


def test_numpy_hwc_tensors_chw_and_to_tensor_floats_are_the_same_images(arrays):
    x, y = arrays.test_x[:12], arrays.test_y[:12]
    chw = from_python((x, y), classes=arrays.classes)
    hwc = from_python((x.permute(0, 2, 3, 1).numpy(), y.numpy()), classes=arrays.classes)
    assert chw.fingerprint == hwc.fingerprint and torch.equal(chw.train_x, hwc.train_x)
    floats = [(img.float() / 255, int(label)) for img, label in zip(x, y)]  # what ToTensor gives
    ds = from_python(floats, classes=arrays.classes)
    assert ds.fingerprint == chw.fingerprint
    assert len(chw.test_y) == 2 and len(chw.train_y) == 10  # one split alone: a sixth held out to test


def _bad_sizes():
    return [(Image.new("RGB", (32, 32)), 0), (Image.new("RGB", (28, 28)), 1)] * 6


def _strings():
    return [("cat.jpg", 0)] * 12


@pytest.mark.parametrize("data, kwargs, message", [
    (_bad_sizes(), {}, r"data: item 1 is 28x28 but item 0 is 32x32: resize"),
    (_strings(), {}, r"data: item 0 holds a str where an image belongs"),
    ([(Image.new("RGB", (8, 8)), "cat")] * 12, {}, r"item 0's label is a str"),
    ((np.zeros((12, 8, 8, 3), np.uint8), np.arange(12) % 4), {"classes": ["a", "b", "c"]},
     r"label 3 \(image \d+\) is out of range for 3 classes"),
    ((np.zeros((12, 8, 8, 3), np.float32), np.zeros(12)), {}, r"images must be uint8"),
    ((np.zeros((12, 8, 8), np.uint8), np.zeros(12, int)), {}, r"N x 3 x H x W or N x H x W x 3"),
    ((np.zeros((12, 3, 8, 8), np.uint8), np.zeros(11, int)), {}, r"12 images but 11 labels"),
])
def test_wrong_inputs_are_one_line_before_any_run_folder(data, kwargs, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(cnnlab.SettingsError, match=message) as e:
        cnnlab.train("seed", data=data, **kwargs)
    assert "\n" not in str(e.value)
    assert list(tmp_path.iterdir()) == []  # no run folder, no runs/


@pytest.mark.slow
def test_train_seeds_builds_a_fresh_model_per_seed_and_each_run_is_cnnlab_train_with_that_seed(real_subset,
                                                                                              tmp_path, monkeypatch):
    from safetensors.torch import load_file
    monkeypatch.chdir(tmp_path)
    tiny = {"epochs": 1, "max_steps": 2, "batch_size": 64, "progress": False}
    group = cnnlab.train_seeds(model=TinyNet, data=real_subset, seeds=[0, 1], out="group", **tiny)
    assert group.seeds == [0, 1] and [r.path.name for r in group.runs] == ["seed-0", "seed-1"]
    alone = cnnlab.train(model=TinyNet, data=real_subset, seed=1, out="alone", **tiny)
    a, b = load_file(tmp_path / "group" / "seed-1" / "model.safetensors"), load_file(alone.path / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    w0 = load_file(tmp_path / "group" / "seed-0" / "model.safetensors")
    assert not torch.equal(w0["head.weight"], a["head.weight"])  # each seed its own initial weights
    with pytest.raises(cnnlab.SettingsError, match="fresh model per seed"):
        cnnlab.train_seeds(model=TinyNet(), data=real_subset, seeds=[0, 1], **tiny)


def test_one_class_from_python_is_refused_naming_where_it_came_from(tmp_path, monkeypatch):
    from cnnlab.errors import CnnlabError
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CnnlabError, match=r"the data at images given from Python hold one class") as e:
        cnnlab.train("seed", data=(np.zeros((12, 32, 32, 3), np.uint8), np.zeros(12, int)), out="one", **QUICK)
    assert "None" not in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "one").exists()
