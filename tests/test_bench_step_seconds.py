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


@pytest.mark.parametrize("flag, value", [("--widths", "64/256"), ("--widths", "64/x/256"), ("--sizes", "32,,24"),
                                         ("--sizes", "0"), ("--batch", "-1")])
def test_bad_numbers_get_one_line_from_argparse(capsys, flag, value):
    with pytest.raises(SystemExit) as e:
        step_seconds.main([flag, value])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "error: argument " + flag in err and repr(value) in err
