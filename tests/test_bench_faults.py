"""benchmarks/fault_injection.py: its CPU-side logic, with one trial of one to three kills (the full run of 50+
kills is a benchmark, not part of the suite)."""
import pytest

from test_bench_isa import load_benchmark

faults = load_benchmark("fault_injection")


def test_touched_names_every_changed_added_or_removed_file():
    before = {"a": "1:x", "b": "1:y", "c": "1:z"}
    after = {"a": "1:x", "b": "2:y", "d": "1:w"}
    assert faults.touched(before, after) == ["b", "c", "d"]
    assert faults.touched(before, dict(before)) == []


def test_snapshot_sees_other_folders_only(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "other").mkdir()
    (tmp_path / "mine" / "f").write_text("1")
    (tmp_path / "other" / "g").write_text("2")
    assert list(faults.snapshot(tmp_path, tmp_path / "mine")) == ["other/g"]


@pytest.mark.slow
def test_a_killed_run_resumes_to_the_reference_weights(tmp_path, capsys):
    assert faults.main(["--kills", "1", "--scenarios", "single", "--seed", "3", "--workdir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "files touched in other run folders: 0" in out
    matches = next(line for line in out.splitlines() if line.startswith("bitwise matches:"))
    done, trials = matches.split()[2].split("/")
    assert done == trials and int(trials) >= 1
