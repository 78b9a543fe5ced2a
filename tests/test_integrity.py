"""Data integrity and exactness: the cache never serves changed data, resumes keep
their arithmetic, archives and run folders survive concurrent use, CUDA-path details."""
import hashlib
import json
import os
import pickle
import signal
import subprocess
import sys
import tarfile
import threading
import time

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab.training import arithmetic
from cnnlab.data import cifar, dataset as data, sourcekey
from cnnlab.data.cifar import ARCHIVE, FOLDER
from cnnlab.cli import main
from cnnlab.errors import CnnlabError, CnnlabWarning
from cnnlab.runs import evaluate_run, read_config, resume_train, run_train
from cnnlab.training.loop import TrainConfig

from conftest import class_image, fake_cifar_members, make_image_folder, spec_for, write_tar


def bmp_folder(root, classes=("a", "b"), n_train=6, n_test=2, seed=0):
    """An image folder of BMP files: every file has the same size, whatever its pixels."""
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("test", n_test)):
        for label, name in enumerate(classes):
            (root / split / name).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                Image.fromarray(class_image(label, rng)).save(root / split / name / f"{i:04d}.bmp")
    return root


def rewrite_keeping_size_and_mtime(path, pixels):
    """What cp -p, rsync -a, tar and unzip do: new bytes, same size, the old mtime put back."""
    before = os.stat(path)
    Image.fromarray(pixels).save(path, format="BMP")
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = os.stat(path)
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)


# ---------------------------------------------------------------- 1. the decode cache's key

@pytest.mark.parametrize("indexed", [False, True])
def test_same_size_same_mtime_rewrite_is_not_served_from_the_cache(tmp_path, monkeypatch, indexed):
    if indexed:  # the files' hashes are in the index: the changed ctime must make it rehash
        monkeypatch.setattr(sourcekey, "RACY_NS", 0)
    root = bmp_folder(tmp_path / "d", seed=int(indexed))
    first = data.load(root)
    time.sleep(0.05)  # past the file system's timestamp granularity
    new = np.full((32, 32, 3), 7, np.uint8)
    rewrite_keeping_size_and_mtime(root / "train" / "a" / "0000.bmp", new)
    second = data.load(root)
    assert second.fingerprint != first.fingerprint
    assert second.cache_path != first.cache_path
    assert torch.equal(second.train_x[0], torch.from_numpy(new).permute(2, 0, 1))


def test_swapping_two_linked_class_folders_changes_the_labels(tmp_path):
    root = tmp_path / "d"
    store = bmp_folder(root / "store", n_train=3, n_test=1)  # store/{train,test}/{a,b}
    for split in ("train", "test"):
        (root / split).mkdir()
        os.symlink(store / split / "a", root / split / "x")
        os.symlink(store / split / "b", root / split / "y")
    first = data.load(root)
    assert first.classes == ["x", "y"]
    for name, target in (("x", "b"), ("y", "a")):
        os.remove(root / "train" / name)
        os.symlink(store / "train" / target, root / "train" / name)
    second = data.load(root)
    assert second.fingerprint != first.fingerprint
    assert torch.equal(second.train_x[:3], first.train_x[3:])  # b's images now carry label 0
    assert second.train_y.tolist() == first.train_y.tolist()


def test_unchanged_files_are_not_hashed_again(tmp_path, monkeypatch):
    monkeypatch.setattr(sourcekey, "RACY_NS", 0)
    hashed = []
    real_hash = sourcekey.hash_file
    monkeypatch.setattr(sourcekey, "hash_file", lambda p: hashed.append(p) or real_hash(p))
    root = bmp_folder(tmp_path / "d", seed=2)
    first = data.load(root)
    assert len(hashed) == 16
    hashed.clear()
    data.load(root)
    assert hashed == []  # served by the index: one stat per file
    time.sleep(0.05)
    rewrite_keeping_size_and_mtime(root / "test" / "b" / "0001.bmp", np.zeros((32, 32, 3), np.uint8))
    changed = data.load(root)
    assert hashed == [str(root.resolve() / "test" / "b" / "0001.bmp")]
    hashed.clear()
    for index in data.cache_dir().glob("index-*.json"):  # a damaged index costs hashing, no more
        index.write_text('{"format": 1, "dirs": {"x": 5, "%s": {"0000.bmp": 7}}}' % (root.resolve() / "train" / "a"))
    for last in data.cache_dir().glob("index-*.last"):
        last.write_text("garbage")
    assert data.load(root).fingerprint == changed.fingerprint != first.fingerprint
    assert len(hashed) == 16


