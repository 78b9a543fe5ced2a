"""benchmarks/step_seconds.py: a row per widths, a figure and its ratio per image size."""
import re

import pytest
import torch

from test_bench_isa import load_benchmark

step_seconds = load_benchmark("step_seconds")


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_the_benchmark_prints_a_row_per_widths_with_a_figure_per_size(capsys, precision):
    threads = torch.get_num_threads()
    step_seconds.main(["--widths", "8/16/16,16/16/16", "--sizes", "16,12", "--batch", "4",
                       "--precision", precision, "--repeats", "2", "--threads", "1"])
    assert torch.get_num_threads() == threads  # the run's thread count does not leak into the caller
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("machine: ") and f"threads 1, {precision}, batch 4" in out[0]
    rows = {m.group(1): re.findall(r"(\d+\.\d+) \((\d+\.\d+)\)", m.group(2))
            for m in map(re.compile(r"\s*(\d+/\d+/\d+)\s+(.*)").match, out) if m}
    assert list(rows) == ["8/16/16", "16/16/16"]
    assert all(len(cells) == 2 and all(float(t) > 0 for t, _ in cells) for cells in rows.values())
    assert rows["8/16/16"][0][1] == "1.00"  # ratios are to the first widths at the first size


def test_frozen_sets_get_a_row_each_under_their_names(capsys):
    step_seconds.main(["--widths", "8/16/16", "--sizes", "16", "--batch", "4", "--repeats", "2", "--threads", "1",
                       "--precision", "fp32", "--frozen", "none,whiten+blocks.0"])
    out = capsys.readouterr().out.splitlines()
    assert out[2].split() == ["widths", "frozen", "16", "px"]
    assert [line.split()[:2] for line in out[3:]] == [["8/16/16", "none"], ["8/16/16", "whiten+blocks.0"]]


def test_freeze_stops_the_gradients_of_the_named_layers_only():
    model = step_seconds.FastNet((4, 8, 8), 2)
    step_seconds.freeze(model, ["whiten", "blocks.1.conv1"])
    still = {k for k, p in model.named_parameters() if p.requires_grad}
    assert "whiten.bias" not in still and "blocks.1.conv1.weight" not in still
    assert {"blocks.0.conv1.weight", "blocks.1.norm1.bias", "blocks.1.conv2.weight", "fc.weight"} <= still
    # whole module names only: '1' is not the start of '10'
    seq = torch.nn.Sequential(*(torch.nn.Linear(2, 2) for _ in range(11)))
    step_seconds.freeze(seq, ["1"])
    assert [k for k, p in seq.named_parameters() if not p.requires_grad] == ["1.weight", "1.bias"]
    x = torch.randn(3, 3, 16, 16)
    model(x).sum().backward()  # the frozen layers get no gradient, the others do
    grads = {k: p.grad is not None for k, p in model.named_parameters()}
    assert not grads["blocks.1.conv1.weight"] and not grads["whiten.bias"] and grads["blocks.0.conv1.weight"]


@pytest.mark.parametrize("flag, value", [("--widths", "64/256"), ("--widths", "64/x/256"), ("--sizes", "32,,24"),
                                         ("--sizes", "0"), ("--batch", "-1"), ("--frozen", "blocks.3"),
                                         ("--frozen", "none,blocks.0.act1")])
def test_bad_numbers_get_one_line_from_argparse(capsys, flag, value):
    with pytest.raises(SystemExit) as e:
        step_seconds.main([flag, value])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "error: argument " + flag in err and repr(value) in err
