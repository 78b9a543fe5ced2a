"""benchmarks/gpu_side_by_side.py on the CPU: its data hand-over to airbench, the torchvision
stand-in, the verdict and the refusals (the GPU run itself needs a CUDA machine)."""
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import gpu_side_by_side as side  # noqa: E402

from cnnlab.data import dataset as data_mod  # noqa: E402


def test_the_normalize_stand_in_is_per_channel_standardization():
    x = torch.rand(4, 3, 5, 6)
    mean, std = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
    got = side.normalize_stand_in()(mean, std)(x).numpy()
    want = (x.numpy() - np.array(mean)[:, None, None]) / np.array(std)[:, None, None]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_airbench_reads_the_handed_over_images_as_cnnlab_decoded_them(tiny_folder, tmp_path, monkeypatch):
    if importlib.util.find_spec("airbench") is None:
        pytest.skip("the extra gpu-bench (airbench from PyPI) is not installed")
    for name in [m for m in sys.modules if m == "torchvision" or m.startswith(("torchvision.", "airbench"))]:
        monkeypatch.delitem(sys.modules, name)
    if importlib.util.find_spec("torchvision") is None:
        assert side.install_torchvision_stand_in()
    import airbench

    data = data_mod.load(tiny_folder)
    root = side.write_airbench_data(data, tmp_path / "cifar10")
    for split, x, y in (("train", data.train_x, data.train_y), ("test", data.test_x, data.test_y)):
        loader = airbench.CifarLoader(str(root), train=split == "train", batch_size=8, gpu="cpu")
        # airbench holds images as (N, 3, H, W) in [0, 1]: the same pixels cnnlab decoded
        assert torch.equal((loader.images.float() * 255).round().to(torch.uint8), x)
        assert torch.equal(loader.labels, y.long())
        assert loader.classes == data.classes
    batch, labels = next(iter(airbench.CifarLoader(str(root), train=False, batch_size=5, gpu="cpu")))
    assert batch.shape == (5, 3, 32, 32) and labels.shape == (5,)


def test_the_verdict_says_whether_cnnlab_matched_airbench_in_its_time():
    air = [{"test_acc": 90.0, "seconds": 10.0}]
    lines = side.verdict(air, [{"test_acc": 90.5, "seconds": 9.0}], {"train_s": 2.5})
    assert lines[0].endswith("goal met") and "0.90x the time" in lines[0]
    assert lines[1].endswith(": met")
    lines = side.verdict(air, [{"test_acc": 90.5, "seconds": 11.0}], {"train_s": 3.5})
    assert lines[0].endswith("goal not met") and lines[1].endswith("not met")
    lines = side.verdict(air, [{"test_acc": 89.9, "seconds": 5.0}], None)
    assert len(lines) == 1 and lines[0].endswith("goal not met")


def test_the_table_lists_every_entry():
    rows = [{"entry": "airbench94", "run": 0, "seconds": 3.5, "test_acc": 93.9},
            {"entry": "cnnlab fast-94", "run": 0, "seconds": 3.2, "test_acc": 94.0}]
    text = side.table(rows)
    assert "| airbench94 | 0 | 3.50 | 93.90 % |" in text and "| cnnlab fast-94 | 0 | 3.20 | 94.00 % |" in text


@pytest.mark.parametrize("argv", [["--data", "x", "--device", "cpu"], ["--data", "x", "--seeds", "0"]])
def test_bad_arguments_get_one_line_and_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        side.parse_args(argv)
    assert exit_.value.code == 2
    assert len(capsys.readouterr().err.strip().splitlines()[-1:]) == 1


def test_without_a_gpu_it_says_so_in_one_line(capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert side.main(["--data", "x"]) == 2
    assert capsys.readouterr().err.strip() == (
        "gpu_side_by_side: error: no CUDA GPU is visible to torch: run it on a GPU machine")
