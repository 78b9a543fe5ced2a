"""The CUDA path: skipped on machines without a GPU."""
import pytest
import torch

from cnnlab.network import models
from cnnlab.training.loop import TrainConfig, TrainState, prepare, setup, train_epoch

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_cuda_epoch_learns_and_matches_cpu_shapes(real_subset):
    from cnnlab.data import dataset as data
    cfg = TrainConfig(batch_size=64, val_size=100, device="cuda")
    d = prepare(data.load(real_subset), cfg, torch.device("cuda"))
    assert d.train_x.is_cuda and d.train_x.dtype == torch.uint8
    torch.manual_seed(0)
    s = setup(cfg, models.create("seed"), torch.device("cuda"))
    first = train_epoch(s, d, cfg, TrainState(epoch=1))
    for epoch in range(2, 8):
        last = train_epoch(s, d, cfg, TrainState(epoch=epoch))
    assert last < first
    from cnnlab.analysis.evaluate import evaluate
    assert evaluate(s.model, d.test_x, d.test_y, d.mean_t, d.std_t)["acc"] > 20
