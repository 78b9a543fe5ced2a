"""Seeds and comparisons: statistics against scipy and direct formulas, groups that survive
SIGKILL, and 'cnnlab compare' on good and bad folders."""
import json
import math
import os
import signal
import subprocess
import sys
import time

import pytest
import scipy.stats
from hypothesis import given, settings, strategies as st

from cnnlab.analysis import stats
from cnnlab.cli import main
from cnnlab.runs.group import parse_seeds, seeds_text

# ---------------------------------------------------------------- statistics

A = [66.8, 67.3, 67.1, 66.5, 67.6]
B = [67.9, 68.4, 68.1, 68.8, 68.0]


def direct_t_interval(xs):
    """mean +- t(0.975, n - 1) * s / sqrt(n), written out."""
    n = len(xs)
    mean = sum(xs) / n
    s = math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1))
    half = scipy.stats.t.ppf(0.975, n - 1) * s / math.sqrt(n)
    return mean, s, [mean - half, mean + half]


def direct_welch_interval(a, b):
    """mean(b) - mean(a) +- t(0.975, df) * se, with the Welch-Satterthwaite df, written out."""
    va, vb = (direct_t_interval(x)[1] ** 2 / len(x) for x in (a, b))
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    diff = sum(b) / len(b) - sum(a) / len(a)
    half = scipy.stats.t.ppf(0.975, df) * math.sqrt(va + vb)
    return diff, [diff - half, diff + half], df


def test_t_interval_matches_the_formula_and_a_table_value():
    s = stats.summarize(A)
    mean, std, ci = direct_t_interval(A)
    assert s["n"] == 5 and s["mean"] == pytest.approx(mean, abs=1e-12) and s["std"] == pytest.approx(std)
    assert s["ci95"] == pytest.approx(ci, abs=1e-9)
    # t(0.975, 4) = 2.776 from a printed table: the interval's half-width
    assert (s["ci95"][1] - s["ci95"][0]) / 2 == pytest.approx(2.7764451 * std / math.sqrt(5), rel=1e-6)


@pytest.mark.filterwarnings("ignore:Precision loss:RuntimeWarning")  # scipy, on a group without spread
@pytest.mark.parametrize("a,b", [(A, B), (A, B[:3]), (A[:2], B[:2]), (A[:2], B), ([70.0] * 4, B)])
def test_welch_matches_scipy_and_the_direct_interval(a, b):
    w = stats.welch(a, b)
    ref = scipy.stats.ttest_ind(b, a, equal_var=False)
    diff, ci, df = direct_welch_interval(a, b)
    assert w["p_value"] == pytest.approx(ref.pvalue, rel=1e-12)
    assert w["t"] == pytest.approx(ref.statistic, rel=1e-12)
    assert w["df"] == pytest.approx(df, rel=1e-9)
    assert w["diff"] == pytest.approx(diff, abs=1e-12)
    assert w["ci95"] == pytest.approx(ci, abs=1e-9)


def no_nan(obj):
    json.dumps(obj, allow_nan=False)  # raises on nan or inf anywhere
    return True


def test_one_run_two_runs_and_no_spread_give_no_nan_and_no_conclusion():
    one = stats.summarize([67.0])
    assert one["mean"] == 67.0 and one["std"] is None and one["ci95"] is None and no_nan(one)
    two = stats.summarize([67.0, 68.0])
    assert two["ci95"] == pytest.approx(direct_t_interval([67.0, 68.0])[2]) and no_nan(two)
    same = stats.summarize([70.0] * 5)
    assert same["std"] == 0 and same["ci95"] == [70.0, 70.0] and no_nan(same)

    w = stats.welch([67.0], B)
    assert w["p_value"] is None and w["ci95"] is None and w["diff"] == pytest.approx(sum(B) / 5 - 67) and no_nan(w)
    assert stats.verdict("a", "b", w).startswith("nothing can be concluded at n = 1 and 5")
    w = stats.welch(A[:2], B[:2])
    assert w["p_value"] == pytest.approx(scipy.stats.ttest_ind(B[:2], A[:2], equal_var=False).pvalue)
    assert stats.verdict("a", "b", w).startswith("nothing can be concluded at n = 2")  # even if p is small
    for b in ([70.0] * 5, [72.0] * 5):  # no spread in either group: the test is undefined
        w = stats.welch([70.0] * 5, b)
        assert w["p_value"] is None and w["ci95"] is None and no_nan(w)
        assert "nothing can be concluded" in stats.verdict("a", "b", w)
    empty = stats.welch([], B)
    assert empty["diff"] is None and "no finished runs" in stats.verdict("a", "b", empty)


