"""Long runs survive being killed: atomic checkpoints, bit-identical resumes, refusals of foreign checkpoints,
guarded numerics and gradient clipping."""
import errno
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

import autoemb_core as ae
from autoemb_core import checkpoint
from autoemb_core.config import Config
from autoemb_core.train import NumericsError, StreamingTrainer, run

SMALL = dict(dims=[2, 4], hidden=[8], controller_hidden=[6], batch_size=100, record_alpha_every=5)


@pytest.fixture(scope="module")
def tiny():
    return ae.load_dataset("synthetic-tiny")


def small(**kw) -> Config:
    return Config(**{**SMALL, "progress": False, "max_interactions": 6000, **kw})


def trainer_tensors(payload: dict) -> dict:
    """Every tensor of a checkpoint's trainer state, flattened to name -> tensor."""
    out = {}

    def walk(prefix, value):
        if isinstance(value, torch.Tensor):
            out[prefix] = value
        elif isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}.{k}", v)
        elif isinstance(value, (list, tuple)):
            for i, v in enumerate(value):
                walk(f"{prefix}.{i}", v)
    walk("trainer", payload["trainer"])
    return out


def assert_same_run(a, b):
    assert a.batches.drop(columns="seconds").equals(b.batches.drop(columns="seconds"))
    pd.testing.assert_frame_equal(a.samples, b.samples, check_exact=True)
    pd.testing.assert_frame_equal(a.alphas.reset_index(drop=True), b.alphas.reset_index(drop=True), check_exact=True)
    for key in ("offline_loss", "online_loss", "offline_accuracy", "online_accuracy"):
        assert a.summary[key] == b.summary[key]


def assert_same_weights(path_a, path_b):
    a = trainer_tensors(torch.load(path_a, weights_only=True))
    b = trainer_tensors(torch.load(path_b, weights_only=True))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


# -- the kill test -----------------------------------------------------------------------------------
def cli(params, checkpoints, results, resume):
    command = [sys.executable, "-m", "autoemb_core", "run", "--params", str(params), "--no-progress",
               "--checkpoint-dir", str(checkpoints), "--checkpoint-every", "1", "--results-dir", str(results)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(command + (["--resume"] if resume else []), env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_runs_killed_at_random_points_resume_to_the_same_result(tmp_path):
    """AutoEmb (the most state: controllers, Adam moments, context tables, the validation sampler's RNG)
    checkpointing after every batch, SIGKILLed three times after a random number of checkpoint writes plus a
    random moment, so that kills land inside steps and inside writes."""
    method = "autoemb"
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({**SMALL, "dataset": "synthetic-tiny", "method": method, "device": "cpu"}))
    reference = cli(params, tmp_path / "ref-ckpt", tmp_path / "ref", resume=False)
    assert reference.wait(timeout=300) == 0, reference.stderr.read()

    rng = random.Random(0)
    name = f"synthetic-tiny-{method}-regression-seed0.pt"
    target = tmp_path / "ckpt" / name
    kills = 0
    for attempt in range(3):
        changes = rng.randint(3, 40)  # kill after this many checkpoint writes, plus a random moment
        proc = cli(params, tmp_path / "ckpt", tmp_path / "run", resume=True)
        seen, last = 0, target.stat().st_mtime_ns if target.exists() else None
        deadline = time.time() + 120
        while seen < changes and time.time() < deadline and proc.poll() is None:
            now = target.stat().st_mtime_ns if target.exists() else None
            seen, last = seen + (now != last), now
            time.sleep(0.001)
        time.sleep(rng.uniform(0.0, 0.02))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait(timeout=60)
    assert kills >= 2, "the run finished before it could be killed; make the stream longer"
    resumed = cli(params, tmp_path / "ckpt", tmp_path / "run", resume=True)
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    assert "resumed from the checkpoint at batch" in out
    assert [p.name for p in (tmp_path / "ckpt").iterdir()] == [name], "temporary files of killed writes remain"

    folder = f"synthetic-tiny-{method}-regression-seed0"
    a = pd.read_parquet(tmp_path / "ref" / folder / "samples.parquet")
    b = pd.read_parquet(tmp_path / "run" / folder / "samples.parquet")
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    batches_a = pd.read_csv(tmp_path / "ref" / folder / "batches.csv").drop(columns="seconds")
    batches_b = pd.read_csv(tmp_path / "run" / folder / "batches.csv").drop(columns="seconds")
    pd.testing.assert_frame_equal(batches_a, batches_b, check_exact=True)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "ref" / folder / "alphas.parquet"),
                                  pd.read_parquet(tmp_path / "run" / folder / "alphas.parquet"), check_exact=True)
    assert_same_weights(tmp_path / "ref-ckpt" / name, target)


