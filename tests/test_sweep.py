"""Sweeps on a real dask.distributed scheduler on 127.0.0.1: the same bits as in-process, a SIGKILLed worker's
cell resumed from its checkpoint, a finished sweep not run again."""
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from autoemb_core import sweep
from autoemb_core.__main__ import main
from autoemb_core.config import Config
from autoemb_core.data import load_dataset

distributed = pytest.importorskip("distributed")

FAST = dict(dataset="synthetic-tiny", hidden=(16,), controller_hidden=(16,), dims=(2, 4, 8), threads=1, progress=False)
METRICS = ("online_loss", "online_accuracy", "offline_loss", "offline_accuracy", "n_interactions")


def _metrics(folder) -> dict:
    out = {}
    for cell in sorted(p for p in folder.iterdir() if (p / "summary.json").is_file()):
        summary = json.loads((cell / "summary.json").read_text())
        out[cell.name] = {k: summary[k] for k in METRICS}
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def cluster(tmp_path):
    """A scheduler and 2 single-slot worker processes (each under a nanny that restarts it), on 127.0.0.1."""
    address = f"tcp://127.0.0.1:{_free_port()}"
    env = {**os.environ, "DASK_DISTRIBUTED__WORKER__DAEMON": "False"}
    procs = [subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                               "--port", address.rsplit(":", 1)[1], "--no-dashboard"], env=env, cwd=tmp_path,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    client = None
    try:
        for _ in range(2):
            procs.append(subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", address, "--nthreads",
                                           "1", "--no-dashboard", "--death-timeout", "60"], env=env, cwd=tmp_path,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        client = distributed.Client(address, timeout="60s")
        client.wait_for_workers(2, timeout=120)
        yield address, client
    finally:
        if client is not None:
            client.close()
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()


def test_a_sweep_on_a_tcp_scheduler_matches_in_process_bit_for_bit_and_survives_a_killed_worker(cluster, tmp_path):
    address, client = cluster
    base = Config(**FAST, checkpoint_every=3, max_interactions=20000)
    cells = sweep.grid(base, ["fse", "autoemb"], ["regression"], [0, 1])
    data = load_dataset("synthetic-tiny", max_interactions=20000)
    here = sweep.execute(cells, data, tmp_path / "here" / "runs", log=None)
    assert not here.failed and sorted(here.ran) == sorted(c.name for c in cells)

    runs = tmp_path / "there" / "runs"
    target = "regression-autoemb-seed1"
    outcome = {}
    worker = threading.Thread(target=lambda: outcome.update(o=sweep.execute(cells, data, runs, scheduler=address,
                                                                            ship_data=False, log=None)))
    worker.start()
    checkpoint = sweep.checkpoint_dir(runs, target)
    deadline = time.monotonic() + 300
    while not any(checkpoint.glob("*.pt")) and time.monotonic() < deadline and worker.is_alive():
        time.sleep(0.02)
    assert any(checkpoint.glob("*.pt")), "the cell never wrote a checkpoint"
    pids = client.run(os.getpid)
    running = [w for w, keys in client.processing().items() if any(target in str(k) for k in keys)]
    assert running, "the cell finished before it could be killed: make it longer"
    os.kill(pids[running[0]], signal.SIGKILL)
    worker.join(timeout=600)
    assert not worker.is_alive()
    there = outcome["o"]
    assert not there.failed
    assert there.summaries[target]["resumed_from_batch"] > 0  # resumed, not restarted
    assert _metrics(runs) == _metrics(tmp_path / "here" / "runs")  # bit for bit
    assert not any(checkpoint.glob("*.pt"))  # a finished cell's checkpoint is removed
    saved = json.loads((runs / target / "summary.json").read_text())
    assert saved["config"]["threads"] == 1

    again = sweep.execute(cells, data, runs, scheduler=address, ship_data=False, log=None)
    assert again.ran == [] and set(again.summaries) == {c.name for c in cells}


def test_the_sweep_command_on_a_local_cluster_writes_table2_and_reruns_nothing(tmp_path, capsys):
    argv = ["sweep", "--dataset", "synthetic-tiny", "--methods", "fse", "sam", "--tasks", "regression",
            "--seeds", "0", "1", "--max-interactions", "3000", "--threads", "1", "--scheduler", "local",
            "--workers", "2", "--results-dir", str(tmp_path), "--no-progress", "--no-tune"]
    assert main(argv) == 0
    assert {"runs.csv", "overall.md", "table2.md"} <= {p.name for p in tmp_path.iterdir()}
    first = _metrics(tmp_path / "runs")
    assert len(first) == 4
    in_process = ["compare", *argv[1:argv.index("--scheduler")], "--results-dir", str(tmp_path / "inline"), "--no-progress",
                 "--no-tune"]
    assert main(in_process) == 0
    assert _metrics(tmp_path / "inline" / "runs") == first  # the local cluster computes the same bits
    capsys.readouterr()
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "runs").glob("*/summary.json")}
    assert main(argv) == 0
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps  # nothing ran again


def test_a_failed_cell_is_reported_and_the_others_go_on(tmp_path):
    base = Config(**FAST, max_interactions=2000)
    good = sweep.grid(base, ["fse"], ["regression"], [0])
    bad = sweep.Cell("regression-fse-missing", Config(**{**FAST, "dataset": "ml-100k"}, data_dir=str(tmp_path / "none")))
    outcome = sweep.execute([bad, *good], None, tmp_path / "runs", log=None)
    assert set(outcome.failed) == {"regression-fse-missing"} and "DataError" in outcome.failed["regression-fse-missing"]
    assert set(outcome.summaries) == {"regression-fse-seed0"}
    with pytest.raises(RuntimeError, match="(?s)1 of the sweep's cells failed.*regression-fse-missing: .*DataError: .*u.data"):
        outcome.raise_failures(tmp_path / "runs")


def test_bad_scheduler_settings_get_clear_messages(tmp_path):
    cells = sweep.grid(Config(**FAST), ["fse"], ["regression"], [0])
    with pytest.raises(Exception, match="neither 'local' nor a dask address"):
        sweep.execute(cells, None, tmp_path, scheduler="somewhere")
    with pytest.raises(Exception, match="a run uses one GPU at most"):
        sweep.execute(cells, None, tmp_path, scheduler="local", gpus_per_run=2)
    with pytest.raises(Exception, match="cannot reach the dask scheduler"):
        sweep.execute(cells, None, tmp_path, scheduler=f"tcp://127.0.0.1:{_free_port()}")