def test_moved_copy_keeps_its_key(tmp_path):
    a = bmp_folder(tmp_path / "a", seed=3)
    key = data.source_fingerprint(data.resolve(a), 32)
    b = a.rename(tmp_path / "b")
    assert data.source_fingerprint(data.resolve(b), 32) == key
    assert data.source_fingerprint(data.resolve(b), 64) != key


def interrupt_after_first_epoch(line):
    """A log that presses Ctrl-C once the first epoch is done (training stops after a checkpoint)."""
    if line.startswith("Epoch: 1 | Validation"):
        os.kill(os.getpid(), signal.SIGINT)


def test_resume_and_evaluate_notice_a_same_size_same_mtime_rewrite(tmp_path):
    root = bmp_folder(tmp_path / "d", seed=4)
    run = tmp_path / "run"
    cfg = TrainConfig(data=str(root), epochs=2, batch_size=4, val_size=2, out=str(run), precision="fp32")
    with pytest.raises(CnnlabError, match="stopped by SIGINT"):
        run_train(cfg, log=interrupt_after_first_epoch)
    assert evaluate_run(run)["same_data"]
    time.sleep(0.05)
    rewrite_keeping_size_and_mtime(root / "train" / "b" / "0002.bmp", np.zeros((32, 32, 3), np.uint8))
    assert not evaluate_run(run)["same_data"]
    with pytest.raises(CnnlabError, match="differ from the data"):
        resume_train(run, log=lambda line: None)


# ---------------------------------------------------------------- 2. resume keeps the arithmetic

def quiet(line):
    pass


def interrupted_run(root, out, **overrides):
    """A run of two epochs stopped by Ctrl-C after the first (its checkpoint is saved)."""
    cfg = TrainConfig(data=str(root), epochs=2, batch_size=8, val_size=8, out=str(out), **overrides)
    with pytest.raises(CnnlabError, match="stopped by SIGINT"):
        run_train(cfg, log=interrupt_after_first_epoch)
    return out


def same_weights(a, b):
    from safetensors.torch import load_file
    wa, wb = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def test_bf16_run_started_with_native_bf16_resumes_in_bf16_without_it(tmp_path, monkeypatch):
    root = bmp_folder(tmp_path / "d", classes=("a", "b", "c"), n_train=12, n_test=2, seed=6)
    ref = tmp_path / "ref"
    run_train(TrainConfig(data=str(root), epochs=2, batch_size=8, val_size=8, out=str(ref),
                          precision="bf16"), log=quiet)
    monkeypatch.setattr(arithmetic, "native_bf16_cpu", lambda: True)
    run = interrupted_run(root, tmp_path / "run")  # precision auto: bf16 with AMX or AVX512-BF16
    assert read_config(run)["arithmetic"] == {"precision": "bf16", "memory_format": "channels_last"}
    monkeypatch.setattr(arithmetic, "native_bf16_cpu", lambda: False)  # resumed on a CPU without
    with pytest.warns(CnnlabWarning, match="stays bf16"):
        resume_train(run, log=quiet)
    assert read_config(run)["precision"] == "bf16"
    assert same_weights(ref, run)  # bitwise the uninterrupted bf16 run: bf16 all along


