"""Training in several processes (DDP, gloo on the CPU): the same run as one process, rank 0 alone
writes and prints, evaluation counts are one process's, a killed process ends the others, resume."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from hypothesis import given, strategies as st
from safetensors.torch import load_file

from cnnlab.training import augment, distributed
from cnnlab.cli import main
from cnnlab.recipes.schema import Augment

# 900 training images, batch 127: every step splits 64/63 and the last, short one (11) 6/5.
# SGD, whose step is proportional to the gradient, so a wrongly scaled loss shows (Adam's would
# not); augmentation, so each process's part must be augmented as in the whole batch.
RECIPE = ["--epochs", "1", "--batch-size", "127", "--val-size", "100", "--precision", "fp32",
          "--set", "optimizer.name=sgd", "--set", "optimizer.lr=0.05", "--set", "optimizer.nesterov=true",
          "--set", "augment.flip=random", "--set", "augment.translate=2", "--set", "augment.cutout=8"]
# Measured: 4.5e-8 max abs after these 8 steps (weights up to 0.2). The seed recipe (Adam) gave
# 6.9e-7 after 8 steps and 2.8e-4 after 30: Adam's step is about lr wherever a gradient is tiny,
# so float rounding there moves a weight by up to lr.
TOLERANCE = 1e-6
# torchrun's agent stops the others at once when a process dies and kills them after 30 s (the
# bound docs/distributed.md states; measured: 0.02-0.08 s nearly always), with room for a busy machine.
EXIT_BOUND_S = 45


def env(**extra):
    return {**os.environ, "OMP_NUM_THREADS": "1", **extra}


def torchrun(*args, cwd=None):
    """python -m torch.distributed.run: torchrun's module, with the interpreter under test."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "cnnlab", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, env=env(), timeout=300)


@given(st.integers(0, 300), st.integers(1, 9))
def test_rank_parts_make_the_batch_in_order(n, world):
    parts = [distributed.rank_slice(n, r, world) for r in range(world)]
    assert [i for p in parts for i in range(n)[p]] == list(range(n))
    sizes = [p.stop - p.start for p in parts]
    assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)


@pytest.mark.parametrize("flip", ["random", "alternating"])
def test_a_part_of_a_batch_is_augmented_as_in_the_whole_batch(flip):
    cfg = Augment(flip=flip, translate=2, cutout=8)
    x, idx = torch.randn(13, 3, 32, 32), torch.randperm(50)[:13]
    bits = augment.flip_bits(50, 3)
    whole = augment.augment_batch(x, idx, cfg, 3, 2, 5, bits)
    parts = [augment.augment_batch(x[s], idx[s], cfg, 3, 2, 5, bits, (s.start, 13))
             for s in (distributed.rank_slice(13, r, 3) for r in range(3))]
    assert torch.equal(torch.cat(parts), whole)


@pytest.fixture(scope="module")
def runs(real_subset, tmp_path_factory):
    """The same recipe in one process and in two (torchrun, no --out: rank 0 names the folder)."""
    root = tmp_path_factory.mktemp("ddp")
    one = root / "one"
    assert main(["train", "--data", str(real_subset), *RECIPE, "--out", str(one)]) == 0
    two = torchrun("train", "--data", real_subset, *RECIPE, cwd=root)
    assert two.returncode == 0, two.stderr
    return one, root, two


@pytest.mark.slow
def test_two_processes_train_the_one_process_run(runs):
    one, root, two = runs
    folders = list((root / "runs").iterdir())
    assert len(folders) == 1  # one run folder, named once
    run = folders[0]
    a, b = load_file(one / "model.safetensors"), load_file(run / "model.safetensors")
    diff = max((a[k] - b[k]).abs().max().item() for k in a)
    assert diff < TOLERANCE
    assert sum(t.numel() for t in b.values()) == 25_578
    config = json.loads((run / "config.json").read_text())
    assert config["distributed"] == {"world_size": 2, "backend": "gloo"}
    assert json.loads((run / "metrics.json").read_text())["steps"] == 8
    assert not list(run.glob(".*"))  # no lock or temp file left


@pytest.mark.slow
def test_report_lines_are_printed_once(runs):
    _, _, two = runs
    lines = two.stdout.splitlines()
    for start in ("Training seed", "Epoch: 1 | Iter: 8 | Average Loss: ", "Epoch: 1 | Validation Accuracy: ",
                  "Test Accuracy: ", "Run saved in "):
        assert sum(line.startswith(start) for line in lines) == 1, two.stdout
    assert len(lines) == 5 and "cnnlab: " not in two.stderr


