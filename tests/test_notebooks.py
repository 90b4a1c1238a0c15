"""The notebooks: one parameters cell that matches the package's spec, thin code, committed outputs, and
headless runs with papermill on another dataset, including the failures a user can cause."""
import ast
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pandas as pd
import pytest
import yaml

from autoemb_core.methods import TABLE2, TUNED
from autoemb_core.nbparams import NOTEBOOKS

ROOT = Path(__file__).parents[1]
FILES = {"preliminary": "01_preliminary.ipynb", "overall": "02_overall.ipynb", "popularity": "03_popularity.ipynb",
         "data_efficiency": "04_data_efficiency.ipynb", "memory": "05_memory.ipynb"}


def read(name):
    return nbformat.read(ROOT / "notebooks" / FILES[name], as_version=4)


def code_cells(nb):
    return [c for c in nb.cells if c.cell_type == "code"]


@pytest.mark.parametrize("name", FILES)
def test_one_parameters_cell_holding_the_specs_defaults(name):
    nb = read(name)
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1
    values = {}
    for node in ast.parse(tagged[0].source).body:
        assert isinstance(node, ast.Assign), "the parameters cell only assigns values"
        values[node.targets[0].id] = ast.literal_eval(node.value)
    assert values == {k: knob.default for k, knob in NOTEBOOKS[name].items()}
    lines = [line for line in tagged[0].source.splitlines() if line.strip()]
    assert all("  # " in line for line in lines), "every parameter is commented"
    assert f'notebook_setup("{name}"' in code_cells(nb)[code_cells(nb).index(tagged[0]) + 1].source
    assert {"kernelspec", "language_info"} <= set(nb.metadata)


@pytest.mark.parametrize("name", FILES)
def test_notebooks_are_thin_and_hold_the_outputs_of_a_run(name):
    nb = read(name)
    for cell in code_cells(nb):
        assert not any(line.lstrip().startswith(("def ", "class ", "import torch")) for line in cell.source.splitlines())
        if "parameters" not in cell.metadata.get("tags", []):  # one line per parameter: not logic
            assert len(cell.source.splitlines()) <= 12, "logic belongs in the package"
        assert cell.execution_count is not None, "the committed notebook holds a real run's outputs"
    assert any(o.get("output_type") == "display_data" and "image/png" in o.get("data", {})
               for cell in code_cells(nb) for o in cell.outputs) or name == "overall"


def papermill(name, tmp_path, **parameters):
    pm = pytest.importorskip("papermill")
    return pm.execute_notebook(str(ROOT / "notebooks" / FILES[name]), str(tmp_path / FILES[name]),
                               parameters=parameters, cwd=str(tmp_path), progress_bar=False, kernel_name="python3",
                               execution_timeout=600)  # a cell that hangs fails the test, not the suite


@pytest.fixture
def netflix_dir(tmp_path):
    target = tmp_path / "data"
    shutil.copytree(ROOT / "tests" / "fixtures" / "netflix", target / "netflix")
    return target


def test_table2_on_a_netflix_folder_with_papermill(tmp_path, netflix_dir):
    out = tmp_path / "out"
    papermill("overall", tmp_path, dataset="netflix", data_dir=str(netflix_dir), results_dir=str(out), seeds=[0, 1],
              tune_trials=2)
    tuned = yaml.safe_load((out / "tuned.yaml").read_text())["tuned"]  # netflix has no tuned values: tuned first
    assert set(tuned) == {"regression", "classification"} and set(tuned["regression"]) == set(TUNED) - {"global-mean"}
    table2 = pd.read_csv(out / "table2.csv")
    assert set(table2.row) == {"ours", "ours vs FSE", "paper (netflix)", "paper vs FSE"}
    assert set(table2.task) == {"Regression", "Classification"}
    assert table2.loc[(table2.row == "paper (netflix)") & (table2.metric == "MSE loss"), "AutoEmb"].item() == "0.1779"
    assert len(pd.read_csv(out / "runs.csv")) == 2 * len(TABLE2) * 2 and (out / "table2.md").is_file()