def test_a_run_with_crops_resumes_bitwise_and_the_crops_change_its_training(tmp_path):
    from cnnlab.recipes.schema import Augment
    root = bmp_folder(tmp_path / "d", classes=("a", "b", "c"), n_train=12, n_test=2, seed=8)
    crops = dict(model="fast-q-s2", augment=Augment(flip="random", crop=24, crop_epochs=1))
    ref = tmp_path / "ref"
    run_train(TrainConfig(data=str(root), epochs=2, batch_size=8, val_size=8, out=str(ref), **crops), log=quiet)
    run = interrupted_run(root, tmp_path / "run", **crops)  # stopped after its cropped epoch
    resume_train(run, log=quiet)
    assert same_weights(ref, run)
    whole = tmp_path / "whole"
    run_train(TrainConfig(data=str(root), epochs=2, batch_size=8, val_size=8, out=str(whole),
                          model="fast-q-s2", augment=Augment(flip="random")), log=quiet)
    assert not same_weights(ref, whole)


@pytest.mark.parametrize("cap, amx, avx512_bf16", [
    (None, True, True), ("AVX2", False, False), ("avx512_core", False, False),
    ("AVX512_CORE_BF16", False, True), ("AVX10_1_512", False, True), ("AVX10_1_512_AMX", True, True),
    ("avx512_core_amx", True, True), ("ALL", True, True), ("DEFAULT", True, True)])
def test_a_onednn_cap_below_native_bf16_makes_auto_precision_fp32(monkeypatch, cap, amx, avx512_bf16):
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True)  # an AMX CPU (which
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)  # has both)
    for name in arithmetic.ONEDNN_CAPS:
        monkeypatch.delenv(name, raising=False)
    if cap:
        monkeypatch.setenv("DNNL_MAX_CPU_ISA" if cap == "avx512_core" else "ONEDNN_MAX_CPU_ISA", cap)
    assert arithmetic.has_amx() is amx and arithmetic.has_avx512_bf16() is avx512_bf16
    native = amx or avx512_bf16
    assert arithmetic.resolve("auto", True, torch.device("cpu"))["precision"] == ("bf16" if native else "fp32")


@pytest.mark.parametrize("amx, avx512_bf16", [(False, True), (False, False), (True, False)])
def test_auto_precision_is_bf16_on_a_cpu_with_either_amx_or_avx512_bf16(monkeypatch, amx, avx512_bf16):
    # AMD EPYC Zen 4 has AVX512-BF16 and no AMX; Zen 2/3 and older Xeons have neither
    for name in arithmetic.ONEDNN_CAPS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    expected = "bf16" if amx or avx512_bf16 else "fp32"
    assert arithmetic.resolve("auto", True, torch.device("cpu"))["precision"] == expected


def onednn_isa_under(*caps) -> dict[str, str]:
    """The oracle: oneDNN itself, asked which instruction set it runs a conv with under each cap."""
    code = "import torch; torch.nn.functional.conv2d(torch.ones(2, 16, 8, 8), torch.ones(16, 16, 3, 3))"
    isa = {}
    for cap in caps:
        env = dict(os.environ, ONEDNN_MAX_CPU_ISA=cap, ONEDNN_VERBOSE="1")
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True).stdout
        isa[cap] = next(line for line in out.splitlines() if ",isa:" in line)
    return isa


@pytest.mark.skipif(not arithmetic.has_avx512_bf16(), reason="needs a CPU with AVX512-BF16")
def test_onednn_obeys_the_cap_that_has_avx512_bf16_reads():
    isa = onednn_isa_under("AVX512_CORE", "AVX512_CORE_BF16")
    assert "bfloat16" not in isa["AVX512_CORE"] and "bfloat16" in isa["AVX512_CORE_BF16"]


@pytest.mark.skipif(not arithmetic.has_amx(), reason="needs a CPU with AMX")
def test_onednn_obeys_the_cap_that_has_amx_reads():
    isa = onednn_isa_under("AVX2", "ALL")
    assert "AMX" not in isa["AVX2"] and "AVX2" in isa["AVX2"]
    assert "AMX" in isa["ALL"]


