"""Run folders: train into one, resume one, read one back.

    run_train(cfg)                 new run folder (fit.py)
    resume_train(run_dir)          continue an interrupted run exactly (fit.py)
    load_run / evaluate_run        a finished run's model and test accuracy (saved.py)
    read_config, new_run_dir       the folder and its config.json (folder.py)
    StopSignals, Interrupted       stopping after the current step on SIGINT/SIGTERM (signals.py)
"""
from .fit import resume_train, run_train
from .folder import HISTORY_FIELDS, describe, new_run_dir, read_config, versions, write_json
from .saved import default_data, evaluate_run, load_run
from .signals import Interrupted, StopSignals

__all__ = ["HISTORY_FIELDS", "default_data", "Interrupted", "StopSignals", "describe", "evaluate_run", "load_run",
           "new_run_dir", "read_config", "resume_train", "run_train", "versions", "write_json"]