@pytest.mark.slow
def test_summed_counts_equal_one_process_on_the_same_weights(runs, capsys):
    _, root, two = runs
    run = next((root / "runs").iterdir())
    metrics = json.loads((run / "metrics.json").read_text())
    assert main(["evaluate", str(run)]) == 0  # one process, the weights rank 0 saved
    assert f"Test Accuracy: {metrics['test_acc']:.3f} %" in capsys.readouterr().out
    assert f"Test Accuracy: {metrics['test_acc']:.3f} %" in two.stdout


def workers(launcher: subprocess.Popen) -> dict[int, int]:
    """rank -> pid of the launcher's worker processes."""
    pids = subprocess.run(["pgrep", "-P", str(launcher.pid)], capture_output=True, text=True).stdout.split()
    out = {}
    for pid in pids:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        ranks = [e[5:] for e in environ if e.startswith(b"RANK=")]
        if ranks:
            out[int(ranks[0])] = int(pid)
    return out


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.slow
def test_killed_process_ends_the_other_and_the_run_resumes(real_subset, tmp_path):
    run = tmp_path / "run"
    args = ["train", "--data", str(real_subset), "--epochs", "3", "--batch-size", "32", "--val-size", "100",
            "--out", str(run)]
    launcher = subprocess.Popen([sys.executable, "-m", "cnnlab", *args, "--nproc", "2"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=env())
    deadline = time.monotonic() + 120
    while not (run / "checkpoint.pt").exists():
        assert time.monotonic() < deadline and launcher.poll() is None, launcher.communicate()
        time.sleep(0.01)
    ranks = workers(launcher)
    assert sorted(ranks) == [0, 1]
    os.kill(ranks[1], signal.SIGKILL)
    deadline = time.monotonic() + EXIT_BOUND_S
    while alive(ranks[0]):
        assert time.monotonic() < deadline, f"process 0 still runs {EXIT_BOUND_S} s after process 1 was killed"
        time.sleep(0.01)
    _, err = launcher.communicate(timeout=120)
    assert launcher.returncode != 0
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith("cnnlab: error: process ") and "--resume" in err
    ckpt = torch.load(run / "checkpoint.pt", weights_only=True)  # the last checkpoint is whole
    assert 1 <= len(ckpt["state"]["history"]) < 3
    resumed = subprocess.run([sys.executable, "-m", "cnnlab", "train", "--resume", str(run), "--nproc", "2"],
                             capture_output=True, text=True, env=env(), timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.startswith(f"Resuming {run} at epoch ")
    assert json.loads((run / "metrics.json").read_text())["epochs"] == 3
    assert len((run / "history.csv").read_text().splitlines()) == 4
    assert not list(run.glob(".*"))


@pytest.mark.slow
def test_a_one_process_run_resumes_in_two_and_records_it(real_subset, tmp_path):
    run = tmp_path / "run"
    one = subprocess.Popen([sys.executable, "-m", "cnnlab", "train", "--data", str(real_subset), "--epochs", "2",
                            "--batch-size", "32", "--val-size", "100", "--out", str(run)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env())
    deadline = time.monotonic() + 120
    while not (run / "checkpoint.pt").exists():
        assert time.monotonic() < deadline and one.poll() is None, one.communicate()
        time.sleep(0.01)
    one.kill()
    one.wait()
    epoch = torch.load(run / "checkpoint.pt", weights_only=True)["state"]["epoch"]
    resumed = subprocess.run([sys.executable, "-m", "cnnlab", "train", "--resume", str(run), "--nproc", "2"],
                             capture_output=True, text=True, env=env(), timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert f"Resuming {run} at epoch {epoch}, step 0, cpu, 2 processes" in resumed.stdout
    config = json.loads((run / "config.json").read_text())
    assert config["distributed"]["world_size"] == 2
    assert config["distributed"]["changes"] == [{"epoch": epoch, "step": 0, "from": 1, "to": 2}]
    assert json.loads((run / "metrics.json").read_text())["epochs"] == 2


def test_nproc_zero_is_refused_by_the_parser(capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "--nproc", "0"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "--nproc: must be a positive integer, got 0" in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("extra,words", [
    (["--nproc", "2", "--seeds", "0-1"], "--seeds trains one run after another in one process: drop --nproc"),
    (["--dist-backend", "nccl", "--device", "cpu"], "--dist-backend nccl needs CUDA GPUs"),
    (["--nproc", "2", "--dist-backend", "nccl", "--device", "cpu"], "--dist-backend nccl needs CUDA GPUs"),
])
def test_bad_process_settings_are_one_line(tiny_folder, tmp_path, capsys, extra, words):
    assert main(["train", "--data", str(tiny_folder), "--out", str(tmp_path / "r"), *extra]) == 2
    err = capsys.readouterr().err
    assert words in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_nproc_under_torchrun_is_refused(tiny_folder, monkeypatch, capsys):
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(["train", "--data", str(tiny_folder), "--nproc", "2"]) == 2
    assert "--nproc starts its own processes: under torchrun drop it" in capsys.readouterr().err
