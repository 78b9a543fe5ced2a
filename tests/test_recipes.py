"""Recipes: shipped files, user files, overrides, mistakes in one line, and runs that use them."""
import json
import os
import random
import subprocess
import sys
import time

import pytest
import torch

from cnnlab.cli import main
from cnnlab.errors import CnnlabError
from cnnlab.network.models import MODELS
from cnnlab.recipes import apply_overrides, load_recipe, names, read_recipe, shipped, to_dict
from cnnlab.training.loop import TrainConfig

TRAINING = lambda d: {k: v for k, v in d.items() if k not in ("recipe", "description", "target_acc")}  # noqa: E731


def test_every_shipped_recipe_loads_names_a_model_and_a_target():
    assert names()[:2] == ["seed", "seed-bn"] and "resnet18" in names()
    for name in names():
        r, measured = read_recipe(name)
        assert r.recipe == name and r.model in MODELS and 0 < r.target_acc <= 100, name
        assert measured is None or measured.mean is None or 0 < measured.mean <= 100


def test_the_seed_recipe_is_the_default_config_the_reports_recipe():
    seed = TrainConfig.from_dict(to_dict(load_recipe("seed")))
    assert TRAINING(to_dict(seed)) == TRAINING(to_dict(TrainConfig()))
    assert (seed.model, seed.epochs, seed.batch_size, seed.val_size, seed.optimizer.name, seed.lr) == \
        ("seed", 20, 128, "10%", "adam", 1e-3)


def test_base_recipes_chain_one_change_at_a_time():
    bn, aug = load_recipe("seed-bn"), load_recipe("seed-aug")
    assert TRAINING({**to_dict(bn), "model": "seed"}) == TRAINING(to_dict(load_recipe("seed")))
    assert (aug.model, aug.augment.flip, aug.augment.translate) == ("seed-bn", "random", 2)
    sgd = load_recipe("seed-sgd")
    assert (sgd.optimizer.name, sgd.optimizer.nesterov, sgd.schedule.kind, sgd.label_smoothing) == ("sgd", True, "triangle", 0.1)


def test_a_users_file_with_a_base_and_overrides(tmp_path):
    f = tmp_path / "mine.toml"
    f.write_text('base = "seed-bn"\nepochs = 3\n[optimizer]\nbetas = [0.8, 0.99]\n[augment]\ncutout = 4\n')
    r = load_recipe(str(f))
    assert (r.model, r.epochs, r.optimizer.betas, r.augment.cutout, r.recipe) == ("seed-bn", 3, (0.8, 0.99), 4, str(f))
    cfg = apply_overrides(TrainConfig.from_dict(to_dict(r)), {"optimizer.lr": 0.01, "averaging.kind": "ema"}, "test")
    assert cfg.lr == 0.01 and cfg.averaging.kind == "ema" and cfg.epochs == 3


def test_old_flat_config_json_loads_as_the_seed_recipe():
    old = {"model": "seed", "epochs": 12, "batch_size": 32, "lr": 0.002, "seed": 3, "val_size": 100,
           "device": "auto", "data": "/x", "out": "/y", "max_steps": None, "eval_batch_size": 1000,
           "channels_last": None, "compile": False, "precision": "auto", "strict": False, "gone": 1}
    cfg = TrainConfig.from_dict(old)
    assert (cfg.recipe, cfg.epochs, cfg.lr, cfg.seed, cfg.optimizer.name, cfg.augment.flip) == ("seed", 12, 0.002, 3, "adam", "none")


