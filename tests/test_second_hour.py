"""A newcomer's second hour: every command as a new user meets it.

Unfinished runs named as such, flags that agree between commands, help that says what commands
do, shapes taken as given, output files in the format their name says, comparisons that never
pool unrelated runs, and the features users of other libraries look for (--keep best,
--patience, extending a finished run).
"""
import json

import pytest

from cnnlab.cli import main

from conftest import make_image_folder

TINY = ["--epochs", "2", "--batch-size", "8", "--val-size", "6", "--device", "cpu"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A finished two-epoch run on a tiny synthetic folder."""
    root = tmp_path_factory.mktemp("second-hour")
    data = make_image_folder(root / "data")
    assert main(["train", "--data", str(data), *TINY, "--out", str(root / "run")]) == 0
    return root / "run", data


# ---------------------------------------------------------------- item 4: flags that agree

def test_cnnlab_alone_prints_the_help(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: cnnlab") and "train" in out and "evaluate" in out


def test_an_unknown_flag_in_a_subcommand_names_its_help_and_the_flag_meant(capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "--epohcs", "1"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1
    assert err.startswith("cnnlab train: error: unrecognized arguments: --epohcs 1")
    assert "did you mean --epochs" in err and "(see 'cnnlab train --help')" in err


def test_an_unknown_flag_in_a_nested_subcommand_names_its_help(capsys):
    with pytest.raises(SystemExit):
        main(["data", "show", "--per-clsas", "3"])
    err = capsys.readouterr().err
    assert "cnnlab data show: error:" in err and "did you mean --per-class" in err
    assert "(see 'cnnlab data show --help')" in err


def test_debug_keeps_the_exit_status_of_a_users_mistake(tmp_path, capsys):
    assert main(["--debug", "evaluate", str(tmp_path / "missing")]) == 2
    assert "Traceback" in capsys.readouterr().err


@pytest.mark.parametrize("nproc,refused", [(3, False), (8, False), (9, True), (64, True)])
def test_nproc_above_the_core_count_is_warned_then_refused(tiny_folder, monkeypatch, capsys, nproc, refused):
    from cnnlab.cli import train
    from cnnlab.training import launch
    started = []
    monkeypatch.setattr(train, "usable_cores", lambda: 2)
    monkeypatch.setattr(launch, "launch", lambda n, argv, resume=None: started.append(n) or 0)
    code = main(["train", "--data", str(tiny_folder), "--device", "cpu", "--nproc", str(nproc)])
    err = capsys.readouterr().err
    if refused:
        assert code == 2 and not started
        assert f"--nproc {nproc} starts {nproc} training processes on 2 CPU cores: use at most --nproc 2" in err
    else:
        assert code == 0 and started == [nproc]
        assert f"cnnlab: warning: --nproc {nproc} is more processes than this machine's 2 CPU cores" in err


def test_predict_takes_tta_modes_as_evaluate_does(tiny_run, capsys):
    run, data = tiny_run
    image = next((data / "test").rglob("*.png"))
    for flags in (["--tta", "flip"], ["--tta", "flip-shift"], ["--tta"], ["--tta", "none"]):
        assert main(["predict", str(run), str(image), *flags, "--json"]) == 0
        assert json.loads(capsys.readouterr().out)[0]["path"] == str(image)
    assert main(["evaluate", str(run), "--tta", "flip", "--no-save"]) == 0
    capsys.readouterr()
    with pytest.raises(SystemExit):  # --tta before an image: the image is not a mode; say how to write it
        main(["predict", str(run), "--tta", str(image)])
    err = capsys.readouterr().err
    assert "expected one of none, flip, flip-shift" in err and "'--tta flip'" in err


# ---------------------------------------------------------------- item 5: help text

def test_help_texts_show_no_doubled_percent_and_one_default(capsys):
    for command in ("compare", "export", "train", "evaluate", "predict"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        out = capsys.readouterr().out
        assert "%%" not in out, command
        if command == "export":
            data_help = " ".join(out.rsplit("--data PATH", 1)[1].split("--check-all")[0].split())
            assert data_help.count("default:") == 1 and "the data the run was trained on" in data_help
    with pytest.raises(SystemExit):
        main(["compare", "--help"])
    assert "95 % t-interval" in " ".join(capsys.readouterr().out.split())


# ---------------------------------------------------------------- item 1: unfinished runs

@pytest.fixture(scope="module")
def stopped_run(tmp_path_factory):
    """A run stopped by Ctrl-C after its first epoch (SIGINT to this process, as a terminal sends)."""
    import os
    import signal

    from cnnlab.cli import train
    root = tmp_path_factory.mktemp("stopped")
    data = make_image_folder(root / "data")

    def say_then_interrupt(line):
        print(line)
        if "Validation Accuracy" in line:
            os.kill(os.getpid(), signal.SIGINT)
    mp = pytest.MonkeyPatch()
    mp.setattr(train, "say", say_then_interrupt)
    try:
        code = main(["train", "--data", str(data), *TINY, "--epochs", "3", "--out", str(root / "run")])
    finally:
        mp.undo()
    assert code == 130 and not (root / "run" / "metrics.json").exists()
    return root / "run", data


def test_every_command_that_reads_an_unfinished_run_says_so_in_one_line(stopped_run, tmp_path, capsys):
    run, data = stopped_run
    notice = f"cnnlab: warning: {run} is an unfinished run (stopped at epoch 2, step 0)"
    resume = f"finish it with: cnnlab train --resume {run}"
    image = next((data / "test").rglob("*.png"))
    commands = [["evaluate", str(run), "--no-save"], ["predict", str(run), str(image)],
                ["report", str(run), "--out", str(tmp_path / "r.html")]]
    pytest.importorskip("onnxruntime")
    commands.append(["export", str(run), "--out", str(tmp_path / "m.onnx")])
    for command in commands:
        assert main(command) == 0, command
        err = capsys.readouterr().err
        lines = [line for line in err.splitlines() if "unfinished" in line]
        assert len(lines) == 1 and lines[0].startswith(notice) and lines[0].endswith(resume), (command, err)
    page = (tmp_path / "r.html").read_text()
    assert "unfinished: epoch 2, step 0" in page and "is an unfinished run" in page


def test_a_finished_run_gets_no_notice(tiny_run, capsys):
    run, _ = tiny_run
    assert main(["evaluate", str(run), "--no-save"]) == 0
    assert "unfinished" not in capsys.readouterr().err


# ---------------------------------------------------------------- item 2: --max-steps

def test_max_steps_inside_an_epoch_is_recorded_as_the_part_that_ran(tmp_path, monkeypatch, drawn):
    from cnnlab.training import loop
    totals = []

    class Bar:  # the progress bar's length, whether or not a terminal shows it
        def __init__(self, total, initial=0, **kw):
            totals.append(total)
        def update(self):
            pass
        def close(self):
            pass
    monkeypatch.setattr(loop, "tqdm", Bar)
    data = make_image_folder(tmp_path / "data")  # 36 images, 6 to validate: 4 steps of 8 per epoch
    assert main(["train", "--data", str(data), *TINY, "--max-steps", "3", "--out", str(tmp_path / "run")]) == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["steps"] == 3 and metrics["epochs"] == 0.75
    assert metrics["last_epoch"] == {"epoch": 1, "steps": 3, "of": 4}
    assert totals == [3]
    curves = drawn[-1]  # curves.png: titled with the run, its one point at 0.75 of epoch 1
    assert curves.get_suptitle() == "run: seed on data"
    assert list(curves.axes[0].lines[0].get_xdata()) == [0.75]


def test_curves_put_a_cut_epoch_at_the_fraction_that_ran():
    from cnnlab.analysis.plots import curves_figure, epoch_positions
    rows = [{"epoch": 1.0, "iters": 4.0, "avg_loss": 1.0, "val_acc": 50.0},
            {"epoch": 2.0, "iters": 1.0, "avg_loss": 0.9, "val_acc": 55.0}]
    assert epoch_positions(rows, 4) == [1.0, 1.25]
    assert epoch_positions(rows[:1], 4) == [1.0]
    fig = curves_figure(rows, "run: seed on tiny", 60.0, last_epoch_steps=4)
    acc = fig.axes[0]
    assert list(acc.lines[0].get_xdata()) == [1.0, 1.25] and list(acc.lines[1].get_xdata()) == [1.25]
    assert any("stopped after 1 of 4 steps" in t.get_text() for t in acc.texts)


# ---------------------------------------------------------------- item 3: degenerate data

def test_one_class_is_refused_and_leaves_no_folder(tmp_path, capsys):
    data = make_image_folder(tmp_path / "data", classes=("cat",))
    assert main(["train", "--data", str(data), *TINY, "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "hold one class (cat): a classifier needs at least two classes" in err
    assert not (tmp_path / "run").exists()


def test_a_split_that_leaves_almost_nothing_to_train_on_is_warned(tmp_path, capsys):
    data = make_image_folder(tmp_path / "data")  # 36 training images, 3 classes
    assert main(["train", "--data", str(data), "--epochs", "1", "--batch-size", "8", "--val-size", "35",
                 "--device", "cpu", "--out", str(tmp_path / "run")]) == 0
    err = capsys.readouterr().err
    assert ("cnnlab: warning: --val-size 35 leaves 1 image to train on, fewer than two per class "
            "(3 classes): lower --val-size") in err


# ---------------------------------------------------------------- item 6: shapes as given

@pytest.mark.parametrize("shape,message", [
    ("1,3,32", "input shape '1,3,32' has three numbers: write all four, N,C,H,W; for one 1-channel "
               "3x32 image that is 1,1,3,32"),
    ("1,3,32,32,5", "input shape '1,3,32,32,5' must be four positive integers N,C,H,W")])
def test_shape_takes_exactly_four_numbers(capsys, shape, message):
    assert main(["shape", shape, "conv(16,k=3)"]) == 2
    assert message in capsys.readouterr().err


def test_summary_names_the_layer_that_runs_out_of_pixels_and_the_smallest_input(capsys):
    assert main(["summary", "--model", "seed", "--input", "3,2,2"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert ("model seed cannot take 2x2 inputs: layer pool2 (MaxPool2d) gets 1x1 pixels, too few for it; "
            "the smallest input that works is 4x4 (--input 3,4,4)") in err
    assert main(["summary", "--model", "seed", "--input", "3,4,4"]) == 0  # the size it names works
    capsys.readouterr()
    assert main(["summary", "--model", "seed", "--input", "8,3,32,32"]) == 2
    assert "must be three positive integers C,H,W" in capsys.readouterr().err


# ---------------------------------------------------------------- item 8: the format the name says

@pytest.mark.parametrize("name,magic", [("x.jpg", b"\xff\xd8\xff"), ("x.jpeg", b"\xff\xd8\xff"),
                                        ("x.png", b"\x89PNG"), ("x.svg", b"<?xml"), ("x.pdf", b"%PDF")])
def test_data_show_writes_the_format_its_name_says_and_replaces_only_its_own(tiny_folder, tmp_path, capsys,
                                                                           name, magic):
    out = tmp_path / name
    for _ in range(2):  # the second time replaces cnnlab's own file
        assert main(["data", "show", "--data", str(tiny_folder), "--per-class", "2", "--out", str(out)]) == 0
        assert out.read_bytes().startswith(magic)
    out.write_bytes(magic + b" a user's file")
    assert main(["data", "show", "--data", str(tiny_folder), "--out", str(out)]) == 2
    assert "was not written by cnnlab" in capsys.readouterr().err


def test_an_unknown_figure_format_is_refused_before_any_work(tiny_folder, tiny_run, tmp_path, capsys):
    for command in (["data", "show", "--data", str(tiny_folder)], ["compare", str(tiny_run[0])]):
        assert main([*command, "--out", str(tmp_path / "x.txt")]) == 2
        err = capsys.readouterr().err
        assert "a figure is written as .png, .jpg, .svg or .pdf" in err and err.count("\n") == 1
        assert not (tmp_path / "x.txt").exists()
    assert main(["compare", str(tiny_run[0]), "--out", str(tmp_path / "cmp.svg")]) == 0
    assert (tmp_path / "cmp.svg").read_bytes().startswith(b"<?xml")


# ---------------------------------------------------------------- item 9: compare

def test_compare_without_scipy_prints_the_table_and_says_what_the_extra_adds(tiny_run, monkeypatch, capsys):
    from cnnlab.runs import compare
    monkeypatch.setattr(compare, "have_scipy", lambda: False)
    assert main(["compare", str(tiny_run[0]), str(tiny_run[0])]) == 0
    out = capsys.readouterr().out
    assert "note: without scipy, no 95 % intervals, t-tests or verdicts: install them with pip install " \
           "'cnnlab[stats]'" in out
    assert out.splitlines()[1].split()[2] == "1"  # n = 1, mean printed


def test_compare_never_pools_runs_of_other_data_or_recipes(tiny_run, tmp_path, capsys):
    runs = tmp_path / "runs"
    other = make_image_folder(tmp_path / "other", seed=1)  # other images: another fingerprint
    for name, data, extra in (("a", tiny_run[1], []), ("b", other, []), ("c", tiny_run[1], ["--lr", "0.01"]),
                              ("d", tiny_run[1], [])):
        assert main(["train", "--data", str(data), *TINY, "--seed", str(ord(name)), *extra,
                     "--out", str(runs / name)]) == 0
    capsys.readouterr()
    assert main(["compare", str(runs), "--json"]) == 0
    groups = json.loads(capsys.readouterr().out)["groups"]
    assert [g["n"] for g in groups] == [2, 1, 1]  # a and d together; b (other data), c (other lr) alone
    assert not any(f.startswith("mixed") for g in groups for f in g["flags"])  # nothing pooled
    assert groups[1]["flags"] == [f"other data than {groups[0]['name']}"]
    assert len({g["name"] for g in groups}) == 3 and "optimizer" in groups[2]["name"], [g["name"] for g in groups]


# ---------------------------------------------------------------- items 7 and 10: settings as resolved

def test_the_description_is_the_recipes_and_the_report_shows_resolved_settings(tiny_run, tmp_path, capsys):
    run, _ = tiny_run
    config = json.loads((run / "config.json").read_text())["config"]
    assert config["description"].endswith("(the recipe as shipped; this run sets epochs=2, batch_size=8, "
                                          "val_size=6)")
    assert main(["report", str(run), "--out", str(tmp_path / "r.html")]) == 0
    page = (tmp_path / "r.html").read_text()
    for repr_text in ("{&#x27;", "{'", "<dd>None</dd>", "<dd>False</dd>", "<dd>True</dd>"):
        assert repr_text not in page
    assert "<dt>augment.flip</dt><dd>none</dd>" in page and "<dt>epochs</dt><dd>2</dd>" in page
    assert "tested on data (fingerprint " in page
    assert "Recipe <code>seed</code> (as shipped: the course report&#x27;s recipe" in page


# ---------------------------------------------------------------- item 11: pictures with titles

@pytest.fixture
def drawn(monkeypatch):
    """Every matplotlib figure saved meanwhile."""
    from matplotlib.figure import Figure
    figures, save = [], Figure.savefig
    monkeypatch.setattr(Figure, "savefig", lambda self, *a, **k: (figures.append(self), save(self, *a, **k))[1])
    return figures


def test_figures_have_titles_and_the_compare_plot_marks_test_accuracy(tiny_run, tiny_folder, tmp_path, drawn):
    run, _ = tiny_run
    assert main(["data", "show", "--data", str(tiny_folder), "--out", str(tmp_path / "s.png")]) == 0
    assert drawn[-1].get_suptitle() == "tiny: train split, random images per class (seed 0)"
    assert main(["evaluate", str(run)]) == 0
    assert drawn[-2].get_suptitle() == "Most confident mistakes of run on data"  # confusion, mistakes, calibration
    assert main(["compare", str(run), "--out", str(tmp_path / "c.png")]) == 0
    fig = drawn[-1]
    assert fig.get_suptitle() == "Compared: run"
    test_acc = json.loads((run / "metrics.json").read_text())["test_acc"]
    stars = [line for line in fig.axes[0].lines if line.get_marker() == "*"]
    assert len(stars) == 1 and list(stars[0].get_ydata()) == [test_acc]


def test_curves_title_the_run_and_draw_validation_loss_when_history_has_it(tiny_run):
    from cnnlab.analysis.plots import curves_figure
    rows = [{"epoch": 1.0, "iters": 4.0, "avg_loss": 1.0, "val_acc": 50.0, "val_loss": 1.1},
            {"epoch": 2.0, "iters": 4.0, "avg_loss": 0.8, "val_acc": 55.0, "val_loss": 0.95}]
    loss = curves_figure(rows, "run").axes[1]
    assert [line.get_label() for line in loss.lines] == ["training", "validation"]
    assert list(loss.lines[1].get_ydata()) == [1.1, 0.95]
    assert len(curves_figure([{k: v for k, v in r.items() if k != "val_loss"} for r in rows]).axes[1].lines) == 1


# ---------------------------------------------------------------- item 12: --keep best, --patience, more epochs

def weights(path):
    from cnnlab import checkpoints
    return checkpoints.load_weights(path)


def same_weights(a, b) -> bool:
    wa, wb = weights(a), weights(b)
    return wa.keys() == wb.keys() and all(torch_equal(wa[k], wb[k]) for k in wa)


def torch_equal(a, b) -> bool:
    import torch
    return torch.equal(a, b)


@pytest.mark.slow
def test_extending_a_finished_run_is_training_longer_from_the_start(tiny_run, tmp_path, capsys):
    _, data = tiny_run
    short, long = tmp_path / "short", tmp_path / "long"
    assert main(["train", "--data", str(data), *TINY, "--out", str(short)]) == 0
    assert main(["train", "--resume", str(short), "--epochs", "1"]) == 2
    assert "--epochs 1 is fewer than the run's 2: a run is extended, never shortened" in capsys.readouterr().err
    assert main(["train", "--resume", str(short), "--epochs", "3"]) == 0
    assert "Extending " in capsys.readouterr().out
    assert main(["train", "--data", str(data), *TINY, "--epochs", "3", "--out", str(long)]) == 0
    assert same_weights(short / "model.safetensors", long / "model.safetensors")  # bitwise
    a, b = (json.loads((r / "metrics.json").read_text()) for r in (short, long))
    assert a["epochs"] == b["epochs"] == 3 and a["test_acc"] == b["test_acc"] and a["steps"] == b["steps"]
    config = json.loads((short / "config.json").read_text())
    assert config["config"]["epochs"] == 3
    assert config["extensions"] == [{"from": 2, "to": 3, "epoch": 3, "step": 0}]
    assert main(["train", "--resume", str(short)]) == 2  # finished again: nothing to resume
    assert "give --epochs N (more than 3) to extend it" in capsys.readouterr().err


@pytest.mark.slow
def test_patience_ends_the_run_where_history_says_and_keep_best_keeps_that_epochs_weights(tiny_run, tmp_path):
    _, data = tiny_run
    run = tmp_path / "run"
    flags = ["--data", str(data), *TINY, "--lr", "0.01"]
    assert main(["train", *flags, "--epochs", "8", "--patience", "2", "--keep", "best", "--out", str(run)]) == 0
    from cnnlab.analysis.plots import read_history
    val = [r["val_acc"] for r in read_history(run / "history.csv")]
    best = max(range(len(val)), key=lambda i: (val[i], -i)) + 1  # first epoch with the highest accuracy
    expected = next((e for e in range(1, 9) if e - (max(range(e), key=lambda i: (val[i], -i)) + 1) >= 2), 8)
    metrics = json.loads((run / "metrics.json").read_text())
    assert len(val) == expected == metrics["epochs"]
    assert metrics["best"] == {"epoch": best, "val_acc": val[best - 1], "weights": "best.safetensors"}
    assert ("early_stop" in metrics) == (expected < 8)
    # The best epoch's weights are those a run of that many epochs ends with.
    assert main(["train", *flags, "--epochs", str(best), "--out", str(tmp_path / "ref")]) == 0  # constant lr
    assert same_weights(run / "best.safetensors", tmp_path / "ref" / "model.safetensors")


def test_keep_best_and_patience_need_a_validation_split(tiny_folder, tmp_path, capsys):
    for flags in (["--keep", "best"], ["--patience", "2"]):
        assert main(["train", "--data", str(tiny_folder), *TINY, "--val-size", "0", *flags,
                     "--out", str(tmp_path / "run")]) == 2
        assert "picks epochs by validation accuracy, and --val-size 0 validates nothing" in capsys.readouterr().err
        assert not (tmp_path / "run").exists()


def test_the_group_section_names_the_data_each_group_was_tested_on(tiny_run):
    from cnnlab.report.groups import groups_section
    html = groups_section([tiny_run[0]])
    assert "<th>tested on</th>" in html and "<td>data</td>" in html


def test_confusion_and_mistakes_of_ten_classes_fit_the_reports_column():
    """At 1280 px the report's column is about 1060 px: a figure no wider shows its 10 pt text
    at 14 px (CIFAR-10's were 1440 and 1280 px wide, shrunk to 6-7 px text)."""
    import io

    import numpy as np
    from PIL import Image

    from cnnlab.report import figures
    classes = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    cm = np.random.default_rng(0).integers(0, 900, (10, 10))
    images = np.zeros((16, 3, 32, 32), np.uint8)
    for png in (figures.confusion(cm, classes),
                figures.mistakes(images, classes + classes[:6], classes[::-1] + classes[:6], [0.99] * 16,
                                 title="Most confident mistakes of run on cifar10")):
        assert Image.open(io.BytesIO(png)).width <= 100 * figures.COLUMN_INCHES


@pytest.mark.slow
def test_patience_and_keep_best_decide_the_same_after_a_stop_and_resume(tiny_run, tmp_path, monkeypatch):
    import os
    import signal

    from cnnlab.cli import train
    _, data = tiny_run
    flags = ["--data", str(data), *TINY, "--lr", "0.01", "--epochs", "8", "--patience", "2", "--keep", "best"]
    assert main(["train", *flags, "--out", str(tmp_path / "whole")]) == 0

    def say_then_interrupt(line):
        if line.startswith("Epoch: 2 | Validation"):
            os.kill(os.getpid(), signal.SIGINT)
    monkeypatch.setattr(train, "say", say_then_interrupt)
    assert main(["train", *flags, "--out", str(tmp_path / "split")]) == 130
    monkeypatch.undo()
    assert main(["train", "--resume", str(tmp_path / "split")]) == 0
    whole, split = (json.loads((tmp_path / r / "metrics.json").read_text()) for r in ("whole", "split"))
    same = ("epochs", "steps", "test_acc", "val_acc", "best", "early_stop")
    assert {k: whole.get(k) for k in same} == {k: split.get(k) for k in same}
    for name in ("best.safetensors", "model.safetensors"):
        assert same_weights(tmp_path / "whole" / name, tmp_path / "split" / name)
