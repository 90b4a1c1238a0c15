"""One settings path: the CLI, the notebooks, the report and the benchmarks build a run's Config with
``config.resolve``, one precedence for all: the values given > the ``--params`` file > ``params/<dataset>.yaml``
(its tuned: block included) > the defaults. And one dataclass of defaults for Figure 1's knobs."""
import dataclasses
import inspect
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from autoemb_core import config, experiments, nbparams
from autoemb_core.__main__ import build_parser, config_from_args
from autoemb_core.config import FIGURE1, SETTINGS, Config, Figure1Settings, resolve
from autoemb_core.methods import METHODS, TABLE2
from autoemb_core.report import ReportSettings

ROOT = Path(__file__).parents[1]
PAPER = ROOT / "params" / "paper.yaml"  # a preset, not a dataset: --params on the command line, -f for papermill
DATASETS = sorted(p for p in (ROOT / "params").glob("*.yaml") if p != PAPER)
OVERALL = ROOT / "notebooks" / "02_overall.ipynb"


def cli(*argv) -> Config:
    """The Config ``python -m autoemb_core run ARGV`` runs."""
    return config_from_args(build_parser().parse_args(["run", *argv]))


def computed(cfg: Config) -> dict:
    """What runs on this base compute: every method and task with its tuned values applied (less where the
    data and the results are)."""
    return {(method, task): {k: v for k, v in dataclasses.replace(cfg, method=method, task=task).resolved()
                             .to_dict().items() if k not in ("data_dir", "results_dir", "explicit")}
            for method in METHODS for task in ("regression", "classification")}


@pytest.mark.parametrize("path", [*DATASETS, PAPER], ids=lambda p: p.name)
def test_the_cli_and_a_notebook_resolve_the_same_settings(path, monkeypatch):
    """``run --dataset X --data-dir data`` and ``papermill 02_overall.ipynb -p dataset X -p data_dir data``
    (with ``--params params/paper.yaml`` and ``-f params/paper.yaml`` for the preset, on ml-100k)."""
    monkeypatch.chdir(ROOT)
    dataset, flags, injected = (path.stem, [], {}) if path != PAPER else \
        ("ml-100k", ["--params", str(path)], yaml.safe_load(path.read_text()))
    ours = cli("--dataset", dataset, "--data-dir", "data", *flags)
    setup = nbparams.notebook_setup("overall", {**injected, "dataset": dataset, "data_dir": "data"})
    theirs = setup.config
    # the notebook's own quick default, where the dataset's file sets none (synthetic's first 10,000)
    quick = {k for k, source in setup.sources.items() if source == "default" and k in SETTINGS - {"results_dir"}
             and getattr(theirs, k) != getattr(ours, k)}
    file = yaml.safe_load((ROOT / "params" / f"{dataset}.yaml").read_text())
    assert quick == (set() if "max_interactions" in file else {"max_interactions"})
    assert Path(theirs.data_dir) == Path(ours.data_dir).resolve() == ROOT / "data"
    assert computed(dataclasses.replace(theirs, **{k: getattr(ours, k) for k in quick})) == computed(ours)


def papermill_namespace(parameters_cell: str, *injected: str) -> dict:
    """A kernel's globals after notebook 02's imports, its parameters cell and the cells papermill injected,
    with IPython's input history ``In`` (the setup cell last, as when it runs)."""
    cells = [c for c in json.loads(OVERALL.read_text())["cells"] if c["cell_type"] == "code"]
    imports, setup = "".join(cells[0]["source"]), "".join(cells[2]["source"])
    namespace = {"In": [""]}
    for source in (imports, parameters_cell, *injected):
        namespace["In"].append(source)
        exec(source, namespace)
    namespace["In"].append(setup)
    return namespace


def test_a_value_papermill_injects_is_given_even_at_the_notebooks_default():
    """``-p dataset netflix -p max_interactions 10000``: 10,000 is notebook 02's own default, and it still wins
    over params/netflix.yaml's ``max_interactions: null`` (the whole stream)."""
    translators = pytest.importorskip("papermill.translators")
    cells = [c for c in json.loads(OVERALL.read_text())["cells"] if c["cell_type"] == "code"]
    parameters = "".join(cells[1]["source"])
    assert "parameters" in cells[1]["metadata"]["tags"] and "max_interactions = 10_000" in parameters
    injected = translators.translate_parameters("python", "python", {"dataset": "netflix", "max_interactions": 10000},
                                                "Parameters")
    namespace = papermill_namespace(parameters, injected)
    setup = nbparams.notebook_setup("overall", namespace, namespace["_names_before_parameters"])
    assert setup.config.max_interactions == 10_000 and setup.sources["max_interactions"] == "given"
    assert "max_interactions" in setup.config.explicit
    # the parameters cell edited by hand: a value at the default is the default, and the dataset's file wins
    edited = papermill_namespace(parameters.replace('dataset = "synthetic"', 'dataset = "netflix"'))
    setup = nbparams.notebook_setup("overall", edited, edited["_names_before_parameters"])
    assert setup.config.max_interactions is None and setup.sources["max_interactions"] == "params/netflix.yaml"
    # the parameters cell run again after papermill's: what papermill injected then no longer counts
    rerun = papermill_namespace(parameters, injected, parameters.replace('"synthetic"', '"netflix"'))
    assert nbparams.notebook_setup("overall", rerun, rerun["_names_before_parameters"]).config.max_interactions is None


