"""cnnlab inspect: feature maps, filters and attributions checked against independent computations.

Oracles: feature maps against forward hooks of the test's own and a hand-written forward pass;
Grad-CAM against the gradient computation written out with autograd; integrated gradients
against their completeness property; hand-set filters read back from the PNG's pixels.
"""
import importlib.util
import io
import json

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

from cnnlab.analysis import inspect as look
from cnnlab.analysis import inspect_figures as draw
from cnnlab.cli import main
from cnnlab.network import models
from cnnlab.network.summary import summarize
from cnnlab.runs.inspect import filter_pngs, inspect_images

from conftest import make_image_folder

CONV_POOL = (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveMaxPool2d, nn.AdaptiveAvgPool2d)


class Custom(nn.Module):
    """A network no registry knows: nested Sequentials, a strided conv, adaptive average pooling."""

    def __init__(self, classes=4):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 6, 5, padding=2), nn.ReLU())
        self.body = nn.Sequential(nn.Conv2d(6, 8, 3, stride=2), nn.BatchNorm2d(8), nn.ReLU(),
                                  nn.AvgPool2d(2), nn.Conv2d(8, 8, 1))
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, classes))

    def forward(self, x):
        return self.head(self.body(self.stem(x)))


def every_model():
    return [*models.MODELS, "custom"]


def build(name, classes=4, size=16):
    torch.manual_seed(0)
    model = Custom(classes) if name == "custom" else models.create(name, classes, 3, size)
    for m in model.modules():  # BN with real statistics, so eval mode is not the identity
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
    return model.eval()


def hooked(model, x):
    """The test's own forward hooks on every conv and pool module: {name: output}."""
    got, hooks = {}, []
    for name, m in model.named_modules():
        if isinstance(m, CONV_POOL):
            hooks.append(m.register_forward_hook(lambda mod, i, o, name=name: got.setdefault(name, o.detach().clone())))
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return got


@pytest.mark.parametrize("name", every_model())
def test_every_model_feature_maps_are_its_forward_hooks_outputs_and_grad_cam_runs(name):
    model = build(name)
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    maps = look.feature_maps(model, x)
    expected = hooked(model, x)
    assert list(maps) == list(expected) and maps  # every conv and pool layer, in run order
    for layer, out in expected.items():
        assert torch.equal(maps[layer], out), layer
    summary_names = [r.name for r in summarize(model, (3, 16, 16))]
    infos = look.conv_pool_layers(model, (3, 16, 16))
    assert [i.name for i in infos] == list(expected) and set(maps) <= set(summary_names)
    for info in infos:  # the titles' shapes (shape arithmetic) are the shapes the layers produce
        assert info.out_shape[1:] == list(maps[info.name].shape[1:]), info.name
    assert Image.open(io.BytesIO(filter_pngs(model, (3, 16, 16))["filters.png"])).format == "PNG"
    if importlib.util.find_spec("captum") is not None:
        from cnnlab.analysis.attribution import grad_cam
        cam = grad_cam(model, x, [0, 1], look.last_conv(model, (3, 16, 16)).name)
        assert cam.shape == (2, 16, 16) and torch.isfinite(cam).all() and (cam >= 0).all()


def test_seed_feature_maps_match_a_forward_pass_written_out_by_hand():
    model = build("seed", size=16)
    x = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    maps = look.feature_maps(model, x)
    c1 = F.conv2d(x, model.conv1.weight, model.conv1.bias, padding=1)
    p1 = F.max_pool2d(F.relu(c1), 2)  # the report's order: conv -> ReLU -> pool
    c2 = F.conv2d(p1, model.conv2.weight, model.conv2.bias, padding=1)
    p2 = F.max_pool2d(F.relu(c2), 2)
    torch.testing.assert_close(maps["conv1"], c1)
    torch.testing.assert_close(maps["conv2"], c2)
    # seed pools before its ReLU (bitwise the same after the ReLU): the pool's own output is pre-ReLU
    torch.testing.assert_close(F.relu(maps["pool1"]), p1)
    torch.testing.assert_close(F.relu(maps["pool2"]), p2)


def test_unknown_layer_names_are_refused_with_the_names_there_are():
    from cnnlab.errors import CnnlabError
    with pytest.raises(CnnlabError, match="did you mean 'conv2'.*conv1, pool1, conv2, pool2"):
        look.feature_maps(build("seed"), torch.zeros(1, 3, 16, 16), ["conv_2"])


def direct_grad_cam(model, x, target, layer):
    """Grad-CAM written out: d score / d A averaged over the map weighs A's channels; ReLU; upsample."""
    store = {}
    handle = layer.register_forward_hook(lambda m, i, o: store.setdefault("a", o))
    scores = model(x)
    handle.remove()
    a = store["a"]
    (grads,) = torch.autograd.grad(scores[torch.arange(len(x)), target].sum(), a)
    weights = grads.mean(dim=(2, 3), keepdim=True)
    cam = F.relu((weights * a).sum(dim=1, keepdim=True))
    return F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0].detach()


