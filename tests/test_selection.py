"""Training on the hard images ([select]): which images an epoch takes, its steps, exact resume."""
import copy
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnlab.network import models
from cnnlab.training import selection
from cnnlab.cli import main
from cnnlab.errors import CnnlabError
from cnnlab.recipes.schema import Select
from cnnlab.training.loop import Prepared, TrainConfig, TrainState, total_steps, train


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from([0.0, 0.5, 1.0, 2.5, math.inf]) | st.floats(0, 9), min_size=1, max_size=40),
       st.floats(0.01, 1.0), st.integers(0, 10 ** 6))
def test_an_epoch_takes_the_hardest_images_in_its_permutations_order(losses, keep, seed):
    n = len(losses)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    sel = selection.Selector(Select(keep=keep, from_epoch=2), n)
    sel.record(torch.arange(n), torch.tensor(losses))
    got = sel.order(perm, epoch=2, step=0).tolist()
    # The oracle: sort by loss (as stored, float32), highest first, ties to the earlier place in perm; take k.
    losses = torch.tensor(losses, dtype=torch.float32).tolist()
    place = {int(i): p for p, i in enumerate(perm)}
    k = max(1, round(keep * n))
    want = sorted(range(n), key=lambda i: (-losses[i], place[i]))[:k]
    assert sorted(got) == sorted(want) and len(got) == k
    assert [place[i] for i in got] == sorted(place[i] for i in got)  # in perm's order
    assert sel.order(perm, epoch=1, step=0).tolist() == perm.tolist()  # before from_epoch: every image


def test_the_ranking_is_the_one_the_epoch_began_with():
    sel = selection.Selector(Select(keep=0.5, from_epoch=2), 6)
    sel.record(torch.arange(6), torch.tensor([5.0, 0, 4, 0, 3, 0]))
    perm = torch.arange(6)
    first = sel.order(perm, 2, 0)
    assert first.tolist() == [0, 2, 4]
    sel.record(first, torch.zeros(3))  # the epoch trains them: their losses fall
    assert sel.order(perm, 2, 1).tolist() == [0, 2, 4]  # within the epoch (resumed at step 1): the same
    assert sel.order(perm, 3, 0).tolist() != [0, 2, 4]  # the next epoch ranks anew
    saved = copy.deepcopy(sel.state_dict())
    other = selection.Selector(Select(keep=0.5, from_epoch=2), 6)
    other.load_state_dict(saved)
    assert torch.equal(other.losses, sel.losses) and torch.equal(other.ranked, sel.ranked)


def test_unseen_images_count_as_hardest_and_keep_1_is_no_selection():
    sel = selection.Selector(Select(keep=0.5, from_epoch=1), 4)
    sel.record(torch.tensor([0, 1]), torch.tensor([9.0, 9.0]))
    assert sorted(sel.order(torch.arange(4), 1, 0).tolist()) == [2, 3]
    assert selection.create(Select(keep=1.0), 10) is None
    cfg = TrainConfig(epochs=3, batch_size=4, select=Select(keep=0.5, from_epoch=2))
    assert [selection.epoch_steps(cfg.select, 10, e, 4) for e in (1, 2, 3)] == [3, 2, 2]
    assert total_steps(cfg, 10) == 7 and total_steps(TrainConfig(epochs=3, batch_size=4), 10) == 9


def tiny_data(n=96):
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 10, (n,), generator=g)
    x = (torch.rand(n, 3, 32, 32, generator=g) * 60 + y.view(-1, 1, 1, 1) * 19).to(torch.uint8)
    stat = torch.full((1, 3, 1, 1), 100.0)
    return Prepared(x, y, x[:0], y[:0], x[:0], y[:0], [100.0] * 3, [100.0] * 3, stat, stat)


def test_a_run_stopped_within_a_selecting_epoch_resumes_bitwise():
    cfg = TrainConfig(model="seed-bn", epochs=3, batch_size=16, val_size=0, precision="fp32",
                      select=Select(keep=0.5, from_epoch=2))
    d = tiny_data()
    torch.manual_seed(0)
    ref = models.create("seed-bn")
    start = copy.deepcopy(ref.state_dict())
    state, s = train(cfg, ref, d, log=lambda line: None)
    assert [r["iters"] for r in state.history] == [6, 3, 3]  # 96 images, then their hardest 48
    assert state.steps == total_steps(cfg, 96) == 12

    model = models.create("seed-bn")
    model.load_state_dict(start)
    state = TrainState()  # stopped after epoch 2's second step: the losses moved since it ranked them
    state, s = train(cfg, model, d, log=lambda line: None, state=state, should_stop=lambda: state.steps >= 8)
    assert state.stopped and (state.epoch, state.step) == (2, 2)
    saved = copy.deepcopy((model.state_dict(), s.opt.state_dict(), s.selector.state_dict()))
    resumed = models.create("seed-bn")
    resumed.load_state_dict(saved[0])
    state, _ = train(cfg, resumed, d, log=lambda line: None, state=state, optimizer_state=saved[1],
                     selection_state=saved[2])
    assert all(torch.equal(a, b) for a, b in zip(ref.state_dict().values(), resumed.state_dict().values()))


def test_hard_images_with_several_processes_are_refused_in_one_line(tiny_folder, tmp_path, capsys, monkeypatch):
    assert main(["train", "--data", str(tiny_folder), "--set", "select.keep=0.5", "--nproc", "2",
                 "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "one process" in err and "--nproc" in err
    assert not (tmp_path / "run").exists()
    from cnnlab.training import distributed
    monkeypatch.setattr(distributed, "world", lambda: 2)  # a process of a run that torchrun started
    with pytest.raises(CnnlabError, match="one process"):
        TrainConfig(select=Select(keep=0.5)).validate()
    # --debug: the traceback, and still the exit status of a user's mistake
    assert main(["train", "--data", str(tiny_folder), "--set", "select.keep=0", "--out", str(tmp_path / "r2"),
                 "--debug"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and "select.keep must be greater than 0" in err
