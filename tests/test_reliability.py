"""Nothing lost, nothing wrong: one writer per run folder, the weights validation used, every
bound checked before a run folder exists, checkpoints checked before use, paths that stay right."""
import json
import math
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab import checkpoints
from cnnlab.cli import main
from cnnlab.errors import CnnlabError
from cnnlab.runs import fit, group as group_mod, saved
from cnnlab.training.loop import TrainConfig

from conftest import make_image_folder

SMALL = ["--epochs", "2", "--batch-size", "12", "--val-size", "6"]


def train_args(data, out, *extra):
    return ["train", "--data", str(data), *SMALL, "--out", str(out), *map(str, extra)]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_image_folder(tmp_path_factory.mktemp("data") / "tiny")


class StopAfterFirstCheckpoint:
    """Stands in for fit.StopSignals: asks the run to stop once its first checkpoint exists,
    as a SIGINT would (an unfinished run, made in this process)."""
    out: Path = None

    def __init__(self, repeat_stops=True):
        self.signum = signal.SIGINT

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def requested(self):
        return (self.out / "checkpoint.pt").exists()


def unfinished_run(data, out, **settings) -> Path:
    """A run stopped after its first epoch's checkpoint, as 'kill -INT' leaves it."""
    cfg = TrainConfig(data=str(data), out=str(out), epochs=3, batch_size=12, val_size=6, **settings)
    StopAfterFirstCheckpoint.out = Path(out)
    with pytest.MonkeyPatch.context() as m:
        m.setattr(fit, "StopSignals", StopAfterFirstCheckpoint)
        with pytest.raises(CnnlabError, match="stopped by SIGINT"):
            fit.run_train(cfg, log=lambda line: None)
    assert not (Path(out) / "metrics.json").exists()
    return Path(out)


@pytest.fixture(scope="module")
def unfinished(folder, tmp_path_factory):
    return unfinished_run(folder, tmp_path_factory.mktemp("unfinished") / "run")


# ---------------------------------------------------------------- 1: one writer per folder

def test_a_second_writer_is_refused_before_either_reads_data(folder, tmp_path, monkeypatch, capsys):
    out = tmp_path / "X"
    other = make_image_folder(tmp_path / "B", classes=("x", "y"))
    load, started, second = fit.data_mod.load, [], []

    def load_and_start_a_second_writer(*args, **kwargs):
        # While the first run reads its data, a second one is started into the same folder.
        if not started:
            started.append(True)
            second.append(main(train_args(other, out)))
        return load(*args, **kwargs)

    monkeypatch.setattr(fit.data_mod, "load", load_and_start_a_second_writer)
    assert main(train_args(folder, out)) == 0
    err = capsys.readouterr().err
    assert second == [2]
    assert f"--out {out} is being written by another cnnlab process" in err
    assert len(err.strip().splitlines()) == 1
    assert json.loads((out / "config.json").read_text())["data"]["classes"] == ["cat", "dog", "frog"]


def test_a_finished_run_is_never_written_over(folder, tmp_path, capsys):
    out = tmp_path / "X"
    assert main(train_args(folder, out, "--max-steps", 1)) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert main(train_args(folder, out, "--max-steps", 1, "--seed", 3)) == 2
    assert "already exists and is not empty" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_a_group_never_adopts_a_run_that_is_not_its_own(folder, tmp_path):
    group_dir = tmp_path / "G"
    cfg = TrainConfig(data=str(folder), out=str(group_dir), epochs=1, batch_size=12, val_size=6, max_steps=1)
    group_mod.run_group(cfg, [0], log=lambda line: None)
    # Another model's finished run, of seed 1, put where the group's seed-1 run would go.
    fit.run_train(TrainConfig(data=str(folder), out=str(group_dir / "seed-1"), model="seed-bn", seed=1,
                              epochs=1, batch_size=12, val_size=6, max_steps=1), log=lambda line: None)
    g = json.loads((group_dir / "group.json").read_text())
    g["seeds"] = [0, 1]
    (group_dir / "group.json").write_text(json.dumps(g))
    with pytest.raises(CnnlabError, match=r"seed-1 has another recipe than the group \(model differ\)"):
        group_mod.resume_group(group_dir, log=lambda line: None)
    assert json.loads((group_dir / "group.json").read_text())["seeds"] == [0, 1]  # not rewritten


