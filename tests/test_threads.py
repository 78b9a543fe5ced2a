"""--threads / threads=: the count a run trains with, how it is chosen and recorded, bitwise
repeatability for one count, resuming with the recorded count, and the caller's count kept."""
import json
import os
import warnings

import pytest
import torch
from safetensors.torch import load_file

import cnnlab
from cnnlab.cli import main
from cnnlab.errors import CnnlabError, CnnlabWarning
from cnnlab.training import threads

QUICK = {"epochs": 1, "max_steps": 6, "precision": "fp32", "progress": False}


def train_with(data, out, n, **settings):
    run = cnnlab.train("seed", data=data, out=out, threads=n, **{**QUICK, **settings})
    return load_file(run.path / "model.safetensors"), json.loads((run.path / "config.json").read_text())


@pytest.fixture(scope="module")
def runs(real_subset, tmp_path_factory):
    """Two runs at 1 thread and two at 2 threads, same seed and settings."""
    tmp = tmp_path_factory.mktemp("threads")
    return {(n, k): train_with(real_subset, tmp / f"t{n}-{k}", n) for n in (1, 2) for k in "ab"}


def bitwise_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow  # four training runs on real images (the fixture)
@pytest.mark.parametrize("n", [1, 2])
def test_runs_at_one_thread_count_give_bitwise_equal_weights(runs, n):
    (wa, ca), (wb, cb) = runs[n, "a"], runs[n, "b"]
    assert bitwise_equal(wa, wb)
    assert ca["threads"] == cb["threads"] == n and ca["threads_from"] == "flag" and ca["config"]["threads"] == n


@pytest.mark.slow  # four training runs on real images (the fixture)
def test_one_and_two_threads_differ_as_documented(runs):
    """fp32 on the CPU: the convolutions' backward sums are split by thread (docs/speed.md), so the
    weights differ in their last bits; COUNTS_CHANGE_RESULTS says so, and --resume warns on it."""
    differ = not bitwise_equal(runs[1, "a"][0], runs[2, "a"][0])
    assert differ == threads.COUNTS_CHANGE_RESULTS
    a, b = (torch.cat([w[k].flatten() for k in sorted(w)]) for w in (runs[1, "a"][0], runs[2, "a"][0]))
    assert (a - b).norm() < 1e-2 * a.norm()  # rounding, not another computation


def test_the_api_sets_the_count_for_the_run_and_gives_the_callers_back(real_subset, tmp_path):
    before = torch.get_num_threads()
    seen = []
    cnnlab.train("seed", data=real_subset, out=tmp_path / "a", threads=1, batch_size=450,
                 on_epoch_end=lambda run, row: seen.append(torch.get_num_threads()), **QUICK)
    assert seen == [1] and torch.get_num_threads() == before

    def fail(run, row):
        raise RuntimeError("the user's callback failed")
    with pytest.raises(RuntimeError, match="callback failed"):
        cnnlab.train("seed", data=real_subset, out=tmp_path / "b", threads=1, batch_size=450, on_epoch_end=fail,
                      **QUICK)
    assert torch.get_num_threads() == before  # also when the run ends in an error


def test_resume_keeps_the_recorded_count_unless_threads_is_given(real_subset, tmp_path, capsys):
    def stop(run, row):
        raise cnnlab.StopTraining
    for name in ("kept", "changed"):
        cnnlab.train("seed", data=real_subset, out=tmp_path / name, threads=1, batch_size=450, epochs=2,
                     precision="fp32", progress=False, on_epoch_end=stop)
    seen = []
    cnnlab.resume(tmp_path / "kept", progress=False, on_epoch_end=lambda r, row: seen.append(torch.get_num_threads()))
    assert seen == [1]
    assert "--threads" not in capsys.readouterr().out
    cnnlab.resume(tmp_path / "changed", threads=2, progress=False,
                  on_epoch_end=lambda r, row: seen.append(torch.get_num_threads()))
    assert seen == [1, 2]
    said = [line for line in capsys.readouterr().out.splitlines() if line.startswith("--threads")]
    assert said == ["--threads 2: this run trained with 1 thread so far; its results may differ from an "
                    "uninterrupted run's (fp32 sums are split by thread)"]
    config = json.loads((tmp_path / "changed" / "config.json").read_text())
    assert config["threads"] == 2 and config["threads_from"] == "flag"
    assert config["threads_changes"] == [{"epoch": 2, "step": 0, "from": 1, "to": 2}]


