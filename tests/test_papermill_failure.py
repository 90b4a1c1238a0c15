"""The papermill command line on a notebook that fails: a non-zero exit, and an output notebook whose failing
cell holds the clear DataError message under papermill's error marker. (tests/test_notebooks.py covers bad
parameter names through papermill's Python API; here the real CLI, and failures in the loading cell.)"""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).parents[1]
NOTEBOOK = ROOT / "notebooks" / "02_overall.ipynb"
MARKER = "papermill-error-cell-tag"
SETUP_CELL, LOAD_CELL = 3, 4  # code cells: imports, parameters, injected parameters, setup, load
pytest.importorskip("papermill")


def papermill_cli(tmp_path: Path, *parameters: str) -> tuple[subprocess.CompletedProcess, Path]:
    out = tmp_path / "out.ipynb"
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1")
    env["AUTOEMB_CACHE_DIR"] = str(tmp_path / "cache")
    done = subprocess.run(
        [sys.executable, "-m", "papermill", str(NOTEBOOK), str(out), "-k", "python3", "--cwd", str(tmp_path),
         "--no-progress-bar", "-p", "results_dir", str(tmp_path / "results"), *parameters],
        capture_output=True, text=True, timeout=300, env=env)
    return done, out


def failed_cell(out: Path, index: int, message: str):
    """The failing cell of the saved notebook: the one expected, with papermill's marker and the message."""
    nb = nbformat.read(out, as_version=4)
    assert MARKER in nb.cells[0].metadata.get("tags", []) and "An Exception was encountered" in nb.cells[0].source
    code = [c for c in nb.cells if c.cell_type == "code"]
    failed = [i for i, c in enumerate(code) if any(o.output_type == "error" for o in c.outputs)]
    assert failed == [index], failed
    cell = code[index]
    before = nb.cells[nb.cells.index(cell) - 1]
    assert MARKER in before.metadata.get("tags", []) and 'id="papermill-error-cell"' in before.source
    assert cell.metadata.papermill.exception is True and cell.metadata.papermill.status == "failed"
    assert not any(c.execution_count for c in code[index + 1:]), "nothing ran after the failing cell"
    (error,) = [o for o in cell.outputs if o.output_type == "error"]
    assert error.ename == "DataError", error.ename
    assert re.search(message, error.evalue), error.evalue  # the message itself, not only a traceback
    return error


def test_a_bad_value_fails_the_setup_cell_and_the_command(tmp_path):
    done, out = papermill_cli(tmp_path, "-p", "task", "regresion")
    assert done.returncode == 1, done.stderr[-2000:]
    error = failed_cell(out, SETUP_CELL, r"task='regresion' is not valid \(did you mean 'regression'\?\)")
    assert "choose one of regression, classification, both" in error.evalue  # the hint
    assert "did you mean 'regression'" in done.stderr  # the command says it too
    # the cell shows the message, its hint and two lines of where, not IPython's 40-line traceback
    shown = "\n".join(error.traceback)
    assert len(shown.splitlines()) == 4 and "Traceback" not in shown and "---------" not in shown, shown
    assert "DataError" in shown and "choose one of" in shown and "cell: line 1: setup = nbparams" in shown
    assert re.search(r"raised by: .*autoemb_core/nbparams\.py, line \d+", shown), shown


def test_a_missing_data_folder_fails_the_loading_cell(tmp_path):
    done, out = papermill_cli(tmp_path, "-p", "dataset", "ml-20m", "-p", "data_dir", "/nonexistent/data")
    assert done.returncode == 1, done.stderr[-2000:]
    error = failed_cell(out, LOAD_CELL, r"no ratings\.csv for dataset 'ml-20m'; looked for /nonexistent/data/ml-20m/")
    assert "grouplens" in error.evalue and "python -m autoemb_core download" in error.evalue
    assert not (tmp_path / "results").exists()


def test_a_truncated_data_file_fails_the_loading_cell_at_its_line(tmp_path):
    data = tmp_path / "data" / "ml-100k"
    data.mkdir(parents=True)
    shutil.copy(ROOT / "tests" / "fixtures" / "ml-100k" / "u.data", data / "u.data")
    lines = (data / "u.data").read_bytes().count(b"\n")
    with open(data / "u.data", "ab") as f:
        f.write(b"186\t30")  # a download cut off in the middle of a line
    done, out = papermill_cli(tmp_path, "-p", "dataset", "ml-100k", "-p", "data_dir", str(tmp_path / "data"))
    assert done.returncode == 1, done.stderr[-2000:]
    failed_cell(out, LOAD_CELL, re.escape(f"{data / 'u.data'}, line {lines + 1}: expected 'user id<TAB>item id<TAB>"
                                          "rating<TAB>timestamp', got 2 fields split on '\\t': '186\\t30'"))
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir()), "nothing cached"