def test_verdicts_say_what_the_numbers_allow_and_no_more():
    w = stats.welch(A, [x + 3 for x in A])
    assert stats.verdict("A", "B", w) == f"B is better by 3.0 +- {(w['ci95'][1] - w['ci95'][0]) / 2:.1f} points, p < 0.001"
    assert stats.verdict("A", "B", stats.welch(A, [x - 3 for x in A])).startswith("B is worse by 3.0 +- ")
    w = stats.welch(A, [x + 0.1 for x in reversed(A)])
    assert w["p_value"] > 0.05 and stats.verdict("A", "B", w) == "no evidence of a difference at n = 5"


@pytest.mark.filterwarnings("ignore:Precision loss:RuntimeWarning")  # scipy, on near-identical values
@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(0, 100), min_size=0, max_size=7), st.lists(st.floats(0, 100), min_size=0, max_size=7))
def test_any_input_gives_finite_json_and_scipys_p_value(a, b):
    w, sa = stats.welch(a, b), stats.summarize(a)
    assert no_nan(w) and no_nan(sa) and isinstance(stats.verdict("a", "b", w), str)
    if w["p_value"] is not None:
        assert w["p_value"] == pytest.approx(scipy.stats.ttest_ind(b, a, equal_var=False).pvalue, rel=1e-9, abs=1e-300)
    if sa["ci95"] is not None:
        assert sa["ci95"][0] <= sa["mean"] + 1e-9 and sa["mean"] <= sa["ci95"][1] + 1e-9


def test_seed_lists():
    assert parse_seeds("0-4") == [0, 1, 2, 3, 4] and parse_seeds("0,3,7") == [0, 3, 7]
    assert parse_seeds("0-2,9") == [0, 1, 2, 9] and parse_seeds("5") == [5]
    assert seeds_text([0, 1, 2, 3, 4]) == "0-4" and seeds_text([0, 3, 7]) == "0,3,7"
    for bad in ("4-1", "a", "0,,1", "-1", "0-2,1", ""):
        with pytest.raises(Exception, match="--seeds"):
            parse_seeds(bad)


# ---------------------------------------------------------------- folders made by hand

def fake_run(path, acc, seed=0, fingerprint="a" * 64, model="seed", finished=True, epochs=3):
    """A run folder with the files compare reads: config.json, history.csv, metrics.json."""
    path.mkdir(parents=True)
    config = {"config": {"model": model, "seed": seed, "epochs": epochs},
              "data": {"fingerprint": fingerprint, "classes": ["a", "b"], "source": "x", "image_size": 32}}
    (path / "config.json").write_text(json.dumps(config))
    rows = ["epoch,iters,avg_loss,elapsed_s,val_acc"] + [
        f"{e},10,{2.0 / e + seed * 0.01},{e * 1.5},{acc - 5 + e + (seed % 2) * (e == 2) * 9}" for e in range(1, epochs + 1)]
    (path / "history.csv").write_text("\n".join(rows) + "\n")
    if finished:
        (path / "metrics.json").write_text(json.dumps({"test_acc": acc, "train_seconds": 10.0 + seed, "model": model}))
    return path


def fake_group(path, accs, seeds=None, **kw):
    seeds = list(range(len(accs))) if seeds is None else seeds
    path.mkdir(parents=True)
    (path / "group.json").write_text(json.dumps({"format": 1, "seeds": seeds, "config": {"model": "seed"}}))
    for s, acc in zip(seeds, accs):
        if acc is not None:
            fake_run(path / f"seed-{s}", acc, seed=s, **kw)
    return path


