"""The small pieces a recipe composes: schedules, augmentations, optimizers, weight averaging, models."""
import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st

from cnnlab.training import augment, averaging, optim
from cnnlab.errors import CnnlabError
from cnnlab.network.models import MODELS, create
from cnnlab.recipes.schema import Augment, Averaging, GroupEpochs, GroupScales, Optimizer, Schedule
from cnnlab.training.schedules import lr_factor


# ------------------------------------------------------------------ schedules

@pytest.mark.parametrize("schedule,points", [
    (Schedule(), {0: 1.0, 50: 1.0, 99: 1.0}),
    (Schedule(kind="constant", warmup=0.1), {0: 0.0, 5: 0.5, 10: 1.0, 99: 1.0}),
    (Schedule(kind="linear"), {0: 1.0, 50: 0.5, 75: 0.25, 100: 0.0}),
    (Schedule(kind="linear", warmup=0.2, final=0.1), {10: 0.5, 20: 1.0, 60: 0.55, 100: 0.1}),
    (Schedule(kind="cosine"), {0: 1.0, 50: 0.5, 100: 0.0}),
    (Schedule(kind="cosine", warmup=0.5, final=0.2), {25: 0.5, 50: 1.0, 75: 0.6, 100: 0.2}),
    (Schedule(kind="triangle", start=0.2, peak=0.25, final=0.0), {0: 0.2, 10: 0.52, 25: 1.0, 70: 0.4, 100: 0.0}),
])
def test_schedules_at_their_key_steps(schedule, points):
    for step, want in points.items():
        assert lr_factor(schedule, step, 100) == pytest.approx(want), step


@settings(max_examples=200, deadline=None)
@given(kind=st.sampled_from(["constant", "linear", "cosine", "triangle"]),
       warmup=st.floats(0, 1), peak=st.floats(0, 1), start=st.floats(0, 1), final=st.floats(0, 1),
       total=st.integers(1, 10_000), data=st.data())
def test_schedule_factor_stays_between_its_ends(kind, warmup, peak, start, final, total, data):
    s = Schedule(kind=kind, warmup=warmup, peak=peak, start=start, final=final)
    step = data.draw(st.integers(0, total))
    f = lr_factor(s, step, total)
    assert math.isfinite(f) and min(0.0, start, final) - 1e-12 <= f <= 1.0 + 1e-12


def test_cosine_decays_monotonically():
    values = [lr_factor(Schedule(kind="cosine"), s, 50) for s in range(51)]
    assert all(a >= b for a, b in zip(values, values[1:]))


# ------------------------------------------------------------------ augmentation

def batch(n=6, c=3, h=8, w=10, seed=0):
    return torch.randn(n, c, h, w, generator=torch.Generator().manual_seed(seed))


def test_random_flip_mirrors_some_images_and_twice_is_the_identity():
    x = batch(64)
    once = augment.random_flip(x, augment.step_generator(0, 1, 2))
    assert once.shape == x.shape and once.dtype == x.dtype
    flipped = [torch.equal(once[i], x[i].flip(-1)) for i in range(64)]
    assert all(f or torch.equal(once[i], x[i]) for i, f in enumerate(flipped))
    assert 16 < sum(flipped) < 48
    twice = augment.random_flip(once, augment.step_generator(0, 1, 2))  # the same draws again
    assert torch.equal(twice, x)


def test_alternating_flip_mirrors_each_image_every_other_epoch():
    x, bits = batch(200), augment.flip_bits(200, seed=3)
    assert 70 < int(bits.sum()) < 130
    e1, e2 = augment.alternating_flip(x, bits, 1), augment.alternating_flip(x, bits, 2)
    for i in range(200):
        odd_flipped = torch.equal(e1[i], x[i].flip(-1))
        assert odd_flipped == bool(bits[i])
        assert torch.equal(e2[i], x[i] if odd_flipped else x[i].flip(-1))
    assert torch.equal(augment.alternating_flip(e1, bits, 3), x)  # a flip twice is the identity


