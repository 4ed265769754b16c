"""Every notebook runs headless, top to bottom, without a cell error (nbclient), on the embedded default and on
../shared/data when present."""

from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


def test_notebooks_are_committed_without_outputs():
    assert len(NOTEBOOKS) == 3
    for path in NOTEBOOKS:
        notebook = nbformat.read(path, as_version=4)
        assert all(not cell.get("outputs") and not cell.get("execution_count")
                   for cell in notebook.cells if cell.cell_type == "code"), path.name


@pytest.mark.slow  # 15-60 s each on 2 cores: every method over a whole light field or clip
@pytest.mark.timeout(600)
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs(path, tmp_path, monkeypatch):
    from nbclient import NotebookClient

    # on ../shared/data, a 4x4 sub-grid of the light field and one match pair: every cell runs, in under a minute
    monkeypatch.setenv("LFREFSR_NOTEBOOK_QUICK", "1")
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(notebook, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    images = sum("image/png" in output.get("data", {}) for cell in notebook.cells for output in cell.get("outputs", []))
    assert images >= 2, f"{path.name} drew {images} figures"
