"""A recipe's settings by arithmetic ([by_precision.fp32], [by_precision.bf16]): checked like any
recipe key, taken where the run trains in that precision unless the run sets them itself,
recorded in config.json, and kept by a resumed run."""
import json

import pytest

from cnnlab.cli import main
from cnnlab.errors import CnnlabError
from cnnlab.recipes import load_recipe, names, to_dict
from cnnlab.runs.settings import resolve
from cnnlab.training.loop import TrainConfig, pick_device, resolve_precision

RECIPE = """
base = "seed"
description = "seed, 3 epochs"
epochs = 3
[by_precision.fp32]
epochs = 2
[by_precision.fp32.optimizer]
lr = 0.002
[by_precision.bf16]
epochs = 1
"augment.flip" = "random"
"""


@pytest.fixture
def recipe(tmp_path):
    path = tmp_path / "r.toml"
    path.write_text(RECIPE)
    return str(path)


def test_the_table_is_read_as_dotted_keys_with_checked_values(recipe):
    r = load_recipe(recipe)
    assert r.epochs == 3
    assert r.by_precision == {"fp32": {"epochs": 2, "optimizer.lr": 0.002},
                              "bf16": {"epochs": 1, "augment.flip": "random"}}


@pytest.mark.parametrize("table, message", [
    ("[by_precision.fp16]\nepochs = 2", "by_precision.fp16: the precision must be one of fp32, bf16"),
    ("[by_precision.fp32]\nepoch = 2", "unknown key 'by_precision.fp32.epoch'; did you mean 'by_precision.fp32.epochs'"),
    ("[by_precision.fp32]\nepochs = 0", r"\[by_precision.fp32\]: epochs must be at least 1, got 0"),
    ("[by_precision.fp32.optimizer.muon]\nlr = -1", r"\[by_precision.fp32\]: optimizer.muon.lr must be greater than 0"),
    ("[by_precision.fp32]\nseed = 3", "unknown key 'by_precision.fp32.seed'"),  # a run's setting, not the recipe's
    ("[by_precision.fp32]\ndescription = 'x'", "unknown key 'by_precision.fp32.description'"),
    ("by_precision = 5", "by_precision must be a table per precision"),
])
def test_a_mistake_in_the_table_is_one_line_naming_the_file_and_key(tmp_path, table, message):
    path = tmp_path / "bad.toml"
    path.write_text(f'base = "seed"\n{table}\n')
    with pytest.raises(CnnlabError, match=message) as e:
        load_recipe(str(path))
    assert "bad.toml" in str(e.value) and "\n" not in str(e.value)


def test_the_runs_precision_chooses_the_table_and_given_settings_win(recipe):
    here = resolve_precision(TrainConfig(), pick_device("cpu"))
    cfg = resolve(recipe, {"device": "cpu"})
    expected = {"fp32": (2, 0.002, "none"), "bf16": (1, 0.001, "random")}[here]
    assert (cfg.epochs, cfg.optimizer.lr, cfg.augment.flip) == expected
    assert cfg.precision_settings["precision"] == here
    bf16 = resolve(recipe, {"device": "cpu", "precision": "bf16"})
    assert (bf16.epochs, bf16.optimizer.lr, bf16.augment.flip) == (1, 0.001, "random")
    assert bf16.precision_settings == {"precision": "bf16", "settings": {"epochs": 1, "augment.flip": "random"}}
    fp32 = resolve(recipe, {"device": "cpu", "precision": "fp32", "epochs": 5})
    assert (fp32.epochs, fp32.optimizer.lr) == (5, 0.002)  # the command line's epochs, the table's lr
    assert fp32.precision_settings == {"precision": "fp32", "settings": {"optimizer.lr": 0.002}}
    assert fp32.description.endswith("this run sets epochs=5)")  # the table's own choice is not marked
    none = resolve(recipe, {"device": "cpu", "precision": "fp32", "epochs": 5, "lr": 0.01})
    assert none.precision_settings is None and (none.epochs, none.optimizer.lr) == (5, 0.01)
    with pytest.raises(CnnlabError, match="precision_settings is recorded by cnnlab"):
        resolve(recipe, {"precision_settings": {"precision": "fp32", "settings": {}}})


def test_a_run_records_the_table_it_took_and_its_resume_keeps_it(recipe, tiny_folder, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "--recipe", recipe, "--data", str(tiny_folder), "--precision", "fp32", "--val-size", "6",
            "--batch-size", "10", "--out", str(out)]
    assert main(args) == 0  # 2 epochs of 3 steps
    said = capsys.readouterr().out
    assert "recipe " in said and "(its fp32 settings: epochs=2, optimizer.lr=0.002)" in said
    config = json.loads((out / "config.json").read_text())
    assert config["config"]["epochs"] == 2 and config["config"]["optimizer"]["lr"] == 0.002
    assert config["config"]["precision_settings"] == {"precision": "fp32",
                                                      "settings": {"epochs": 2, "optimizer.lr": 0.002}}
    assert config["config"]["by_precision"]["bf16"] == {"epochs": 1, "augment.flip": "random"}
    # Extended in another arithmetic: the run keeps the settings it took, not the bf16 table's.
    assert main(["train", "--resume", str(out), "--epochs", "3", "--precision", "bf16"]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["precision"] == "bf16" and config["config"]["epochs"] == 3
    assert config["config"]["optimizer"]["lr"] == 0.002 and config["config"]["augment"]["flip"] == "none"
    assert len((out / "history.csv").read_text().splitlines()) == 4  # header and epochs 1-3


def test_a_file_on_a_base_overrides_the_bases_choices_by_arithmetic_too(recipe, tmp_path):
    path = tmp_path / "longer.toml"
    path.write_text(f'base = "{recipe}"\nepochs = 5\n')
    r = load_recipe(str(path))
    assert r.epochs == 5 and r.by_precision == {"fp32": {"optimizer.lr": 0.002},
                                                "bf16": {"augment.flip": "random"}}
    for precision in ("fp32", "bf16"):
        assert resolve(str(path), {"device": "cpu", "precision": precision}).epochs == 5
    path.write_text(f'base = "{recipe}"\nepochs = 4\n[optimizer]\nlr = 0.01\n[augment]\nflip = "none"\n')
    assert load_recipe(str(path)).by_precision == {}  # every key of the base's tables set: no table left


def test_the_shipped_recipes_train_the_same_settings_in_either_arithmetic():
    """The speed-record recipes' cheaper settings (the hardest images in later epochs, fast-c for
    fast-85) gave as much accuracy in bf16 as in fp32, so none needs a table."""
    assert {name: load_recipe(name).by_precision for name in names() if load_recipe(name).by_precision} == {}
    for name in ("sprint", "fast-85", "fast-90", "fast-94"):
        fp32, bf16 = (to_dict(resolve(name, {"device": "cpu", "precision": p})) for p in ("fp32", "bf16"))
        assert {k for k in fp32 if fp32[k] != bf16[k]} == {"precision"}, name
    sprint, fast85 = resolve("sprint", {"device": "cpu"}), resolve("fast-85", {"device": "cpu"})
    assert (sprint.epochs, sprint.select.keep, sprint.optimizer.muon.lr) == (3, 0.45, 0.15)
    assert (fast85.model, fast85.epochs, fast85.select.keep, fast85.optimizer.muon.lr,
            fast85.optimizer.train_epochs.bias) == ("fast-c", 4, 0.5, 0.12, 1)