@pytest.mark.parametrize("dy,dx", [(0, 0), (2, -1), (-2, 2), (1, 0)])
def test_shift_moves_the_content_by_the_given_pixels(dy, dx):
    x = batch(2)
    out = augment.shift(x, torch.tensor([dy, dy]), torch.tensor([dx, dx]), pad=2)
    h, w = x.shape[-2:]
    # inside: out[r, c] = x[r - dy, c - dx]
    assert torch.equal(out[..., max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)],
                       x[..., max(-dy, 0):h - max(dy, 0), max(-dx, 0):w - max(dx, 0)])
    # everywhere, border included: a crop of the reflect-padded image (PyTorch's own padding)
    padded = F.pad(x, (2, 2, 2, 2), mode="reflect")
    assert torch.equal(out, padded[..., 2 - dy:2 - dy + h, 2 - dx:2 - dx + w])


def test_random_translate_is_a_shift_within_range_for_each_image():
    x = batch(16)
    out = augment.random_translate(x, 2, augment.step_generator(1, 1, 1))
    assert out.shape == x.shape and out.dtype == x.dtype
    shifts = set()
    for i in range(16):
        found = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)
                 if torch.equal(out[i:i + 1], augment.shift(x[i:i + 1], torch.tensor([dy]), torch.tensor([dx]), 2))]
        assert found, i
        shifts.add(found[0])
    assert len(shifts) > 3


def test_cutout_zeroes_one_square_per_image():
    x = batch(8).abs() + 1  # no zeros before
    out = augment.cutout(x, 3, augment.step_generator(0, 0, 0))
    for img in out:
        zero = (img == 0).all(0)
        assert int(zero.sum()) == 9 and int((img == 0).sum()) == 27
        rows, cols = zero.nonzero(as_tuple=True)
        assert rows.max() - rows.min() == 2 and cols.max() - cols.min() == 2
    keep = out != 0
    assert torch.equal(out[keep], x[keep])


def test_random_crop_takes_one_window_of_each_image_at_a_random_place():
    x = batch(16, h=8, w=8)
    out = augment.random_crop(x, 5, augment.step_generator(2, 1, 1))
    assert out.shape == (16, 3, 5, 5) and out.dtype == x.dtype
    places = set()
    for i in range(16):  # the oracle: every window of the image, by slicing
        found = [(r, c) for r in range(4) for c in range(4) if torch.equal(out[i], x[i, :, r:r + 5, c:c + 5])]
        assert found, i
        places.add(found[0])
    assert len(places) > 4
    assert augment.random_crop(x, 8, augment.step_generator(0, 0, 0)) is x  # the whole image: nothing to do


@pytest.mark.parametrize("crop_epochs, cropped", [(2, {1, 2}), (0, {1, 2, 3, 4})])
def test_crops_in_the_first_crop_epochs_only_and_no_other_draw_changes(crop_epochs, cropped):
    x, idx = batch(12, h=8, w=8), torch.arange(12)
    plain = Augment(flip="random", translate=1, cutout=3)
    cfg = Augment(flip="random", translate=1, cutout=3, crop=6, crop_epochs=crop_epochs)
    for epoch in (1, 2, 3, 4):
        out = augment.augment_batch(x, idx, cfg, seed=0, epoch=epoch, step=1)
        assert out.shape[-2:] == ((6, 6) if epoch in cropped else (8, 8))
        if epoch not in cropped:  # whole images, augmented as by a recipe without crops
            assert torch.equal(out, augment.augment_batch(x, idx, plain, seed=0, epoch=epoch, step=1))


@settings(max_examples=25, deadline=None)
@given(st.integers(2, 9), st.data())
def test_a_batch_cut_in_parts_is_cropped_as_the_whole_batch(n, data):
    # each process of a run of several crops its rows of the batch as one process would
    x, idx = batch(n), torch.arange(n)
    cfg = Augment(flip="random", translate=1, crop=data.draw(st.integers(1, 7)), cutout=2)
    whole = augment.augment_batch(x, idx, cfg, seed=3, epoch=1, step=2)
    cut = data.draw(st.integers(1, n - 1))
    parts = [augment.augment_batch(x[a:b], idx[a:b], cfg, seed=3, epoch=1, step=2, span=(a, n))
             for a, b in ((0, cut), (cut, n))]
    assert torch.equal(torch.cat(parts), whole)


