"""The notebooks run from start to end without errors, and are committed without outputs."""

import pathlib

import nbclient
import nbformat
import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks():
  assert [p.name for p in NOTEBOOKS] == [
      "01_mxfp4_format.ipynb", "02_grouped_matmul.ipynb", "03_generate_tiny.ipynb"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_stripped(path):
  nb = nbformat.read(path, as_version=4)
  nbformat.validate(nb)
  assert nb.metadata.kernelspec.name == "python3"
  for cell in nb.cells:
    if cell.cell_type == "code":
      assert cell.outputs == [], f"{path.name}: a code cell has outputs"
      assert cell.execution_count is None, f"{path.name}: a code cell has an execution count"


# Every notebook from the repository root; the one that reads a repository file from notebooks/ too.
RUNS = [(path, "root") for path in NOTEBOOKS] + [
    (path, "notebooks") for path in NOTEBOOKS if path.name == "02_grouped_matmul.ipynb"]


@pytest.mark.parametrize("path,cwd", RUNS, ids=lambda v: getattr(v, "stem", v))
def test_notebook_runs(path, cwd):
  nb = nbformat.read(path, as_version=4)
  workdir = ROOT if cwd == "root" else path.parent
  client = nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                                   resources={"metadata": {"path": str(workdir)}})
  client.execute()  # raises CellExecutionError at the first failing cell
  errors = [out for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs
            if out.output_type == "error"]
  assert not errors
