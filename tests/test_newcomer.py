"""A newcomer's first hour: file-system trouble in one line, true arithmetic text,
small datasets that just work, and the polish a student notices.

Read-only and full disks are real: a small tmpfs mounted by the test (as root), skipped where
mounting is not permitted, always unmounted.
"""
import contextlib
import errno
import json
import math
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from cnnlab import checkpoints
from cnnlab.data import dataset as data
from cnnlab.cli import main
from cnnlab.errors import CnnlabError

from conftest import make_image_folder

RECIPE = ["--epochs", "3", "--batch-size", "8", "--val-size", "6"]


@contextlib.contextmanager
def tmpfs(path: Path, size: str = "4m"):
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=755", "tmpfs", str(path)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip()})")
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=False)
        if os.path.ismount(path):
            subprocess.run(["umount", "-l", str(path)], check=False)


def remount(path: Path, options: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{options}", str(path)], check=True)


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def cnnlab(*args, cwd=None, env=None):
    return subprocess.run([sys.executable, "-m", "cnnlab", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, timeout=120, env=env)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_image_folder(tmp_path_factory.mktemp("tiny") / "tiny", n_train=12, n_test=4)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A finished run, trained from its own folder with a relative --data, under umask 027."""
    home = tmp_path_factory.mktemp("home")
    make_image_folder(home / "ds", n_train=12, n_test=4)
    old_cwd, old_mask = os.getcwd(), os.umask(0o027)
    try:
        os.chdir(home)
        assert main(["train", "--data", "ds", *RECIPE, "--out", "run"]) == 0
    finally:
        os.chdir(old_cwd)
        os.umask(old_mask)
    return home / "run"


# ---------------------------------------------------------------- the file system

def test_read_only_disk_is_one_line_and_nothing_is_made(tiny, tmp_path, monkeypatch, capsys):
    with tmpfs(tmp_path / "ro") as ro:
        (ro / "keep").mkdir()
        remount(ro, "ro")
        assert main(["train", "--data", str(tiny), *RECIPE, "--out", str(ro / "keep" / "run")]) == 2
        line = one_line(capsys.readouterr().err)
        assert f"cannot create the run folder {ro}/keep/run: {ro}/keep is on a read-only file system" in line
        monkeypatch.chdir(ro)  # the default runs/ in a read-only working folder
        assert main(["train", "--data", str(tiny), *RECIPE]) == 2
        assert "cannot create the run folder runs/" in one_line(capsys.readouterr().err)
        assert main(["data", "show", "--data", str(tiny), "--out", str(ro / "x.png")]) == 2
        assert f"could not write x.png in {ro}: the disk mounted at {ro} is read-only" in \
            one_line(capsys.readouterr().err)
        assert main(["data", "show", "--data", str(tiny)]) == 2  # default under runs/
        assert "read-only" in one_line(capsys.readouterr().err)
        assert sorted(p.name for p in ro.rglob("*")) == ["keep"]
        monkeypatch.chdir(tmp_path)


def test_data_show_into_a_missing_folder(tiny, tmp_path, capsys):
    assert main(["data", "show", "--data", str(tiny), "--out", str(tmp_path / "nodir" / "x.png")]) == 2
    line = one_line(capsys.readouterr().err)
    assert f"the folder {tmp_path}/nodir does not exist; create it first" in line


def test_unusable_cache_warns_and_decodes_in_memory(tmp_path, monkeypatch, capsys):
    root = make_image_folder(tmp_path / "d", classes=("a", "b"), n_train=2, n_test=1)
    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv("CNNLAB_CACHE", str(tmp_path / "a-file" / "cache"))
    assert main(["data", "info", "--data", str(root)]) == 0
    out, err = capsys.readouterr()
    assert f"cnnlab: warning: the data cache {tmp_path}/a-file/cache is unusable (" in one_line(err)
    assert "cache:       none" in out and "images:      4 train, 2 test" in out
    with tmpfs(tmp_path / "ro") as ro:
        remount(ro, "ro")
        monkeypatch.setenv("CNNLAB_CACHE", str(ro))
        assert main(["data", "info", "--data", str(root), "--json"]) == 0
        out, err = capsys.readouterr()
        assert "Read-only file system" in one_line(err) and "decoded in memory" in err
        assert json.loads(out)["cache"] is None


def test_full_disk_is_one_line_keeps_the_last_checkpoint_and_resumes_exactly(tiny, tmp_path, capsys):
    ref = tmp_path / "ref"
    assert main(["train", "--data", str(tiny), *RECIPE, "--out", str(ref)]) == 0
    pages = lambda n: -(-n // 4096)  # noqa: E731 - tmpfs counts whole pages
    small = sum(pages((ref / f).stat().st_size) for f in ("config.json", "history.csv"))
    ckpt = pages((ref / "checkpoint.pt").stat().st_size)
    # Room for the first checkpoint, not for a second one written beside it.
    with tmpfs(tmp_path / "disk", size=f"{(small + 1 + ckpt + ckpt // 2) * 4}k") as disk:
        out = disk / "run"
        capsys.readouterr()
        assert main(["train", "--data", str(tiny), *RECIPE, "--out", str(out)]) == 2
        line = one_line(capsys.readouterr().err)
        assert line.startswith(f"cnnlab: error: the disk mounted at {disk} is full")
        assert f"could not write checkpoint.pt in {out}" in line
        assert f"the last complete checkpoint (1 epoch done) is kept in {out}/checkpoint.pt" in line
        assert line.endswith(f"continue with: cnnlab train --resume {out}")
        assert len(checkpoints.load_checkpoint(out / "checkpoint.pt")["state"]["history"]) == 1
        assert not list(out.glob(".*.tmp"))
        remount(disk, "size=8m")  # space freed
        assert main(["train", "--resume", str(out)]) == 0
        a, b = checkpoints.load_weights(ref / "model.safetensors"), checkpoints.load_weights(out / "model.safetensors")
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_extracting_onto_a_full_disk_names_the_disk(fake_archive, tmp_path):
    from cnnlab.data import cifar
    archive, spec, _ = fake_archive
    with tmpfs(tmp_path / "small", size="64k") as small:
        with pytest.raises(CnnlabError, match=f"could not extract .*: the disk mounted at {small} is full"):
            cifar.extract(archive, small, spec)
        assert list(small.iterdir()) == []


@pytest.mark.parametrize("args", [
    ["shape", "1,3,32,32", "conv(8,k=3)", "relu", "maxpool(2)"],
    ["summary", "--json"],
    ["--help"],
])
def test_a_reader_that_goes_away_ends_any_command_quietly(args):
    """main() handles it once for every command: one without torch, one with, and argparse's."""
    proc = subprocess.Popen([sys.executable, "-m", "cnnlab", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.stdout.close()  # like `| head -0`: gone before the first line
    err = proc.stderr.read()
    assert proc.wait() == 0 and err == ""


def test_other_file_system_errors_are_one_line_too(monkeypatch, capsys):
    from cnnlab.cli import network

    def full(args):
        raise OSError(errno.ENOSPC, "No space left on device", "/somewhere/out.onnx")
    monkeypatch.setattr(network, "cmd_models", full)
    assert main(["models"]) == 2
    assert "the disk mounted at / is full" in one_line(capsys.readouterr().err)


def test_files_of_a_run_follow_the_umask(run):
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in run.iterdir()}
    assert set(modes) == {"config.json", "history.csv", "checkpoint.pt", "model.safetensors",
                          "metrics.json", "curves.png"}  # .lock goes with its holder
    assert set(modes.values()) == {0o640}, modes


def test_download_failure_leaves_no_empty_data_folder(tmp_path, monkeypatch):
    from cnnlab.data.cifar import CifarSpec
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CNNLAB_DATA", raising=False)
    with pytest.raises(CnnlabError, match="could not download CIFAR-10"):
        data.resolve(None, spec=CifarSpec(url=f"file://{tmp_path}/offline/cifar-10-python.tar.gz"))
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- arithmetic text

def test_formula_text_is_what_it_computes():
    from cnnlab.network.layers import parse_layer, trace
    row, = trace([1, 3, 32, 32], [parse_layer("conv(8,k=3,d=2)")])
    assert row.formula == "H, W: floor((32 + 2*0 - (2*(3-1)+1))/1) + 1 = 28"
    row, = trace([1, 3, 5, 5], [parse_layer("maxpool(2,s=2,p=1,ceil=true)")])
    assert row.formula.startswith("H, W: ceil((5 + 2*1 - 2)/2) + 1 - 1 = 3  (window 4 would start at "
                                  "(4-1)*2 = 6 >= 5 + 1, in the right padding: dropped)")
    row, = trace([1, 3, 8, 8], [parse_layer("conv(1,k=4,p=same)")])
    assert row.padding_note.startswith("left 1, right 2") and "+" not in row.padding_note


def test_formula_text_evaluates_to_pytorchs_size():
    """Oracle: what stands before ' = ' in every formula, evaluated, is PyTorch's output size."""
    from cnnlab.network.layers import parse_layer, trace
    for n in range(3, 12):
        for k, s, p, d, ceil in [(2, 2, 1, 1, True), (3, 2, 1, 1, True), (3, 2, 0, 2, False),
                                 (2, 3, 1, 1, True), (3, 1, 1, 3, False), (3, 3, 1, 1, True)]:
            if d * (k - 1) + 1 > n + 2 * p:
                continue
            text = f"maxpool({k},s={s},p={p},d={d},ceil={str(ceil).lower()})"
            row, = trace([1, 1, n, n], [parse_layer(text)])
            expr = row.formula.removeprefix("H, W: ").split(" = ")[0]
            value = eval(expr, {"floor": math.floor, "ceil": math.ceil})  # noqa: S307 - our own text
            pool = torch.nn.MaxPool2d(k, s, p, d, ceil_mode=ceil)
            assert value == pool(torch.zeros(1, 1, n, n)).shape[-1], (text, n, row.formula)


# ---------------------------------------------------------------- small datasets

def test_data_show_uses_what_exists_and_works_twice(tmp_path, monkeypatch, capsys):
    root = make_image_folder(tmp_path / "small", n_train=8, n_test=1)
    monkeypatch.chdir(tmp_path)
    for _ in range(2):
        assert main(["data", "show", "--data", str(root), "--per-class", "500"]) == 0
        out = capsys.readouterr().out.strip()
        assert out == ("Wrote runs/samples/small-train.png (8 train images per class, 3 classes; "
                       "asked for 500, but the train split has only 8 per class)")
    with Image.open(tmp_path / "runs" / "samples" / "small-train.png") as im:
        assert im.width <= 8 * 80 + 120  # 8 columns of 0.8 inch at 100 dpi, not 500
    user = tmp_path / "mine.png"
    Image.new("RGB", (4, 4)).save(user)
    before = user.read_bytes()
    assert main(["data", "show", "--data", str(root), "--out", str(user)]) == 2
    assert "was not written by cnnlab" in one_line(capsys.readouterr().err)
    assert user.read_bytes() == before


def test_dollar_signs_in_names_are_plain_text(tmp_path, capsys):
    root = make_image_folder(tmp_path / r"set_$\beta_$", classes=("cost $5 or $10", r"x_$\alpha_$"),
                             n_train=1, n_test=1)
    assert main(["data", "show", "--data", str(root), "--out", str(tmp_path / "grid.png")]) == 0
    # One image to train on, one to validate: the line says "1 image", and curves.png is drawn.
    assert main(["train", "--data", str(root), "--epochs", "1", "--val-size", "1",
                 "--out", str(tmp_path / "run")]) == 0
    assert " on 1 image from " in capsys.readouterr().out
    assert (tmp_path / "run" / "curves.png").read_bytes()[:4] == b"\x89PNG"


def test_refused_config_leaves_no_run_folder(tiny, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--data", str(tiny), "--val-size", "5000"]) == 2
    line = one_line(capsys.readouterr().err)
    assert "--val-size 5000 must be between 0 and 35 (the training split has 36 images)" in line
    assert "e.g. --val-size 10%" in line
    assert not (tmp_path / "runs").exists()


def test_val_size_is_a_count_or_a_percentage():
    from cnnlab.training.loop import TrainConfig
    assert TrainConfig().val_size == "10%"
    assert data.val_count(TrainConfig().val_size, 50_000) == 5000  # the report's 45k/5k split
    assert data.val_count("10%", 80) == 8 and data.val_count("12.5%", 80) == 10
    assert data.val_count(" 7 % ", 100) == 7 and data.val_count(0, 5) == 0
    assert data.val_count("5000", 50_000) == 5000
    for bad in ["100%", "-1", "ten", "-5%", "1e3%"]:
        with pytest.raises(CnnlabError):
            data.val_count(bad, 50_000)
    train, val = data.split_indices(80, "10%", seed=0)
    assert len(train) == 72 and len(val) == 8
    with pytest.raises(CnnlabError, match="--val-size"):
        TrainConfig(val_size="half").validate()


def test_default_val_size_fits_a_small_dataset(tiny, tmp_path, capsys):
    assert main(["train", "--data", str(tiny), "--epochs", "1", "--max-steps", "1",
                 "--out", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert " on 33 images from " in out and "(3 to validate, 12 to test)" in out
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["config"]["val_size"] == "10%" and config["data"]["val"] == 3


def test_evaluate_from_another_folder_uses_the_absolute_data_path(run, tmp_path, monkeypatch, capsys):
    config = json.loads((run / "config.json").read_text())
    assert config["config"]["data"] == str(run.parent / "ds")
    monkeypatch.chdir(tmp_path)
    assert main(["evaluate", str(run)]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    out, err = capsys.readouterr()
    assert out.splitlines()[0] == f"Test Accuracy: {metrics['test_acc']:.3f} %" and err == ""  # per class follows


# ---------------------------------------------------------------- polish

def test_curves_have_whole_epochs_a_bounded_accuracy_axis_and_the_test_mark():
    from cnnlab.analysis.plots import curves_figure
    row = {"epoch": 1.0, "iters": 3.0, "avg_loss": 1.1, "elapsed_s": 0.5, "val_acc": 97.0}
    fig = curves_figure([row], "seed on x", test_acc=99.5)
    acc, loss = fig.axes
    for ax in (acc, loss):
        lo, hi = ax.get_xlim()
        shown = [t for t in ax.get_xticks() if lo <= t <= hi]
        assert shown == [1.0]
    assert 0 <= acc.get_ylim()[0] and acc.get_ylim()[1] <= 100
    assert any("test accuracy (final) 99.50 %" == line.get_label() for line in acc.get_lines())
    no_val = curves_figure([{**row, "val_acc": float("nan")}], test_acc=50.0)
    assert any("--val-size 0" in t.get_text() for t in no_val.axes[0].texts)
    many = curves_figure([{**row, "epoch": float(e)} for e in range(1, 38)])
    lo, hi = many.axes[0].get_xlim()
    assert [t for t in many.axes[0].get_xticks() if lo <= t <= hi] == [5, 10, 15, 20, 25, 30, 35]


def test_compare_curves_have_whole_epochs_too(tmp_path, monkeypatch):
    from cnnlab.analysis import compare_plot
    closed = []
    draw = compare_plot.groups_figure
    monkeypatch.setattr(compare_plot, "groups_figure", lambda *a: closed.append(draw(*a)) or closed[-1])  # keep it
    row = {"epoch": 1.0, "iters": 3.0, "avg_loss": 1.1, "elapsed_s": 0.5, "val_acc": 99.9}
    compare_plot.plot_groups([("a", [[row], [{**row, "val_acc": 99.0}]]), ("b", [[row]])], tmp_path / "c.png")
    acc = closed[0].axes[0]
    lo, hi = acc.get_xlim()
    assert [t for t in acc.get_xticks() if lo <= t <= hi] == [1.0]
    assert 0 <= acc.get_ylim()[0] and acc.get_ylim()[1] <= 100


def test_report_curves_have_whole_epochs_too(monkeypatch):
    from cnnlab.report import figures
    closed = []
    png = figures._png
    monkeypatch.setattr(figures, "_png", lambda fig: closed.append(fig) or png(fig))  # keep the figure to look at
    row = {"epoch": 1.0, "iters": 3.0, "avg_loss": 1.1, "elapsed_s": 0.5, "val_acc": 99.9}
    figures.curves([("a", [row]), ("b", [{**row, "val_acc": 98.0}])])
    acc = closed[0].axes[0]
    lo, hi = acc.get_xlim()
    assert [t for t in acc.get_xticks() if lo <= t <= hi] == [1.0]
    assert 0 <= acc.get_ylim()[0] and acc.get_ylim()[1] <= 100


def test_messages_a_student_reads(run, tmp_path, capsys):
    assert main(["evaluate", str(tmp_path / "nonexistent")]) == 2
    assert f"{tmp_path}/nonexistent does not exist" in one_line(capsys.readouterr().err)
    assert main(["train", "--resume", str(run), "--max-steps", "1"]) == 2
    assert "--max-steps 1 differs from the run, where --max-steps was not set" in \
        one_line(capsys.readouterr().err)
    only_train = make_image_folder(tmp_path / "half", classes=("a",), n_train=1, n_test=1)
    (only_train / "test" / "a" / "0000.png").unlink()
    (only_train / "test" / "a").rmdir()
    (only_train / "test").rmdir()
    with pytest.raises(CnnlabError, match=r"half/test is missing: an image-folder dataset needs"):
        data.load(only_train)
    with pytest.raises(SystemExit):
        main(["evaluate", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    data_help = help_text[help_text.rindex("--data PATH"):help_text.rindex("--device")]
    assert data_help.count("default") == 1 and "the data the run was trained on" in data_help


def test_version(capsys):
    from cnnlab import __version__
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.strip() == f"cnnlab {__version__}"


def test_first_line_comes_before_the_data_statistics(tiny, tmp_path, monkeypatch):
    from cnnlab.training import loop as train_mod
    from cnnlab.runs import run_train
    events = []
    real = train_mod.channel_stats
    monkeypatch.setattr(train_mod, "channel_stats", lambda x: events.append("stats") or real(x))
    run_train(train_mod.TrainConfig(data=str(tiny), epochs=1, max_steps=1, out=str(tmp_path / "run")),
              log=events.append)
    assert events[0].startswith("Training seed") and events[1] == "stats"


def test_readme_and_docs_answer_a_newcomers_questions():
    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text()
    assert re.search(r"pip install torch .*--index-url https://download\.pytorch\.org/whl/cu\d+", readme)
    for needle in ["--data mydir", "AVX2", "MACs", "receptive field", "--max-steps"]:
        assert needle in readme, needle
    # the details live in the docs pages the README links to, and in the contributor's guide
    guide = "\n".join(p.read_text() for p in [*sorted((root / "docs").glob("*.md")), root / "CONTRIBUTING.md"])
    for needle in ["--val-size 10%", "metrics.json", "test suite takes", "receptive field", "--max-steps 20"]:
        assert needle in guide, needle