@pytest.mark.parametrize("name, extra, files", [
    ("popularity", {}, ["figure6_popularity.png", "figure7_weights.svg", "figure6_popularity.csv"]),
    ("data_efficiency", {"methods": ["fse", "sam"]}, ["figure8_offline.png", "figure8_offline.csv"]),
])
def test_the_figures_on_a_netflix_folder_with_papermill(tmp_path, netflix_dir, name, extra, files):
    out = tmp_path / "out"
    papermill(name, tmp_path, dataset="netflix", data_dir=str(netflix_dir), results_dir=str(out), tune_trials=0, **extra)
    for file in files:
        assert (out / file).stat().st_size > 0


@pytest.mark.parametrize("parameters, words", [
    ({"dataset": "netflx"}, "dataset='netflx' is not valid"),
    ({"methods": "fse,autoemb", "seedz": [1]}, "unknown parameter.*seedz"),
    ({"max_interactions": -5}, "max_interactions must be a positive integer or null .*, got -5"),
])
def test_bad_parameters_stop_the_first_cells_with_a_message(tmp_path, parameters, words):
    pm = pytest.importorskip("papermill")
    with pytest.raises(pm.PapermillExecutionError, match=words):
        papermill("overall", tmp_path, **parameters)
    nb = nbformat.read(tmp_path / FILES["overall"], as_version=4)
    failed = [i for i, c in enumerate(code_cells(nb)) if any(o.get("output_type") == "error" for o in c.outputs)]
    assert failed == [3]  # imports, parameters, injected parameters, then the setup cell


def test_the_memory_frontier_on_a_netflix_folder_with_papermill(tmp_path, netflix_dir):
    out = tmp_path / "out"
    papermill("memory", tmp_path, dataset="netflix", data_dir=str(netflix_dir), results_dir=str(out),
              fse_widths=[2, 146], thresholds="8,64", penalties=[0.0], soft=False, workers=1)
    table = pd.read_csv(out / "frontier.csv")
    assert set(table.point) == {"fse d=2", "fse d=146", "mf d=2", "mf d=146", "popularity-rule thresholds=8,64",
                                "autoemb-hard penalty=0", "biases floor", "item-mean floor"}
    assert (table.embedding_bytes > 0).all() and (out / "memory_frontier.png").stat().st_size > 0
    claims = pd.read_csv(out / "claims.csv")
    assert "hard AutoEmb is on the FSE-d / popularity-rule frontier" in set(claims.claim) and (claims.n_seeds == 2).all()


def test_figure1_with_papermill_ends_with_its_claims(tmp_path):
    """The fixtures' users have at most 2 ratings, too few for Figure 1's test, validation and training parts:
    the built-in tiny stream instead."""
    out = tmp_path / "out"
    papermill("preliminary", tmp_path, dataset="synthetic-tiny", max_interactions=3000, n_test=2, n_validation=2,
              train_sizes=[1, 4], max_epochs=2, seeds=[0, 1], results_dir=str(out))
    for name in ("figure1_preliminary.svg", "figure1_runs.csv", "figure1_stream.csv"):
        assert (out / name).is_file()
    claims = pd.read_csv(out / "claims.csv")
    assert set(claims.claim) == {"Figure 1: crossover", "Figure 1 (stream): crossover"} and (claims.n_seeds == 2).all()


def test_notebooks_take_checkpoint_parameters_and_resume(tmp_path, netflix_dir):
    """checkpoint_dir, checkpoint_every and resume reach every run of a notebook; a resumed notebook rebuilds
    the same results from the finished runs' checkpoints."""
    ckpt = tmp_path / "ckpt"
    common = dict(dataset="netflix", data_dir=str(netflix_dir), methods=["fse", "autoemb"], seeds=[0],
                  checkpoint_dir=str(ckpt), checkpoint_every=2, tune_trials=0)
    (tmp_path / "first").mkdir(), (tmp_path / "second").mkdir()
    papermill("data_efficiency", tmp_path / "first", results_dir=str(tmp_path / "a"), **common)
    assert sorted(p.name for p in ckpt.iterdir()) == ["netflix-autoemb-regression-seed0.pt",
                                                      "netflix-fse-regression-seed0.pt"]
    papermill("data_efficiency", tmp_path / "second", results_dir=str(tmp_path / "b"), resume=True, **common)
    a, b = (pd.read_csv(tmp_path / d / "figure8_offline.csv") for d in ("a", "b"))
    pd.testing.assert_frame_equal(a, b)
    for method in ("fse", "autoemb"):  # the second run rebuilt its results from the finished checkpoints
        first, second = (json.loads((tmp_path / d / "runs" / f"regression-{method}-seed0" / "summary.json").read_text())
                         for d in ("a", "b"))
        assert first["resumed_from_batch"] is None and second["resumed_from_batch"] > 0


