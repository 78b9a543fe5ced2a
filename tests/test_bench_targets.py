"""The time-to-accuracy benchmark holds each recipe to its goal, and the step profiler's table."""
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from test_bench_isa import load_benchmark

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))


def runs(accs, walls):
    return [{"test_acc": a, "wall_s": w} for a, w in zip(accs, walls)]


@pytest.mark.parametrize("name, accs, walls, met", [
    ("sprint", [73.5, 73.1, 72.9], [22.0, 23.0, 24.0], True),     # 73.17 %, 0.0700 x
    ("sprint", [73.5, 73.1, 72.9], [22.0, 23.0, 24.6], False),    # 0.0703 x: over the time
    ("sprint", [73.0, 72.9, 73.0], [10.0, 10.0, 10.0], False),    # 72.97 %: under the accuracy
    ("fast-85", [85.2, 85.1, 85.0], [90.0, 90.0, 90.0], True),
    ("fast-85", [85.2, 85.1, 85.0], [100.0, 100.0, 100.0], False),  # 0.333 x > 0.30 x
    ("fast-90", [90.1, 90.0, 90.2], [490.0, 495.0, 500.0], True),
    ("fast-94", [91.6, 91.5, 91.4], [1300.0, 1300.0, 1300.0], True),  # 91.5 %, 3.94 x
    ("fast-94", [91.4, 91.5, 91.4], [1300.0, 1300.0, 1300.0], False),  # the mean is 91.43 %
    ("fast-94", [91.6, 91.6, 91.6], [1330.0, 1330.0, 1330.0], False),  # 4.03 x
])
def test_goals(name, accs, walls, met):
    tta = load_benchmark("time_to_accuracy")
    row = tta.summary(name, runs(accs, walls), t_tut=330.0)
    assert row["met"] is met
    assert (row["target_acc"], row["target_ratio"]) == tta.TARGETS[name]


def test_other_recipes_keep_their_own_accuracy_target():
    tta = load_benchmark("time_to_accuracy")
    row = tta.summary("seed", runs([67.0, 66.0], [100.0, 100.0]), t_tut=330.0)
    assert row["target_acc"] == 66.0  # seed.toml's own target_acc
    assert row["target_ratio"] is None


def test_profile_table_shares_against_the_unprofiled_step():
    prof = load_benchmark("profile_step")
    events = [SimpleNamespace(key="aten::mkldnn_convolution", self_cpu_time_total=30_000.0, count=200),
              SimpleNamespace(key="aten::max_pool2d_with_indices", self_cpu_time_total=10_000.0, count=200)]
    lines = prof.op_table(events, steps=100, step_ms=1.0, rows=5)
    assert lines[1].split()[:4] == ["aten::mkldnn_convolution", "0.300", "30.0%", "2.0"]
    assert lines[2].split()[0] == "aten::max_pool2d_with_indices"
    assert len(prof.op_table(events, steps=100, step_ms=1.0, rows=1)) == 2