def test_resume_where_bf16_cannot_run_is_refused_in_one_line_and_fp32_is_recorded(tmp_path, monkeypatch, capsys):
    root = bmp_folder(tmp_path / "d", classes=("a", "b", "c"), n_train=12, n_test=2, seed=7)
    run = interrupted_run(root, tmp_path / "run", precision="bf16")
    monkeypatch.setattr(arithmetic, "can_bf16", lambda device: False)
    assert main(["train", "--resume", str(run)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "cannot compute bf16" in err and "--precision fp32" in err
    assert main(["train", "--resume", str(run), "--precision", "fp32"]) == 0
    config = read_config(run)
    assert config["arithmetic"]["precision"] == "fp32" and config["config"]["precision"] == "bf16"
    assert config["arithmetic_changes"] == [{"epoch": 2, "step": 0, "precision": ["bf16", "fp32"]}]
    assert torch.load(run / "checkpoint.pt", weights_only=True)["arithmetic"]["precision"] == "fp32"


# ---------------------------------------------------------------- 6. both precisions on every CPU

def test_training_end_to_end_in_each_precision(tmp_path):
    root = make_image_folder(tmp_path / "easy", classes=("r", "g", "b", "k"), n_train=40, n_test=10)
    runs = {}
    for precision in ("fp32", "bf16"):  # bf16 autocast runs on any CPU (emulated without AMX)
        runs[precision] = tmp_path / precision
        assert main(["train", "--data", str(root), "--epochs", "3", "--batch-size", "16", "--val-size",
                     "20", "--precision", precision, "--out", str(runs[precision])]) == 0
        config = read_config(runs[precision])
        assert config["precision"] == config["arithmetic"]["precision"] == precision
        metrics = json.loads((runs[precision] / "metrics.json").read_text())
        assert metrics["test_acc"] >= 90.0
    assert not same_weights(runs["fp32"], runs["bf16"])  # the bf16 step really ran in bf16


# ---------------------------------------------------------------- 3. archives

def test_archive_in_a_read_only_folder_on_a_fresh_machine(tmp_path, monkeypatch):
    members = fake_cifar_members(seed=8)
    mnt = tmp_path / "ro"
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)],
                                           capture_output=True).returncode != 0:
        pytest.skip("mounting a tmpfs needs root (and a system that permits it)")
    try:
        archive = write_tar(mnt / ARCHIVE, {f"{FOLDER}/{k}": v for k, v in members.items()})
        spec = spec_for(members, archive)
        assert subprocess.run(["mount", "-o", "remount,ro", str(mnt)]).returncode == 0
        fresh = tmp_path / "home" / ".cache" / "cnnlab"  # not there yet, nor its parents
        monkeypatch.setenv("CNNLAB_CACHE", str(fresh))
        d = data.load(archive, spec=spec)
        assert len(d.train_y) == 100 and (fresh / FOLDER / "data_batch_1").is_file()
        assert sorted(os.listdir(mnt)) == [ARCHIVE]
    finally:
        subprocess.run(["umount", str(mnt)])


def test_extract_creates_its_folder_and_says_so_when_it_cannot(fake_archive, tmp_path):
    archive, spec, _ = fake_archive
    assert cifar.extract(archive, tmp_path / "not" / "yet", spec) == tmp_path / "not" / "yet" / FOLDER
    blocker = tmp_path / "file"
    blocker.write_text("a file where a folder should go")
    with pytest.raises(CnnlabError, match=f"cannot extract .* into {blocker}/sub .*CNNLAB_CACHE"):
        cifar.extract(archive, blocker / "sub", spec)


class Payload:
    def __init__(self, sentinel):
        self.sentinel = sentinel

    def __reduce__(self):
        return (open, (self.sentinel, "w"))