def test_a_headless_run_reports_progress_and_a_local_cluster_runs_the_cells(tmp_path, netflix_dir):
    """``papermill --log-output`` shows each run's progress lines (start, rate and time left, end); the same
    notebook on ``scheduler=local`` gives the same figure data as in the kernel."""
    out = tmp_path / "out.ipynb"
    common = ["-p", "dataset", "netflix", "-p", "data_dir", str(netflix_dir), "-p", "methods", "fse,autoemb",
              "-p", "seeds", "0", "-p", "threads", "1", "-p", "tune_trials", "0"]
    done = subprocess.run(
        [sys.executable, "-m", "papermill", str(ROOT / "notebooks" / FILES["data_efficiency"]), str(out),
         "-k", "python3", "--cwd", str(tmp_path), "--log-output", "--no-progress-bar", *common,
         "-p", "results_dir", str(tmp_path / "kernel")],
        capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [line for line in done.stderr.splitlines() if "[autoemb]" in line]
    for method in ("fse", "autoemb"):
        assert any(f"[autoemb] {method} regression seed 0: started," in line for line in lines), lines
        assert any(re.search(rf"\[autoemb\] {method} regression seed 0: done, [\d,]+ int in \d+:\d\d:\d\d; "
                             r"online_loss \d\.\d{4}, online_acc \d\.\d{3}$", line) for line in lines), lines
        summary = json.loads((tmp_path / "kernel" / "runs" / f"regression-{method}-seed0" / "summary.json").read_text())
        assert any(line.endswith(f"online_loss {summary['online_loss']:.4f}, online_acc {summary['online_accuracy']:.3f}")
                   for line in lines), "the last line gives the run's online metrics"
    papermill("data_efficiency", tmp_path, dataset="netflix", data_dir=str(netflix_dir), methods=["fse", "autoemb"],
              seeds=[0], threads=1, scheduler="local", workers=2, tune_trials=0, results_dir=str(tmp_path / "cluster"))
    kernel, cluster = (pd.read_csv(tmp_path / d / "figure8_offline.csv") for d in ("kernel", "cluster"))
    pd.testing.assert_frame_equal(kernel, cluster)


def test_a_sweep_in_a_kernel_sends_few_messages_and_its_end_arrives(tmp_path):
    """nbval reads a cell's messages only once the cell has run, and ZMQ drops what its queues cannot hold; a
    sweep that drew a widget per run (about 11 messages each, 2 more per refresh) lost the cell's "idle" and
    failed CI on notebook 02. In a kernel a sweep run here shows one text bar and each run's lines, no widgets."""
    import queue
    from jupyter_client.manager import start_new_kernel

    km, kc = start_new_kernel(kernel_name="python3", cwd=str(tmp_path))
    try:
        code = ("from autoemb_core.config import Config\nfrom autoemb_core.experiments import run_methods\n"
                "runs = run_methods(Config(dataset='synthetic', max_interactions=1500, threads=1), "
                "methods=['global-mean', 'item-mean', 'biases', 'fse', 'uniform', 'random'], seeds=[0, 1])\n"
                "print(len(runs))")
        msg_id = kc.execute(code)
        reply = kc.get_shell_msg(timeout=600)
        assert reply["content"]["status"] == "ok", reply["content"]
        kinds, text = {}, ""
        while True:  # as nbval does: after the reply, until this cell's idle status
            msg = kc.get_iopub_msg(timeout=30)
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            kinds[msg["msg_type"]] = kinds.get(msg["msg_type"], 0) + 1
            text += msg["content"].get("text", "")
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                break
    except queue.Empty:
        pytest.fail(f"the cell's idle status never came; messages seen: {kinds}")
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    assert "comm_open" not in kinds and "comm_msg" not in kinds, kinds
    assert sum(kinds.values()) < 120, kinds
    assert "12\n" in text and "sweep: 100%" in text
    for method in ("global-mean", "fse", "random"):
        for seed in (0, 1):
            assert f"[autoemb] {method} regression seed {seed}: started," in text
            assert re.search(rf"\[autoemb\] {method} regression seed {seed}: done, [\d,]+ int in ", text)
