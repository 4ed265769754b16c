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


def test_notebooks_are_what_build_py_writes(tmp_path):
    """The committed notebooks are generated (``python notebooks/build.py``): an edit to one of them, or to build.py
    without a rebuild, fails here rather than drifting apart."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("notebook_build", NOTEBOOKS[0].parent / "build.py")
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    assert sorted(build.NOTEBOOKS) == [path.name for path in NOTEBOOKS]
    def content(path: Path) -> tuple:
        """What build.py decides, read back (another nbformat release may lay the JSON out otherwise)."""
        notebook = nbformat.read(path, as_version=4)
        return notebook.metadata.kernelspec, [(cell.id, cell.cell_type, cell.source) for cell in notebook.cells]

    for name, cells in build.NOTEBOOKS.items():
        build.build(name, cells, folder=tmp_path)
        assert content(tmp_path / name) == content(NOTEBOOKS[0].parent / name), name


@pytest.mark.slow  # 20-60 s each on 2 cores: every method over a whole light field or clip
@pytest.mark.timeout(600)
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs(path, tmp_path, monkeypatch):
    from nbclient import NotebookClient

    # on ../shared/data, a 4x4 sub-grid of the light field, one match pair, the middle of alley_1's frames and the first
    # 4 frames of the embedded clip: every cell runs, in 20-60 s per notebook on 2 cores (the video notebook about 55 s)
    monkeypatch.setenv("LFREFSR_NOTEBOOK_QUICK", "1")
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(notebook, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    images = sum("image/png" in output.get("data", {}) for cell in notebook.cells for output in cell.get("outputs", []))
    assert images >= 2, f"{path.name} drew {images} figures"
