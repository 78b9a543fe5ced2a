"""The Python API (cnnlab.train & co.): the README's quick start, the same weights as the command
line, the command line's checks and messages, epoch callbacks, and no process-wide side effects."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import cnnlab
from cnnlab.cli import main
from cnnlab.runs.settings import dotted, resolve

QUICK_START = """
import cnnlab
run = cnnlab.train("seed", epochs=2, max_steps=50)
print(run.metrics["test_acc"]); run.plot()
"""


@pytest.fixture(scope="module")
def quick(real_subset, tmp_path_factory):
    """The README's Python quick start, run as written, on the real subset (found as CNNLAB_DATA)."""
    work = tmp_path_factory.mktemp("quick")
    mp = pytest.MonkeyPatch()
    mp.setenv("CNNLAB_DATA", str(real_subset))
    mp.chdir(work)
    scope: dict = {}
    try:
        exec(QUICK_START, scope)
    finally:
        mp.undo()
    return scope["run"], work


def test_import_cnnlab_imports_neither_torch_nor_matplotlib():
    code = "import cnnlab, sys; assert 'torch' not in sys.modules and 'matplotlib' not in sys.modules; print(cnnlab.__version__)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == cnnlab.__version__


def test_the_public_names_are_listed_and_typed():
    for name in ("train", "train_seeds", "resume", "load_run", "compare", "shape", "summary", "recipes",
                 "Run", "Group", "SettingsError", "StopTraining"):
        assert name in cnnlab.__all__ and name in dir(cnnlab)
        obj = getattr(cnnlab, name)
        assert obj.__doc__ and (">>>" in obj.__doc__ or isinstance(obj, type))
    assert set(cnnlab.__all__) == {*cnnlab._LAZY, "__version__"}
    assert (Path(cnnlab.__file__).parent / "py.typed").is_file()
    assert issubclass(cnnlab.SettingsError, ValueError) and issubclass(cnnlab.SettingsError, cnnlab.CnnlabError)


@pytest.mark.slow
def test_readme_quick_start_trains_tests_and_plots(quick):
    run, work = quick
    assert run.path.parent == Path("runs") and (work / run.path / "metrics.json").is_file()
    run = cnnlab.load_run(work / run.path)
    assert run.metrics["test_acc"] > 15  # chance is 10 % (measured: 27 %)
    assert [r["epoch"] for r in run.history] == [1, 2]
    assert list(run.history[0]) == ["epoch", "iters", "avg_loss", "elapsed_s", "val_acc", "val_loss", "lr"]
    assert run.history[-1]["lr"] == pytest.approx(1e-3) and run.history[-1]["val_loss"] > 0
    fig = run.plot()
    from matplotlib.figure import Figure
    assert isinstance(fig, Figure) and len(fig.axes) == 2 and fig._repr_png_()[:4] == b"\x89PNG"
    assert run.evaluate()["test_acc"] == run.metrics["test_acc"]  # the weights on disk are the run's
    assert run.config["model"] == "seed" and run.model.training is False
    html = run._repr_html_()
    assert "test accuracy" in html and "data:image/png;base64," in html
    from PIL import Image
    files = sorted((Path(run._config_json()["data"]["source"]) / "test" / "cat").iterdir())[:2]
    by_path = run.predict(files, top_k=2)
    assert [r["path"] for r in by_path] == [str(f) for f in files] and len(by_path[0]["top"]) == 2
    by_image = run.predict([Image.open(f) for f in files], top_k=2)  # the same decoding as from files
    assert [r["top"] for r in by_image] == [r["top"] for r in by_path] and by_image[0]["path"] is None
    pytest.importorskip("onnxruntime")
    assert run.export(work / "seed.onnx")["ok"] and (work / "seed.onnx").is_file()


