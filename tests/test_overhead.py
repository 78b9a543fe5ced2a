"""What a run does outside its training epochs, made cheaper without changing any result:
exact channel statistics, the data fingerprint without a copy, and commands that import
only what they use."""
import hashlib
import json
import math
import os
import subprocess
import sys
import textwrap
from fractions import Fraction

import pytest
import torch
from hypothesis import given, settings, strategies as st

from cnnlab.data import dataset as data


def summed_stats(x: torch.Tensor, chunk: int = 4096):
    """channel_stats as cnnlab computed it before: float64 sums of x / 255 in chunks."""
    total = torch.zeros(x.shape[1], dtype=torch.float64)
    squares = torch.zeros(x.shape[1], dtype=torch.float64)
    for i in range(0, len(x), chunk):
        part = x[i:i + chunk].double() / 255
        total += part.sum(dim=(0, 2, 3))
        squares += part.square().sum(dim=(0, 2, 3))
    n = x.numel() / x.shape[1]
    mean = total / n
    std = ((squares / n - mean.square()) * n / max(n - 1, 1)).sqrt()
    return mean.tolist(), std.tolist()


images = st.tuples(st.integers(1, 6), st.integers(1, 4), st.integers(1, 5), st.integers(1, 5),
                   st.integers(0, 2**31 - 1), st.sampled_from(["full", "narrow", "constant"]))


def random_images(n, c, h, w, seed, kind):
    g = torch.Generator().manual_seed(seed)
    low, high = {"full": (0, 256), "narrow": (120, 124), "constant": (77, 78)}[kind]
    return torch.randint(low, high, (n, c, h, w), dtype=torch.uint8, generator=g)


@settings(max_examples=60, deadline=None)
@given(images)
def test_channel_stats_are_the_exact_values_correctly_rounded(spec):
    x = random_images(*spec)
    mean, std = data.channel_stats(x)
    for c in range(x.shape[1]):
        values = [Fraction(int(v), 255) for v in x[:, c].reshape(-1).tolist()]
        n = len(values)
        exact_mean = sum(values) / n
        exact_var = sum((v - exact_mean) ** 2 for v in values) / max(n - 1, 1)
        assert mean[c] == float(exact_mean)  # float() of a Fraction rounds correctly
        assert std[c] == max(math.sqrt(float(exact_var)), data.STD_FLOOR)  # a constant channel: the floor


