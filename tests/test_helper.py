"""The command's helper process (cnnlab/helper.py): jobs run there and come back, a failed job or
no helper means the work is done here, the data key it computes is the key computed in place,
and the run's curves are drawn there without matplotlib in the command's own process."""
import json
import os
import subprocess
import sys
import time

from cnnlab import helper
from cnnlab.cli import train as cli_train
from cnnlab.data import dataset as data, sources

START = "from cnnlab import helper\nhelper.allow()\n"


def python(code: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """code in a fresh interpreter (torch not imported: the only kind that forks)."""
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120)
    if check:
        assert out.returncode == 0, out.stderr
    return out


def test_jobs_run_in_the_helper_in_order_and_failures_come_back_as_none():
    got = json.loads(python(START + (
        "import json, os\n"
        "assert helper.start()\n"
        "jobs = [helper.submit('os:getpid'), helper.submit('math:sqrt', 16), helper.submit('math:sqrt', -1),\n"
        "        helper.submit('builtins:print', 'noise'), helper.submit('builtins:divmod', 7, 2)]\n"
        "later_first = jobs[1].result()\n"
        "print(json.dumps([os.getpid(), later_first, [j.ok() for j in jobs], [j.result() for j in jobs]]))\n")).stdout)
    me, sqrt, oks, values = got
    assert sqrt == 4.0
    assert oks == [True, True, False, True, True]
    assert values[0] != me and values[1:] == [4.0, None, None, [3, 1]]  # another process; a tuple as JSON's list


def test_run_does_the_work_here_where_the_helper_fails_or_none_runs():
    out = python(START + (
        "import os, signal\n"
        "helper.start()\n"
        "try:\n"
        "    helper.run('math:sqrt', -1)\n"
        "except ValueError as e:\n"
        "    print('here:', e)\n"
        "os.kill(helper.submit('os:getpid').result(), signal.SIGKILL)\n"
        "print(helper.run('os:getpid') == os.getpid())\n")).stdout  # the helper is gone
    assert out == "here: math domain error\nTrue\n"
    assert "torch" in sys.modules  # this process: no helper, everything here
    assert not helper.start() and helper.submit("math:sqrt", 4) is None
    assert helper.run("math:sqrt", 9) == 3.0 and helper.run(os.getpid) == os.getpid()


def test_only_the_command_forks_a_helper():
    out = python("from cnnlab import helper\nprint(helper.start())\nhelper.allow()\nprint(helper.start())\n").stdout
    assert out == "False\nTrue\n"  # main() and library calls, then the console command (cli.run)


def test_large_jobs_and_replies_in_both_directions_do_not_block_each_other():
    out = python(START + (
        "helper.start()\n"
        "jobs = [helper.submit('builtins:str', 'x' * 50_000) for _ in range(30)]\n"
        "print(sum(len(j.result()) for j in jobs))\n"), check=False)
    assert out.returncode == 0 and out.stdout == f"{30 * 50_000}\n", out.stderr


def test_a_jobs_warnings_are_raised_in_this_process():
    out = python(START + (
        "import warnings\n"
        "helper.start()\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        "    job = helper.submit('warnings:warn', 'from the helper')\n"
        "    ran = job.ok()\n"
        "print(ran, [(str(w.message), w.category.__name__) for w in caught])\n")).stdout
    assert out == "True [('from the helper', 'UserWarning')]\n"


def test_the_helper_imports_its_warm_modules_and_ends_with_this_process_even_mid_job():
    out = python(START + (
        "import os, sys, time\n"
        "helper.start(warm=['cnnlab.analysis.plots'])\n"
        "pid = helper.submit('os:getpid').result()\n"
        "for _ in range(200):\n"
        "    if helper.submit('sys:modules.__contains__', 'matplotlib.figure').result():\n"
        "        break\n"
        "    time.sleep(0.05)\n"
        "else:\n"
        "    raise SystemExit('not warmed')\n"
        "helper.submit('time:sleep', 60)\n"  # still at it when this process ends
        "print(pid, 'matplotlib' in sys.modules)\n")).stdout
    pid, here = out.split()
    assert here == "False"  # matplotlib only there
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and alive(int(pid)):
        time.sleep(0.05)
    assert not alive(int(pid))


def alive(pid: int) -> bool:
    """Running (a zombie no one reaped does not count)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_the_data_key_from_the_helper_is_the_key_computed_in_place(tiny_folder, tmp_path):
    (tmp_path / "other").mkdir()
    here = data.source_fingerprint(data.resolve(tiny_folder), 32)
    got = json.loads(python(START + (
        "import json, os, sys\n"
        "from cnnlab.data import sources\n"
        "helper.start()\n"
        "os.chdir(sys.argv[1])\n"  # a relative path, as --data gives it
        "helper.submit_as(sources.KEY_JOB, sources.key_request, 'tiny', 32, 'crop')\n"
        "src = sources.resolve('tiny')\n"
        "first = sources.source_fingerprint(src, 32)\n"
        "taken = helper.take(sources.KEY_JOB)\n"
        "helper.submit_as(sources.KEY_JOB, sources.key_request, 'tiny', 32, 'crop')\n"
        "os.chdir(sys.argv[2])\n"  # the helper keeps its folder: its key names another tiny/
        "os.symlink(os.path.join(sys.argv[1], 'tiny'), 'tiny')\n"
        "print(json.dumps([first, taken, sources.source_fingerprint(sources.resolve('tiny'), 64)]))\n"),
        str(tiny_folder.parent), str(tmp_path / "other")).stdout)
    first, taken, other = got
    assert first == here and taken is None  # the helper's key, taken once
    assert other == data.source_fingerprint(data.resolve(tiny_folder), 64) != here  # another size: in place


def test_the_train_command_submits_the_key_job_sources_takes():
    assert "data-key" == sources.KEY_JOB
    assert '"data-key", "cnnlab.data.sources:key_request"' in open(cli_train.__file__).read()


def test_no_dataset_gives_no_key(tmp_path):
    assert sources.key_request(str(tmp_path / "none"), 32, "crop") is None


def test_a_bad_data_setting_is_one_line_as_before(tmp_path):
    out = subprocess.run([sys.executable, "-m", "cnnlab", "train", "--set", "data=5", "--out", str(tmp_path / "r")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.startswith("cnnlab: error: ") and out.stderr.count("\n") == 1, out.stderr


def test_the_command_draws_its_curves_in_the_helper(tiny_folder, tmp_path):
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "cnnlab", "train", "--data", str(tiny_folder),
                           "--epochs", "2", "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    imported = [line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")]
    assert "torch" in imported and "matplotlib" not in imported  # the command's own imports only