# -- in-process resumes --------------------------------------------------------------------------------
class Stop(Exception):
    pass


def interrupted_run(data, cfg, at: int):
    """Run ``cfg`` and raise out of it after batch ``at`` (as a crash would, minus the process)."""
    trainer = StreamingTrainer(data, cfg)
    original = trainer.step

    def step(index):
        if index == at:
            raise Stop
        return original(index)
    trainer.step = step
    with pytest.raises(Stop):
        trainer.run()
    return trainer


@pytest.mark.parametrize("method", ["fse", "sam", "darts", "autoemb", "autoemb-hard"])
def test_resume_in_process_equals_an_uninterrupted_run(tiny, tmp_path, method):
    cfg = small(method=method, checkpoint_dir=str(tmp_path / "a"), checkpoint_every=7)
    whole = run(cfg, tiny)
    resumed_cfg = small(method=method, checkpoint_dir=str(tmp_path / "b"), checkpoint_every=7)
    interrupted_run(tiny.head(6000), resumed_cfg, at=25)
    trainer = StreamingTrainer(tiny.head(6000), Config(**{**resumed_cfg.to_dict(), "resume": True}))
    again = trainer.run()
    assert trainer.resumed_from == 21  # the checkpoint after batch 20 (every 7: 6, 13, 20)
    assert_same_run(whole, again)
    assert_same_weights(tmp_path / "a" / f"synthetic-tiny-{method}-regression-seed0.pt",
                        tmp_path / "b" / f"synthetic-tiny-{method}-regression-seed0.pt")


def test_a_resumed_run_continues_at_the_thread_count_it_started_with(tiny, tmp_path):
    """A busy machine gives a new run fewer threads (the CLI's default), and the count changes a sum's last bits:
    a resume keeps the checkpoint's count, so that it stays bit for bit whatever the load when it resumes."""
    before = torch.get_num_threads()
    cfg = small(method="fse", checkpoint_dir=str(tmp_path / "a"), checkpoint_every=7, threads=1)
    interrupted_run(tiny.head(6000), cfg, at=25)
    torch.set_num_threads(2)
    try:
        trainer = StreamingTrainer(tiny.head(6000), Config(**{**cfg.to_dict(), "resume": True, "threads": 2}))
        trainer.restore()
        assert torch.get_num_threads() == 1 and trainer.cfg.threads == 1
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("method", ["autoemb", "mf"])
def test_resume_with_passes_and_microbatches_equals_an_uninterrupted_run(tiny, tmp_path, method):
    learning = dict(train_passes=2, train_microbatch=7, row_gradient="sum")
    whole = run(small(method=method, checkpoint_dir=str(tmp_path / "a"), checkpoint_every=7, **learning), tiny)
    cfg = small(method=method, checkpoint_dir=str(tmp_path / "b"), checkpoint_every=7, **learning)
    interrupted_run(tiny.head(6000), cfg, at=25)
    trainer = StreamingTrainer(tiny.head(6000), Config(**{**cfg.to_dict(), "resume": True}))
    assert_same_run(whole, trainer.run())
    assert trainer.resumed_from == 21


def test_a_finished_run_resumes_to_its_results_without_training(tiny, tmp_path):
    cfg = small(method="darts", checkpoint_dir=str(tmp_path))
    first = run(cfg, tiny)
    trainer = StreamingTrainer(tiny.head(6000), Config(**{**cfg.to_dict(), "resume": True}))
    trainer.step = None  # any training would fail
    second = trainer.run()
    assert trainer.resumed_from == len(trainer.batches)
    assert_same_run(first, second)


