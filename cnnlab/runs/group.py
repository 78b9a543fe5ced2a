"""A group of runs: one recipe trained once per seed, one run folder per seed, one after another.

    run_group(TrainConfig(model="seed"), [0, 1, 2, 3, 4])   # runs/<date-time>-seed-seeds/
    resume_group("runs/20260101-120000-seed-seeds")        # continue where it stopped

    GROUP/
        group.json     the recipe, the seeds, each seed's results and their summary
        seed-0/        an ordinary run folder (see folder.py), trained with seed 0
        seed-1/ ...

Each run is made by run_train / resume_train with only the seed replaced, so a run of a group
is bitwise the run that 'cnnlab train --seed N' makes. group.json is rewritten after every
finished run. An interrupted group resumes finished runs as they are, the interrupted one
from its checkpoint, and the rest afresh.
"""
from __future__ import annotations

import csv
import json
import re
import signal
from dataclasses import replace
from pathlib import Path
from typing import Callable

from .. import checkpoints
from ..data import dataset as data_mod
from ..network import models
from ..errors import CnnlabError
from ..training.loop import TrainConfig, pick_device
from ..training.seeds import MAX_SEED
from .fit import RESUME_MAY_CHANGE, check_data_bounds, refuse_changes, resume_train, run_train
from .folder import claim_run_dir, read_config, unclaim, write_json
from .lock import LOCK_NAME, hold
from .signals import Interrupted

GROUP_FILE = "group.json"
FORMAT = 1


def parse_seeds(text: str) -> list[int]:
    """'0-4' -> [0, 1, 2, 3, 4]; '0,3,7' -> [0, 3, 7]; '0-2,9' -> [0, 1, 2, 9]."""
    seeds = []
    for part in text.split(","):
        m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if not m or (m[2] is not None and int(m[2]) < int(m[1])):
            raise CnnlabError(f"--seeds {text!r} is not a list of seeds: write a range like 0-4, "
                              f"a list like 0,3,7, or both (0-2,9), with non-negative integers")
        first, last = int(m[1]), int(m[2]) if m[2] is not None else int(m[1])
        if last > MAX_SEED:
            raise CnnlabError(f"--seeds {text!r} names seed {last}: seeds go from 0 to {MAX_SEED} (2**32 - 1)")
        seeds += range(first, last + 1)
    if len(set(seeds)) != len(seeds):
        raise CnnlabError(f"--seeds {text!r} names a seed twice: each seed is one run")
    return seeds


def seeds_text(seeds: list[int]) -> str:
    """The shortest way to write seeds back: [0, 1, 2, 3, 4] -> '0-4'."""
    if seeds and seeds == list(range(seeds[0], seeds[-1] + 1)) and len(seeds) > 2:
        return f"{seeds[0]}-{seeds[-1]}"
    return ",".join(map(str, seeds))


def is_group(path) -> bool:
    return (Path(path) / GROUP_FILE).is_file()


def read_group(group_dir) -> dict:
    path = Path(group_dir) / GROUP_FILE
    try:
        group = json.loads(path.read_text())
        group["seeds"], group["config"]  # noqa: B018 - the keys must be there
    except OSError:
        raise CnnlabError(f"{group_dir} is not a group folder (no {GROUP_FILE}): pass a folder "
                          f"made by 'cnnlab train --seeds'") from None
    except (ValueError, KeyError, TypeError) as e:
        raise CnnlabError(f"{path} is damaged ({type(e).__name__}: {e}): the group cannot be read") from None
    return group


def base_config(group: dict) -> TrainConfig:
    """The group's recipe; each run replaces its seed (group.json's seed, if any, is not one)."""
    return TrainConfig.from_dict({k: v for k, v in group["config"].items() if k != "seed"})


def run_dir(group_dir, seed: int) -> Path:
    return Path(group_dir) / f"seed-{seed}"


def best_val_epoch(history_csv: Path) -> int | None:
    """The epoch with the highest validation accuracy (the first, on ties); None without one."""
    try:
        with open(history_csv, newline="") as f:
            rows = [(int(r["epoch"]), float(r["val_acc"])) for r in csv.DictReader(f)]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    rows = [r for r in rows if r[1] == r[1]]  # drop nan (no validation split)
    return max(rows, key=lambda r: (r[1], -r[0]))[0] if rows else None


