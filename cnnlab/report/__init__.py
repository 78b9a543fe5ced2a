"""Reports on trained runs: the evaluation's numbers and files, figures, and one HTML page.

    evaluation.py   eval.json, confusion.png, mistakes.png, calibration.png of a run
    figures.py      the PNG figures (matplotlib; data text drawn plain, never as markup)
    collect.py      what a report shows about one run, from its folder and data
    groups.py       the section on groups of seeds (from 'cnnlab train --seeds'): cnnlab compare's table
    page.py         the self-contained HTML page (style.py: its CSS)

    build_report(["runs/a", "runs/b"], "report.html")
    build_report(["runs/seed-seeds", "runs/seed-bn-seeds"], "groups.html")   # groups compared
"""
from __future__ import annotations

from pathlib import Path


def build_report(run_dirs, out, data_path=None, device: str = "auto") -> Path:
    """Write one HTML page about one run, or comparing several; returns its path.

    Group folders (group.json) are compared as groups, the way 'cnnlab compare' does; run
    folders get the full report, side by side when there are several.

    out must not exist unless it is a page cnnlab wrote earlier: nothing else is overwritten.
    """
    from .. import checkpoints
    from ..errors import CnnlabError
    from . import figures
    from .collect import collect
    from .page import render
    out = Path(out)
    if out.is_symlink() or out.exists() and not is_report(out):
        raise CnnlabError(f"{out} exists and is not a cnnlab report: choose another --out so it is not overwritten")
    if not out.parent.is_dir():
        raise CnnlabError(f"the folder of --out {out} does not exist: create it or choose another --out")
    from ..runs.group import is_group
    group_dirs = [r for r in run_dirs if is_group(r)]
    runs = [collect(r, data_path, device) for r in run_dirs if not is_group(r)]
    groups_html = ""
    if group_dirs:
        from .groups import groups_section
        groups_html = groups_section(group_dirs)
    names = [r["name"] for r in runs]
    for r in runs:  # runs/a/run and runs/b/run: tell them apart by their parent folder
        if names.count(r["name"]) > 1:
            r["name"] = "/".join(Path(r["path"]).parts[-2:])
    curves = b""
    if len(runs) > 1 and any(r["history"] for r in runs):
        curves = figures.curves([(r["name"], r["history"]) for r in runs if r["history"]])
    page = render(runs, curves, groups_html, len(group_dirs))
    checkpoints.atomic_write_bytes(out, page.encode("utf-8"))  # with the umask's mode, like every file
    return out


MARK = "<title>cnnlab report: "


def is_report(path: Path) -> bool:
    """Whether the file at path is a page that build_report wrote."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            head = f.read(4096)
    except OSError:
        return False
    return head.startswith("<!DOCTYPE html>") and MARK in head