def test_the_same_seed_epoch_and_step_give_the_same_batch():
    x, idx = batch(32), torch.arange(32)
    cfg = Augment(flip="random", translate=2, cutout=4)
    a = augment.augment_batch(x, idx, cfg, seed=0, epoch=2, step=5)
    assert torch.equal(a, augment.augment_batch(x, idx, cfg, seed=0, epoch=2, step=5))
    for other in [dict(seed=1, epoch=2, step=5), dict(seed=0, epoch=3, step=5), dict(seed=0, epoch=2, step=6)]:
        assert not torch.equal(a, augment.augment_batch(x, idx, cfg, **other))
    assert augment.augment_batch(x, idx, Augment(), 0, 1, 1) is x  # no augmentation: untouched
    bf16 = augment.augment_batch(x.bfloat16(), idx, cfg, seed=0, epoch=2, step=5)
    assert bf16.dtype == torch.bfloat16 and torch.equal(bf16, a.bfloat16())


# ------------------------------------------------------------------ optimizers

def tiny_net():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
                               torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, 5))


def run_steps(model, opt, steps=5, stepper=None):
    g = torch.Generator().manual_seed(1)
    for _ in range(steps):
        x, y = torch.randn(8, 3, 8, 8, generator=g), torch.randint(0, 5, (8,), generator=g)
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        (stepper or (lambda o: o.step()))(opt)
    return [p.detach().clone() for p in model.parameters()]


def test_param_groups_by_kind():
    m = create("seed-bn")
    names = {id(p): n for n, p in m.named_parameters()}
    g = {k: [names[id(p)] for p in v] for k, v in optim.param_groups(m).items()}
    assert g == {"weight": ["conv1.weight", "conv2.weight", "fc.weight"], "bias": ["fc.bias"],
                 "norm": ["bn1.weight", "bn1.bias", "bn2.weight", "bn2.bias"]}


def test_the_reports_adam_is_torch_adam_bitwise():
    a, b = tiny_net(), tiny_net()
    opt = optim.build(a, Optimizer())
    assert len(opt.param_groups) == 1  # one group, in the model's order: old checkpoints load
    ours = run_steps(a, opt, stepper=lambda o: (optim.set_lr(o, 1.0), optim.step(o)))
    theirs = run_steps(b, torch.optim.Adam(b.parameters(), lr=1e-3))
    assert all(torch.equal(p, q) for p, q in zip(ours, theirs))


def test_decoupled_weight_decay_with_adam_is_torch_adamw():
    a, b = tiny_net(), tiny_net()
    ours = run_steps(a, optim.build(a, Optimizer(lr=0.01, weight_decay=0.1)), stepper=optim.step)
    theirs = run_steps(b, torch.optim.AdamW(b.parameters(), lr=0.01, weight_decay=0.1))
    for p, q in zip(ours, theirs):
        torch.testing.assert_close(p, q)


def test_sgd_nesterov_with_a_learning_rate_per_kind():
    a, b = tiny_net(), tiny_net()
    cfg = Optimizer(name="sgd", lr=0.1, momentum=0.9, nesterov=True, lr_scale=GroupScales(norm=4.0, bias=2.0))
    opt = optim.build(a, cfg)
    optim.set_lr(opt, 0.5)
    ours = run_steps(a, opt, stepper=optim.step)
    m = b
    groups = [{"params": [m[0].weight, m[4].weight], "lr": 0.05}, {"params": [m[0].bias, m[4].bias], "lr": 0.1},
              {"params": [m[1].weight, m[1].bias], "lr": 0.2}]
    theirs_opt = torch.optim.SGD(groups, lr=0.1, momentum=0.9, nesterov=True)
    run_steps(b, theirs_opt)
    for p, q in zip(ours, b.parameters()):
        torch.testing.assert_close(p, q.detach())