def test_a_file_swapped_after_its_md5_check_is_never_unpickled(tmp_path, monkeypatch):
    members = fake_cifar_members(seed=9)
    spec = spec_for(members)
    folder = tmp_path / FOLDER
    folder.mkdir()
    for name, blob in members.items():
        (folder / name).write_bytes(blob)
    sentinel = tmp_path / "pwned"
    evil = pickle.dumps(Payload(str(sentinel)))
    target_md5 = dict(spec.checked)["data_batch_3"]
    real_md5 = hashlib.md5

    class SwapAfterCheck:
        """md5 whose result, once data_batch_3's hash is read, swaps that file for a payload."""

        def __init__(self, *args):
            self.h = real_md5(*args)

        def update(self, block):
            self.h.update(block)

        def hexdigest(self):
            digest = self.h.hexdigest()
            if digest == target_md5:
                (folder / "data_batch_3").write_bytes(evil)
            return digest

    monkeypatch.setattr(cifar.hashlib, "md5", SwapAfterCheck)
    train_x, train_y, *_ = cifar.read_batches(folder, spec)
    assert not sentinel.exists()
    third = pickle.loads(members["data_batch_3"])
    assert train_y[40:60].tolist() == third[b"labels"]  # the checked bytes were the ones read


def test_concurrent_extractions_both_succeed(fake_archive, tmp_path, monkeypatch):
    archive, spec, _ = fake_archive
    real_extractall = tarfile.TarFile.extractall
    for trial in range(4):
        dest = tmp_path / f"dest{trial}"
        both_extracted = threading.Barrier(2, timeout=20)

        def extractall(self, *args, **kwargs):  # both reach the move into place together
            real_extractall(self, *args, **kwargs)
            both_extracted.wait()

        monkeypatch.setattr(tarfile.TarFile, "extractall", extractall)
        results, errors = [], []

        def work():
            try:
                results.append(cifar.extract(archive, dest, spec))
            except Exception as e:  # noqa: BLE001 - collected and reported below
                errors.append(e)

        threads = [threading.Thread(target=work) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == [] and results == [dest / FOLDER] * 2
        assert sorted(os.listdir(dest)) == [FOLDER]  # no temporary folders left
        assert len(cifar.read_batches(dest / FOLDER, spec)[1]) == 100


def test_a_damaged_earlier_extraction_is_replaced(fake_archive, tmp_path):
    archive, spec, _ = fake_archive
    target = cifar.extract(archive, tmp_path / "dest", spec)
    (target / "data_batch_2").write_bytes(b"damaged")
    assert cifar.extract(archive, tmp_path / "dest", spec) == target
    assert len(cifar.read_batches(target, spec)[1]) == 100
    assert sorted(os.listdir(tmp_path / "dest")) == [FOLDER]


# ---------------------------------------------------------------- 4. one writer per run folder

def start(*args, env_extra=None):
    env = {**os.environ, **(env_extra or {})}
    return subprocess.Popen([sys.executable, "-m", "cnnlab", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


@pytest.mark.slow
def test_second_resume_of_a_live_run_is_refused_and_the_first_finishes_as_if_alone(tmp_path):
    root = bmp_folder(tmp_path / "d", classes=("a", "b", "c"), n_train=20, n_test=4, seed=10)
    recipe = ["--data", root, "--epochs", "3", "--batch-size", "8", "--val-size", "12"]
    ref, run = tmp_path / "ref", tmp_path / "run"
    alone = start("train", *recipe, "--out", ref)
    live = start("train", *recipe, "--out", run, env_extra={"CNNLAB_TEST_SLOW_WRITES": "0.6"})
    deadline = time.monotonic() + 120
    while not (run / "config.json").exists():  # written under the lock
        assert live.poll() is None and time.monotonic() < deadline, live.stderr.read()
        time.sleep(0.01)
    second = start("train", "--resume", run)
    _, err = second.communicate(timeout=120)
    assert second.returncode == 2, err
    assert f"{run} is in use by another cnnlab process (PID {live.pid})" in err
    assert live.poll() is None, "the first run ended before the second tried: the test proves nothing"
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert live.wait(timeout=300) == 0, live.stderr.read()
    assert alone.wait(timeout=300) == 0, alone.stderr.read()
    assert same_weights(ref, run)
    history = lambda r: [row.split(",")[:3] for row in (r / "history.csv").read_text().splitlines()]  # noqa: E731
    assert history(ref) == history(run)
    assert not list(run.glob(".*.tmp"))


def test_the_lock_dies_with_its_process(tmp_path):
    from cnnlab.runs.lock import hold
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom cnnlab.runs.lock import hold\n"
                               "with hold(sys.argv[1]):\n    print('held', flush=True)\n    time.sleep(600)",
                               str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(CnnlabError, match=f"in use by another cnnlab process \\(PID {holder.pid}\\)"):
            with hold(tmp_path):
                pass
    finally:
        holder.kill()  # SIGKILL: no cleanup code runs
        holder.wait()
    assert (tmp_path / ".lock").exists()  # SIGKILL left the file, but not the lock
    with hold(tmp_path):
        with pytest.raises(CnnlabError, match=f"PID {os.getpid()}"):
            with hold(tmp_path):
                pass
    assert not (tmp_path / ".lock").exists()  # a holder that ends normally removes it


def test_a_lock_file_removed_by_its_holder_is_not_locked_by_a_latecomer(tmp_path, monkeypatch):
    from cnnlab.runs import lock
    real_open, opened = os.open, []

    def open_then_holder_finishes(path, *args):
        fd = real_open(path, *args)
        opened.append(path)
        if len(opened) == 1:  # between our open and our flock, the holder removes its file
            os.unlink(path)
        return fd

    monkeypatch.setattr(lock.os, "open", open_then_holder_finishes)
    with lock.hold(tmp_path):
        assert len(opened) == 2  # the removed file was let go, the file now there locked
        monkeypatch.setattr(lock.os, "open", real_open)
        with pytest.raises(CnnlabError, match="in use"):
            with lock.hold(tmp_path):
                pass


# ---------------------------------------------------------------- 5. the CUDA path, on any machine

def test_native_bf16_asks_the_chosen_gpu_for_compute_capability_8(monkeypatch):
    capability = {0: (7, 0), 1: (8, 0)}  # a V100 as cuda:0, an A100 as cuda:1
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda i: capability[i])
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: pytest.fail("counts emulation"))
    assert not arithmetic.native_bf16(torch.device("cuda"))
    assert arithmetic.native_bf16(torch.device("cuda:1"))
    assert arithmetic.resolve("auto", True, torch.device("cuda:0")) == {
        "precision": "fp32", "memory_format": "channels_last",
        "cuda": {"tf32": False, "cudnn_benchmark": True, "cudnn_deterministic": False}}
    assert arithmetic.resolve("auto", False, torch.device("cuda:1"))["precision"] == "bf16"


def test_evaluation_is_ieee_fp32_even_where_tf32_is_on():
    before = arithmetic._get_tf32()
    try:
        arithmetic._set_tf32(True, True)
        with arithmetic.true_fp32(torch.device("cuda:0")):
            assert arithmetic._get_tf32() == (False, False)
        assert arithmetic._get_tf32() == (True, True)
    finally:
        arithmetic._set_tf32(*before)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_evaluation_matches_with_tf32_on_or_off():
    from cnnlab.analysis.evaluate import predict_logits
    from cnnlab.network.models import create
    torch.manual_seed(0)
    model = create("seed").cuda()
    x = torch.randint(0, 256, (256, 3, 32, 32), dtype=torch.uint8, device="cuda")
    before = arithmetic._get_tf32()
    try:
        arithmetic._set_tf32(True, True)
        with_tf32_set = predict_logits(model, x, [0.5] * 3, [0.25] * 3)
        arithmetic._set_tf32(False, False)
        ieee = predict_logits(model, x, [0.5] * 3, [0.25] * 3)
    finally:
        arithmetic._set_tf32(*before)
    assert torch.equal(with_tf32_set, ieee)


def refuse(*args, **kwargs):
    raise AssertionError("a GPU was touched")


def test_rng_states_are_those_of_the_device_in_use(monkeypatch):
    from cnnlab import checkpoints
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    for name in ("get_rng_state_all", "set_rng_state_all", "get_rng_state", "set_rng_state"):
        monkeypatch.setattr(torch.cuda, name, refuse)
    cpu = checkpoints.rng_state(torch.device("cpu"))
    assert "cuda" not in cpu  # a CPU run never touches the GPUs
    legacy = {**cpu, "cuda": [torch.zeros(8, dtype=torch.uint8) + i for i in range(4)]}  # four GPUs
    checkpoints.set_rng_state(legacy, torch.device("cpu"))
    restored = []
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda state, index: restored.append((int(state[0]), index)))
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda index: torch.full((8,), 7, dtype=torch.uint8))
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    checkpoints.set_rng_state(legacy, torch.device("cuda"))  # resumed on a one-GPU machine
    on_gpu1 = checkpoints.rng_state(torch.device("cuda:1"))
    assert on_gpu1["cuda"]["index"] == 1 and int(on_gpu1["cuda"]["state"][0]) == 7
    checkpoints.set_rng_state(on_gpu1, torch.device("cuda:0"))
    assert restored == [(0, 0), (7, 0)]


