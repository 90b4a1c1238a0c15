"""Every command that the README, docs/ and the notebooks' markdown write, run end to end as a user types it: in
bash, after the documented ``source .venv/bin/activate``, from a folder laid out like the repository (its
``.venv``, ``notebooks`` and ``params``, and a ``data`` folder of streams in the real formats).

Each command is run as written, with a few flags appended that make it small (argparse and papermill let a later
flag win): the first 2,000 interactions, two seeds (a report needs two for an interval), Figure 1 at x = 2 and 4,
one tuning trial, the frontier at two FSE widths, one rule and one penalty. So what runs is the documented path,
activation, parsing, loading, tuning, training, the report and its files, at a size a test can afford. test_docs.py checks the same commands' arguments at full size without running them.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from test_docs import ROOT, documented_commands  # noqa: E402

VENV = ROOT / ".venv"
SMALL = 2_000
DEMO_SMALL = 5_000  # the demo's Figure 1 grid (x up to 32) needs a user with 47 ratings: synthetic has one by then
SHRINK = {"--max-interactions": [str(SMALL)], "--seeds": ["0", "1"], "--train-sizes": ["2", "4"], "--n-test": ["2"],
          "--n-validation": ["2"], "--max-epochs": ["2"], "--l2-grid": ["0"], "--tune-trials": ["1"],
          "--fse-widths": ["2", "128"], "--thresholds": ["8,64"], "--penalties": ["0.1"], "--no-fresh": [],
          "--no-progress": []}
NOTEBOOK_SHRINK = {"max_interactions": SMALL, "seeds": [0, 1], "train_sizes": [2, 4], "n_test": 2, "n_validation": 2,
                   "max_epochs": 2, "tune_trials": 1, "workers": 1, "fse_widths": [2, 128], "penalties": [0.1]}
# a data folder a user names that a test cannot have (the commands that name it are checked by test_docs.py only)
# a papermill cell's limit: a hang (nbclient sometimes never sees a widget cell's reply) fails in minutes, and once
CELL_TIMEOUT = 420
HUNG = "CellTimeoutError"
ELSEWHERE = re.compile(r"\s/big/disk/")


def notebook_commands() -> list[tuple[str, str]]:
    """The commands of the notebooks' markdown cells, as (notebook, command)."""
    found = []
    for path in sorted((ROOT / "notebooks").glob("0*.ipynb")):
        for cell in json.loads(path.read_text())["cells"]:
            if cell["cell_type"] != "markdown":
                continue
            for line in "".join(cell["source"]).splitlines():
                command = line.split("#")[0].strip()
                if command.startswith(("papermill ", "python -m autoemb_core ")) and not re.search(r"\bDIR\b",
                                                                                                    command):
                    found.append((path.name, " ".join(command.split())))
    return found


def runnable() -> list[tuple[str, str]]:
    seen, out = set(), []
    for page, command in [*documented_commands("python -m autoemb_core "), *documented_commands("papermill notebooks/"),
                          *notebook_commands()]:
        if command in seen or ELSEWHERE.search(command) or command.split()[3:4] == ["download"]:
            continue  # download needs the internet; test_download.py runs it against a local server
        seen.add(command)
        out.append((page, command))
    return out


COMMANDS = runnable()


def write_streams(folder: Path, n: int = 2_500, users: int = 80, items: int = 150, seed: int = 0) -> None:
    """One stream with learnable user and item effects and skewed popularity, written in the formats of
    MovieLens-100K (u.data), MovieLens-20m and -latest (ratings.csv) and the Netflix Prize (combined_data_1.txt)."""
    rng = np.random.default_rng(seed)
    user = rng.zipf(1.6, n) % users + 1
    item = rng.zipf(1.4, n) % items + 1
    stars = np.clip(np.rint(3.5 + rng.normal(0, 0.6, users + 1)[user] + rng.normal(0, 0.6, items + 1)[item]
                            + rng.normal(0, 0.8, n)), 1, 5).astype(int)
    time = 946_684_800 + 3_600 * np.arange(n)  # from 2000-01-01, an hour apart
    rows = list(zip(user, item, stars, time))
    (folder / "ml-100k").mkdir(parents=True)
    (folder / "ml-100k" / "u.data").write_text("".join(f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in rows))
    for name in ("ml-20m", "ml-latest"):
        (folder / name).mkdir()
        (folder / name / "ratings.csv").write_text(
            "userId,movieId,rating,timestamp\n" + "".join(f"{u},{i},{r:.1f},{t}\n" for u, i, r, t in rows))
    (folder / "netflix").mkdir()
    lines = []
    for movie in sorted(set(item)):
        lines.append(f"{movie}:")
        lines += [f"{u},{r},{np.datetime64(int(t), 's').astype('datetime64[D]')}" for u, i, r, t in rows if i == movie]
    (folder / "netflix" / "combined_data_1.txt").write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A folder laid out like the repository: links to its .venv, notebooks and params, copies of the committed
    reports' tuned.yaml files (a command may name one as --params), and the streams."""
    if not (VENV / "bin" / "activate").is_file():
        pytest.skip(f"no {VENV}: these tests run the commands as the README says, after its `make` set up .venv")
    folder = tmp_path_factory.mktemp("workspace")
    for name in (".venv", "notebooks", "params"):
        (folder / name).symlink_to(ROOT / name)
    for tuned in (ROOT / "reports").glob("**/tuned.yaml"):
        (folder / tuned.relative_to(ROOT)).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(tuned, folder / tuned.relative_to(ROOT))
    write_streams(folder / "data")
    return folder