def test_papermill_max_interactions_at_the_default_in_a_kernel(tmp_path):
    """The same through papermill and a real kernel: notebook 02 up to its setup cell."""
    pm = pytest.importorskip("papermill")
    nbformat = pytest.importorskip("nbformat")
    nb = nbformat.read(OVERALL, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    nb.cells = code[:3] + [nbformat.v4.new_code_cell("print(setup.config.max_interactions, "
                                                     "setup.sources['max_interactions'])")]
    nbformat.write(nb, tmp_path / "in.ipynb")
    pm.execute_notebook(str(tmp_path / "in.ipynb"), str(tmp_path / "out.ipynb"), kernel_name="python3",
                        parameters={"dataset": "netflix", "max_interactions": 10000}, cwd=str(tmp_path),
                        progress_bar=False, execution_timeout=300)
    out = nbformat.read(tmp_path / "out.ipynb", as_version=4).cells[-1].outputs
    assert "".join(o.get("text", "") for o in out).strip() == "10000 given"


@pytest.fixture
def preset(tmp_path, monkeypatch):
    """A params/ folder whose synthetic.yaml sets some settings and a tuned: block, and a --params file."""
    monkeypatch.setattr(config, "params_dir", lambda: tmp_path)
    (tmp_path / "synthetic.yaml").write_text(
        "hidden: [32]\nbatch_size: 100\nseed: 1\nlr: 0.001\ntuned:\n  regression:\n"
        "    fse: {lr: 0.005, table_lr: 0.3}\n    autoemb: {controller_lr: 0.002, table_lr: 0.4}\n"
        "    darts: {logit_lr: 0.3}\n")
    path = tmp_path / "preset.yaml"
    path.write_text("batch_size: 200\nseed: 2\ntuned:\n  regression:\n    autoemb: {table_lr: 0.5}\n")
    return path


def test_each_source_wins_over_the_ones_below_it(preset):
    c = resolve({"seed": 3}, preset, defaults={"dims": (2, 4), "hidden": (16,), "batch_size": 7})
    assert c.offline_fraction == Config.offline_fraction  # Config's default: no source sets it
    assert c.dims == (2, 4)  # a caller's default (a notebook's) over Config's
    assert c.hidden == (32,)  # the dataset's file over a caller's default
    assert c.batch_size == 200  # the --params file over the dataset's file
    assert c.seed == 3  # a value given over both files
    assert {"hidden", "batch_size", "seed", "lr"} <= set(c.explicit) and "dims" not in c.explicit
    flags = cli("--params", str(preset), "--seed", "4")  # the command line: a flag is a value given
    assert (flags.hidden, flags.batch_size, flags.seed) == ((32,), 200, 4)
    assert cli("--params", str(preset)).seed == 2  # a flag not given is not a value


def test_tuned_values_fill_only_what_no_file_set_and_nobody_gave(preset):
    fse = resolve({"method": "fse"}, preset).resolved()
    assert (fse.table_lr, fse.lr) == (0.3, 0.001)  # lr is set by the dataset's file
    given = resolve({"method": "fse", "table_lr": Config.table_lr}, preset).resolved()
    assert given.table_lr == Config.table_lr  # given, at its default: still given
    base = resolve(params=preset)
    autoemb = dataclasses.replace(base, method="autoemb").resolved()
    assert (autoemb.table_lr, autoemb.controller_lr) == (0.5, Config.controller_lr)  # the preset's block, whole
    assert dataclasses.replace(base, method="darts").resolved().logit_lr == 0.3  # the dataset's, kept


def test_paper_preset_on_the_command_line():
    c = cli("--params", str(PAPER), "--method", "darts")
    assert (c.lr, c.controller_lr, c.method, c.seed) == (0.01, 0.001, "darts", 0)


def test_figure1_has_one_dataclass_of_defaults():
    """argparse, the report, the experiment and notebook 01 read Figure1Settings; demo is a preset."""
    args = build_parser().parse_args(["report", "--dataset", "synthetic"])
    assert Figure1Settings(tuple(args.train_sizes), args.n_test, args.n_validation, args.max_epochs,
                           FIGURE1.patience, tuple(args.l2_grid), args.figure1_protocol) == FIGURE1
    assert ReportSettings(Config(), Path("x")).figure1 == FIGURE1
    defaults = inspect.signature(experiments.preliminary_study).parameters  # one protocol at a time
    assert {k: defaults[k].default for k in ("train_sizes", "n_test", "n_validation", "max_epochs", "patience",
                                             "l2_grid")} == {k: v for k, v in dataclasses.asdict(FIGURE1).items()
                                                             if k != "protocol"}
    quick = Figure1Settings.quick()
    assert {k: nbparams.NOTEBOOKS["preliminary"][k].default for k in ("n_test", "n_validation", "max_epochs",
                                                                      "patience")} == \
        {k: getattr(quick, k) for k in ("n_test", "n_validation", "max_epochs", "patience")}
    assert nbparams.NOTEBOOKS["preliminary"]["train_sizes"].default == list(quick.train_sizes)
    demo = ReportSettings.demo("results/demo", progress=False)
    assert (demo.base.dataset, demo.base.max_interactions, demo.base.progress) == ("synthetic", 30_000, False)
    assert (demo.seeds, demo.tasks, demo.methods, demo.figure1) == ((0, 1, 2), ("regression",), TABLE2, quick)
    args = build_parser().parse_args(["demo"])
    assert args.regimes == ["paper", "esapn", "tuned"] and args.tasks == ["regression"]  # the regime table


def test_the_docs_state_the_precedence_once():
    text = (ROOT / "docs" / "running.md").read_text()
    assert text.count("values given > `--params` file > `params/<dataset>.yaml`") == 1


@pytest.mark.parametrize("argv", [["--help"], ["report", "--help"], ["run", "--help"]])
def test_help_answers_without_importing_torch_or_pandas(argv):
    """``--help`` is read before anything runs: it must not wait for torch (4 s quiet, 12 s under load)."""
    code = ("import runpy, sys\nsys.argv = ['autoemb_core', *sys.argv[1:]]\ntry:\n"
            "    runpy.run_module('autoemb_core', run_name='__main__')\nexcept SystemExit:\n    pass\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'pandas', 'matplotlib', 'optuna'}))")
    out = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, cwd=ROOT, check=True)
    assert "usage:" in out.stdout and out.stdout.strip().splitlines()[-1] == "[]"