def test_grad_cam_on_seed_is_the_direct_computation():
    pytest.importorskip("captum")
    from cnnlab.analysis.attribution import grad_cam
    model = build("seed", classes=10, size=12)
    x = torch.randn(3, 3, 12, 12, generator=torch.Generator().manual_seed(3))
    target = torch.tensor([0, 4, 9])
    cam = grad_cam(model, x, target.tolist(), "conv2")
    expected = direct_grad_cam(model, x, target, model.conv2)
    assert cam.shape == (3, 12, 12) and expected.abs().max() > 0
    assert (cam - expected).abs().max().item() < 1e-5


def test_integrated_gradients_add_up_to_the_score_difference():
    pytest.importorskip("captum")
    from cnnlab.analysis.attribution import integrated_gradients
    model = build("seed-avgpool", classes=10, size=12)  # smooth enough for the quadrature
    x = torch.randn(2, 3, 12, 12, generator=torch.Generator().manual_seed(4))
    ig = integrated_gradients(model, x, [2, 7], steps=64)
    with torch.no_grad():
        gap = model(x)[[0, 1], [2, 7]] - model(torch.zeros_like(x))[[0, 1], [2, 7]]
    torch.testing.assert_close(ig.sum(dim=(1, 2, 3)), gap, atol=2e-2 * gap.abs().max().item(), rtol=0)


@pytest.mark.parametrize("name", ["seed", "custom"])
def test_every_figure_is_drawn_for_a_registered_and_a_custom_model(name):
    pytest.importorskip("captum")
    model = build(name)
    x = torch.randint(0, 256, (1, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(5))
    (item,), cam_layer = inspect_images(model, x, [0.5] * 3, [0.25] * 3, list("abcd"), ["one.png"],
                                        labels=["b"], target="c")
    assert cam_layer == look.last_conv(model, (3, 16, 16)).name and item.target == "c"
    layers = [i.name for i in look.conv_pool_layers(model, (3, 16, 16))]
    assert set(item.pngs) == {"input.png", "attribution.png", "overview.png",
                              *(f"maps-{j:02d}-{n}.png" for j, n in enumerate(layers, 1))}
    for png in item.pngs.values():
        assert Image.open(io.BytesIO(png)).format == "PNG"


def hand_filters(n=16):
    """Weights in {-1, -1/2, 0, 1/2, 1}, a different pattern per filter, each reaching |w| = 1."""
    o, c, i, j = np.meshgrid(np.arange(n), np.arange(3), np.arange(3), np.arange(3), indexing="ij")
    w = ((o * 7 + c * 3 + i * 5 + j * 2 + o * i) % 5 - 2) / 2.0
    w[:, 0, 0, 0] = 1.0
    return torch.tensor(w, dtype=torch.float32)


def test_hand_set_first_layer_filters_are_exactly_the_patches_in_the_png():
    model = build("seed", classes=10, size=32)
    w = hand_filters()
    with torch.no_grad():
        model.conv1.weight.copy_(w)
    png = filter_pngs(model, (3, 32, 32))["filters.png"]
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    value = {-1.0: 0, -0.5: 64, 0.0: 128, 0.5: 191, 1.0: 255}  # grey is 0, +-scale the extremes
    expected = np.vectorize(value.get)(w.numpy()).astype(np.uint8)  # (out, 3, 3, 3)
    _, corners = draw.filter_grid(w, "conv1")
    px = draw.patch_px(3)
    assert len(corners) == 16 and px > 1
    for o, (x0, y0) in enumerate(corners):
        patch = pixels[y0:y0 + 3 * px, x0:x0 + 3 * px]
        for i in range(3):
            for j in range(3):
                block = patch[i * px:(i + 1) * px, j * px:(j + 1) * px]
                assert (block == expected[o, :, i, j]).all(), (o, i, j)
        # the patch is bounded by the background: nothing bleeds into it or out of it
        assert (pixels[y0 - 1, x0:x0 + 3 * px] == 255).all() and (pixels[y0:y0 + 3 * px, x0 - 1] == 255).all()


def test_a_deeper_layers_filters_per_input_channel():
    model = build("seed", size=32)
    pngs = filter_pngs(model, (3, 32, 32), ["conv2"])
    assert set(pngs) == {"filters.png", "filters-conv2.png"}
    from cnnlab.errors import CnnlabError
    with pytest.raises(CnnlabError, match="pool layer"):
        filter_pngs(model, (3, 32, 32), ["pool1"])


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("inspect")
    data = make_image_folder(tmp / "data", classes=("cat", "dog", "frog"), n_train=16, n_test=4)
    out = tmp / "run"
    assert main(["train", "--data", str(data), "--epochs", "1", "--batch-size", "8", "--val-size", "8",
                 "--out", str(out)]) == 0
    return out


def test_cli_on_files_warns_once_per_unreadable_image(tiny_run, tmp_path, capsys):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    (tmp_path / "b.jpg").write_text("not an image")
    (tmp_path / "c.png").write_bytes(b"")
    out = tmp_path / "look"
    argv = ["inspect", str(tiny_run), str(tmp_path / "a.png"), str(tmp_path / "b.jpg"), str(tmp_path / "c.png"),
            "--layer", "conv2", "--class", "dog", "--out", str(out)]
    assert main(argv) == 0
    captured = capsys.readouterr()
    warnings = [line for line in captured.err.splitlines() if "skipped" in line]
    assert len(warnings) == 2 and "b.jpg" in warnings[0] and "c.png: empty file" in warnings[1]
    summary = json.loads((out / "inspect.json").read_text())
    (image,) = summary["images"]
    assert image["name"].endswith("a.png") and image["target"] == "dog"
    assert {"input.png", "overview.png", "attribution.png", "maps-01-conv2.png"} == set(image["files"])
    assert (out / "filters.png").is_file()
    assert main(argv) == 0  # its own folder is replaced


def test_cli_default_images_are_right_and_wrong_test_images(tiny_run, tmp_path, capsys):
    out = tmp_path / "look"
    # one of each shows the order; each image draws a figure per layer, so the default 3 + 3 cost three times this
    assert main(["inspect", str(tiny_run), "--out", str(out), "--no-attribution", "--right", "1", "--wrong", "1"]) == 0
    summary = json.loads((out / "inspect.json").read_text())
    assert summary["images"] and all(i["name"].startswith("test image #") and i["label"] for i in summary["images"])
    right = [i["label"] == i["top"][0]["class"] for i in summary["images"]]
    assert right == sorted(right, reverse=True)  # right ones first, then wrong ones
    assert "test image #" in capsys.readouterr().out


def test_cli_refuses_bad_input_and_leaves_nothing_behind(tiny_run, tmp_path, capsys):
    out = tmp_path / "look"
    assert main(["inspect", str(tiny_run), "--layer", "conv9", "--out", str(out)]) == 2
    assert main(["inspect", str(tiny_run), "--class", "zebra", "--out", str(out)]) == 2
    assert not out.exists()
    err = capsys.readouterr().err
    assert "no conv or pool layer 'conv9'" in err and "'zebra' is not one of the run's classes" in err
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep")
    assert main(["inspect", str(tiny_run), "--out", str(foreign), "--no-attribution"]) == 2
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]
    assert "did not write" in capsys.readouterr().err