def test_a_cpu_optimizer_state_keeps_this_devices_fused_choice():
    from cnnlab.training.loop import load_optimizer_state
    model = torch.nn.Linear(4, 2)
    cpu_opt = torch.optim.Adam(model.parameters(), lr=1e-3)  # what a CPU run saves: fused None
    model(torch.randn(3, 4)).sum().backward()
    cpu_opt.step()
    gpu_like = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)  # this device's choice
    load_optimizer_state(gpu_like, cpu_opt.state_dict())
    assert gpu_like.param_groups[0]["fused"] is True
    assert torch.equal(gpu_like.state[model.weight]["exp_avg"], cpu_opt.state[model.weight]["exp_avg"])
    gpu_like.step()  # and it still steps


class BadFrom(torch.nn.Module):
    """A small network whose training loss turns inf (or nan) from its k-th call on."""

    def __init__(self, k, kind):
        super().__init__()
        self.net, self.k, self.kind, self.calls = torch.nn.Sequential(
            torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(), torch.nn.Linear(4 * 30 * 30, 3)), k, kind, 0

    def forward(self, x):
        out = self.net(x)
        if not self.training:
            return out
        self.calls += 1
        if self.calls < self.k:
            return out
        if self.kind == "nan":
            return out * float("nan")
        big = torch.full_like(out, 3e38)
        big[:, 0] = -3e38  # label 0 scores -3e38, the others 3e38: the loss overflows to inf
        return out * 0 + big


@pytest.mark.parametrize("deferred", [False, True])
@pytest.mark.parametrize("kind", ["inf", "nan"])
def test_non_finite_loss_names_the_failing_step_and_its_value(monkeypatch, deferred, kind):
    from cnnlab.training import losswatch
    from cnnlab.training.loop import NonFiniteLoss, Prepared, TrainState, setup, train_epoch
    monkeypatch.setattr(losswatch, "deferred_checks", lambda device: deferred)  # deferred: the CUDA way
    x = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8)
    y = torch.zeros(64, dtype=torch.int64)
    stat = torch.full((1, 3, 1, 1), 0.5)
    d = Prepared(x, y, x[:0], y[:0], x[:0], y[:0], [0.5] * 3, [0.5] * 3, stat, stat)
    cfg = TrainConfig(batch_size=8, precision="fp32")
    s = setup(cfg, BadFrom(5, kind), torch.device("cpu"))
    with pytest.raises(NonFiniteLoss, match=f"the training loss became {kind} at epoch 3, step 5$") as e:
        train_epoch(s, d, cfg, TrainState(epoch=3))
    assert e.value.step == 5 and str(e.value.value) == kind