def run_result(run: Path, seed: int | None = None) -> dict:
    """One run's line in group.json: finished with its metrics, or its status."""
    out = {"seed": seed, "dir": run.name, "status": "not started"}
    try:
        m = json.loads((run / "metrics.json").read_text())
        m["test_acc"]  # noqa: B018 - a finished run has it
    except OSError:
        m = None
    except (ValueError, KeyError, TypeError):
        return {**out, "status": "damaged"}
    if m is not None:
        out.update(status="finished", test_acc=m["test_acc"], val_acc=m.get("val_acc"),
                   best_val_epoch=best_val_epoch(run / "history.csv"), epochs=m.get("epochs"),
                   steps=m.get("steps"), train_seconds=m.get("train_seconds"))
    elif (run / "config.json").is_file():
        out["status"] = "unfinished"
    return out


def summary(results: list[dict]) -> dict:
    from ..analysis.stats import summarize  # mean and std need no scipy; the interval does
    accs = [r["test_acc"] for r in results if r["status"] == "finished"]
    try:
        s = summarize(accs)
    except CnnlabError:  # scipy is not installed: the interval is left to 'cnnlab compare'
        s = summarize(accs, with_ci=False)
    times = [r["train_seconds"] for r in results if r.get("train_seconds") is not None]
    return {"finished": len(accs), "planned": len(results), "test_acc": s,
            "train_seconds_mean": sum(times) / len(times) if times else None}


def _write(group_dir: Path, group: dict) -> dict:
    group["runs"] = [run_result(run_dir(group_dir, s), s) for s in group["seeds"]]
    group["summary"] = summary(group["runs"])
    write_json(group_dir / GROUP_FILE, group)
    return group


def probe(build: Callable):
    """A network from a model builder, to check the data against, leaving the global RNG as it was."""
    import torch
    with torch.random.fork_rng(devices=[]):
        return build()


def run_group(cfg: TrainConfig, seeds: list[int], log: Callable[[str], None] = print, *,
              data: data_mod.ImageData | None = None, model: Callable | None = None,
              progress: bool | None = None) -> dict:
    """Train cfg once per seed into a new group folder (cfg.out, else runs/<date-time>-<model>-seeds).

    data: images given from Python (cnnlab.data.memory) instead of cfg.data's path; model: a
    callable that builds a fresh network (called once per seed, after seeding) instead of the
    registered cfg.model; progress: a bar per epoch (None: when stderr is a terminal).
    """
    if not seeds:
        raise CnnlabError("--seeds names no seed: give a range like 0-4 or a list like 0,3,7")
    cfg.validate()
    if model is None:
        models.create(cfg.model)  # an unknown name, device, folder or dataset fails before any folder is made
    pick_device(cfg.device)
    claim = claim_run_dir(cfg.out, f"{cfg.model}-seeds")  # created and locked before the data are read
    group_dir = claim.path
    try:
        if data is None:
            data = data_mod.load(cfg.data, strict=cfg.strict)
        data_mod.val_count(cfg.val_size, len(data.train_y))  # a --val-size too large for the data
        check_data_bounds(cfg, data, None if model is None else probe(model))
        # The absolute path, so that the group resumes from any folder (as run_train does for a run).
        where = str(Path(cfg.data).expanduser().resolve()) if cfg.data is not None else data.source
        group = {"format": FORMAT, "kind": "cnnlab group", "seeds": seeds,
                 # The recipe without a seed: each run's seed comes from "seeds".
                 "config": {k: v for k, v in replace(cfg, out=str(group_dir), data=where).to_dict().items() if k != "seed"},
                 "data": {"source": data.source, "fingerprint": data.fingerprint}}
        _write(group_dir, group)
    except BaseException:
        unclaim(claim)
        raise
    with hold(group_dir, claim.fd):
        log(f"Training {cfg.model} with seeds {seeds_text(seeds)}, one run after another; "
            f"group folder {group_dir}")
        return _continue(group_dir, group, {}, log, data=data, model=model, progress=progress)


def resume_group(group_dir, overrides: dict | None = None, log: Callable[[str], None] = print, **given) -> dict:
    """Continue an interrupted group: finished runs stay, the interrupted one resumes exactly."""
    group_dir = Path(group_dir)
    read_group(group_dir)  # a group folder, before a lock file is put in it
    with hold(group_dir):  # one process per group: a second resume is refused
        return _resume(group_dir, read_group(group_dir), overrides or {}, log, **given)