def test_a_busy_machine_gets_the_idle_cores_and_one_line_saying_so(monkeypatch):
    import os

    from autoemb_core.__main__ import busy_threads
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    threads, line = busy_threads(None, idle=0.1)
    assert threads == 1 and line.count("\n") == 0 and "0.1 of 4 cores idle" in line and "--threads" in line
    assert busy_threads(None, idle=2.4)[0] == 2
    assert busy_threads(None, idle=3.6) == (None, None)  # quiet: torch's own count, as before
    assert busy_threads(3, idle=0.0) == (3, None)  # asked for: kept
    monkeypatch.setattr(os, "cpu_count", lambda: 1)
    assert busy_threads(None, idle=0.0) == (None, None)
    demo = ReportSettings.demo("results/demo", progress=False, threads=1, max_interactions=500, seeds=(0, 1))
    assert demo.base.threads == 1
    assert (demo.base.max_interactions, demo.seeds) == (500, (0, 1))


def test_idle_cores_sees_a_busy_loop_at_once():
    """/proc/stat, not the lagging load average: a loop started just before is seen."""
    import os
    import subprocess
    import sys

    from autoemb_core.__main__ import idle_cores
    if not os.path.exists("/proc/stat"):
        pytest.skip("no /proc/stat")
    quiet = idle_cores(0.3)
    loops = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(os.cpu_count() or 1)]
    try:
        busy = idle_cores(0.5)
    finally:
        for loop in loops:
            loop.kill()
    assert 0 <= busy < quiet or busy < 0.5




def test_help_shows_every_default_so_the_subcommands_differences_are_visible():
    helps = {c: build_parser().commands[c].format_help() for c in ("compare", "report", "frontier")}
    squash = {c: " ".join(h.split()) for c, h in helps.items()}
    assert "(default: [0])" in squash["compare"] and "(default: [0, 1, 2, 3, 4])" in squash["report"]
    assert "(default: [0, 1, 2])" in squash["frontier"]
    assert "``" not in build_parser().format_help()