def shrunk(command: str, results: Path) -> str:
    """``command`` with the flags (or papermill parameters) appended that make it small."""
    words = shlex.split(command)
    if words[0] == "papermill":
        from autoemb_core.nbparams import NOTEBOOKS
        knobs = NOTEBOOKS[Path(words[1]).stem.split("_", 1)[1]]
        extra = {k: v for k, v in NOTEBOOK_SHRINK.items() if k in knobs} | {"results_dir": str(results)}
        return (command + "".join(f" -y {shlex.quote(json.dumps({k: v}))}" for k, v in extra.items())
                + f" --execution-timeout {CELL_TIMEOUT}")
    from autoemb_core.__main__ import build_parser
    sub = build_parser()._subparsers._group_actions[0].choices[words[3]]
    known = {option for action in sub._actions for option in action.option_strings}
    small = {**SHRINK, "--max-interactions": [str(DEMO_SMALL)]} if words[3] == "demo" else SHRINK
    extra = [flag for option, values in small.items() if option in known for flag in (option, *values)]
    return " ".join([command, *extra])


@pytest.mark.parametrize("page, command", COMMANDS, ids=[c for _, c in COMMANDS])
def test_every_documented_command_runs_as_written(workspace, page, command, tmp_path):
    if "device cuda" in command:
        import torch
        if not torch.cuda.is_available():
            pytest.skip("names the GPU; this machine has none")
    results = tmp_path / "results"
    if command.startswith("papermill"):
        (workspace / shlex.split(command)[2]).unlink(missing_ok=True)
    script = f"set -e\nsource .venv/bin/activate\n{shrunk(command, results)}\n"
    # the PATH a new shell has: no virtual environment on it, so the activation is what finds python and papermill
    path = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if not p.startswith(str(VENV)))
    env = {**os.environ, "PATH": path, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "AUTOEMB_DATA_DIR": str(workspace / "data")}
    env.pop("VIRTUAL_ENV", None)
    done = subprocess.run(["bash", "-c", script], cwd=workspace, env=env, capture_output=True, text=True, timeout=900)
    if command.startswith("papermill") and HUNG in done.stderr:  # nbclient missed a reply (jupyter/nbclient#312): once more
        warnings.warn(f"{command}: a cell's reply never came after {CELL_TIMEOUT} s; ran it again")
        done = subprocess.run(["bash", "-c", script], cwd=workspace, env=env, capture_output=True, text=True,
                              timeout=900)
    assert done.returncode == 0, f"{page}: `{command}` failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    if command.startswith("papermill"):
        output = workspace / shlex.split(command)[2]
        assert output.is_file() and json.loads(output.read_text())["metadata"]["papermill"]["exception"] is None
    elif " report " in f" {command} " or " demo" in command:
        folder = re.search(r"--results-dir (\S+)", command)
        report = workspace / (folder.group(1) if folder else "results/demo") / "REPORT.md"
        assert report.is_file() and "Bottom line" in report.read_text()[:2000], f"{command}: no REPORT.md opening"


@pytest.mark.parametrize("notebook", sorted((ROOT / "notebooks").glob("0*.ipynb")), ids=lambda p: p.name)
def test_each_notebook_says_to_activate_the_environment_before_its_commands(notebook):
    text = "".join("".join(c["source"]) for c in json.loads(notebook.read_text())["cells"]
                   if c["cell_type"] == "markdown")
    first = text.index("    papermill ")
    assert "    source .venv/bin/activate\n" in text[:first], f"{notebook.name}: a bare papermill before the activation"