def test_lr_scale_zero_freezes_a_kind_and_the_others_train_as_without_it():
    a, b = tiny_net(), tiny_net()
    cfg = Optimizer(name="sgd", lr=0.1, momentum=0.9, weight_decay=0.1, lr_scale=GroupScales(bias=0.0))
    ours = run_steps(a, optim.build(a, cfg), stepper=optim.step)
    biases = {id(p) for p in (a[0].bias, a[4].bias)}
    assert [p.requires_grad for p in a.parameters()] == [id(p) not in biases for p in a.parameters()]
    m = b  # the oracle: torch's SGD over the other parameters, decay written out, biases untouched
    keep = [p for p in m.parameters() if p is not m[0].bias and p is not m[4].bias]
    start = [p.detach().clone() for p in (m[0].bias, m[4].bias)]

    def decay_then_step(opt):
        with torch.no_grad():
            for p in keep:
                p.mul_(1 - 0.1 * 0.1)
        opt.step()
    theirs = run_steps(m, torch.optim.SGD(keep, lr=0.1, momentum=0.9), stepper=decay_then_step)
    for p, q in zip(ours, theirs):
        torch.testing.assert_close(p, q)
    for p, s in zip((a[0].bias, a[4].bias), start):
        assert torch.equal(p.detach(), s)
    with pytest.raises(CnnlabError, match="nothing would train"):
        optim.build(tiny_net(), Optimizer(lr_scale=GroupScales(weight=0.0, bias=0.0, norm=0.0)))


@pytest.mark.parametrize("skip_backward", [True, False])
def test_train_epochs_trains_a_kind_in_its_first_epochs_only(skip_backward):
    a, b = tiny_net(), tiny_net()
    cfg = Optimizer(name="sgd", lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.1,
                    train_epochs=GroupEpochs(bias=1))
    opt = optim.build(a, cfg)
    biases = (a[0].bias, a[4].bias)
    for epoch in (1, 2):
        optim.set_epoch(opt, cfg, epoch, skip_backward)
        # skip_backward: autograd skips them; else (DDP) the gradient is computed and dropped
        assert all(p.requires_grad == (epoch == 1 or not skip_backward) for p in biases)
        after_epoch_1 = [p.detach().clone() for p in biases]
        ours = run_steps(a, opt, steps=3, stepper=optim.step)
    assert all(torch.equal(p, q) for p, q in zip(biases, after_epoch_1))  # frozen in epoch 2
    m, epoch = b, [1]  # the oracle: torch's SGD, decay written out, the biases left out from epoch 2

    def decay_then_step(opt):
        with torch.no_grad():
            for p in m.parameters():
                if epoch[0] == 2 and (p is m[0].bias or p is m[4].bias):
                    p.grad = None  # torch's SGD skips it and keeps its momentum
                else:
                    p.mul_(1 - 0.1 * 0.1)
        opt.step()
    theirs_opt = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    run_steps(m, theirs_opt, steps=3, stepper=decay_then_step)
    epoch[0] = 2
    theirs = run_steps(m, theirs_opt, steps=3, stepper=decay_then_step)
    for p, q in zip(ours, theirs):
        torch.testing.assert_close(p, q)
    optim.set_epoch(opt, cfg, 1)  # a pure function of the epoch: epoch 1 trains them again
    assert all(p.requires_grad for p in biases) and opt.frozen == []


def test_train_epochs_that_freeze_everything_are_refused_in_one_line_before_the_run_folder(
        tiny_folder, tmp_path, capsys):
    from cnnlab.cli import main
    cfg = Optimizer(train_epochs=GroupEpochs(weight=2, bias=1, norm=2))
    optim.check(tiny_net(), cfg, 2)  # epoch 2 still trains weights and norms
    with pytest.raises(CnnlabError, match="freezes every kind of parameter after epoch 2 of 3"):
        optim.check(tiny_net(), cfg, 3)
    code = main(["train", "--data", str(tiny_folder), "--epochs", "3", "--out", str(tmp_path / "run"),
                 "--set", "optimizer.train_epochs.weight=1", "--set", "optimizer.train_epochs.bias=1"])
    err = capsys.readouterr().err
    assert code != 0 and "nothing would train" in err and "--epochs 1" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_decay_scale_zero_leaves_norms_undecayed():
    m = tiny_net()
    opt = optim.build(m, Optimizer(name="sgd", lr=0.1, weight_decay=0.5, decay_scale=GroupScales(norm=0.0)))
    for p in m.parameters():
        p.grad = torch.zeros_like(p)
    before = [p.detach().clone() for p in m.parameters()]
    optim.step(opt)
    norms = {id(m[1].weight), id(m[1].bias)}
    for p, b in zip(m.parameters(), before):
        torch.testing.assert_close(p.detach(), b if id(p) in norms else b * (1 - 0.1 * 0.5))


