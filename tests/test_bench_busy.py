"""benchmarks/busy_machine.py: its cases, arguments, the epoch figure from a cut run, the table."""
import argparse

import pytest

from test_bench_isa import load_benchmark

busy = load_benchmark("busy_machine")


def test_cases_become_flags_and_environment():
    assert busy.case_command("threads-1") == (["--threads", "1"], {})
    assert busy.case_command("threads-12-passive") == (["--threads", "12"], {"OMP_WAIT_POLICY": "PASSIVE"})
    assert busy.case_command("threads-2-active") == (["--threads", "2"], {"OMP_WAIT_POLICY": "ACTIVE"})
    assert busy.case_command("default") == ([], {})
    assert busy.case_command("default-spin") == ([], {"GOMP_SPINCOUNT": "300000"})
    assert busy.case_command("threads-2-spin20000") == (["--threads", "2"], {"GOMP_SPINCOUNT": "20000"})
    assert busy.case_command("nproc-2") == (["--nproc", "2"], {})
    for junk in ("threads-0", "threads-x", "threads-2-lazy", "fast", "nproc-2-spin", "threads-2-passive10"):
        with pytest.raises(ValueError, match="unknown case"):
            busy.case_command(junk)


def test_arguments():
    args = busy.parse_args([])
    assert args.cases == list(busy.CASES) and args.loads == ["idle", "busy"] and args.max_steps == 150
    args = busy.parse_args(["--cases", "threads-1, default", "--loads", "busy", "--competitor", "torch"])
    assert args.cases == ["threads-1", "default"] and args.loads == ["busy"] and args.competitor == "torch"
    for bad in (["--cases", "threads-0"], ["--loads", "heavy"], ["--cases", ","], ["--max-steps", "0"]):
        with pytest.raises(SystemExit):
            busy.parse_args(bad)
    with pytest.raises(argparse.ArgumentTypeError, match="unknown load 'heavy'"):
        busy.parse_list("idle,heavy", busy.LOADS, "load")


def test_a_cut_run_is_scaled_to_the_whole_epoch():
    config = {"data": {"train": 45000}, "config": {"batch_size": 128}}  # 352 steps per epoch
    assert busy.seconds_per_epoch(config, [{"iters": "150", "elapsed_s": "3.0"}]) == pytest.approx(3.0 / 150 * 352)


def test_the_table_puts_idle_and_busy_side_by_side_with_their_ratio():
    rows = {"threads-2": {"idle": {"s_per_epoch": 4.0, "threads": 2, "threads_from": "flag"},
                          "busy": {"s_per_epoch": 30.0, "threads": 2, "threads_from": "flag"}},
            "default": {"idle": {"s_per_epoch": 4.1, "threads": 2, "threads_from": "default"},
                        "busy": {"s_per_epoch": 7.0, "threads": 1, "threads_from": "default"}}}
    lines = busy.format_table(rows, ["idle", "busy"]).splitlines()
    assert lines[0].split() == ["case", "threads", "(from)", "idle", "s/epoch", "busy", "s/epoch", "busy/idle"]
    assert lines[1].split() == ["threads-2", "2", "(flag)", "4.00", "30.00", "7.50x"]
    assert lines[2].split() == ["default", "2", "/", "1", "(default)", "4.10", "7.00", "1.71x"]
    only_idle = busy.format_table({"t": {"idle": rows["default"]["idle"]}}, ["idle"]).splitlines()
    assert "busy/idle" not in only_idle[0] and only_idle[1].split() == ["t", "2", "(default)", "4.10"]


@pytest.mark.slow
def test_the_benchmark_runs_whole_processes_idle_and_beside_a_competitor(tiny_folder, capsys):
    busy.main(["--data", str(tiny_folder), "--cases", "threads-1", "--max-steps", "2", "--settle", "0.2"])
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("machine: ") and "busy: beside a pure-Python busy loop" in out[0]
    row = next(line for line in out if line.startswith("threads-1 ")).split()
    assert row[1:3] == ["1", "(flag)"] and float(row[3]) > 0 and float(row[4]) > 0 and row[5].endswith("x")