# ---------------------------------------------------------------- 2: the weights validation used

def test_an_unfinished_averaging_run_is_evaluated_with_its_averaged_weights(folder, tmp_path, capsys):
    run = unfinished_run(folder, tmp_path / "ema", averaging=fit.replace(TrainConfig().averaging, kind="ema", decay=0.9))
    ckpt = checkpoints.load_checkpoint(run / "checkpoint.pt")
    averaged, raw = ckpt["averaging_state"]["weights"], ckpt["model_state"]
    assert any(not torch.equal(averaged[k], raw[k]) for k in raw)
    config, model = saved.load_run(run)
    assert all(torch.equal(v, averaged[k]) for k, v in model.state_dict().items())
    assert "ema averaged weights" in config["weights"]
    assert main(["evaluate", str(run), "--no-save"]) == 0
    assert "Weights: the ema averaged weights of the unfinished run's checkpoint (1 epochs done)" in capsys.readouterr().out


# ---------------------------------------------------------------- 3: bounds before the folder

@pytest.mark.parametrize("extra,message", [
    (["--set", "augment.translate=32"], "augment.translate=32 is not smaller than the 32x32 images"),
    (["--seed", "20000000000000"], "--seed must be an integer from 0 to 4294967295"),
    (["--seed", "-1"], "--seed must be an integer from 0 to 4294967295"),
    (["--seeds", "0,20000000000000"], "--seeds '0,20000000000000' names seed 20000000000000"),
])
def test_a_bound_the_run_depends_on_is_refused_before_its_folder_exists(folder, tmp_path, capsys, extra, message):
    out = tmp_path / "run"
    assert main(train_args(folder, out, *extra)) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_data_show_refuses_a_negative_seed(folder, tmp_path, capsys):
    assert main(["data", "show", "--data", str(folder), "--seed", "-1", "--out", str(tmp_path / "g.png")]) == 2
    assert "--seed must be an integer from 0 to 4294967295 (2**32 - 1), got -1" in capsys.readouterr().err


# ---------------------------------------------------------------- 4: a constant channel

def test_a_constant_channel_trains_to_finite_losses(tmp_path):
    root = make_image_folder(tmp_path / "no-blue")
    for png in root.rglob("*.png"):
        img = np.array(Image.open(png))
        img[..., 2] = 0
        Image.fromarray(img).save(png)
    out = tmp_path / "run"
    metrics = fit.run_train(TrainConfig(data=str(root), out=str(out), epochs=1, batch_size=12, val_size=6),
                            log=lambda line: None)
    config = json.loads((out / "config.json").read_text())
    assert config["data"]["std"][2] == pytest.approx(1 / 255)
    assert math.isfinite(metrics["test_acc"])
    assert all(math.isfinite(float(v)) for v in (out / "history.csv").read_text().split()[1].split(",")[2:4])


def test_a_non_finite_loss_names_its_likely_causes(folder, tmp_path, capsys):
    code = main(train_args(folder, tmp_path / "run", "--lr", "1e30", "--set", "optimizer.name=\"sgd\""))
    err = capsys.readouterr().err
    assert code == 2
    assert "learning rate too high" in err and "--set schedule.warmup=" in err and "--precision fp32" in err


# ---------------------------------------------------------------- 5: a base recipe loop through ..

