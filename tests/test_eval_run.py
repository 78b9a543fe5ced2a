"""cnnlab evaluate on a small real run: eval.json against direct computations, its figures,
and files that are not cnnlab's left alone."""
import contextlib
import io
import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab.data import dataset as data_mod
from cnnlab.cli import main
from cnnlab.report import figures
from cnnlab.report.evaluation import FIGURES


@pytest.fixture(scope="module")
def trained(real_run):
    """The shared real run (conftest.real_run) and the test accuracy line its training printed."""
    out, stdout = real_run
    return out, [x for x in stdout.splitlines() if x.startswith("Test Accuracy: ")][0]


@pytest.fixture(scope="module")
def evaluated(trained):
    out, trained = trained
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["evaluate", str(out)]) == 0
    return out, trained, printed.getvalue().splitlines(), json.loads((out / "eval.json").read_text())


def direct_logits(run_dir, x):
    """The oracle: the model rebuilt by hand from model.safetensors and config.json."""
    from safetensors.torch import load_file

    from cnnlab.network.models import create
    config = json.loads((run_dir / "config.json").read_text())
    model = create(config["config"]["model"], len(config["data"]["classes"]))
    model.load_state_dict(load_file(run_dir / "model.safetensors"))
    mean = torch.tensor(config["data"]["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(config["data"]["std"]).view(1, 3, 1, 1)
    with torch.no_grad():
        return model.eval()((x.float() / 255 - mean) / std)


@pytest.mark.slow
def test_first_line_is_the_accuracy_training_printed(evaluated):
    _, trained, lines, _ = evaluated
    assert lines[0] == trained
    assert lines[1].startswith("Mean loss: ") and "Expected calibration error: " in lines[1]
    assert any(line.startswith("Most confused (true -> predicted): ") for line in lines)


@pytest.mark.slow
def test_eval_json_agrees_with_a_direct_computation(evaluated, real_subset):
    out, trained, _, ev = evaluated
    cm = np.array(ev["confusion_matrix"]["counts"])
    assert ev["confusion_matrix"]["classes"] == ev["classes"] and len(ev["classes"]) == 10
    assert cm.sum(axis=1).tolist() == [30] * 10  # each row: that class's test images
    assert trained == f"Test Accuracy: {100 * np.trace(cm) / cm.sum():.3f} %"
    data = data_mod.load(real_subset)
    logits = direct_logits(out, data.test_x)
    predicted, y = logits.argmax(1).numpy(), data.test_y.numpy()
    for c, row in enumerate(ev["per_class"]):
        mine, said = y == c, predicted == c
        assert row["class"] == ev["classes"][c] and row["support"] == 30
        assert row["accuracy"] == pytest.approx(100 * (predicted[mine] == c).mean(), abs=1e-9)
        assert row["precision"] == pytest.approx(100 * (y[said] == c).mean() if said.any() else 0.0)
    assert ev["mean_loss"] == pytest.approx(float(torch.nn.functional.cross_entropy(logits, data.test_y)), rel=1e-4)
    first = ev["most_confused"][0]
    t, p = ev["classes"].index(first["true"]), ev["classes"].index(first["predicted"])
    off = cm - np.diag(np.diag(cm))
    assert first["count"] == cm[t, p] == off.max()
    for m in ev["mistakes"]:
        assert predicted[m["index"]] != y[m["index"]] and ev["classes"][y[m["index"]]] == m["true"]
    probs = [m["prob"] for m in ev["mistakes"]]
    assert probs == sorted(probs, reverse=True) and 0 < ev["ece"] < 1


@pytest.mark.slow
def test_figures_are_written_and_marked_as_cnnlabs(evaluated):
    out = evaluated[0]
    for name in FIGURES:
        with Image.open(out / name) as im:
            assert im.format == "PNG" and im.width > 300
        assert figures.is_ours(out / name)
    Image.new("RGB", (4, 4)).save(out.parent / "users.png")
    assert not figures.is_ours(out.parent / "users.png") and not figures.is_ours(out / "eval.json")


@pytest.mark.slow
def test_history_csv_has_plain_newlines(trained):
    raw = (trained[0] / "history.csv").read_bytes()
    epochs = json.loads((trained[0] / "metrics.json").read_text())["epochs"]
    assert b"\r" not in raw and raw.endswith(b"\n") and raw.count(b"\n") == 1 + epochs


@pytest.mark.slow
@pytest.mark.parametrize("foreign", ["calibration.png", "eval.json"])
def test_a_file_that_is_not_cnnlabs_is_never_overwritten(evaluated, tmp_path, foreign, capsys):
    run = tmp_path / "run"
    shutil.copytree(evaluated[0], run)
    for name in ("eval.json", *FIGURES):
        (run / name).unlink()
    if foreign.endswith(".png"):
        Image.new("RGB", (8, 8), (1, 2, 3)).save(run / foreign)
    else:
        (run / foreign).write_text('{"mine": true}\n')
    before = (run / foreign).read_bytes()
    assert main(["evaluate", str(run)]) == 2
    assert f"{run / foreign} exists and was not written by cnnlab" in capsys.readouterr().err
    assert (run / foreign).read_bytes() == before
    assert sorted(p.name for p in run.iterdir() if p.name in ("eval.json", *FIGURES)) == [foreign]
    assert main(["evaluate", str(run), "--no-save"]) == 0  # printing alone is fine


@pytest.mark.slow
def test_evaluate_again_replaces_its_own_files_and_records_tta(evaluated, capsys):
    out = evaluated[0]
    assert main(["evaluate", str(out), "--tta", "flip-shift"]) == 0
    assert json.loads((out / "eval.json").read_text())["tta"] == "flip-shift"
    assert main(["evaluate", str(out)]) == 0
    assert json.loads((out / "eval.json").read_text())["tta"] == "none"


def test_text_from_data_is_never_mathtext():
    # '$\frac{$' is invalid mathtext: drawing it as math would raise; as plain text it is fine
    names = ["$\\frac{$", "a_b^c $x$", "<b>bold</b>"]
    png = figures.confusion(np.array([[1, 2, 0], [0, 3, 1], [2, 0, 4]]), names)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    images = np.zeros((2, 3, 8, 8), dtype=np.uint8)
    assert figures.mistakes(images, names[:2], names[1:], [0.9, 0.8])[:4] == b"\x89PNG"
    assert figures.curves([("$\\frac{$", [{"epoch": 1, "val_acc": 50.0, "avg_loss": 1.0}]),
                           ("b", [{"epoch": 1, "val_acc": 40.0, "avg_loss": 2.0}])])[:4] == b"\x89PNG"
