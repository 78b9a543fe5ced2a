"""Runs that are killed, interrupted or blow up: nothing is lost and resuming is exact."""
import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch

from cnnlab.network import models
from cnnlab.cli import main
from cnnlab.network.models import SeedNet

RECIPE = ["--epochs", "12", "--batch-size", "32", "--val-size", "100"]


def start(*args, env_extra=None):
    env = {**os.environ, **(env_extra or {})}
    return subprocess.Popen([sys.executable, "-m", "cnnlab", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def wait_for(predicate, timeout=120):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


@pytest.fixture(scope="module")
def reference(real_subset, tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "run"
    proc = start("train", "--data", real_subset, *RECIPE, "--out", out)
    assert proc.wait() == 0, proc.stderr.read()
    return out


def weights(run):
    from safetensors.torch import load_file
    return load_file(run / "model.safetensors")


def assert_same_run(a, b):
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    assert all(torch.equal(wa[k], wb[k]) for k in wa), "weights differ"
    strip = lambda run: [line.split(",")[:3] + line.split(",")[4:]  # noqa: E731 - all but elapsed_s
                         for line in (run / "history.csv").read_text().splitlines()]
    assert strip(a) == strip(b)


@pytest.mark.slow
def test_sigkill_at_random_moments_then_resume_is_bitwise_exact(real_subset, reference, tmp_path):
    rng = random.Random(1234)
    run = tmp_path / "run"
    slow = {"CNNLAB_TEST_SLOW_WRITES": "0.15"}  # widen each checkpoint write so kills land in them
    ckpt = run / "checkpoint.pt"
    proc = start("train", "--data", real_subset, *RECIPE, "--out", run, env_extra=slow)
    wait_for(ckpt.exists)
    kills_in_write = 0
    for attempt in range(5):
        if attempt % 2 == 1:  # kill while a checkpoint is being written
            wait_for(lambda: any(run.glob(".checkpoint.pt.*.tmp")) or proc.poll() is not None)
        else:
            time.sleep(rng.uniform(0.0, 1.5))
        if proc.poll() is not None:  # finished before this kill
            break
        in_write = any(run.glob(".checkpoint.pt.*.tmp"))
        proc.kill()
        proc.wait()
        kills_in_write += in_write
        # The checkpoint that survives the kill always loads.
        assert torch.load(ckpt, weights_only=True)["state"]["epoch"] >= 2
        proc = start("train", "--resume", run, env_extra=slow)
        out = proc.stdout.readline()
        assert out.startswith("Resuming "), proc.stderr.read()
    assert proc.wait() == 0, proc.stderr.read()
    assert kills_in_write >= 1
    assert not list(run.glob(".*.tmp"))
    assert_same_run(reference, run)


@pytest.mark.slow
@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_sigint_and_sigterm_save_and_say_how_to_resume(real_subset, reference, tmp_path, sig, code):
    run = tmp_path / "run"
    proc = start("train", "--data", real_subset, *RECIPE, "--out", run)
    wait_for((run / "checkpoint.pt").exists)
    time.sleep(0.05)
    proc.send_signal(sig)
    _, err = proc.communicate()
    assert proc.returncode == code
    assert f"resume with: cnnlab train --resume {run}" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    resumed = start("train", "--resume", run)
    assert resumed.wait() == 0, resumed.stderr.read()
    assert_same_run(reference, run)


@pytest.mark.slow
def test_resume_refuses_a_changed_recipe_or_data(real_subset, reference, tmp_path, capsys):
    assert main(["train", "--resume", str(reference), "--batch-size", "7"]) == 2
    assert "--batch-size 7 differs from the run's 32" in capsys.readouterr().err
    # More epochs extend a run (see test_second_hour.py); fewer are refused.
    assert main(["train", "--resume", str(reference), "--epochs", "11"]) == 2
    assert "--epochs 11 is fewer than the run's 12: a run is extended, never shortened" in capsys.readouterr().err
    other = tmp_path / "other"
    (other / "train" / "cat").mkdir(parents=True)
    (other / "test" / "cat").mkdir(parents=True)
    for split in ("train", "test"):
        for f in sorted((real_subset / split / "cat").iterdir())[:3]:
            (other / split / "cat" / f.name).write_bytes(f.read_bytes())
    run = tmp_path / "copy"
    run.mkdir()
    for name in ("config.json", "checkpoint.pt"):
        (run / name).write_bytes((reference / name).read_bytes())
    assert main(["train", "--resume", str(run), "--data", str(other)]) == 2
    assert "differ from the data" in capsys.readouterr().err


class NanLater(SeedNet):
    """The seed network, whose output turns to nan from its 40th training call on."""

    def forward(self, x):
        out = super().forward(x)
        if self.training:
            self.calls = getattr(self, "calls", 0) + 1
            if self.calls >= 40:
                return out * float("nan")
        return out


@pytest.mark.slow
def test_non_finite_loss_stops_at_once_and_keeps_the_last_good_checkpoint(real_subset, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(models.MODELS, "nan-later", lambda n=10, c=3, s=32: NanLater(n, c, s))
    run = tmp_path / "run"
    code = main(["train", "--data", str(real_subset), "--model", "nan-later", *RECIPE, "--out", str(run)])
    err = capsys.readouterr().err
    assert code == 2
    assert "the training loss became nan at epoch 2, step 11" in err  # 29 steps per epoch: call 40
    assert "the last good checkpoint (epoch 1) is kept" in err
    ckpt = torch.load(run / "checkpoint.pt", weights_only=True)
    assert ckpt["state"]["epoch"] == 2 and len(ckpt["state"]["history"]) == 1
    assert all(torch.isfinite(t).all() for t in ckpt["model_state"].values())
    assert not (run / "model.safetensors").exists()


class Payload:
    def __init__(self, sentinel):
        self.sentinel = sentinel

    def __reduce__(self):
        return (open, (self.sentinel, "w"))


@pytest.mark.slow
def test_malicious_checkpoint_never_runs(reference, tmp_path, capsys):
    sentinel = tmp_path / "pwned"
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_bytes((reference / "config.json").read_bytes())
    torch.save({"model_state": {}, "evil": Payload(str(sentinel))}, run / "checkpoint.pt")
    assert main(["evaluate", str(run)]) == 2
    assert "refusing to load" in capsys.readouterr().err
    assert main(["train", "--resume", str(run)]) == 2
    assert "refusing to load" in capsys.readouterr().err
    assert not sentinel.exists()


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_damaged_checkpoint_is_one_clear_line(reference, tmp_path, damage):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_bytes((reference / "config.json").read_bytes())
    blob = bytearray((reference / "checkpoint.pt").read_bytes())
    if damage == "truncate":
        blob = blob[: len(blob) // 2]
    else:
        blob[len(blob) // 2] ^= 0x04  # inside tensor data: torch.load alone would not notice
    (run / "checkpoint.pt").write_bytes(bytes(blob))
    proc = subprocess.run([sys.executable, "-m", "cnnlab", "train", "--resume", str(run)],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert f"checkpoint {run / 'checkpoint.pt'} is damaged" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    json.loads((run / "config.json").read_text())  # nothing else touched


@pytest.mark.slow
def test_flipped_bit_in_the_weights_file_is_caught(reference, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    for name in ("config.json", "model.safetensors"):
        (run / name).write_bytes((reference / name).read_bytes())
    blob = bytearray((run / "model.safetensors").read_bytes())
    blob[-100] ^= 0x01
    (run / "model.safetensors").write_bytes(bytes(blob))
    assert main(["evaluate", str(run)]) == 2
    assert "model.safetensors is damaged" in capsys.readouterr().err