def test_a_base_recipe_loop_through_dotdot_is_one_line(tmp_path, capsys):
    (tmp_path / "rx").mkdir()
    (tmp_path / "rx" / "a.toml").write_text('base = "../rx/a.toml"\nepochs = 2\n')
    assert main(["train", "--recipe", str(tmp_path / "rx" / "a.toml"), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "base recipes form a loop" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------- 6: a checkpoint's structure

def _extra_state_key(c):
    c["state"]["momentum"] = 0.9


def _list_for_dict(c):
    c["optimizer_state"] = list(c["optimizer_state"].values())


def _short_rng(c):
    c["rng"]["torch"] = c["rng"]["torch"][:100]


def _epoch_as_text(c):
    c["state"]["epoch"] = "2"


def _extra_weight(c):
    c["model_state"]["extra.weight"] = torch.zeros(3)


def _newer(c):
    c["versions"]["cnnlab"] = "9.0.0"
    c["state"]["momentum"] = 0.9


@pytest.mark.parametrize("damage,message", [
    (_extra_state_key, "state has unknown entries momentum"),
    (_list_for_dict, "optimizer_state is not an optimizer's state"),
    (_short_rng, "rng.torch is not a generator state"),
    (_epoch_as_text, "state.epoch is '2', not int"),
    (_extra_weight, "its model_state does not fit this run"),
    (_newer, "was written by cnnlab 9.0.0, newer than this cnnlab"),
])
def test_a_checkpoint_of_the_wrong_structure_is_refused_in_one_line(unfinished, tmp_path, capsys, damage, message):
    import shutil
    run = tmp_path / "run"
    shutil.copytree(unfinished, run)
    ckpt = checkpoints.load_checkpoint(run / "checkpoint.pt")
    damage(ckpt)
    checkpoints.save_checkpoint(run / "checkpoint.pt", ckpt)  # a valid digest over the wrong structure
    assert main(["train", "--resume", str(run)]) == 2
    err = capsys.readouterr().err
    assert message in err and str(run / "checkpoint.pt") in err
    assert len(err.strip().splitlines()) == 1


# ---------------------------------------------------------------- 7: killed before config.json

def test_a_run_killed_before_its_config_is_restarted_or_explained(folder, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / ".lock").write_text("12345\n")  # what a run killed while reading its data leaves
    (out / ".config.json.abc.tmp").write_text("{")
    assert main(["train", "--resume", str(out)]) == 2
    assert f"start it again into the same folder with: cnnlab train --out {out}" in capsys.readouterr().err
    assert main(train_args(folder, out, "--max-steps", 1)) == 0
    assert (out / "metrics.json").is_file() and not list(out.glob(".*"))


# ---------------------------------------------------------------- 8: paths

def test_resume_with_the_data_moved_records_the_new_place(folder, tmp_path):
    import shutil
    data = shutil.copytree(folder, tmp_path / "old")
    run = unfinished_run(data, tmp_path / "run")
    moved = data.rename(tmp_path / "new")
    fit.resume_train(run, {"data": str(moved)}, log=lambda line: None)
    config = json.loads((run / "config.json").read_text())
    assert config["config"]["data"] == str(moved.resolve())
    assert saved.evaluate_run(run)["same_data"]  # found where it is now


def test_the_onnx_file_carries_no_absolute_path(folder, tmp_path):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    import onnx
    from cnnlab.runs.export import export_run
    run = tmp_path / "home" / "someone" / "run"
    fit.run_train(TrainConfig(data=str(folder), out=str(run), epochs=1, batch_size=12, val_size=6, max_steps=1),
                  log=lambda line: None)
    path = export_run(run, tmp_path / "model.onnx", data_path=folder)["path"]
    meta = {p.key: p.value for p in onnx.load(path).metadata_props}
    text = json.dumps(meta)
    assert str(tmp_path) not in text and "/home/someone" not in text
    assert json.loads(meta["classes"]) == ["cat", "dog", "frog"] and meta["run"] == "run"
    assert json.loads(meta["config"])["data"] == folder.name


# ---------------------------------------------------------------- 9: smaller, still misleading

def test_the_verdict_agrees_with_the_decision():
    from cnnlab.analysis.stats import verdict
    near = {"n_a": 5, "n_b": 5, "p_value": 0.0496, "diff": 0.4, "ci95": [0.001, 0.799]}
    assert verdict("a", "b", near).endswith("p = 0.0496")
    tiny = {"n_a": 5, "n_b": 5, "p_value": 0.01, "diff": 0.004, "ci95": [0.001, 0.007]}
    assert "better by 0.004 +- 0.003 points" in verdict("a", "b", tiny)
    assert verdict("a", "b", {**near, "p_value": 0.0504}).startswith("no evidence")


def _killed_worker(rank=1, sig=signal.SIGKILL):
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError, ProcessFailure
    failure = ProcessFailure(local_rank=rank, pid=4321, exitcode=-int(sig), error_file="")
    return ChildFailedError("cnnlab", {rank: failure})


def test_the_launcher_names_the_run_folder_of_a_new_run(folder, tmp_path, monkeypatch, capsys):
    import torch.distributed.run as torchrun
    seen = []

    def run(args):
        seen.append(args.training_script_args)
        raise _killed_worker()

    monkeypatch.setattr(torchrun, "run", run)
    monkeypatch.chdir(tmp_path)
    code = main(["train", "--data", str(folder), *SMALL, "--nproc", "2"])
    err = capsys.readouterr().err
    assert code == 128 + signal.SIGKILL
    out = seen[0][seen[0].index("--out") + 1]
    assert out.startswith("runs/") and f"cnnlab train --resume {out} --nproc 2" in err and "RUN_DIR" not in err


def test_the_launcher_says_nothing_is_lost_when_the_run_had_finished(folder, tmp_path, monkeypatch, capsys):
    import torch.distributed.run as torchrun
    out = tmp_path / "run"

    def run(args):
        out.mkdir()
        (out / "metrics.json").write_text("{}")  # process 0 had tested and saved the run
        raise _killed_worker()

    monkeypatch.setattr(torchrun, "run", run)
    assert main(train_args(folder, out, "--nproc", 2)) == 128 + signal.SIGKILL
    err = capsys.readouterr().err
    assert "after the run had finished" in err and "--resume" not in err


def test_resume_nproc_of_a_select_run_is_refused_once_before_any_process(unfinished, tmp_path, monkeypatch, capsys):
    import shutil
    import torch.distributed.run as torchrun
    run = tmp_path / "run"
    shutil.copytree(unfinished, run)
    config = json.loads((run / "config.json").read_text())
    config["config"]["select"] = {"keep": 0.5, "from_epoch": 2}
    (run / "config.json").write_text(json.dumps(config))
    monkeypatch.setattr(torchrun, "run", lambda args: pytest.fail("processes were started"))
    assert main(["train", "--resume", str(run), "--nproc", "2"]) == 2
    err = capsys.readouterr().err
    assert err.count("[select] trains on the hard images in one process only") == 1


def test_total_steps_does_not_walk_every_epoch(monkeypatch):
    from cnnlab.recipes.schema import Select
    from cnnlab.training import loop
    calls = []
    real = loop.epoch_steps
    monkeypatch.setattr(loop, "epoch_steps", lambda *a: calls.append(a) or real(*a))
    cfg = TrainConfig(epochs=1_000_000, max_steps=5)
    assert loop.total_steps(cfg, 1000) == 5
    assert len(calls) <= 2
    selecting = TrainConfig(epochs=7, batch_size=10, select=Select(keep=0.5, from_epoch=3))
    assert loop.total_steps(selecting, 100) == 2 * 10 + 5 * 5  # two whole epochs, then half


def test_a_refused_run_leaves_no_folder_it_made_above_its_own(folder, tmp_path, capsys):
    out = tmp_path / "a" / "b" / "run"
    assert main(train_args(folder, out, "--set", "augment.translate=32")) == 2
    assert not (tmp_path / "a").exists()


def test_a_second_group_into_one_folder_is_refused_before_either_reads_data(folder, tmp_path, monkeypatch, capsys):
    out = tmp_path / "G"
    load, started, second = group_mod.data_mod.load, [], []

    def load_and_start_a_second_group(*args, **kwargs):
        if not started:
            started.append(True)
            second.append(main(train_args(folder, out, "--seeds", "0", "--max-steps", 1, "--model", "seed-bn")))
        return load(*args, **kwargs)

    monkeypatch.setattr(group_mod.data_mod, "load", load_and_start_a_second_group)
    assert main(train_args(folder, out, "--seeds", "0", "--max-steps", 1)) == 0
    assert second == [2]
    assert f"--out {out} is being written by another cnnlab process" in capsys.readouterr().err
    assert json.loads((out / "group.json").read_text())["config"]["model"] == "seed"