def test_resume_without_a_checkpoint_starts_from_the_beginning(tiny, tmp_path):
    cfg = small(method="fse", checkpoint_dir=str(tmp_path), resume=True)
    trainer = StreamingTrainer(tiny.head(6000), cfg)
    result = trainer.run()
    assert trainer.resumed_from is None and result.summary["resumed_from_batch"] is None


def test_same_seed_same_metrics_and_weights_on_cpu(tiny, tmp_path):
    paths = []
    for name in ("a", "b"):
        cfg = small(method="autoemb", seed=3, checkpoint_dir=str(tmp_path / name))
        run(cfg, tiny)
        paths.append(tmp_path / name / "synthetic-tiny-autoemb-regression-seed3.pt")
    assert_same_weights(*paths)
    other = small(method="autoemb", seed=4, checkpoint_dir=str(tmp_path / "c"))
    run(other, tiny)
    a = trainer_tensors(torch.load(paths[0], weights_only=True))
    c = trainer_tensors(torch.load(tmp_path / "c" / "synthetic-tiny-autoemb-regression-seed4.pt", weights_only=True))
    assert not torch.equal(a["trainer.learner.tables.user.weight"], c["trainer.learner.tables.user.weight"])


# -- refusals ------------------------------------------------------------------------------------------
@pytest.fixture
def saved(tiny, tmp_path):
    cfg = small(method="autoemb", checkpoint_dir=str(tmp_path), checkpoint_every=5)
    interrupted_run(tiny.head(6000), cfg, at=12)
    return cfg


def resume_with(data, cfg, **changes):
    return StreamingTrainer(data, Config(**{**cfg.to_dict(), "resume": True, **changes})).run()


def test_resuming_with_another_config_is_refused_with_the_differences(tiny, saved):
    with pytest.raises(checkpoint.CheckpointError) as info:
        resume_with(tiny.head(6000), saved, lr=0.01, validation="previous")
    message = str(info.value)
    assert "different config" in message and "lr: checkpoint 0.0003, now 0.01" in message
    assert "validation: checkpoint 'uniform', now 'previous'" in message and ".pt" in message
    resume_with(tiny.head(6000), saved, checkpoint_every=3, progress=False)  # bookkeeping may change


def test_resuming_on_other_data_is_refused(tiny, saved):
    with pytest.raises(checkpoint.CheckpointError, match="other data"):
        resume_with(tiny.head(5900), saved)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_a_damaged_checkpoint_gets_a_clear_message(tiny, saved, damage):
    path = next(p for p in os.scandir(saved.checkpoint_dir))
    raw = open(path, "rb").read()
    damaged = {"truncate": raw[: len(raw) // 2], "garbage": os.urandom(len(raw)), "empty": b""}[damage]
    open(path, "wb").write(damaged)
    with pytest.raises(checkpoint.CheckpointError, match="unreadable"):
        resume_with(tiny.head(6000), saved)


# -- numerics --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method, where, what", [
    ("fse", "table", "prediction loss"),  # guarded as the prediction's, though fse predicts by its training forward
    ("autoemb", "table", "prediction loss"),  # poisoned after the bilevel step, just before the prediction
    ("autoemb", "controller", "hypergradient of Theta"),
    ("darts", "logits", "hypergradient of Theta"),
])
def test_nan_stops_the_run_naming_batch_and_method_and_keeps_the_checkpoint(tiny, tmp_path, method, where, what):
    cfg = small(method=method, checkpoint_dir=str(tmp_path), checkpoint_every=4)
    trainer = StreamingTrainer(tiny.head(6000), cfg)
    learner, batch = trainer.learner, [None]
    at_prediction = method == "autoemb" and where == "table"
    original_step, original_predict = trainer.step, learner.predict

    def step(index):
        batch[0] = index
        if index == 10 and not at_prediction:
            poison()
        return original_step(index)

    def predict(view):
        if batch[0] == 10 and at_prediction:
            poison()
        return original_predict(view)

    def poison():
        with torch.no_grad():
            if where == "table":  # a user of this batch
                learner.tables["user"].weight[trainer.stream.user[int(trainer.batches.start[10])]] = float("nan")
            elif where == "controller":
                next(learner.selector.controllers.parameters()).view(-1)[0] = float("inf")
            else:
                learner.selector.logits["user"].weight[trainer.stream.user[:500]] = float("nan")
    trainer.step, learner.predict = step, predict
    path = trainer.checkpoint_path
    with pytest.raises(NumericsError) as info:
        trainer.run()
    message = str(info.value)
    assert f"{method}: non-finite {what} at batch 10 " in message
    assert "last good checkpoint (after batch 7)" in message and str(tmp_path) in message
    payload = torch.load(path, weights_only=True)
    assert payload["progress"]["next_batch"] == 8
    assert all(torch.isfinite(t).all() for t in trainer_tensors(payload).values() if t.is_floating_point())


