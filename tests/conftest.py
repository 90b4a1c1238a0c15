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
