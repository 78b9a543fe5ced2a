"""The example notebooks (examples/*.ipynb) run top to bottom, on a small real subset with a step
cap that the notebooks read from the environment (CNNLAB_MAX_STEPS, CNNLAB_SEEDS), and are
stored without outputs."""
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
NOTEBOOKS = sorted(EXAMPLES.glob("*.ipynb"))


def test_there_are_three_notebooks_stored_without_outputs():
    assert [p.name for p in NOTEBOOKS] == ["01-report-reproduced.ipynb", "02-ladder.ipynb", "03-your-own-images.ipynb"]
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, path.name


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(path, real_subset, tmp_path, monkeypatch):
    monkeypatch.setenv("CNNLAB_MAX_STEPS", "3")
    monkeypatch.setenv("CNNLAB_SEEDS", "2")
    monkeypatch.setenv("CNNLAB_DATA", str(real_subset))
    monkeypatch.setenv("CNNLAB_EXAMPLE_FOLDER", str(real_subset))
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs)  # a figure was shown
    assert (tmp_path / "runs").is_dir()
    if path.stem.startswith("03"):
        assert (tmp_path / "my-images-report.html").is_file()