def _resume(group_dir: Path, group: dict, overrides: dict, log: Callable[[str], None], **given) -> dict:
    saved = base_config(group)
    refuse_changes(saved, overrides, "group")
    if overrides.get("data") is not None:
        data = data_mod.load(overrides["data"], strict=saved.strict)
        if data.fingerprint != group.get("data", {}).get("fingerprint"):
            raise CnnlabError(f"the data at {data.source} differ from the data {group_dir} was "
                              f"trained on: pass the original dataset with --data")
        # The same data found elsewhere now: group.json says where, for the runs still to come.
        group["config"]["data"] = str(Path(overrides["data"]).expanduser().resolve())
        group["data"] = {**group.get("data", {}), "source": data.source}
    for seed in group["seeds"]:  # before anything is counted or trained: the runs are the group's own
        if (run_dir(group_dir, seed) / "config.json").is_file():
            _check_member(group_dir, group, run_dir(group_dir, seed), seed)
    done = sum((run_dir(group_dir, s) / "metrics.json").is_file() for s in group["seeds"])
    if done == len(group["seeds"]):
        raise CnnlabError(f"{group_dir} has finished all {done} runs: nothing to resume; "
                          f"compare it with 'cnnlab compare {group_dir} OTHER'")
    log(f"Resuming group {group_dir}: {done} of {len(group['seeds'])} runs finished")
    return _continue(group_dir, group, overrides, log, **given)


# A member run's settings that may differ from the group's own: where it ran and found its data.
MEMBER_MAY_DIFFER = RESUME_MAY_CHANGE | {"seed"}


def _check_member(group_dir: Path, group: dict, run: Path, seed: int) -> None:
    """Refuse a run folder in the group whose seed, recipe or data are not the group's: it is
    another run (copied or written there by hand), and adopting it would mix it into the mean."""
    config = read_config(run)
    theirs = config["config"]
    mine = base_config(group).to_dict()
    fingerprint = group.get("data", {}).get("fingerprint")
    what = None
    if theirs.get("seed") != seed:
        what = f"was trained with seed {theirs.get('seed')}, not {seed}"
    elif fingerprint is not None and config["data"].get("fingerprint") != fingerprint:
        what = "was trained on other data than the group"
    else:
        theirs = TrainConfig.from_dict(theirs).to_dict()
        differ = sorted(k for k in mine if k not in MEMBER_MAY_DIFFER and mine[k] != theirs.get(k))
        if differ:
            what = f"has another recipe than the group ({', '.join(differ)} differ)"
    if what is not None:
        raise CnnlabError(f"{run} {what}: it is not a run of group {group_dir}; move it out of the "
                          f"group folder and resume the group again")


def _continue(group_dir: Path, group: dict, overrides: dict, log: Callable[[str], None], **given) -> dict:
    """given: data, model, progress for run_train / resume_train (see run_group)."""
    base = base_config(group)
    base = replace(base, **{k: v for k, v in overrides.items() if k in RESUME_MAY_CHANGE and v is not None})
    seeds, quiet = group["seeds"], (lambda line: None)
    for i, seed in enumerate(seeds, 1):
        run = run_dir(group_dir, seed)
        try:
            if (run / "config.json").is_file():
                _check_member(group_dir, group, run, seed)
            if (run / "metrics.json").is_file():
                continue
            if (run / "config.json").is_file():
                metrics = resume_train(run, {k: v for k, v in overrides.items() if k in RESUME_MAY_CHANGE},
                                       log=quiet, **given)
            else:
                if run.is_dir():  # killed before its config.json was complete: start it again
                    checkpoints.remove_partial_writes(run)
                    if [p.name for p in run.iterdir()] == [LOCK_NAME]:  # not held: the group's lock is ours
                        (run / LOCK_NAME).unlink()
                metrics = run_train(replace(base, seed=seed, out=str(run)), log=quiet, **given)
        except Interrupted as e:
            signum = e.exit_code - 128
            raise Interrupted(f"stopped by {signal.Signals(signum).name} in run {i} of {len(seeds)} "
                              f"(seed {seed}), its checkpoint saved; resume the group with: "
                              f"cnnlab train --resume {group_dir}", signum) from None
        except KeyboardInterrupt:  # Ctrl-C between two runs, or twice within one
            raise Interrupted(f"stopped by SIGINT in run {i} of {len(seeds)} (seed {seed}); resume "
                              f"the group with: cnnlab train --resume {group_dir}", signal.SIGINT) from None
        _write(group_dir, group)
        log(f"Run {i}/{len(seeds)}, seed {seed}: test accuracy {metrics['test_acc']:.3f} %, "
            f"{metrics['train_seconds']:.1f} s of training; {run}")
    group = _write(group_dir, group)
    s = group["summary"]["test_acc"]
    spread = f" +- {s['std']:.3f} (std)" if s["std"] is not None else ""
    log(f"Test accuracy over {s['n']} seeds: {s['mean']:.3f}{spread} %; compare groups with: "
        f"cnnlab compare {group_dir} OTHER_GROUP")
    return group
