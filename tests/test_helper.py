"""The command's helper process (cnnlab/helper.py): jobs run there and come back, a failed job or
no helper means the work is done here, the data key it computes is the key computed in place,
and the run's curves are drawn there without matplotlib in the command's own process."""
import json
import os
import subprocess
import sys
import time

from cnnlab import helper
from cnnlab.data import dataset as data


def python(code: str, *args: str) -> str:
    """code in a fresh interpreter (torch not imported: the only kind that forks); its stdout."""
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_jobs_run_in_the_helper_in_order_and_failures_come_back_as_none():
    got = json.loads(python(
        "import json, os\n"
        "from cnnlab import helper\n"
        "assert helper.start()\n"
        "jobs = [helper.submit('os:getpid'), helper.submit('math:sqrt', 16), helper.submit('math:sqrt', -1),\n"
        "        helper.submit('builtins:print', 'noise')]\n"
        "later_first = jobs[1].result()\n"
        "print(json.dumps([os.getpid(), later_first, [j.ok() for j in jobs], [j.result() for j in jobs]]))\n"))
    me, sqrt, oks, values = got
    assert sqrt == 4.0
    assert oks == [True, True, False, True]
    assert values[0] != me and values[1:] == [4.0, None, None]  # computed in another process, printing nothing here


def test_run_does_the_work_here_where_the_helper_fails_or_none_runs():
    out = python("import os, signal\n"
                 "from cnnlab import helper\n"
                 "helper.start()\n"
                 "try:\n"
                 "    helper.run('math:sqrt', -1)\n"
                 "except ValueError as e:\n"
                 "    print('here:', e)\n"
                 "os.kill(helper.submit('os:getpid').result(), signal.SIGKILL)\n"
                 "print(helper.run('os:getpid') == os.getpid())\n")  # the helper is gone
    assert out == "here: math domain error\nTrue\n"
    assert "torch" in sys.modules  # this process: no helper, everything here
    assert not helper.start() and helper.submit("math:sqrt", 4) is None
    assert helper.run("math:sqrt", 9) == 3.0 and helper.run(os.getpid) == os.getpid()


def test_the_helper_imports_its_warm_modules_ignores_sigint_and_ends_with_this_process():
    out = python(
        "import os, signal, sys, time\n"
        "from cnnlab import helper\n"
        "helper.start(warm=['cnnlab.analysis.plots'])\n"
        "pid = helper.submit('os:getpid').result()\n"
        "for _ in range(200):\n"
        "    if helper.submit('sys:modules.__contains__', 'matplotlib.figure').result():\n"
        "        break\n"
        "    time.sleep(0.05)\n"
        "else:\n"
        "    raise SystemExit('not warmed')\n"
        "os.kill(pid, signal.SIGINT)\n"
        "print(pid, helper.submit('math:sqrt', 25).result(), 'matplotlib' in sys.modules)\n")
    pid, value, here = out.split()
    assert value == "5.0" and here == "False"  # alive after SIGINT; matplotlib only there
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


def test_the_data_key_from_the_helper_is_the_key_computed_in_place(tiny_folder):
    here = data.source_fingerprint(data.resolve(tiny_folder), 32)
    got = json.loads(python(
        "import json, sys\n"
        "from cnnlab import helper\n"
        "from cnnlab.data import sources\n"
        "helper.start()\n"
        "sources.key_ahead(sys.argv[1], 32)\n"
        "waiting = len(sources._ahead)\n"
        "src = sources.resolve(sys.argv[1])\n"
        "print(json.dumps([waiting, sources.source_fingerprint(src, 32), len(sources._ahead),\n"
        "                  sources.source_fingerprint(src, 64)]))\n", str(tiny_folder)))
    waiting, key, left, other = got
    assert waiting == 1 and left == 0  # started, then taken
    assert key == here
    assert other == data.source_fingerprint(data.resolve(tiny_folder), 64) != here  # another size: in place


def test_no_dataset_or_no_helper_starts_no_key(tmp_path, tiny_folder):
    out = python("import sys\n"
                 "from cnnlab import helper\n"
                 "from cnnlab.data import sources\n"
                 "sources.key_ahead(sys.argv[2], 32)\n"  # no helper yet
                 "helper.start()\n"
                 "sources.key_ahead(sys.argv[1], 32)\n"
                 "print(len(sources._ahead))\n", str(tmp_path / "none"), str(tiny_folder))
    assert out == "0\n"


def test_the_command_draws_its_curves_in_the_helper(tiny_folder, tmp_path):
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "cnnlab", "train", "--data", str(tiny_folder),
                           "--epochs", "2", "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    imported = [line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")]
    assert "torch" in imported and "matplotlib" not in imported  # the command's own imports only
