"""ONNX export: every registered model in onnxruntime against PyTorch, a trained run end to end, errors."""
import json
import sys
from pathlib import Path

import pytest
import torch

from cnnlab.data import dataset as data_mod
from cnnlab.network import models
from cnnlab.cli import main
from cnnlab.analysis.evaluate import predict_logits

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from cnnlab.runs.export import TOLERANCE, onnx_bytes, onnx_logits  # noqa: E402

MEAN, STD = [0.49, 0.48, 0.45], [0.25, 0.24, 0.26]  # not 0 and 1: the normalization must be inside


def randomize_norm_stats(model: torch.nn.Module, seed: int = 0) -> None:
    """Running statistics away from (0, 1), so eval-mode BatchNorm is really tested."""
    g = torch.Generator().manual_seed(seed)
    for name, buf in model.named_buffers():
        if name.endswith("running_mean"):
            buf.copy_(torch.randn(buf.shape, generator=g) * 0.1)
        elif name.endswith("running_var"):
            buf.copy_(torch.rand(buf.shape, generator=g) + 0.5)


@pytest.mark.parametrize("name", list(models.MODELS))
def test_every_model_exports_and_matches_pytorch_in_onnxruntime(name, tmp_path):
    torch.manual_seed(0)
    model = models.create(name, 10, 3, 32)
    randomize_norm_stats(model)
    model.train()  # export must switch to eval: dropout off, BatchNorm on running statistics
    path = tmp_path / f"{name}.onnx"
    path.write_bytes(onnx_bytes(model, MEAN, STD, 32, {"model": name, "classes": json.dumps(list("abcdefghij"))}))

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (inp,), (out,) = session.get_inputs(), session.get_outputs()
    assert (inp.name, inp.type, inp.shape[1:]) == ("images", "tensor(uint8)", [3, 32, 32])
    assert isinstance(inp.shape[0], str) and out.name == "logits" and out.shape[1] == 10
    assert session.get_modelmeta().custom_metadata_map["model"] == name

    g = torch.Generator().manual_seed(1)
    for batch in (1, 7):  # the batch dimension is dynamic (the exporter traced batch 2)
        images = torch.randint(0, 256, (batch, 3, 32, 32), dtype=torch.uint8, generator=g)
        ours = onnx_logits(path, images)
        ref = predict_logits(model, images, MEAN, STD)  # fp32, eval, normalizing outside
        assert ours.shape == (batch, 10) and ours.dtype == torch.float32
        assert (ours - ref).abs().max() <= TOLERANCE
        assert torch.equal(ours.argmax(1), ref.argmax(1))


@pytest.fixture(scope="module")
def seed_run(real_run):
    return real_run[0]  # the shared real run of the seed model (conftest.real_run)


@pytest.mark.slow
def test_trained_run_exports_with_the_same_predictions_on_its_test_set(seed_run, real_subset, capsys):
    capsys.readouterr()
    assert main(["export", str(seed_run), "--check-all"]) == 0
    check, exported = capsys.readouterr().out.strip().splitlines()
    assert check.startswith("Check: onnxruntime vs PyTorch on 300 test images: max abs diff ")
    assert "same top-1 300/300" in check
    assert exported.startswith(f"Exported seed to {seed_run / 'model.onnx'}")

    # The oracle: onnxruntime alone, on the test split loaded afresh, scores the run's test accuracy.
    config = json.loads((seed_run / "config.json").read_text())
    metrics = json.loads((seed_run / "metrics.json").read_text())
    data = data_mod.load(real_subset)
    session = ort.InferenceSession(str(seed_run / "model.onnx"), providers=["CPUExecutionProvider"])
    logits = session.run(None, {"images": data.test_x.numpy()})[0]
    correct = int((torch.from_numpy(logits).argmax(1) == data.test_y).sum())
    assert abs(correct - round(metrics["test_acc"] * 300 / 100)) <= 1  # a near-tie at most
    assert metrics["test_acc"] > 20  # trained: chance is 10 %

    meta = session.get_modelmeta().custom_metadata_map
    assert json.loads(meta["classes"]) == config["data"]["classes"] == data.classes
    # The config, with the trainer's folders by name only (no absolute path leaves the machine).
    named = {**config["config"], "data": Path(config["config"]["data"]).name, "out": seed_run.name}
    assert meta["model"] == "seed" and json.loads(meta["config"]) == named
    assert json.loads(meta["mean"]) == config["data"]["mean"] and "recipe" in meta
    assert json.loads(meta["image_size"]) == 32 and meta["resize"] == config["data"]["resize"] == "crop"
    assert onnx.load(str(seed_run / "model.onnx")).producer_name == "cnnlab"


@pytest.mark.slow
def test_export_checks_on_random_images_when_the_data_is_gone(seed_run, tmp_path, capsys):
    out = tmp_path / "sub" / "m.onnx"
    assert main(["export", str(seed_run), "--data", str(tmp_path / "missing"), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "could not be loaded" in captured.err and "256 random images instead" in captured.err
    assert "on 256 random images" in captured.out and "same top-1 256/256" in captured.out
    from cnnlab.files import umask
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask()  # like any new file, not mkstemp's 0600
    assert main(["export", str(seed_run), "--data", str(tmp_path / "missing"), "--out", str(out)]) == 0
    assert "(replaced the earlier export)" in capsys.readouterr().out  # only our own file is replaced


def one_error_line(capsys, message):
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_export_never_overwrites_a_file_it_did_not_write(seed_run, tmp_path, capsys):
    other = tmp_path / "notes.onnx"
    other.write_text("my notes")
    assert main(["export", str(seed_run), "--out", str(other)]) == 2
    one_error_line(capsys, "exists and is not a cnnlab export")
    assert other.read_text() == "my notes"


def test_export_of_a_folder_that_is_not_a_run(tmp_path, capsys):
    assert main(["export", str(tmp_path)]) == 2
    one_error_line(capsys, "is not a run folder (no config.json)")
    assert list(tmp_path.iterdir()) == []


def test_export_to_an_unknown_format(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["export", str(tmp_path), "--format", "tflite"])
    assert exit_.value.code == 2
    one_error_line(capsys, "invalid choice: 'tflite'")
    from cnnlab.errors import CnnlabError
    from cnnlab.runs.export import export_run
    with pytest.raises(CnnlabError, match="unknown export format 'tflite': choose one of onnx"):
        export_run(tmp_path, fmt="tflite")


@pytest.mark.parametrize("missing", ["onnx", "onnxruntime"])
def test_export_without_the_extra_says_which_to_install(tmp_path, capsys, monkeypatch, missing):
    monkeypatch.setitem(sys.modules, missing, None)  # import then raises ImportError
    assert main(["export", str(tmp_path)]) == 2
    one_error_line(capsys, "pip install 'cnnlab[export]'")