# ------------------------------------------------------------------ averaging

def test_ema_is_the_moving_average_it_says():
    m = tiny_net()
    avg = averaging.create(Averaging(kind="ema", decay=0.9, every=2), m)
    expect = {k: v.clone() for k, v in m.state_dict().items()}
    updates = 0
    for steps in range(1, 9):
        with torch.no_grad():
            for p in m.parameters():
                p.add_(0.1 * steps)
        avg.update(m, steps)
        if steps % 2 == 0:
            d = min(0.9, (1 + updates) / (10 + updates))
            updates += 1
            for k, v in m.state_dict().items():
                expect[k] = d * expect[k] + (1 - d) * v if v.is_floating_point() else v.clone()
    for k, v in avg.model.state_dict().items():
        torch.testing.assert_close(v, expect[k])
    fresh = averaging.create(Averaging(kind="ema", decay=0.9, every=2), tiny_net())
    fresh.load_state_dict(avg.state_dict())
    assert fresh.updates == avg.updates == 4
    assert all(torch.equal(a, b) for a, b in zip(fresh.model.state_dict().values(), avg.model.state_dict().values()))


def test_lookahead_pulls_the_model_back_to_the_slow_weights():
    m = tiny_net()
    slow0 = [p.detach().clone() for p in m.parameters()]
    la = averaging.create(Averaging(kind="lookahead", decay=0.75, every=3), m)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(1.0)
    la.update(m, 2)  # not a multiple of every: nothing happens
    assert all(torch.equal(p, s + 1) for p, s in zip(m.parameters(), slow0))
    la.update(m, 3)
    for p, s, q in zip(m.parameters(), slow0, la.model.parameters()):
        torch.testing.assert_close(p.detach(), s + 0.25)
        assert torch.equal(p, q)
    assert averaging.create(Averaging(), m) is None


@pytest.mark.parametrize("kind", ["lookahead", "ema"])
def test_averaging_ramp_grows_the_decay_as_a_power_of_the_runs_progress(kind):
    m, total = tiny_net(), 20
    avg = averaging.create(Averaging(kind=kind, decay=0.95 ** 5, every=5, ramp=3.0), m)
    expect = {k: v.clone() for k, v in m.state_dict().items()}
    updates = 0
    for steps in range(1, total + 1):
        with torch.no_grad():
            for p in m.parameters():
                p.add_(0.1 * steps)
        fast = {k: v.clone() for k, v in m.state_dict().items()}
        avg.update(m, steps, total)
        if steps % 5 == 0:  # airbench's lookahead: decay 0.95**5 * (step / total)**3 every 5 steps
            d = 0.95 ** 5 if kind == "lookahead" else min(0.95 ** 5, (1 + updates) / (10 + updates))
            d *= (steps / total) ** 3
            updates += 1
            for k, v in fast.items():
                expect[k] = d * expect[k] + (1 - d) * v if v.is_floating_point() else v.clone()
            if kind == "lookahead":  # the model goes back to the slow weights
                for k, v in m.state_dict().items():
                    torch.testing.assert_close(v, expect[k])
    for k, v in avg.model.state_dict().items():
        torch.testing.assert_close(v, expect[k])
    assert avg.decay(0, total) == 0.0 and avg.decay(total, total) == pytest.approx(
        0.95 ** 5 if kind == "lookahead" else min(0.95 ** 5, 5 / 14))


# ------------------------------------------------------------------ models

