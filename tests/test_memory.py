"""Memory counted from the tensors themselves: every method's summary gives it, and the counts match the
arithmetic of the tables they hold."""
import pytest
import torch

import autoemb_core as ae
from autoemb_core.config import Config
from autoemb_core.methods import METHODS
from autoemb_core.learner import tensor_bytes
from autoemb_core.train import StreamingTrainer, run

FAST = dict(hidden=(8,), controller_hidden=(6,), batch_size=100, progress=False)


@pytest.fixture(scope="module")
def tiny():
    return ae.load_dataset("synthetic-tiny").head(1500)


@pytest.mark.parametrize("optimizer, copies, step_bytes", [("adagrad", 2, 0), ("adam", 3, 8), ("sgd", 1, 0)])
def test_fse_bytes_are_its_rows_and_their_optimizer_state(tiny, optimizer, copies, step_bytes):
    trainer = StreamingTrainer(tiny, Config(method="fse", table_optimizer=optimizer, **FAST))
    ids = tiny.n_users + tiny.n_items
    memory = trainer.learner.memory()
    assert memory["embedding_parameters"] == ids * 146
    assert memory["embedding_bytes"] == copies * ids * 146 * 4 + ids * step_bytes
    # the per-id context (popularity int64, last weights and loss float32): apart, as selection bytes
    assert memory["selection_bytes"] == ids * (8 + 3 * 4 + 4) + 2 * 8


def test_soft_selection_stores_every_space_for_every_id_plus_the_transforms(tiny):
    learner = StreamingTrainer(tiny, Config(method="autoemb", **FAST)).learner
    transforms = sum(p.numel() for k, p in learner.dense.items() if k.startswith(("proj.", "bn.")))
    assert transforms > 0
    assert learner.memory()["embedding_parameters"] == (tiny.n_users + tiny.n_items) * 146 + transforms
    controllers = sum(p.numel() * p.element_size() for p in learner.selector.controllers.parameters())
    assert learner.memory()["selection_bytes"] > controllers


def test_a_storage_is_counted_once_and_whole():
    t = torch.zeros(10, 3)
    assert tensor_bytes(t, {"again": t}, [t.view(30)], t[:5]) == 120  # views add nothing
    assert tensor_bytes(t[:5]) == 120  # the whole allocation, spare rows included
    assert tensor_bytes(t, torch.zeros(5, 3, dtype=torch.float64)) == 120 + 120


@pytest.mark.parametrize("method", METHODS)
def test_every_run_reports_its_memory(tiny, method):
    summary = run(Config(method=method, **FAST), tiny).summary
    assert summary["embedding_bytes"] > 0 and summary["selection_bytes"] > 0
    assert summary["embedding_parameters"] > 0 and summary["peak_rss_bytes"] > 2 ** 20
