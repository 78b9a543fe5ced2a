"""End-to-end: the real command line on small data, its outputs, and its errors."""
import csv
import json
import subprocess
import sys

import pytest
import torch

from cnnlab.cli import main

from conftest import make_image_folder


def cnnlab(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "cnnlab", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, timeout=300)


@pytest.fixture(scope="module")
def trained_run(real_run):
    return real_run  # the real command line's run, shared (conftest.REAL_RUN_ARGS)


@pytest.mark.slow
def test_train_beats_chance_on_real_images_and_prints_the_reports_lines(trained_run):
    out, stdout = trained_run
    lines = stdout.splitlines()
    assert lines[0].startswith("Training seed (25,578 parameters) on 900 images from ")
    lines = lines[1:]
    assert lines[0].startswith("Epoch: 1 | Iter: 15 | Average Loss: ")
    assert lines[0].endswith(" s") and "| Elapsed Time: " in lines[0]
    assert lines[1].startswith("Epoch: 1 | Validation Accuracy: ") and lines[1].endswith(" %")
    test_line = [x for x in lines if x.startswith("Test Accuracy: ")]
    assert len(test_line) == 1
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 90 and metrics["epochs"] == 6
    assert metrics["test_acc"] >= 20.0  # chance is 10 %
    assert test_line[0] == f"Test Accuracy: {metrics['test_acc']:.3f} %"


@pytest.mark.slow
def test_run_folder_holds_everything(trained_run):
    out, _ = trained_run
    config = json.loads((out / "config.json").read_text())
    assert config["config"]["model"] == "seed" and config["config"]["batch_size"] == 64
    assert len(config["data"]["fingerprint"]) == 64 and config["versions"]["torch"] == torch.__version__
    with open(out / "history.csv") as f:
        rows = list(csv.reader(f))
    # val_loss and lr come after the first five columns, so scripts reading those keep working
    assert rows[0] == ["epoch", "iters", "avg_loss", "elapsed_s", "val_acc", "val_loss", "lr"]
    assert len(rows) == 7 and rows[-1][0] == "6"
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    assert len(ckpt["state"]["history"]) == 6 and ckpt["state"]["steps"] == 90
    assert "optimizer_state" in ckpt and ckpt["config"]["batch_size"] == 64
    from safetensors.torch import load_file
    weights = load_file(out / "model.safetensors")
    assert torch.equal(weights["fc.weight"], ckpt["model_state"]["fc.weight"])


@pytest.mark.slow
def test_evaluate_reproduces_the_training_test_accuracy(trained_run, real_subset, capsys):
    out, stdout = trained_run
    trained = [x for x in stdout.splitlines() if x.startswith("Test Accuracy: ")][0]
    assert main(["evaluate", str(out), "--data", str(real_subset)]) == 0
    assert capsys.readouterr().out.splitlines()[0] == trained  # per-class results follow


def test_train_learns_an_easy_dataset_in_process(tmp_path, capsys):
    root = make_image_folder(tmp_path / "easy", classes=("r", "g", "b", "k"), n_train=40, n_test=10)
    assert main(["train", "--data", str(root), "--epochs", "3", "--batch-size", "16", "--val-size", "20",
                 "--out", str(tmp_path / "run")]) == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["test_acc"] >= 90.0 and metrics["epochs"] == 3


def test_models_and_data_commands(real_subset, tmp_path, capsys):
    assert main(["models"]) == 0
    assert "25,578" in capsys.readouterr().out
    assert main(["data", "info", "--data", str(real_subset), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["counts"]["train"] == [100] * 10 and info["counts"]["test"] == [30] * 10
    grid = tmp_path / "grid.png"
    assert main(["data", "show", "--data", str(real_subset), "--per-class", "4", "--out", str(grid)]) == 0
    assert grid.read_bytes()[:4] == b"\x89PNG"
    assert main(["data", "show", "--data", str(real_subset), "--out", str(grid)]) == 0  # its own grid: replaced
    mine = tmp_path / "mine.png"
    mine.write_bytes(b"not cnnlab's")
    assert main(["data", "show", "--data", str(real_subset), "--out", str(mine)]) == 2  # never a user's file
    assert mine.read_bytes() == b"not cnnlab's"


def in_process(args, cwd, capsys, monkeypatch):
    """cnnlab.cli.main in this process, from cwd: (exit status, stderr)."""
    monkeypatch.chdir(cwd)
    capsys.readouterr()
    try:
        code = main(list(map(str, args)))
    except SystemExit as e:  # argparse's own refusals
        code = e.code
    return code, capsys.readouterr().err


# The first case runs as a real process (its exit status and stderr); the others are the same
# main() in this process, which saves a fresh interpreter and torch import for each.
@pytest.mark.parametrize("args,message,process", [
    (["train", "--data", "{tmp}/missing"], "data path {tmp}/missing does not exist", True),
    (["train", "--data", "{tiny}", "--model", "resnet99"], "unknown model 'resnet99'", False),
    (["train", "--data", "{tiny}", "--epochs", "0"], "--epochs: must be a positive integer", False),
    (["train", "--data", "{tiny}", "--batch-size", "-4"], "--batch-size: must be a positive integer", False),
    (["train", "--data", "{empty_class}"], "has no images", False),
    (["train", "--data", "{mismatch}"], "different classes", False),
    (["train", "--data", "{tiny}", "--out", "{tiny}"], "already exists and is not empty", False),
    (["evaluate", "{tmp}"], "is not a run folder", False),
])
def test_bad_input_is_one_line_without_traceback(tmp_path, args, message, process, capsys, monkeypatch):
    tiny = make_image_folder(tmp_path / "tiny", classes=("a", "b"), n_train=2, n_test=1)
    empty_class = make_image_folder(tmp_path / "empty", classes=("a", "b"), n_train=2, n_test=1)
    (empty_class / "train" / "c").mkdir()
    (empty_class / "test" / "c").mkdir()
    mismatch = make_image_folder(tmp_path / "mismatch", classes=("a", "b"), n_train=2, n_test=1)
    (mismatch / "test" / "b").rename(mismatch / "test" / "z")
    fill = dict(tmp=tmp_path, tiny=tiny, empty_class=empty_class, mismatch=mismatch)
    before = sorted(p.name for p in tiny.rglob("*"))
    argv = [a.format(**fill) for a in args]
    if process:
        proc = cnnlab(*argv, cwd=tmp_path)
        code, err = proc.returncode, proc.stderr
    else:
        code, err = in_process(argv, tmp_path, capsys, monkeypatch)
    assert code == 2
    assert message.format(**fill) in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in tiny.rglob("*")) == before
    assert not (tmp_path / "runs").exists()  # a refused run leaves no folder behind


@pytest.mark.parametrize("where", ["before", "after"])
def test_debug_shows_the_traceback(tmp_path, where, capsys, monkeypatch):
    args = ["train", "--data", tmp_path / "missing"]
    args = ["--debug", *args] if where == "before" else [*args, "--debug"]
    if where == "before":  # a real process
        proc = cnnlab(*args)
        code, err = proc.returncode, proc.stderr
    else:
        code, err = in_process(args, tmp_path, capsys, monkeypatch)
    assert code != 0 and "Traceback" in err
