"""The configuration: paper defaults, YAML presets under params/, overrides and clear errors."""
from pathlib import Path

import pytest

from autoemb_core import DataError
from autoemb_core.config import Config

PARAMS = sorted((Path(__file__).parents[1] / "params").glob("*.yaml"))


def test_paper_values_are_the_defaults_where_the_paper_gives_them():
    c = Config()
    assert (c.dims, c.hidden, c.controller_hidden, c.batch_size, c.offline_fraction) == \
        ((2, 16, 128), (512, 512), (512, 512), 500, 0.7)
    assert c.controller_features == 38 and c.width == 146 and c.virtual_lr == c.lr
    assert Config(method="fixed-16").width == 16 and Config(xi=0).virtual_lr == 0


@pytest.mark.parametrize("path", PARAMS, ids=[p.name for p in PARAMS])
def test_every_params_file_loads_and_every_key_is_commented(path):
    """Hand-written keys carry a comment; the tuned: block that benchmarks/tune.py writes at the end is
    introduced by one comment line saying how it was made."""
    Config.from_yaml(path)
    text = path.read_text()
    written, _, tuned = text.partition("# tuned by benchmarks/tune.py")
    for line in written.splitlines():
        if line and not line.startswith("#"):
            assert "#" in line, f"{path.name}: uncommented key {line!r}"
    if tuned:
        assert "tuned:" in tuned and Config.from_yaml(path).tuned


def test_paper_preset_and_overrides():
    c = Config.from_yaml(Path(__file__).parents[1] / "params" / "paper.yaml", method="darts", seed=None)
    assert (c.lr, c.controller_lr, c.method, c.seed) == (0.01, 0.001, "darts", 0)


@pytest.mark.parametrize("bad, words", [
    (dict(method="autoemb2"), "method='autoemb2'"), (dict(task="ranking"), "task"), (dict(lr=0), "lr must be > 0"),
    (dict(dims=(16, 2)), "increasing"), (dict(xi=-1.0), "xi"), (dict(offline_fraction=1.0), "offline_fraction"),
])
def test_bad_values_are_refused_clearly(bad, words):
    with pytest.raises(DataError, match=words):
        Config(**bad)


def test_yaml_errors_name_the_file(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text("lr: [\n")
    with pytest.raises(DataError, match="x.yaml.*not valid YAML"):
        Config.from_yaml(path)
    path.write_text("lrr: 0.1\n")
    with pytest.raises(DataError, match="unknown setting.*lrr"):
        Config.from_yaml(path)
    with pytest.raises(DataError, match="no such params file"):
        Config.from_yaml(tmp_path / "missing.yaml")