def test_gradient_clipping_bounds_the_global_norm(tiny):
    trainer = StreamingTrainer(tiny.head(2000), small(method="fse", grad_clip=0.5))
    grads = [torch.full((3, 4), 2.0), torch.full((5,), -1.0), None]
    trainer.learner.guard("gradient of W", grads, clip=True)
    norm = torch.linalg.vector_norm(torch.cat([g.flatten() for g in grads if g is not None]))
    assert float(norm) == pytest.approx(0.5, rel=1e-5)
    kept = [torch.full((2,), 0.1)]
    trainer.learner.guard("gradient of W", kept, clip=True)
    assert torch.equal(kept[0], torch.full((2,), 0.1))  # under the bound: untouched
    result = run(small(method="autoemb", grad_clip=1e-3), tiny)
    assert np.isfinite(result.summary["online_loss"])


# -- writes that fail ------------------------------------------------------------------------------------
def test_a_checkpoint_write_that_runs_out_of_space_leaves_the_previous_one(tiny, saved, monkeypatch):
    path = os.path.join(saved.checkpoint_dir, os.listdir(saved.checkpoint_dir)[0])
    before = open(path, "rb").read()
    real_save = torch.save

    def full_disk(obj, f, *args, **kwargs):
        real_save(obj, f, *args, **kwargs)  # the bytes are written ...
        raise OSError(errno.ENOSPC, "No space left on device")  # ... and then the disk is full
    monkeypatch.setattr(torch, "save", full_disk)
    trainer = StreamingTrainer(tiny.head(6000), Config(**{**saved.to_dict(), "resume": True}))
    with pytest.raises(OSError, match="No space left"):
        trainer.run()
    assert open(path, "rb").read() == before
    assert os.listdir(saved.checkpoint_dir) == [os.path.basename(path)]
    monkeypatch.setattr(torch, "save", real_save)
    assert resume_with(tiny.head(6000), saved).summary["resumed_from_batch"] == 10


def test_results_that_run_out_of_space_leave_the_previous_set_whole(tiny, tmp_path, monkeypatch):
    folder = tmp_path / "results" / "run"
    first = run(small(method="fse", seed=1), tiny)
    first.save(folder)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    assert set(before) == {"summary.json", "batches.csv", "samples.parquet", "alphas.parquet"}
    assert json_of(folder)["seed"] == 1 and json_of(folder)["versions"]["git_commit"] is not None
    second = run(small(method="fse", seed=2), tiny)
    real = pd.DataFrame.to_csv

    def full_disk(self, f, *args, **kwargs):  # the third of four files
        real(self, f, *args, **kwargs)
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(pd.DataFrame, "to_csv", full_disk)
    with pytest.raises(OSError, match="No space left"):
        second.save(folder)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert [p.name for p in (tmp_path / "results").iterdir()] == ["run"], "a staging folder was left"
    monkeypatch.setattr(pd.DataFrame, "to_csv", real)
    second.save(folder)
    assert json_of(folder)["seed"] == 2 and [p.name for p in (tmp_path / "results").iterdir()] == ["run"]


def json_of(folder):
    import json
    return json.loads((folder / "summary.json").read_text())