def test_report_section_shows_filters_feature_maps_and_grad_cam(tiny_run, tmp_path):
    page = tmp_path / "r.html"
    assert main(["report", str(tiny_run), "--out", str(page)]) == 0
    section = page.read_text().split("<h3>Inside the network</h3>", 1)[1].split("<h3>", 1)[0]
    assert 'alt="first-layer filters"' in section
    assert section.count('alt="feature maps of test image #') >= 2
    if importlib.util.find_spec("captum") is not None:
        assert "Grad-CAM at conv2" in section and 'alt="attribution of test image #' in section


def test_report_section_escapes_names_from_the_data():
    from cnnlab.report.inspection import section
    from cnnlab.runs.inspect import InspectedImage
    hostile = "<img src=x onerror=alert(1)> & $x^2$"
    item = InspectedImage(f"{hostile}.png", hostile, [(hostile, 0.9)], hostile,
                          {"overview.png": b"png", "attribution.png": b"png"})
    html = section({"filters": b"png", "images": [item], "notes": [hostile], "cam_layer": "conv2"})
    assert "<img src=x" not in html
    assert html.count("&lt;img src=x onerror=alert(1)&gt; &amp; $x^2$") >= 5


def test_default_test_images_come_from_the_whole_split_one_class_each():
    """Image folders list test images class by class: the picks must not all come from the first classes."""
    from cnnlab.runs.inspect import right_and_wrong

    class AlwaysFirst(nn.Module):  # predicts class 0 for every image
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.zeros(1))

        def forward(self, x):
            return torch.cat([torch.ones(len(x), 1), torch.zeros(len(x), 9)], dim=1) + 0 * self.w

    y = torch.arange(10).repeat_interleave(200)  # sorted by class, as an image folder lists them
    x = torch.zeros(len(y), 3, 4, 4, dtype=torch.uint8)
    picked = right_and_wrong(AlwaysFirst(), x, y, [0.5] * 3, [0.25] * 3, n_right=1, n_wrong=6)
    assert len(picked) == 7 and int(y[picked[0]]) == 0  # the right one first
    assert len({int(y[i]) for i in picked[1:]}) == 6  # six wrong ones of six classes