def run_compare(capsys, *args):
    code = main(["compare", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def test_compare_table_json_and_curves(tmp_path, capsys):
    a = fake_group(tmp_path / "base", A)
    b = fake_group(tmp_path / "better", [x + 3 for x in A], model="seed-p1")
    one = fake_run(tmp_path / "$x$_single", 70.0)  # mathtext-like name: drawn as plain text
    png = tmp_path / "curves.png"
    code, out, err = run_compare(capsys, a, b, one, "--out", png)
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines[0].split() == ["group", "recipe/model", "n", "test", "acc", "%", "(mean", "+-", "std)", "95",
                                "%", "CI", "best", "val", "epoch", "train", "s", "(mean)", "flags"]
    mean, std, ci = direct_t_interval(A)
    assert lines[1].split()[:7] == ["base", "seed", "5", f"{mean:.2f}", "+-", f"{std:.2f}", f"[{ci[0]:.2f},"]
    assert "2.6 (2-3)" in lines[1] and lines[1].split()[-1] == "12.0"  # best epochs 2,3,2,3,2; time mean
    assert lines[2].split()[:3] == ["better", "seed-p1", "5"]
    assert lines[4].startswith("better vs base: +3.00 points, 95 % CI [")
    assert lines[4].endswith(": better is better by 3.0 +- 0.6 points, p < 0.001")
    assert lines[5].startswith("$x$_single vs base: ") and "nothing can be concluded at n = 5 and 1" in lines[5]
    assert lines[6].startswith("note: $x$_single has fewer than 3 finished runs: nothing can be concluded")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert run_compare(capsys, a, b, "--out", png)[0] == 2  # never overwrites

    code, out, _ = run_compare(capsys, a, b, one, "--json")
    result = json.loads(out)
    g = result["groups"][0]
    assert (g["name"], g["n"], g["accs"]) == ("base", 5, A) and g["ci95"] == pytest.approx(ci)
    assert g["mean"] == pytest.approx(mean) and g["std"] == pytest.approx(std)
    pair = result["pairs"][0]
    assert (pair["a"], pair["b"]) == ("base", "better") and pair["diff"] == pytest.approx(3.0)
    assert pair["p_value"] == pytest.approx(scipy.stats.ttest_ind([x + 3 for x in A], A, equal_var=False).pvalue)
    assert result["pairs"][1]["p_value"] is None and result["groups"][2]["ci95"] is None
    assert "NaN" not in out and "Infinity" not in out


def test_report_compares_groups_as_compare_does(tmp_path, capsys):
    from cnnlab.report import is_report
    a = fake_group(tmp_path / "base", A)
    b = fake_group(tmp_path / "<b>better", [x + 3 for x in A] + [None], seeds=[0, 1, 2, 3, 4, 5], model="seed-p1")
    fake_run(b / "seed-5", 0.0, seed=5, model="seed-p1", finished=False)  # stopped during its run
    page = tmp_path / "groups.html"
    assert main(["report", str(a), str(b), "--out", str(page)]) == 0
    text = page.read_text()
    assert is_report(page) and "cnnlab report: 2 groups" in text
    mean, std, ci = direct_t_interval(A)
    assert f"{mean:.2f} ± {std:.2f} %" in text and f"[{ci[0]:.2f}, {ci[1]:.2f}]" in text
    assert "&lt;b&gt;better is better by 3.0 +- 0.6 points, p &lt; 0.001" in text  # compare's verdict, escaped
    assert "<b>better" not in text
    assert "5 of 6" in text and "1 of 6 runs unfinished, left out" in text and "unfinished</td>" in text
    assert text.count("data:image/png;base64,") == 1  # the groups' curves


def test_unfinished_runs_and_other_data_are_flagged_not_mixed(tmp_path, capsys):
    base = fake_group(tmp_path / "base", A)
    partly = fake_group(tmp_path / "partly", [68.0, 68.5, 67.5, None, None])
    fake_run(partly / "seed-3", 10.0, seed=3, finished=False)  # interrupted: config.json, no metrics
    other = fake_group(tmp_path / "other", B, fingerprint="b" * 64)
    mixed = fake_group(tmp_path / "mixed", [60.0, 61.0, 62.0])
    (mixed / "seed-2" / "config.json").write_text(
        (mixed / "seed-2" / "config.json").read_text().replace("a" * 64, "c" * 64))
    lr = fake_group(tmp_path / "lr", [60.0, 61.0, 62.0])
    (lr / "seed-1" / "config.json").write_text((lr / "seed-1" / "config.json").read_text().replace('"epochs"', '"lr": 0.1, "epochs"'))
    # a setting an older cnnlab did not record is its default, not a difference
    newer = fake_group(tmp_path / "newer", [60.0, 61.0, 62.0])
    (newer / "seed-2" / "config.json").write_text((newer / "seed-2" / "config.json").read_text().replace(
        '"epochs"', '"sync_bn": true, "eval_precision": "fp32", "epochs"'))
    unlike = fake_group(tmp_path / "unlike", [60.0, 61.0, 62.0])
    (unlike / "seed-2" / "config.json").write_text((unlike / "seed-2" / "config.json").read_text().replace(
        '"epochs"', '"sync_bn": false, "epochs"'))
    code, out, _ = run_compare(capsys, base, newer, unlike, "--json")
    flags = {g["name"]: g["flags"] for g in json.loads(out)["groups"]}
    assert flags["newer"] == [] and flags["unlike"] == ["mixed recipes (sync_bn differs)"]
    code, out, _ = run_compare(capsys, base, partly, other, mixed, lr, "--json")
    assert code == 0
    groups = {g["name"]: g for g in json.loads(out)["groups"]}
    pairs = {p["b"]: p for p in json.loads(out)["pairs"]}
    assert groups["partly"]["n"] == 3 and groups["partly"]["accs"] == [68.0, 68.5, 67.5]  # 10.0 left out
    assert groups["partly"]["flags"] == ["2 of 5 runs unfinished, left out"] and pairs["partly"]["comparable"]
    assert groups["other"]["flags"] == ["other data than base"]
    assert pairs["other"]["verdict"] == "not compared: other was trained on other data than base"
    assert groups["mixed"]["flags"] == ["mixed data (fingerprints differ)"] and not pairs["mixed"]["comparable"]
    assert groups["lr"]["flags"] == ["mixed recipes (lr differs)"]
    assert pairs["lr"]["verdict"] == "not compared: lr mixes runs of different recipes"
    code, out, _ = run_compare(capsys, base, partly, other, mixed)
    rows = {line.split()[0]: line for line in out.splitlines()[1:5]}
    assert rows["partly"].endswith("2 of 5 runs unfinished, left out")
    assert rows["other"].endswith("other data than base") and rows["mixed"].endswith("mixed data (fingerprints differ)")


def test_bad_folders_are_one_line_with_exit_status_2(tmp_path, capsys):
    good = fake_group(tmp_path / "good", A)
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "notes.txt").write_text("hello")
    cases = {tmp_path / "plain": "is neither a run folder (config.json) nor a group folder",
             tmp_path / "missing": "is not a folder",
             tmp_path / "damaged": "group.json is damaged"}
    (tmp_path / "damaged").mkdir()
    (tmp_path / "damaged" / "group.json").write_text("{not json")
    for i, (folder, message) in enumerate(cases.items()):
        if i == 0:  # a real process: its exit status and streams
            proc = subprocess.run([sys.executable, "-m", "cnnlab", "compare", str(good), str(folder)],
                                  capture_output=True, text=True)
            code, out, err = proc.returncode, proc.stdout, proc.stderr
        else:  # the same main() in this process
            code, out, err = run_compare(capsys, good, folder)
        assert code == 2 and out == ""
        assert err.startswith("cnnlab: error: ") and message in err
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    # A group that has not finished a run yet is an empty row, flagged, not an error.
    empty = fake_group(tmp_path / "empty", [None] * 5)
    code, out, _ = run_compare(capsys, good, empty)
    row = out.splitlines()[2]
    assert code == 0 and row.split()[:4] == ["empty", "seed", "0", "-"] and row.endswith("5 of 5 runs unfinished, left out")
    assert "empty vs good: -: nothing to compare: a group has no finished runs" in out


def test_without_scipy_compare_prints_the_table_and_names_the_extra(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "scipy", None)
    monkeypatch.setitem(sys.modules, "scipy.stats", None)
    code, out, err = run_compare(capsys, fake_group(tmp_path / "g", A), fake_group(tmp_path / "h", A))
    assert code == 0 and err == ""
    row = out.splitlines()[1].split()
    assert row[:3] == ["g", "seed", str(len(A))] and "[" not in out.splitlines()[1]  # mean +- std, no interval
    assert "h vs g: +0.00 points: not tested: without scipy" in out
    assert out.rstrip().endswith("note: without scipy, no 95 % intervals, t-tests or verdicts: install them "
                                 "with pip install 'cnnlab[stats]'")


# ---------------------------------------------------------------- groups trained for real

# Two epochs: each run is stopped inside its second, after its first checkpoint. Four seeds: one
# finished, one stopped by SIGTERM, one by SIGKILL, and one whose folder a kill left half made.
RECIPE = ["--epochs", "2", "--batch-size", "64", "--val-size", "100"]


def start(*args, slow=False):
    env = {**os.environ, **({"CNNLAB_TEST_SLOW_WRITES": "0.1"} if slow else {})}
    return subprocess.Popen([sys.executable, "-m", "cnnlab", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def wait_for(path, proc, timeout=300):
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def same_run(a, b):
    from safetensors.torch import load_file
    wa, wb = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    strip = lambda run: [line.split(",")[:3] + line.split(",")[4:]  # noqa: E731 - all but elapsed_s
                         for line in (run / "history.csv").read_text().splitlines()]
    ma, mb = (json.loads((r / "metrics.json").read_text()) for r in (a, b))
    return (wa.keys() == wb.keys() and all((wa[k] == wb[k]).all() for k in wa) and strip(a) == strip(b)
            and ma["test_acc"] == mb["test_acc"] and ma["steps"] == mb["steps"])


@pytest.mark.slow
def test_group_stopped_twice_then_resumed_equals_an_uninterrupted_group(real_subset, tmp_path, capsys):
    ref = tmp_path / "ref"
    proc = start("train", "--data", real_subset, *RECIPE, "--seeds", "0-3", "--out", ref)
    out, err = proc.communicate()
    assert proc.returncode == 0, err
    lines = out.splitlines()
    assert lines[0] == f"Training seed with seeds 0-3, one run after another; group folder {ref}"
    assert [line.split(":")[0] for line in lines[1:5]] == [f"Run {i}/4, seed {i - 1}" for i in range(1, 5)]
    assert lines[5].startswith("Test accuracy over 4 seeds: ")

    group = tmp_path / "group"
    proc = start("train", "--data", real_subset, *RECIPE, "--seeds", "0-3", "--out", group, slow=True)
    wait_for(group / "seed-1" / "checkpoint.pt", proc)  # SIGTERM in the second run: saved, one line
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate()
    assert proc.returncode == 143 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert f"in run 2 of 4 (seed 1), its checkpoint saved; resume the group with: cnnlab train --resume {group}" in err
    proc = start("train", "--resume", group, slow=True)
    wait_for(group / "seed-2" / "checkpoint.pt", proc)  # SIGKILL in the third run: nothing saved on the way out
    proc.kill()
    proc.wait()
    assert (group / "seed-1" / "metrics.json").exists() and not (group / "seed-2" / "metrics.json").exists()
    assert not (group / "seed-3").exists()
    finished_first = (group / "seed-0" / "metrics.json").stat().st_mtime_ns
    (group / "seed-3").mkdir()  # as if killed between making seed-3/ and writing its config.json
    (group / "seed-3" / ".lock").write_text("12345\n")
    (group / "seed-3" / ".config.json.1.tmp").write_text("{")

    proc = start("train", "--resume", group)
    out, err = proc.communicate()
    assert proc.returncode == 0, err
    lines = out.splitlines()
    assert lines[0] == f"Resuming group {group}: 2 of 4 runs finished"
    assert [line.split(":")[0] for line in lines[1:3]] == ["Run 3/4, seed 2", "Run 4/4, seed 3"]
    assert (group / "seed-0" / "metrics.json").stat().st_mtime_ns == finished_first  # not redone
    for seed in range(4):
        assert same_run(ref / f"seed-{seed}", group / f"seed-{seed}"), f"seed {seed} differs"
    runs = [json.loads((g / "group.json").read_text())["runs"] for g in (ref, group)]
    assert [r["test_acc"] for r in runs[0]] == [r["test_acc"] for r in runs[1]]
    assert all(r["status"] == "finished" for r in runs[1]) and len({r["test_acc"] for r in runs[1]}) > 1

    # Two equal groups: the same numbers, no evidence of a difference, and a finished group has nothing to resume.
    code, out, _ = run_compare(capsys, ref, group, "--json")
    pair = json.loads(out)["pairs"][0]
    assert code == 0 and pair["diff"] == 0 and pair["p_value"] == pytest.approx(1.0)
    assert pair["verdict"] == "no evidence of a difference at n = 4"
    assert main(["train", "--resume", str(group)]) == 2
    assert "has finished all 4 runs: nothing to resume" in capsys.readouterr().err


@pytest.mark.parametrize("args,message", [
    (["--seeds", "3-1"], "--seeds '3-1' is not a list of seeds"),
    (["--seeds", "0,1,0"], "names a seed twice"),
    (["--seeds", "0-2", "--seed", "1"], "--seed and --seeds name the seeds twice"),
    (["--seeds", "0-2", "--model", "nope"], "unknown model 'nope'"),
])
def test_bad_seed_flags_are_one_line_before_any_folder(tmp_path, capsys, args, message):
    assert main(["train", "--data", str(tmp_path / "none"), *args, "--out", str(tmp_path / "g")]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "g").exists()


def test_a_resumed_group_keeps_its_recipe_and_seeds(tmp_path, capsys):
    group = fake_group(tmp_path / "g", [None, None])
    for args, message in ((["--epochs", "5"], "--epochs 5 differs from the group's 20: a resumed group keeps its recipe"),
                          (["--lr", "0.5"], "--lr 0.5 differs from the group's 0.001"),
                          (["--set", "optimizer.nope=1"], "the group's recipe has no setting 'optimizer.nope'"),
                          (["--seeds", "0-2"], "drop --out, --seeds and --recipe"),
                          (["--seed", "3"], "--seed and --seeds name the seeds twice")):
        assert main(["train", "--resume", str(group), *args]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1
    assert not (group / "seed-0").exists()
