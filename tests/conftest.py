import shutil
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Every test gets its own cache folder, so no test reads another's (or the user's) cache."""
    monkeypatch.setenv("AUTOEMB_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture
def data_dir(tmp_path):
    """A writable copy of the real-format fixtures."""
    target = tmp_path / "data"
    shutil.copytree(FIXTURES, target)
    return target


@pytest.fixture
def trainers_before_batch():
    """:func:`_trainers_before_batch`, for the causality tests."""
    return _trainers_before_batch


def _trainers_before_batch(data, cfg, batch: int = 3, flip_from: int = 60, prepare=lambda trainer: None):
    """Two trainers of ``cfg``, one on ``data`` and one on a copy whose labels are flipped from position
    ``flip_from`` on, each stepped through the batches before ``batch`` (and its bilevel update): what a causal
    engine computes for batch ``batch`` must be the same in both."""
    import copy

    from autoemb_core.train import StreamingTrainer
    flipped = copy.copy(data)
    flipped.rating = data.rating.copy()
    flipped.rating[flip_from:] = 6 - flipped.rating[flip_from:]
    pair = StreamingTrainer(data, cfg), StreamingTrainer(flipped, cfg)
    for trainer in pair:
        prepare(trainer)
        for index in range(batch):
            trainer.step(index)
        if cfg.bilevel:
            _theta_step(trainer, batch)
    return pair


@pytest.fixture
def theta_step():
    """:func:`_theta_step`, for tests of Theta's step on one batch."""
    return _theta_step


def _theta_step(trainer, index: int) -> float:
    """Theta's bilevel step for batch ``index`` as :meth:`StreamingTrainer.step` takes it first: a validation
    batch drawn from the past with the trainer's RNG, W's step unrolled on the batch W last trained on. Returns
    the second-order ratio (NaN where no step was taken)."""
    import torch

    from autoemb_core.stream import sample_validation
    cfg = trainer.cfg
    if not trainer.learner.uses_validation:
        return float("nan")
    val = sample_validation(trainer.rng, trainer.batches, index, cfg.validation_size or cfg.batch_size,
                            cfg.validation, trainer.held_positions)
    if not len(val) or trainer.previous is None or not len(trainer.previous):
        return float("nan")
    return trainer.learner.theta_step(trainer.stream.view(trainer.previous),
                                      trainer.stream.view(torch.as_tensor(val, device=trainer.device)))