@pytest.mark.parametrize("name", list(MODELS))
def test_every_model_at_batch_2_forward_backward_and_shape(name):
    torch.manual_seed(0)
    model = create(name, num_classes=7)
    out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 7)
    out.logsumexp(1).sum().backward()
    trainable = [p for p in model.parameters() if p.requires_grad]  # the fast family freezes some
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in trainable)
    assert all(p.grad is None for p in model.parameters() if not p.requires_grad)


def test_the_fast_head_is_a_max_pool_over_the_final_map_and_takes_smaller_images():
    # The oracle: the head as it was, nn.MaxPool2d of the final map's size at 32 pixels; its
    # values and gradients, ties included (a constant image makes every position equal).
    for name in ("fast-94", "fast-q-s2"):
        torch.manual_seed(0)
        model = create(name)
        model.whiten.weight.data.normal_()
        for x in (torch.randn(3, 3, 32, 32), torch.ones(2, 3, 32, 32)):
            feats = []
            hook = model.blocks.register_forward_hook(lambda m, i, o: feats.append(o.detach().requires_grad_()))
            model(x)
            hook.remove()
            final = feats[0]
            assert tuple(final.shape[-2:]) == model.final_hw
            new, old = model.pool(final), torch.nn.MaxPool2d(model.final_hw)(final)
            assert torch.equal(new, old)
            g_new, = torch.autograd.grad(new.sum() + (new ** 2).sum(), final)
            g_old, = torch.autograd.grad(old.sum() + (old ** 2).sum(), final)
            assert torch.equal(g_new, g_old)
        assert model(torch.randn(2, 3, 24, 24)).shape == (2, 10)
    # as training computes it: bf16 and channels_last, with many ties (whole numbers)
    final = torch.randn(64, 16, 3, 3).round().bfloat16().contiguous(memory_format=torch.channels_last)
    final.requires_grad_()
    new, old = model.pool(final), torch.nn.MaxPool2d(3)(final)
    weights = torch.arange(16.0).view(1, -1, 1, 1)
    assert torch.equal(new, old)
    assert torch.equal(torch.autograd.grad((new * weights).sum(), final)[0],
                       torch.autograd.grad((old * weights).sum(), final)[0])


def test_a_crop_the_model_cannot_take_is_refused_in_one_line_before_the_run_folder(tiny_folder, tmp_path, capsys):
    from cnnlab.cli import main
    augment.check_crop(create("fast-q"), Augment(crop=24), (3, 32, 32))  # a global head: any size
    for model, crop, words in (("seed", 24, "takes only whole 32x32 images"),
                               ("fast-q", 32, "is not smaller than the 32x32 images")):
        with pytest.raises(CnnlabError, match=words):
            augment.check_crop(create(model), Augment(crop=crop), (3, 32, 32))
    code = main(["train", "--data", str(tiny_folder), "--epochs", "1", "--out", str(tmp_path / "run"),
                 "--set", "augment.crop=24"])
    err = capsys.readouterr().err
    assert code != 0 and "takes only whole" in err and "augment.crop=0" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "run").exists()


def test_resnet18_has_the_literatures_parameter_count():
    assert sum(p.numel() for p in create("resnet18").parameters()) == 11_173_962


def test_the_ladder_changes_one_thing_at_a_time():
    seed, bn, drop, avg = (create(n) for n in ("seed", "seed-bn", "seed-bn-dropout", "seed-avgpool"))
    assert isinstance(bn.bn1, torch.nn.BatchNorm2d) and seed.bn1 is None and bn.conv1.bias is None
    assert isinstance(drop.dropout, torch.nn.Dropout) and bn.dropout is None
    assert isinstance(avg.pool1, torch.nn.AvgPool2d) and isinstance(seed.pool1, torch.nn.MaxPool2d)
    # seed-avgpool keeps the report's order conv -> ReLU -> pool (mean pooling does not commute with ReLU)
    x = torch.randn(4, 3, 32, 32)
    ref = avg.fc(avg.flatten(avg.pool2(avg.relu2(avg.conv2(avg.pool1(avg.relu1(avg.conv1(x))))))))
    assert torch.equal(avg(x), ref)
