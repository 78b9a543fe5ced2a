"""Writes tests/data/old-run: a run folder made by cnnlab before the resize rule was recorded.

Run it with that cnnlab importable (commit 9b9ce49: `git archive 9b9ce49 | tar -x -C OLD`):
    PYTHONPATH=OLD:tests python tests/data/make_old_run.py tests/data/old-run
It trains seed for 2 epochs on legacy_data.legacy_folder, keeps config.json and
model.safetensors, and writes expected.json: what that version's evaluate and predict said.
"""
import json
import shutil
import sys
import tempfile
from pathlib import Path

import cnnlab
from cnnlab.cli import main
from cnnlab.runs import evaluate_run
from cnnlab.runs.predict import predict

from legacy_data import legacy_folder

out = Path(sys.argv[1])
with tempfile.TemporaryDirectory() as tmp:
    data = legacy_folder(Path(tmp) / "data")
    run = Path(tmp) / "run"
    assert main(["train", "--data", str(data), "--epochs", "2", "--batch-size", "16", "--val-size", "8",
                 "--device", "cpu", "--precision", "fp32", "--out", str(run)]) == 0
    ev = evaluate_run(run, device="cpu")
    plain = sorted(p for p in (data / "test").rglob("*.png") if not p.name.startswith("odd-"))
    preds = {str(p.relative_to(data)): item.top for p, item in
             zip(plain, predict(run, plain, top_k=3, device="cpu"))}
    out.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "model.safetensors"):
        shutil.copyfile(run / name, out / name)
    expected = {"made_with": f"cnnlab {cnnlab.__version__} at commit 9b9ce49",
                "acc": ev["acc"], "logits": ev["logits"].tolist(), "fingerprint": ev["data_fingerprint"],
                "predict": preds}
    (out / "expected.json").write_text(json.dumps(expected, indent=1) + "\n")
print(f"wrote {out}")