@pytest.mark.slow
def test_api_and_cli_give_bitwise_equal_weights_and_the_same_test_accuracy(quick, real_subset, tmp_path):
    run, work = quick
    out = tmp_path / "cli"
    proc = subprocess.run([sys.executable, "-m", "cnnlab", "train", "--epochs", "2", "--max-steps", "50",
                           "--data", str(real_subset), "--out", str(out)], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr
    api, cli = load_file(work / run.path / "model.safetensors"), load_file(out / "model.safetensors")
    assert api.keys() == cli.keys() and all(torch.equal(api[k], cli[k]) for k in api)
    api_m, cli_m = (json.loads((p / "metrics.json").read_text()) for p in (work / run.path, out))
    assert api_m["test_acc"] == cli_m["test_acc"] and api_m["steps"] == cli_m["steps"]
    assert (work / run.path / "history.csv").read_text().splitlines()[0] == (out / "history.csv").read_text().splitlines()[0]


def test_settings_are_the_command_lines_flags_and_recipe_keys_dotted_or_nested():
    assert dotted({"lr": 0.05, "optimizer": {"momentum": 0.8}, "augment.flip": "random", "epochs": 3}) == {
        "optimizer.lr": 0.05, "optimizer.momentum": 0.8, "augment.flip": "random", "epochs": 3}
    a = resolve("seed-sgd", {"optimizer": {"lr": 0.05}, "epochs": 3})
    b = resolve("seed-sgd", {"lr": 0.05, "epochs": 3})
    c = resolve("seed-sgd", {"optimizer.lr": 0.05, "epochs": 3})
    assert a == b == c and a.optimizer.lr == 0.05 and a.epochs == 3 and a.optimizer.name == "sgd"


@pytest.mark.parametrize("settings, argv", [
    ({"lr": -1.0}, ["--set", "optimizer.lr=-1.0"]),
    ({"epochs": 0}, ["--set", "epochs=0"]),
    ({"augment": {"flip": "sometimes"}}, ["--set", "augment.flip=sometimes"]),
    ({"model": "nosuch"}, ["--model", "nosuch"]),
    ({"val_size": "200%"}, ["--set", "val_size=200%"]),
])
def test_a_wrong_setting_is_the_command_lines_one_line_as_a_value_error(settings, argv, tmp_path, monkeypatch,
                                                                        capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError) as e:
        cnnlab.train("seed", data=tmp_path, **settings)
    assert isinstance(e.value, cnnlab.SettingsError)
    message = str(e.value)
    assert main(["train", "--data", str(tmp_path), *argv]) == 2
    line = capsys.readouterr().err.strip()
    assert "\n" not in message and "\n" not in line
    # The same line, but for where the setting was given.
    assert line.removeprefix("cnnlab: error: ").replace("the command line", "cnnlab.train") == message
    assert not (tmp_path / "runs").exists()


def test_an_unknown_key_says_which_was_meant(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(cnnlab.SettingsError, match=r"unknown key 'optimiser'; did you mean 'optimizer.lr'"):
        cnnlab.train(optimiser={"lr": 0.1})
    assert not (tmp_path / "runs").exists()


def test_on_epoch_end_gets_the_finished_epochs_row(real_subset):
    """The low-level loop's callback sees the epoch just finished (it used to see the next one)."""
    from cnnlab.data import dataset
    from cnnlab.network import models
    from cnnlab.training.loop import TrainConfig, prepare, train
    cfg = TrainConfig(epochs=2, batch_size=450, precision="fp32")  # 2 steps per epoch
    d = prepare(dataset.load(real_subset), cfg, torch.device("cpu"))
    seen = []
    train(cfg, models.create("seed"), d, log=lambda line: None,
          on_epoch_end=lambda row, state, s: seen.append((row["epoch"], state.epoch)))
    assert seen == [(1, 2), (2, 3)]  # the row's epoch, and the state already at the next (to resume from)


@pytest.mark.slow
def test_stopping_after_an_epoch_keeps_a_checkpoint_and_resumes_to_the_same_weights(quick, real_subset, tmp_path,
                                                                                    monkeypatch):
    run, work = quick
    monkeypatch.chdir(tmp_path)
    rows = []

    def stop_after_first(r, row):
        rows.append((r.path, row["epoch"], len(r.history)))
        raise cnnlab.StopTraining

    stopped = cnnlab.train("seed", data=real_subset, epochs=2, max_steps=50, out="stopped",
                           on_epoch_end=stop_after_first, progress=False)
    assert rows == [(Path("stopped"), 1, 1)]  # called once, with epoch 1's row, history on disk
    assert stopped.metrics["epochs"] == 1 and (tmp_path / "stopped" / "checkpoint.pt").is_file()
    done = cnnlab.resume("stopped", progress=False, on_epoch_end=lambda r, row: rows.append(row["epoch"]))
    assert rows[-1] == 2 and [r["epoch"] for r in done.history] == [1, 2]
    a, b = load_file(work / run.path / "model.safetensors"), load_file(tmp_path / "stopped" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)  # stopped and resumed: bitwise the straight run


LEAVES_ALONE = """
import sys, json, matplotlib
matplotlib.use("svg")  # a backend of the user's choice (a notebook's would be inline)
import matplotlib.pyplot as plt
import torch
import cnnlab
from cnnlab.training import allocator
run = cnnlab.train("seed", data=sys.argv[1], epochs=1, max_steps=3, out=sys.argv[2], progress=False)
fig = run.plot()
cnnlab.compare(run).plot()
from cnnlab.report import figures
figures.curves([("a", run.history)])
wrapped = [getattr(torch.optim.Optimizer, n).__wrapped__ for n in ("add_param_group", "zero_grad", "state_dict", "load_state_dict")]
print(json.dumps({"backend": matplotlib.get_backend(), "pyplot_figures": plt.get_fignums(),
                  "dynamo_cache_written": [getattr(f, "__dynamo_disable", None) is f for f in wrapped],
                  "malloc_tuned": allocator._applied}))
"""


@pytest.mark.slow
def test_training_and_plotting_leave_the_process_as_they_found_it(real_subset, tmp_path):
    proc = subprocess.run([sys.executable, "-c", LEAVES_ALONE, str(real_subset), str(tmp_path / "run")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    state = json.loads(proc.stdout.strip().splitlines()[-1])
    assert state == {"backend": "svg", "pyplot_figures": [], "dynamo_cache_written": [False] * 4,
                     "malloc_tuned": {}}


def test_the_cnnlab_command_still_tunes_its_own_process(monkeypatch):
    from cnnlab.cli import train as cli_train
    from cnnlab.training import allocator, optim
    calls = []
    monkeypatch.setattr(allocator, "reuse_step_buffers", lambda: calls.append("malloc"))
    monkeypatch.setattr(optim, "allow_skipping_dynamo_import", lambda: calls.append("dynamo"))
    cli_train.tune_this_process()
    assert calls == ["malloc", "dynamo"]


def test_tensorboard_logs_the_history_scalars(real_subset, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    run = cnnlab.train("seed", data=real_subset, epochs=2, max_steps=4, batch_size=64, out=tmp_path / "tb",
                       tensorboard=True, progress=False)
    acc = EventAccumulator(str(tmp_path / "tb" / "tensorboard"))
    acc.Reload()
    assert {"loss/train", "loss/validation", "accuracy/validation", "learning_rate"} <= set(acc.Tags()["scalars"])
    val = [(e.step, e.value) for e in acc.Scalars("accuracy/validation")]
    assert val == [(r["epoch"], pytest.approx(r["val_acc"])) for r in run.history]


def test_shape_summary_and_recipes_are_the_command_lines_numbers(capsys):
    t = cnnlab.shape((1, 3, 32, 32), "conv(16,k=3,p=same)", "maxpool(2)")
    assert t.rows[-1].out_shape == [1, 16, 16, 16]
    assert main(["shape", "1,3,32,32", "conv(16,k=3,p=same)", "maxpool(2)"]) == 0
    assert capsys.readouterr().out.strip() == str(t).strip()
    s = cnnlab.summary("seed")
    assert main(["summary", "--model", "seed", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["params"] == s.totals["params"]
    custom = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(), torch.nn.Linear(4 * 30 * 30, 10))
    assert cnnlab.summary(custom, input_size=(3, 32, 32)).totals["params"] == sum(p.numel() for p in custom.parameters())
    assert main(["recipes", "--json"]) == 0
    assert [r["name"] for r in json.loads(capsys.readouterr().out)] == [r["name"] for r in cnnlab.recipes()]


def test_the_summary_modules_docstring_example_runs():
    import cnnlab.network.summary as summary
    code = "\n".join(line.strip() for line in summary.__doc__.splitlines() if line.startswith("    "))
    exec(code, {})


@pytest.mark.slow
def test_a_run_folder_from_before_val_loss_and_lr_still_loads_and_plots(quick, tmp_path):
    import shutil
    run, work = quick
    old = tmp_path / "old"
    shutil.copytree(work / run.path, old)
    lines = (old / "history.csv").read_text().splitlines()
    (old / "history.csv").write_text("\n".join(",".join(line.split(",")[:5]) for line in lines) + "\n")
    again = cnnlab.load_run(old)
    assert [list(r) for r in again.history] == [["epoch", "iters", "avg_loss", "elapsed_s", "val_acc"]] * 2
    assert len(again.plot().axes) == 2 and "<table>" in again._repr_html_()
    assert cnnlab.compare(again, run.path if run.path.is_absolute() else work / run.path)["groups"][0]["n"] == 1