def test_channel_stats_normalize_training_exactly_as_the_float64_sums_did():
    # The float32 constants a run normalizes with are what decides its training bit for bit.
    g = torch.Generator().manual_seed(0)
    for shape in [(5000, 3, 32, 32), (999, 3, 8, 8), (7, 1, 5, 3)]:
        x = torch.randint(0, 256, shape, dtype=torch.uint8, generator=g)
        x[: len(x) // 3] //= 3  # channels that are not uniform
        new, old = data.channel_stats(x), summed_stats(x, chunk=4096)
        for a, b in zip(new, old):
            assert torch.equal(torch.tensor(a, dtype=torch.float32), torch.tensor(b, dtype=torch.float32))
            assert a == pytest.approx(b, rel=1e-13)


def test_channel_stats_of_no_images_are_nan():
    mean, std = data.channel_stats(torch.zeros((0, 3, 4, 4), dtype=torch.uint8))
    assert len(mean) == len(std) == 3 and all(math.isnan(v) for v in mean + std)


def test_channel_stats_of_real_images_round_as_before(real_subset):
    x = data.load(real_subset).train_x
    new, old = data.channel_stats(x), summed_stats(x)
    assert torch.equal(torch.tensor(new, dtype=torch.float32), torch.tensor(old, dtype=torch.float32))


def test_fingerprint_hashes_the_bytes_in_place():
    g = torch.Generator().manual_seed(1)
    tensors = {"train_x": torch.randint(0, 256, (4, 3, 5, 5), dtype=torch.uint8, generator=g),
               "train_y": torch.arange(4), "test_x": torch.randint(0, 256, (2, 5, 5, 3), dtype=torch.uint8,
                                                                  generator=g).permute(0, 3, 1, 2),  # not contiguous
               "test_y": torch.tensor([1, 0])}
    h = hashlib.sha256(json.dumps(["a", "b"]).encode())
    for name in sorted(tensors):
        h.update(name.encode())
        h.update(tensors[name].numpy().tobytes())  # a copy in C order, as before
    assert data.content_fingerprint(tensors, ["a", "b"]) == h.hexdigest()


HEAVY = ["torch", "torch._dynamo", "numpy", "PIL", "matplotlib", "safetensors", "scipy", "onnx", "onnxruntime"]


def imported_by(*argv) -> set[str]:
    """The heavy modules a fresh process has imported after running `cnnlab ARGV`."""
    code = ("import io, contextlib, json, sys\nfrom cnnlab.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    try:\n        main(sys.argv[1:])\n    except SystemExit:\n        pass\n"
            f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))")
    proc = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return set(json.loads(proc.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize("argv", [["--help"], ["train", "--help"], ["predict", "--help"], ["recipes"],
                                  ["shape", "1,1,32,32", "conv(1,k=7,p=same)"]])
def test_light_commands_import_no_heavy_module(argv):
    assert imported_by(*argv) == set()


def test_models_imports_torch_but_no_plotting_or_weights_files():
    loaded = imported_by("models")
    assert "torch" in loaded  # the check sees what a command imports
    assert not loaded & {"torch._dynamo", "matplotlib", "safetensors", "scipy", "onnx", "onnxruntime"}


STEPS = """
import resource, sys, torch
from cnnlab.training import allocator
from cnnlab.network import models
from cnnlab.training.loop import Prepared, TrainConfig, TrainState, setup, train_epoch
# The cnnlab command tunes its own process; a library call (and the "default" mode) leaves glibc as it starts.
tuned = allocator.reuse_step_buffers() if sys.argv[1] == "tuned" else False
g = torch.Generator().manual_seed(0)
x = torch.randint(0, 256, (128 * 40, 3, 32, 32), dtype=torch.uint8, generator=g)
y = torch.randint(0, 10, (len(x),), generator=g)
stat = torch.full((1, 3, 1, 1), 0.5)
d = Prepared(x, y, x[:0], y[:0], x[:0], y[:0], [0.5] * 3, [0.5] * 3, stat, stat)
cfg = TrainConfig(precision="fp32")
torch.manual_seed(0)
s = setup(cfg, models.create("seed"), torch.device("cpu"))
train_epoch(s, d, cfg, TrainState(epoch=1), max_steps=10)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
train_epoch(s, d, cfg, TrainState(epoch=2), max_steps=30)
print(tuned, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_training_steps_reuse_their_buffers_instead_of_faulting_in_fresh_pages():
    def page_faults_of_30_steps(mode):
        # ATen's layers: the compiled seed blocks (network/kernels) allocate a few buffers per step
        # where ATen's allocate dozens, which would leave the default mode too few faults to compare
        env = {**os.environ, "CNNLAB_KERNELS": "0"}
        proc = subprocess.run([sys.executable, "-c", STEPS, mode], capture_output=True, text=True, timeout=300,
                              env=env)
        assert proc.returncode == 0, proc.stderr
        tuned, faults = proc.stdout.split()
        return tuned == "True", int(faults)
    tuned, faults = page_faults_of_30_steps("tuned")
    if not tuned:
        pytest.skip("libc is not glibc")
    default = page_faults_of_30_steps("default")[1]
    assert faults * 10 < default, (faults, default)  # measured: about 1,000 against 100,000+


PLAIN_STEP = """
import sys, torch
from cnnlab.training import optim
from cnnlab.recipes.schema import Optimizer
optim.allow_skipping_dynamo_import()  # as the cnnlab command's process does
def run(name, plain):
    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    opt = optim.build(m, Optimizer(name=name, lr=0.1, weight_decay=0.01, nesterov=name == "sgd"))
    if not plain:
        opt.plain_step = None  # torch.optim's own step(), wrappers and all
    for i in range(5):
        opt.zero_grad(set_to_none=True)
        m(torch.arange(8.0).view(2, 4) * (i + 1)).square().sum().backward()
        optim.step(opt)
    opt.load_state_dict(opt.state_dict())  # a checkpoint's round trip
    return torch.cat([p.detach().flatten() for p in m.parameters()])
ours = {name: run(name, True) for name in ("adam", "sgd")}
print("torch._dynamo" in sys.modules)
print(all(torch.equal(ours[name], run(name, False)) for name in ours))
"""


def test_an_uncompiled_run_never_imports_dynamo_and_steps_bitwise_as_torch_optim(real_subset, tmp_path):
    """torch.optim imports torch._dynamo (0.8 s) only for torch.compile's sake; cnnlab.training.optim
    skips that where nothing is compiled, and its steps stay torch's own, bit for bit."""
    proc = subprocess.run([sys.executable, "-c", PLAIN_STEP], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["False", "True"]
    run = tmp_path / "run"  # a whole run: training, checkpoint, test, files
    loaded = imported_by("train", "--data", str(real_subset), "--max-steps", "3", "--val-size", "100", "--out", str(run))
    assert (run / "metrics.json").is_file() and "torch" in loaded and "torch._dynamo" not in loaded


def test_the_commands_quick_exit_waits_for_a_running_thread_and_keeps_the_exit_status():
    """The command ends without the interpreter's teardown only where no other (non-daemon)
    thread runs: a thread still working is waited for, as at a normal exit."""
    script = textwrap.dedent("""
        import sys, threading, time
        from cnnlab import cli
        def late():
            time.sleep(0.3)
            print("THREAD DONE", flush=True)
        threading.Thread(target=late).start()
        threading.Thread(target=time.sleep, args=(30,), daemon=True).start()  # tqdm's monitor is one
        cli.leave(3)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 3 and "THREAD DONE" in proc.stdout, proc.stderr
    quick = subprocess.run([sys.executable, "-c", textwrap.dedent("""
        import atexit, sys, threading, time
        from cnnlab import cli
        threading.Thread(target=time.sleep, args=(30,), daemon=True).start()
        atexit.register(lambda: print("ATEXIT RAN"))
        print("buffered, not flushed", end="")
        cli.leave(4)
    """)], capture_output=True, text=True, timeout=60)
    assert quick.returncode == 4 and quick.stdout == "buffered, not flushedATEXIT RAN\n", quick


def test_the_command_exits_with_its_objects_frozen_and_its_status_and_output_as_before(tmp_path):
    """`cnnlab` ends by freezing the garbage collector (the exit's last collection skips its
    objects: 0.3 s of a 0.4 s exit after torch); its exit status and output are as before."""
    script = textwrap.dedent("""
        import atexit, gc, sys
        atexit.register(lambda: print("FROZEN", gc.get_freeze_count() > 0))
        sys.argv = ["cnnlab", "shape", "1,1,32,32", "conv(out=1,k=7,s=1,p=same)"]
        from cnnlab.cli import run
        run()
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "padding='same': P = 3" in proc.stdout
    assert proc.stdout.rstrip().endswith("FROZEN True")
    bad = subprocess.run([sys.executable, "-m", "cnnlab", "train", "--data", str(tmp_path / "missing")],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "does not exist" in bad.stderr
