"""The README's two commands stay true: CI runs the test command exactly as the README shows it."""
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    return [line for line in (ROOT / "README.md").read_text().splitlines()
            if line.startswith("python3 -m venv .venv && ")]


def test_readme_shows_the_main_job_and_the_test_command():
    main_job, tests = readme_commands()
    assert main_job.endswith("&& .venv/bin/cnnlab train")
    assert tests.endswith("&& .venv/bin/python -m pytest")
    for command in (main_job, tests):
        assert "torch==2.13.0" in command  # never an open range: that pulls a CUDA build here


def test_ci_runs_the_readme_test_command():
    _, tests = readme_commands()
    assert (ROOT / ".ci" / "run").read_text().splitlines()[-1] == tests