@pytest.mark.parametrize("value", [0, -1, "2", 1.5, True])
def test_the_api_refuses_a_count_that_is_not_a_positive_integer(value, tmp_path):
    with pytest.raises(cnnlab.SettingsError, match="threads"):
        cnnlab.train("seed", data=tmp_path, threads=value, **QUICK)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("value", ["0", "abc", "1.5"])
def test_the_command_line_refuses_junk_in_one_line(value, capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "--threads", value])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--threads" in err[0] and "positive integer" in err[0]


def test_evaluate_and_the_other_model_commands_take_threads(capsys):
    for command in ("evaluate", "predict", "report", "inspect", "export"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        assert "--threads N" in capsys.readouterr().out, command


def test_a_count_above_the_cores_is_a_warning(monkeypatch):
    monkeypatch.setattr(threads, "cores", lambda: 2)
    monkeypatch.setattr(threads, "busy_elsewhere", lambda window_s=0: 0.0)
    with pytest.warns(CnnlabWarning, match=r"--threads 3 runs 3 threads on this machine's 2 CPU cores.*--threads 2"):
        assert threads.choose(3)["threads"] == 3
    with pytest.warns(CnnlabWarning, match="2 threads in each of 2 processes"):
        threads.choose(2, local_world=2)
    monkeypatch.setenv("OMP_NUM_THREADS", "4")
    with pytest.warns(CnnlabWarning, match=r"^OMP_NUM_THREADS=4 runs 4 threads"):
        threads.choose(None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        threads.choose(2)


def test_where_the_count_comes_from(monkeypatch):
    monkeypatch.setattr(threads, "cores", lambda: 4)
    monkeypatch.setattr(threads, "busy_elsewhere", lambda window_s=0: 2.0)  # not looked at: the load is no input
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv(threads.CHOSEN_ENV, raising=False)
    assert threads.choose(None) == {"threads": 4, "threads_from": "default"}
    assert threads.choose(None, local_world=3)["threads"] == 1  # the cores shared by 3 processes
    assert threads.choose(2) == {"threads": 2, "threads_from": "flag"}
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert threads.choose(None) == {"threads": 3, "threads_from": "OMP_NUM_THREADS"}
    assert threads.choose(1)["threads_from"] == "flag"  # the flag wins
    monkeypatch.setenv(threads.CHOSEN_ENV, "default")  # set by --nproc's launcher beside its own choice
    assert threads.choose(None) == {"threads": 3, "threads_from": "default"}


@pytest.mark.parametrize("env, busy, warned", [({}, 1.0, True), ({}, 0.3, False), ({}, None, False),
                                               ({"OMP_WAIT_POLICY": "passive"}, 1.0, False),
                                               ({"GOMP_SPINCOUNT": "0"}, 1.0, False),
                                               ({"OMP_WAIT_POLICY": "ACTIVE"}, 0.9, True)])
def test_spinning_threads_beside_busy_cores_are_told_to_use_one(monkeypatch, env, busy, warned):
    """A notebook loaded torch with OpenMP's spinning wait: beside a busy program, 2 threads train
    several times slower than 1, which cnnlab.train says (its count stays the default: the same bits)."""
    monkeypatch.setattr(threads, "cores", lambda: 2)
    looked = []
    monkeypatch.setattr(threads, "busy_elsewhere", lambda window_s=0: looked.append(1) or busy)
    for name in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert threads.choose(None) == {"threads": 2, "threads_from": "default"}  # the count is not the load's
        threads.warn_if_spinning_beside_others(None)
        threads.warn_if_spinning_beside_others(1)  # one thread waits for no other
    said = [str(w.message) for w in caught if issubclass(w.category, CnnlabWarning)]
    assert said == ([f"other programs keep {busy:.1f} of this machine's 2 CPU cores busy, and this process's 2 "
                     f"threads spin while they wait for each other (torch was loaded without "
                     f"OMP_WAIT_POLICY=PASSIVE): threads=1 (--threads 1) trains several times faster here, or "
                     f"start Python with OMP_WAIT_POLICY=PASSIVE"] if warned else [])
    assert len(looked) == (0 if "passive" in env.values() or "GOMP_SPINCOUNT" in env else 1)


def test_busy_elsewhere_counts_other_processes_cpu_time_but_not_our_own(monkeypatch):
    """Two /proc/stat readings 1 s apart on 2 CPUs (100 ticks/s): 150 busy ticks, 50 of them ours."""
    readings = iter([(threads.Sample((1000, 5000), 10.0, 0.0)), threads.Sample((1150, 5200), 10.5, 1.0)])
    monkeypatch.setattr(threads, "sample", lambda: next(readings))
    monkeypatch.setattr(os, "sysconf", lambda name: 100)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    slept = []
    monkeypatch.setattr(threads.time, "sleep", slept.append)
    assert threads.busy_elsewhere(0.25) == pytest.approx(1.0)  # (150 - 50) ticks over 1 s: one core
    assert slept == [0.25]


def test_proc_stat_busy_ticks_count_niced_work_but_not_idle_and_iowait(tmp_path):
    """A niced neighbour's thread still takes its core from a run's thread for its time slices."""
    stat = tmp_path / "stat"
    stat.write_text("cpu  100 7000 20 900 30 1 2 3 0 0\ncpu0 50 3500 10 450 15 0 1 1 0 0\n")
    assert threads._ticks(str(stat)) == (100 + 7000 + 20 + 1 + 2 + 3, 100 + 7000 + 20 + 900 + 30 + 1 + 2 + 3)
    stat.write_text("intr 1 2 3\n")
    assert threads._ticks(str(stat)) is None and threads._ticks(str(tmp_path / "missing")) is None


def test_using_sets_and_restores(monkeypatch):
    before = torch.get_num_threads()
    with threads.using(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with pytest.raises(CnnlabError):
        threads.check(0)


@pytest.mark.parametrize("env, policy", [({}, "PASSIVE"), ({"OMP_WAIT_POLICY": "active"}, "active"),
                                         ({"GOMP_SPINCOUNT": "1000"}, None)])
def test_the_command_lets_openmp_threads_sleep_at_barriers_unless_the_user_chose(env, policy):
    import subprocess
    import sys
    code = "import os; from cnnlab.cli import main; main(['models']); print(os.environ.get('OMP_WAIT_POLICY'))"
    clean = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    proc = subprocess.run([sys.executable, "-c", code], env={**clean, **env}, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == str(policy)


def test_a_process_that_loaded_torch_keeps_its_openmp_settings(monkeypatch, capsys):
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.delenv("GOMP_SPINCOUNT", raising=False)
    assert main(["models"]) == 0
    assert "OMP_WAIT_POLICY" not in os.environ  # too late to matter here: nothing is changed


@pytest.mark.slow  # four training runs (the fixture), then evaluate and a report
def test_evaluate_runs_at_the_given_count_and_the_report_shows_the_runs(runs, tmp_path, capsys, monkeypatch):
    from cnnlab.runs import saved
    seen, real = [], saved.predict_logits

    def spy(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return real(*args, **kwargs)
    monkeypatch.setattr(saved, "predict_logits", spy)
    before = torch.get_num_threads()
    run = cnnlab.load_run(runs[2, "a"][1]["config"]["out"])
    assert main(["evaluate", str(run.path), "--threads", "1", "--no-save"]) == 0
    assert seen == [1] and torch.get_num_threads() == before
    assert f"Test Accuracy: {run.metrics['test_acc']:.3f} %" in capsys.readouterr().out
    page = run.report(tmp_path / "r.html").read_text()
    assert "<dt>threads</dt><dd>2</dd><dt>threads from</dt><dd>flag</dd>" in page


def test_the_launcher_gives_the_workers_a_count_and_the_caller_its_environment_back(monkeypatch):
    """--nproc's workers inherit the shared-out count; the process that launched them (a test
    calling main(), a notebook) keeps its own environment, so that its next run chooses its own."""
    import torch.distributed.run
    from cnnlab.training import launch
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv(threads.CHOSEN_ENV, raising=False)
    monkeypatch.setattr(threads, "cores", lambda: 2)
    seen = {}
    monkeypatch.setattr(torch.distributed.run, "run", lambda args: seen.update(
        {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", threads.CHOSEN_ENV)}))
    assert launch.launch(2, ["train", "--epochs", "1"]) == 0
    assert seen == {"OMP_NUM_THREADS": "1", threads.CHOSEN_ENV: "default"}
    assert "OMP_NUM_THREADS" not in os.environ and threads.CHOSEN_ENV not in os.environ
    monkeypatch.setenv("OMP_NUM_THREADS", "3")  # the user's own count is passed on, and kept
    assert launch.launch(2, ["train"]) == 0
    assert seen == {"OMP_NUM_THREADS": "3", threads.CHOSEN_ENV: None} and os.environ["OMP_NUM_THREADS"] == "3"