@pytest.mark.parametrize("text,message", [
    ("epohcs = 3\n", "unknown key 'epohcs'; did you mean 'epochs'?"),
    ("[optimizer]\nmomentun = 0.8\n", "unknown key 'optimizer.momentun'; did you mean 'optimizer.momentum'?"),
    ("lr = 0.1\n", "unknown key 'lr'; did you mean 'optimizer.lr'?"),
    ("[augment]\nflip = \"sometimes\"\n", "augment.flip must be one of none, random, alternating, got 'sometimes'"),
    ("epochs = \"many\"\n", "epochs must be an integer, got 'many'"),
    ("epochs = 0\n", "epochs must be at least 1, got 0"),
    ("[optimizer]\nlr = -1.0\n", "optimizer.lr must be greater than 0, got -1.0"),
    ("[optimizer]\nbetas = [0.9]\n", "optimizer.betas must be a list of 2 numbers"),
    ("[schedule]\nwarmup = 1.5\n", "schedule.warmup must be at most 1, got 1.5"),
    ("optimizer = 3\n", "optimizer must be a table"),
    ("base = \"sead\"\n", "unknown recipe 'sead': did you mean 'seed'?"),
    ("epochs = [\n", "not valid TOML"),
    ("[measured]\nmean = \"high\"\n", "measured.mean must be a number, got 'high'"),
])
def test_a_mistake_in_a_recipe_file_is_one_line_naming_file_and_key(tmp_path, capsys, text, message):
    f = tmp_path / "bad.toml"
    f.write_text(text)
    with pytest.raises(CnnlabError, match=None) as e:
        load_recipe(str(f))
    assert message in str(e.value) and ("bad.toml" in str(e.value) or "sead" in text)
    assert main(["train", "--recipe", str(f), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cnnlab: error: ") and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_recipe_mistakes_from_a_real_process_have_no_traceback(tmp_path):
    f = tmp_path / "typo.toml"
    f.write_text("[augment]\ntranslat = 2\n")
    proc = subprocess.run([sys.executable, "-m", "cnnlab", "train", "--recipe", str(f)], capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == (f"cnnlab: error: {f}: unknown key 'augment.translat'; did you mean "
                                   f"'augment.translate'?")


@pytest.mark.parametrize("args,message", [
    (["--recipe", "sed-bn"], "unknown recipe 'sed-bn': did you mean 'seed-bn'?"),
    (["--set", "optimizer.nesterov=maybe"], "optimizer.nesterov must be true or false, got 'maybe'"),
    (["--set", "optimiser.lr=0.1"], "unknown key 'optimiser.lr'; did you mean 'optimizer.lr'?"),
    (["--set", "epochs"], "write it as KEY=VALUE"),
    (["--recipe", "nothere.toml"], "recipe file nothere.toml does not exist"),
])
def test_command_line_recipe_mistakes(tmp_path, capsys, args, message):
    assert main(["train", *args, "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_recipes_command_lists_names_targets_and_json(capsys):
    assert main(["recipes"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in names()) and "target" in out
    assert main(["recipes", "--json"]) == 0
    entries = json.loads(capsys.readouterr().out)
    assert isinstance(entries, list) and [e["name"] for e in entries] == names()
    assert all({"name", "target_acc", "model", "epochs", "measured"} <= set(e) for e in entries)
    assert entries == json.loads(json.dumps(shipped()))


# ------------------------------------------------------------------ runs with recipes

@pytest.mark.slow
def test_a_recipe_run_with_a_step_cap_beats_chance_and_saves_its_recipe(real_subset, tmp_path, capsys):
    run = tmp_path / "run"
    # measured (AMD EPYC, AVX2, fp32): 32.7 % at these 60 steps (37.7 % at 112)
    code = main(["train", "--data", str(real_subset), "--recipe", "seed-sgd", "--batch-size", "32", "--val-size",
                 "100", "--max-steps", "60", "--set", "tta=flip", "--set", "optimizer.lr=0.02", "--out", str(run)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert out.startswith("recipe seed-sgd: Training seed-bn")
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["steps"] == 60 and metrics["recipe"] == "seed-sgd" and metrics["tta"] == "flip"
    assert metrics["test_acc"] > 25  # chance is 10 %
    config = json.loads((run / "config.json").read_text())["config"]
    assert (config["recipe"], config["model"], config["epochs"], config["batch_size"]) == ("seed-sgd", "seed-bn", 30, 32)
    assert config["optimizer"]["name"] == "sgd" and config["optimizer"]["lr"] == 0.02 and config["tta"] == "flip"
    assert config["augment"] == {"flip": "random", "translate": 2, "cutout": 0, "crop": 0, "crop_epochs": 0}


RESUME_RECIPE = """
base = "seed-bn-dropout"    # dropout: the model's own random draws
epochs = 4
batch_size = 32
val_size = 100
label_smoothing = 0.1
tta = "flip-shift"
[optimizer]
name = "sgd"
lr = 0.05
nesterov = true
weight_decay = 5e-3
[optimizer.train_epochs]
bias = 2                    # the linear head's bias freezes from epoch 3
[schedule]
kind = "triangle"
start = 0.2
peak = 0.3
[augment]
flip = "alternating"
translate = 2
cutout = 6
[averaging]
kind = "ema"
decay = 0.9
every = 2
ramp = 2.0
[select]
keep = 0.6                   # epochs 2-4 train on the 540 hardest of the 900 images: a resume
from_epoch = 2               # at any epoch's end needs the losses in the checkpoint
"""


def start(*args):
    return subprocess.Popen([sys.executable, "-m", "cnnlab", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=dict(os.environ))


def wait_for(predicate, timeout=300):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


@pytest.mark.slow
def test_sigkill_then_resume_is_bitwise_exact_with_every_piece_turned_on(real_subset, tmp_path):
    from safetensors.torch import load_file
    recipe = tmp_path / "everything.toml"
    recipe.write_text(RESUME_RECIPE)
    ref, run = tmp_path / "ref", tmp_path / "run"
    proc = start("train", "--data", real_subset, "--recipe", recipe, "--out", ref)
    assert proc.wait() == 0, proc.stderr.read()
    proc = start("train", "--data", real_subset, "--recipe", recipe, "--out", run)
    rng = random.Random(8)
    for _ in range(2):
        wait_for(lambda: (run / "checkpoint.pt").exists() or proc.poll() is not None)
        time.sleep(rng.uniform(0.0, 1.0))
        if proc.poll() is not None:
            break
        proc.kill()
        proc.wait()
        ckpt = torch.load(run / "checkpoint.pt", weights_only=True)
        assert ckpt["averaging_state"]["updates"] > 0 and ckpt["config"]["recipe"] == str(recipe)
        assert ckpt["selection_state"]["losses"].shape == (900,)
        proc = start("train", "--resume", run)
    assert proc.wait() == 0, proc.stderr.read()
    wa, wb = load_file(ref / "model.safetensors"), load_file(run / "model.safetensors")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa), "weights differ"
    strip = lambda r: [line.split(",")[:3] + line.split(",")[4:] for line in (r / "history.csv").read_text().splitlines()]  # noqa: E731
    assert strip(ref) == strip(run)
    assert [line.split(",")[1] for line in (ref / "history.csv").read_text().splitlines()[1:]] == ["29", "17", "17", "17"]
    ma, mb = (json.loads((r / "metrics.json").read_text()) for r in (ref, run))
    assert ma["test_acc"] == mb["test_acc"] and ma["tta"] == "flip-shift"
    # The saved weights are the EMA's, not the last step's.
    last = torch.load(run / "checkpoint.pt", weights_only=True)
    assert not torch.equal(last["model_state"]["conv1.weight"], wb["conv1.weight"])
    assert torch.equal(last["averaging_state"]["weights"]["conv1.weight"], wb["conv1.weight"])


class DataInitNet(torch.nn.Module):
    """A model that initializes itself from training images, as the fast family's whitening conv does."""
    seen = []

    def __init__(self, num_classes=10, in_channels=3, image_size=32):
        super().__init__()
        self.fc = torch.nn.Linear(in_channels * image_size * image_size, num_classes)

    def data_init(self, images):
        DataInitNet.seen.append((tuple(images.shape), images.dtype, float(images.mean())))

    def forward(self, x):
        return self.fc(x.flatten(1))


def test_data_init_sees_normalized_training_images_once_on_a_fresh_run(tiny_folder, tmp_path, monkeypatch, capsys):
    from cnnlab.network import models
    monkeypatch.setitem(models.MODELS, "data-init", DataInitNet)
    DataInitNet.seen.clear()
    assert main(["train", "--data", str(tiny_folder), "--model", "data-init", "--val-size", "6", "--epochs", "1",
                 "--out", str(tmp_path / "run")]) == 0
    capsys.readouterr()
    [(shape, dtype, mean)] = DataInitNet.seen
    assert shape == (30, 3, 32, 32) and dtype == torch.float32 and abs(mean) < 0.1
