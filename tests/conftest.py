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
        for index, (start, stop, _) in enumerate(list(trainer.batches)[:batch]):
            trainer.step(index, start, stop)
        if cfg.bilevel:
            trainer.bilevel_step(batch)
    return pair
